package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/signature"
	"github.com/digitalpost/postbud/channels/sink"
	"github.com/digitalpost/postbud/config"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/httpapi"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// The demo secrets of `postbud dev`. They are printed at start and are
// worthless outside it: dev runs on an embedded Redis that dies with it.
const (
	devPlatformKey = "dev-core-platform-key"
	devOpsKey      = "dev-ops-key-0123456789"
	devPseudonym   = "dev-pseudonymisation-key-not-for-production"
	devSealKey     = "dev-seal-key-for-contact-data-not-for-production"
)

// devSelfServiceKeys are the demo keys of three self-service systems, one
// per context (POST /v1/self-service/exemption).
var devSelfServiceKeys = []struct{ name, context, key string }{
	{"demo-public", "public", "dev-self-service-public-key"},
	{"demo-court", "court", "dev-self-service-court-key"},
	{"demo-business", "business", "dev-self-service-business-key"},
}

// devPlatformKeys are the demo API keys of the four reading platforms.
var devPlatformKeys = map[event.Platform]string{
	event.Platform("borger.dk"):        "dev-borger-dk-platform-key",
	event.Platform("digital-post-app"): "dev-digital-post-app-platform-key",
	event.Platform("e-boks"):           "dev-e-boks-platform-key",
	event.Platform("mit.dk"):           "dev-mit-dk-platform-key",
}

// devWebhookSecret is the demo Standard Webhooks secret of a platform's
// webhook sink.
func devWebhookSecret(p event.Platform) []byte {
	return []byte("dev-webhook-secret-" + string(p) + "-not-for-production")[:32]
}

// devCitizen is a demo citizen dev registers at start. The CPR numbers are
// made up (valid dates, no modulus-11 check).
type devCitizen struct {
	CPR, Name, Email, Mobile, Language, Token, Provider, Address string
	// Exempt citizens are granted an exemption from Digital Post.
	Exempt bool
	// Consents are the platforms the citizen gives consent to show public
	// post (consent.granted); e-Boks and mit.dk are told nothing of the
	// public letters of a citizen who gave them none.
	Consents []event.Platform
	// Rule says which rule the citizen shows.
	Rule string
}

// devCitizens returns the demo citizens on day now: one of them is 14 then.
func devCitizens(now time.Time) []devCitizen {
	return []devCitizen{
		{CPR: "010190-1234", Name: "Anna", Email: "anna@example.dk", Mobile: "20304050", Language: "da",
			Token: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90", Provider: "apns",
			Consents: []event.Platform{event.MitDK},
			Rule: "email, SMS and iPhone: digital alerts; SMS waits out quiet hours (22:00–07:00); consent for mit.dk only: " +
				"e-Boks gets no webhook about her public letters"},
		{CPR: "150805-4321", Name: "Bo", Email: "bo@example.dk", Language: "da", Token: "fcm-demo-token-bo-0001",
			Provider: "fcm", Consents: []event.Platform{event.EBoks, event.MitDK}, Rule: "email and Android; consent for e-Boks and mit.dk"},
		{CPR: "311265-2345", Name: "Carol", Email: "carol@example.com", Language: "en", Rule: "English alerts by email"},
		{CPR: "120370-1118", Name: "Dorte", Email: "dorte@example.dk", Language: "da", Address: "Vestergade 12, 1456 København K",
			Exempt: true, Rule: "exempt from Digital Post: letters from public senders go on paper, no digital alert"},
		{CPR: under15CPR(now), Name: "Emil", Email: "emil@example.dk", Language: "da", Address: "Nørregade 1, 8000 Aarhus C",
			Rule: "14 years old (under 15): no digital alert from public senders; paper to his address"},
	}
}

// under15CPR returns a CPR number whose holder is 14 years and two months
// old on now's Copenhagen day (seventh digit 4: born 2000–2036).
func under15CPR(now time.Time) string {
	b := now.In(event.Copenhagen()).AddDate(-14, -2, 0)
	return fmt.Sprintf("%02d%02d%02d-4%03d", b.Day(), int(b.Month()), b.Year()%100, 321)
}

