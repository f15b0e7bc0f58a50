package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/failover"
	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/config"
)

// checkTimeout bounds one provider check.
const checkTimeout = 15 * time.Second

// check is one provider check's result.
type check struct {
	name string
	err  error
}

// checkProviders contacts every configured provider through its channel's
// optional channels.Pinger: SMTP (dial, EHLO, STARTTLS and AUTH as
// configured, no mail), APNs (connection), FCM (OAuth token and a dry
// run), the SMS gateway and the print API (a request that sends nothing),
// the webhook endpoints (reachability).
//
// The checks run at once, together bounded by checkTimeout; results come
// in a fixed order.
func checkProviders(ctx context.Context, senders map[channels.Name]channels.Sender, ws *webhook.Sender) []check {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	var names []channels.Name
	var pingers []channels.Pinger
	for _, n := range []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM, channels.Paper} {
		if p, ok := senders[n].(channels.Pinger); ok { // a sink has nothing to contact
			names, pingers = append(names, n), append(pingers, p)
		}
	}
	out := make([]check, len(names))
	var wg sync.WaitGroup
	for i, p := range pingers {
		out[i].name = string(names[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].err = p.Ping(ctx)
		}()
	}
	var webhooks []webhook.PingResult
	if ws != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			webhooks = ws.Ping(ctx)
		}()
	}
	// A channel of two providers is checked per provider too: the
	// channel works while either does, but each should.
	var several []*failover.Sender
	for _, n := range names {
		if fs, ok := senders[n].(*failover.Sender); ok {
			several = append(several, fs)
		}
	}
	each := make([][]failover.PingResult, len(several))
	for k, fs := range several {
		wg.Go(func() { each[k] = fs.PingEach(ctx) })
	}
	wg.Wait()
	for _, rs := range each {
		for _, r := range rs {
			out = append(out, check{name: r.Provider, err: r.Err})
		}
	}
	for i := range out {
		// The FCM client appends the API path to the endpoint: without
		// the version it answers 404, which alone does not say why.
		if out[i].name == string(channels.FCM) && out[i].err != nil && strings.Contains(out[i].err.Error(), "NOT_FOUND") {
			out[i].err = fmt.Errorf("%w (404 Not Found: does POSTBUD_FCM_ENDPOINT end in the API version, /v1?)", out[i].err)
		}
	}
	for _, r := range webhooks {
		out = append(out, check{name: "webhook " + r.Platform, err: r.Err})
	}
	return out
}

// configCmd is `postbud config check`.
func configCmd(ctx context.Context, args []string, e env, stdout, stderr io.Writer) error {
	fs := newFlagSet("config", "check", "check loads and validates the configuration (POSTBUD_* variables), contacts Redis and\n"+
		"every configured provider, and reports each as ok or with the reason. Nothing is sent.\n"+
		"Exit status 0 when all are ok, 1 otherwise.")
	if err := parse(fs, args, 1, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 || fs.Arg(0) != "check" {
		fs.SetOutput(stderr)
		fs.Usage()
		return usageError{fmt.Errorf("config: want the subcommand check")}
	}
	cfg, err := config.LoadEnviron(e.get, e.names)
	if err != nil {
		fmt.Fprintf(stdout, "configuration  FAILED\n%v\n", err)
		return fmt.Errorf("configuration is invalid")
	}
	fmt.Fprintln(stdout, "configuration  ok")
	fmt.Fprintf(stdout, "%-14s %s\n", "self-service", selfServiceSummary(cfg.SelfService))
	log := slog.New(slog.DiscardHandler)
	failed := 0
	report := func(c check) {
		if c.err != nil {
			failed++
			fmt.Fprintf(stdout, "%-14s FAILED: %s\n", c.name, redactString(c.err.Error()))
			return
		}
		fmt.Fprintf(stdout, "%-14s ok\n", c.name)
	}
	rdb := newRedisClient(cfg.Redis)
	defer rdb.Close()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	report(check{name: "redis", err: pingRedis(pctx, rdb)})
	cancel()
	senders, closeAll, err := buildSenders(cfg, log, nil)
	if err != nil {
		report(check{name: "channels", err: err})
		return fmt.Errorf("%d check(s) failed", failed)
	}
	defer closeAll()
	var ws *webhook.Sender
	if cfg.Channels.Webhooks != nil {
		if ws, err = webhook.New(*cfg.Channels.Webhooks, log); err != nil {
			report(check{name: "webhook", err: err})
		} else {
			defer ws.Close()
		}
	}
	for _, c := range checkProviders(ctx, senders, ws) {
		report(c)
	}
	if failed > 0 {
		return fmt.Errorf("%d check(s) failed", failed)
	}
	return nil
}

func pingRedis(ctx context.Context, rdb redis.UniversalClient) error {
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis does not answer: %w", err)
	}
	return nil
}

// selfServiceSummary lists the configured self-service systems for
// `postbud config check`: each name once, with its context and, during a
// rotation, its number of keys; never a key or its hash.
func selfServiceSummary(systems []config.SelfService) string {
	if len(systems) == 0 {
		return "none"
	}
	var names []string
	context := map[string]string{}
	keys := map[string]int{}
	for _, s := range systems {
		if keys[s.Name] == 0 {
			names = append(names, s.Name)
			context[s.Name] = string(s.Context)
		}
		keys[s.Name]++
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + " (" + context[n]
		if keys[n] > 1 {
			parts[i] += fmt.Sprintf(", %d keys", keys[n])
		}
		parts[i] += ")"
	}
	return fmt.Sprintf("%d system(s): %s", len(names), strings.Join(parts, ", "))
}