// dev runs the daemon on an embedded Redis (miniredis) with demo citizens,
// local sinks that record alerts instead of sending them, and webhook
// sinks for the four platforms; its page shows what the rules did.
func dev(ctx context.Context, args []string, e env, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", "", "Runs postbud on an embedded Redis with demo citizens; alerts go to local sinks and\n"+
		"read-state webhooks to local receivers (nothing is sent). The page at http://127.0.0.1:8080/\n"+
		"shows each letter's trail, read state and webhooks. POSTBUD_* variables override its defaults.")
	if err := parse(fs, args, 0, stdout, stderr); err != nil {
		return err
	}
	getenv := e.get
	mr := miniredis.NewMiniRedis()
	mr.ClockTTL(true)
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return fmt.Errorf("embedded redis: %w", err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	hooks := newWebhookSinks()
	wl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("webhook sinks: %w", err)
	}
	hs := &http.Server{Handler: hooks, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(wl) }()
	defer hs.Close()

	defaults := map[string]string{
		"POSTBUD_HTTP_ADDR":     "127.0.0.1:8080",
		"POSTBUD_REDIS_URL":     "redis://" + mr.Addr(),
		"POSTBUD_PSEUDONYM_KEY": devPseudonym,
		"POSTBUD_SEAL_KEY":      devSealKey,
		"POSTBUD_OPS_KEY":       devOpsKey,
		"POSTBUD_KEY_CORE":      devPlatformKey,
		// Every platform has a demo key (docs/events.md §12), so each
		// example of the contract can be sent as its source.
		"POSTBUD_KEY_BORGER_DK":        "dev-borger-dk-platform-key",
		"POSTBUD_KEY_DIGITAL_POST_APP": "dev-digital-post-app-platform-key",
		"POSTBUD_KEY_E_BOKS":           "dev-e-boks-platform-key",
		"POSTBUD_KEY_MIT_DK":           "dev-mit-dk-platform-key",
		// A support key beside the admin ops key, to try the roles.
		"POSTBUD_OPS_KEYS":   "support:support:dev-support-key-0123456789",
		"POSTBUD_LOG_FORMAT": "text",
		// One demo self-service system per context.
		"POSTBUD_SELF_SERVICE_KEYS": devSelfServiceLines(),
		// miniredis is slow at polling; a calmer interval keeps dev idle.
		"POSTBUD_TASK_CHECK_INTERVAL":        "100ms",
		"POSTBUD_URGENT_TASK_CHECK_INTERVAL": "100ms",
	}
	for p, key := range devPlatformKeys {
		suf := config.EnvSuffix(string(p))
		defaults["POSTBUD_KEY_"+suf] = key
		defaults["POSTBUD_WEBHOOK_URL_"+suf] = "http://" + wl.Addr().String() + "/" + string(p)
		defaults["POSTBUD_WEBHOOK_SECRET_"+suf] = signature.FormatSecret(devWebhookSecret(p))
		hooks.secrets[string(p)] = devWebhookSecret(p)
	}
	devEnv := func(k string) string {
		if v := getenv(k); v != "" && k != "POSTBUD_REDIS_URL" {
			return v
		}
		return defaults[k]
	}
	keyPrefix, queues := devEnv("POSTBUD_KEY_PREFIX"), dispatcher.DefaultQueues(devEnv("POSTBUD_QUEUE_PREFIX"))
	if keyPrefix == "" {
		keyPrefix = "pb"
	}
	sinks := map[channels.Name]*sink.Sink{}
	senders := map[channels.Name]channels.Sender{}
	for _, n := range []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM} {
		sinks[n] = sink.New(n, 1000)
		senders[n] = sinks[n]
	}
	paper := &paperSink{keep: 1000}
	senders[channels.Paper] = paper
	citizens := devCitizens(time.Now())
	// The page shows each demo citizen's consents as stored (a
	// consent.granted or .revoked sent in dev shows at the next refresh).
	keyer, err := dispatcher.NewKeyer([]byte(devEnv("POSTBUD_PSEUDONYM_KEY")))
	if err != nil {
		return err
	}
	sealer, err := seal.New(seal.Keys{Current: []byte(devSealKey), Tag: []byte(devEnv("POSTBUD_PSEUDONYM_KEY"))})
	if err != nil {
		return err
	}
	store := redisstore.New(rdb, redisstore.Options{Prefix: keyPrefix, Sealer: sealer})
	defer store.Close()
	v := &devView{sinks: sinks, paper: paper, hooks: hooks, citizens: citizens, opsKey: devEnv("POSTBUD_OPS_KEY"),
		consents: func(ctx context.Context, cpr string) ([]event.Platform, error) {
			c, err := event.ParseCPR(cpr)
			if err != nil {
				return nil, err
			}
			view, err := store.Load(ctx, keyer.CitizenKey(c), "")
			if err != nil {
				return nil, err
			}
			var out []event.Platform
			for _, p := range event.ConsentPlatforms() {
				if view.Citizen.Consented(p) {
					out = append(out, p)
				}
			}
			return out, nil
		},
		letterIDs: func() []string {
			var ids []string
			for _, k := range mr.Keys() {
				if id, ok := strings.CutPrefix(k, keyPrefix+":msg:"); ok {
					ids = append(ids, id)
				}
			}
			return ids
		}}
	ov := &overrides{
		embedded: true,
		rdb:      rdb,
		senders:  senders,
		mount: func(api *httpapi.API) {
			v.api = api
			api.Handle("GET /dev/alerts", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]any{"alerts": allAlerts(sinks), "paper": paper.Jobs(),
					"webhooks": hooks.Received()})
			}))
			api.Handle("GET /{$}", http.HandlerFunc(v.page))
			api.Handle("GET /dev/messages/{id}", http.HandlerFunc(v.letterPage))
		},
		started: func(base string) {
			// Contacts first, then devices and exemptions: each batch is
			// applied before the next is sent.
			for _, step := range []string{"contact", "device"} {
				if err := registerDemoCitizens(ctx, base, citizens, step); err != nil {
					fmt.Fprintln(stderr, "postbud dev: registering demo citizens:", err)
					break
				} else if err := waitQueues(ctx, rdb, queues, 10*time.Second); err != nil {
					fmt.Fprintln(stderr, "postbud dev: demo citizens not registered yet:", err)
					break
				}
			}
			var who strings.Builder
			for _, c := range citizens {
				fmt.Fprintf(&who, "  %s  %-6s %s\n", c.CPR, c.Name, c.Rule)
			}
			fmt.Fprintf(stdout, `postbud dev is running on an embedded Redis (nothing is sent; alerts go to local sinks,
read-state webhooks to local receivers for the four platforms).

  the rules at work  %[1]s/   (trails, read state, webhooks, alerts)
  alerts JSON        %[1]s/dev/alerts
  event API          POST %[1]s/v1/events   (Authorization: Bearer %[2]s, source "core")
  platform keys      borger.dk %[4]s, digital-post-app %[5]s,
                     e-boks %[6]s, mit.dk %[7]s
  confirm an address POST %[1]s/v1/contacts/confirm   {"cpr", "channel", "code"}: the codes are on the page
  ops trail          GET  %[1]s/v1/messages/<message-id>/trail   (Authorization: Bearer %[3]s)
  self-service       POST %[1]s/v1/self-service/exemption   {"cpr": "120370-1118"}
                     keys %[9]s, %[10]s,
                     %[11]s
  health             %[1]s/healthz  %[1]s/readyz
  metrics            %[1]s/metrics
  dashboard          %[1]s/monitoring/   (user: any, password: %[3]s)

Demo citizens:
%[8]s
Send a letter to the demo citizen Anna:
  POSTBUD_URL=%[1]s POSTBUD_EMIT_KEY=%[2]s go run ./cmd/postbud emit -letter 010190-1234 -sender Skattestyrelsen

Stop with Ctrl-C.
`, base, devPlatformKey, devOpsKey, devPlatformKeys["borger.dk"], devPlatformKeys["digital-post-app"],
				devPlatformKeys["e-boks"], devPlatformKeys["mit.dk"], who.String(),
				devSelfServiceKeys[0].key+" (public)", devSelfServiceKeys[1].key+" (court)", devSelfServiceKeys[2].key+" (business)")
		},
	}
	return serve(ctx, env{get: devEnv, names: e.names}, stdout, stderr, ov)
}

// devSelfServiceLines is devSelfServiceKeys as POSTBUD_SELF_SERVICE_KEYS.
func devSelfServiceLines() string {
	var b strings.Builder
	for _, s := range devSelfServiceKeys {
		fmt.Fprintf(&b, "%s:%s:%s\n", s.name, s.context, s.key)
	}
	return b.String()
}

// registerDemoCitizens sends the demo citizens' contacts (step "contact"),
// or their devices, exemptions and consents (step "device"), as one batch.
func registerDemoCitizens(ctx context.Context, base string, citizens []devCitizen, step string) error {
	now := time.Now().UTC()
	var events []map[string]any
	add := func(id, typ string, data map[string]any) {
		events = append(events, map[string]any{"id": id, "type": typ, "occurred_at": now.Format(time.RFC3339Nano),
			"source": "core", "data": data})
	}
	for i, c := range citizens {
		// The demo addresses start confirmed (core's migration flag), so
		// the demo letters alert at once; a new address sent from a
		// platform gets a code, shown on the dev page.
		data := map[string]any{"cpr": c.CPR, "email": c.Email, "language": c.Language, "confirmed": true}
		if c.Mobile != "" {
			data["mobile"] = c.Mobile
		}
		if c.Address != "" {
			data["address"] = c.Address
		}
		if step == "contact" {
			add(fmt.Sprintf("dev-contact-%d", i), "contact.updated", data)
			continue
		}
		if c.Token != "" {
			add(fmt.Sprintf("dev-device-%d", i), "device.registered",
				map[string]any{"cpr": c.CPR, "app": "digital-post-app", "provider": c.Provider, "token": c.Token})
		}
		if c.Exempt {
			add(fmt.Sprintf("dev-exempt-%d", i), "exemption.granted", map[string]any{"cpr": c.CPR})
		}
		for _, p := range c.Consents {
			add(fmt.Sprintf("dev-consent-%d-%s", i, p), "consent.granted", map[string]any{"cpr": c.CPR, "platform": string(p)})
		}
	}
	body, _ := json.Marshal(map[string]any{"events": events})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events/batch", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+devPlatformKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	// Each event has its own answer: a refused one is an error too.
	var out struct {
		Results []struct {
			ID, Status string
			Errors     json.RawMessage
		}
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("batch answer: %w", err)
	}
	var errs []error
	for _, r := range out.Results {
		if r.Status != "accepted" && r.Status != "duplicate" {
			errs = append(errs, fmt.Errorf("event %s: %s %s", r.ID, r.Status, r.Errors))
		}
	}
	return errors.Join(errs...)
}

// waitQueues waits until the queues hold no pending or active task, so
// the demo citizens are registered before dev says it runs.
func waitQueues(ctx context.Context, rdb redis.UniversalClient, q dispatcher.Queues, limit time.Duration) error {
	insp := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		busy := 0
		var err error
		for _, name := range []string{q.Urgent, q.Normal, q.Bulk} {
			pending, perr := insp.ListPendingTasks(name)
			active, aerr := insp.ListActiveTasks(name)
			for _, e := range []error{perr, aerr} {
				if e != nil && !errors.Is(e, asynq.ErrQueueNotFound) {
					err = e
				}
			}
			busy += len(pending) + len(active)
		}
		if err == nil && busy == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d task(s) still queued after %v (%v)", busy, limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
