package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/apns"
	"github.com/digitalpost/postbud/channels/email"
	"github.com/digitalpost/postbud/channels/failover"
	"github.com/digitalpost/postbud/channels/fcm"
	"github.com/digitalpost/postbud/channels/paper"
	"github.com/digitalpost/postbud/channels/sms"
	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/config"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/dashboard"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/httpapi"
	"github.com/digitalpost/postbud/dispatcher/metrics"
	"github.com/digitalpost/postbud/dispatcher/opsauth"
	"github.com/digitalpost/postbud/dispatcher/reaper"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/rules"
	"github.com/digitalpost/postbud/dispatcher/wake"
	"github.com/digitalpost/postbud/dispatcher/webhooksync"
)

// overrides let `postbud dev` (and tests) run the same daemon on other
// parts: an embedded Redis, recording sinks, extra pages.
type overrides struct {
	rdb     redis.UniversalClient
	senders map[channels.Name]channels.Sender
	mount   func(api *httpapi.API)
	// started is told the HTTP base URL once the daemon serves.
	started func(baseURL string)
	// embedded says Redis is the embedded miniredis (dev): the eviction
	// self-check does not apply.
	embedded bool
}

// serve runs the daemon until ctx ends, then shuts down in order: stop
// taking HTTP, stop pulling tasks, let in-flight tasks finish (bounded),
// close channels, close Redis.
func serve(ctx context.Context, e env, stdout, stderr io.Writer, ov *overrides) error {
	cfg, err := config.LoadEnviron(e.get, e.names)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if ov == nil {
		ov = &overrides{}
	}
	log := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	useRedisLogger(log)

	rdb := ov.rdb
	if rdb == nil {
		rdb = newRedisClient(cfg.Redis)
		defer rdb.Close()
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		return fmt.Errorf("POSTBUD_REDIS_URL: Redis does not answer: %w", err)
	}
	if err := selfCheck(ctx, rdb, cfg, ov.embedded, log); err != nil {
		return err
	}
	sealer, err := newSealer(cfg)
	if err != nil {
		return err
	}
	fence, stopFence := startFence(ctx, cfg.Redis, log)
	defer stopFence()
	store := redisstore.New(rdb, redisstore.Options{Prefix: cfg.KeyPrefix, LetterTTL: cfg.LetterTTL,
		ReadTTL: cfg.ReadLetterTTL, Sealer: sealer, Fence: fence})
	defer store.Close()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := store.LoadScripts(lctx); err != nil {
		// Best effort: each script is loaded on its first NOSCRIPT anyway.
		log.Warn("Redis scripts not loaded at start", "err", err)
	}
	cancel()

	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	b := readBuild()
	metrics.BuildInfo(reg, b.Version, b.Revision, b.GoVersion)
	reg.MustRegister(metrics.NewQueueCollector(rdb, dispatcher.DefaultQueues(cfg.QueuePrefix)))
	guard, closeAudit, err := opsGuard(cfg, stderr)
	if err != nil {
		return err
	}
	defer closeAudit()
	dash, err := dashboard.New(dashboard.Config{RedisClient: rdb, RootPath: dashboard.DefaultRootPath,
		Writable: cfg.DashboardWritable, Guard: guard})
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}

	senders := ov.senders
	if senders == nil {
		var closeAll func()
		senders, closeAll, err = buildSenders(cfg, log, m.ProviderState)
		if err != nil {
			return err
		}
		defer closeAll()
	}

	var syncer dispatcher.Syncer
	var ws *webhook.Sender
	if cfg.Channels.Webhooks != nil {
		ws, err = webhook.New(*cfg.Channels.Webhooks, log)
		if err != nil {
			return fmt.Errorf("POSTBUD_WEBHOOK_*: %w", err)
		}
		defer ws.Close()
		syncer = webhooksync.New(ws)
	}

	quiet := map[channels.Name]rules.QuietHours{}
	for ch, q := range cfg.QuietHours {
		if q.IsZero() {
			continue
		}
		if ch == "push" {
			quiet[channels.APNs], quiet[channels.FCM] = q, q
		} else {
			quiet[channels.Name(ch)] = q
		}
	}

	coalesce := map[channels.Name]time.Duration{}
	for ch, w := range cfg.Coalesce {
		if ch == "push" {
			coalesce[channels.APNs], coalesce[channels.FCM] = w, w
		} else {
			coalesce[channels.Name(ch)] = w
		}
	}
	var limiter dispatcher.Limiter
	if len(cfg.Rates) > 0 {
		rates := map[channels.Name]int{}
		for ch, n := range cfg.Rates {
			rates[channels.Name(ch)] = n
		}
		limiter = redisstore.NewLimiter(rdb, cfg.KeyPrefix, rates)
	}

	keyer, err := dispatcher.NewKeyer(cfg.PseudonymKey)
	if err != nil {
		return fmt.Errorf("POSTBUD_PSEUDONYM_KEY: %w", err)
	}
	queues := dispatcher.DefaultQueues(cfg.QueuePrefix)
	// An urgent enqueue wakes an idle urgent server and marks the urgent
	// lane flowing (its token and mark go in the enqueue's round trip),
	// whether this replica's urgent server waits for tokens or not.
	client := asynq.NewClientFromRedisClient(wake.NewClient(rdb, cfg.UrgentWakeWait, queues.Urgent))
	defer client.Close()
	wm := metrics.NewWorkers(reg)
	flowing, pace := yielding(rdb, cfg, queues, wm)
	d, err := dispatcher.New(dispatcher.Config{Store: store, Keyer: keyer, Sealer: sealer, Enqueuer: client, Queues: queues,
		Senders: senders, Logger: log, MailboxURL: cfg.MailboxURL, AlertTTL: cfg.AlertTTL, RetryBase: cfg.RetryBase, BatchSize: cfg.BatchSize, BatchInflight: cfg.BatchInflight, GroupAccepts: cfg.GroupAccepts,
		UrgentFlowing: flowing, YieldPace: pace,
		TrackReports: trackReports(cfg), Syncer: syncer, QuietHours: quiet, PaperForMinors: cfg.PaperForMinors,
		ReminderBefore: cfg.ReminderBefore, Observer: m, Limiter: limiter, Coalesce: coalesce})
	if err != nil {
		return err
	}

	workers := newWorkerServers(rdb, cfg, queues, d, log)
	replicas := redisstore.NewReplicas(rdb, cfg.KeyPrefix, cfg.AckReplicas, cfg.AckTimeout)
	replicas.UseFence(fence)
	defer replicas.Close()
	working := &workingSet{ids: map[string]int{}}
	mux := asynq.NewServeMux()
	d.Register(mux)
	mux.Use(taskMiddleware(working, replicas, cfg.AckReplicas > 0))
	if err := workers.start(mux, wm, cfg); err != nil {
		return err
	}

	var platforms []httpapi.Platform
	for _, p := range cfg.Platforms {
		hp := httpapi.Platform{Name: event.Platform(p.Name), KeySHA256: p.KeySHA256, Rate: p.Rate}
		if k := cfg.Channels.InboundSecrets[p.Name]; k != nil {
			hp.SigningSecrets = [][]byte{k}
		}
		platforms = append(platforms, hp)
	}
	var selfService []httpapi.SelfService
	for _, s := range cfg.SelfService {
		selfService = append(selfService, httpapi.SelfService{Name: s.Name, Context: s.Context, KeySHA256: s.KeySHA256, Rate: s.Rate})
	}
	hc := httpapi.Config{Dispatcher: d, Platforms: platforms, SelfService: selfService, Guard: guard, SeparateOps: cfg.OpsAddr != "",
		Logger: log, SMSReportFunc: smsReports(cfg.Channels.SMSReportSecret, cfg.Channels.SMSReportSecret2), CountEvent: m.Event,
		Channels: func() any { return m.Channels() }}
	if cfg.AckReplicas > 0 {
		hc.WaitReplicas = replicas.WaitReplicas
	}
	api := httpapi.New(hc)
	rctx, stopReaper := context.WithCancel(ctx)
	reaperDone := make(chan struct{})
	defer func() { stopReaper(); <-reaperDone }()
	go func() {
		defer close(reaperDone)
		reaper.New(reaper.Config{Client: rdb, Queues: []string{queues.Urgent, queues.Normal, queues.Bulk},
			LockKey: cfg.KeyPrefix + ":reaper", WorkingFunc: working.has, Logger: log.With("component", "reaper")}).Run(rctx)
	}()
	api.HandleOps("GET /metrics", metrics.Handler(reg))
	api.HandleOps(dashboard.DefaultRootPath, dash)
	if ov.mount != nil {
		ov.mount(api)
	}
	// The provider checks of `postbud config check`, logged before
	// serving: a broken provider shows at start and in postbud_channel_up,
	// but does not stop the ingest.
	for _, c := range checkProviders(ctx, senders, ws) {
		if ch := channels.Name(c.name); senders[ch] != nil {
			m.ChannelConfigured(ch, c.err)
		}
		if c.err != nil {
			log.Error("provider check failed", "check", c.name, "error", c.err)
		} else {
			log.Info("provider check ok", "check", c.name)
		}
	}
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		workers.shutdown()
		return fmt.Errorf("POSTBUD_HTTP_ADDR: %w", err)
	}
	servers := []*http.Server{newServer(api)}
	listeners := []net.Listener{ln}
	if cfg.OpsAddr != "" {
		oln, err := net.Listen("tcp", cfg.OpsAddr)
		if err != nil {
			ln.Close()
			workers.shutdown()
			return fmt.Errorf("POSTBUD_OPS_ADDR: %w", err)
		}
		servers = append(servers, newServer(api.OpsHandler()))
		listeners = append(listeners, oln)
	}
	httpErr := make(chan error, len(servers))
	for i, hs := range servers {
		go func() { httpErr <- hs.Serve(listeners[i]) }()
	}
	base := "http://" + ln.Addr().String()
	serving := []any{"http", base, "queues", []string{queues.Urgent, queues.Normal, queues.Bulk},
		"worker_servers", workers.names(), "urgent_workers", cfg.UrgentConcurrency, "workers", cfg.Concurrency,
		"channels", channelNames(senders)}
	if len(listeners) > 1 {
		serving = append(serving, "ops_http", "http://"+listeners[1].Addr().String())
	}
	log.Info("postbud serving", serving...)
	if ov.started != nil {
		ov.started(base)
	}

	select {
	case <-ctx.Done():
	case err = <-httpErr:
		log.Error("HTTP server stopped", "error", err)
	}
	log.Info("shutting down")
	api.Drain()
	if cfg.DrainDelay > 0 && err == nil {
		// /readyz answers 503 now; give load balancers time to notice
		// before the listener closes.
		time.Sleep(cfg.DrainDelay)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	for _, hs := range servers {
		_ = hs.Shutdown(sctx)
	}
	cancel()
	// Both worker servers stop pulling new tasks, then their in-flight
	// tasks finish side by side, up to ShutdownTimeout.
	workers.shutdown()
	log.Info("stopped")
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// selfCheck refuses to serve on a Redis that may evict keys: eviction
// silently loses queued alerts, read state and idempotency marks.
// POSTBUD_ALLOW_EVICTION=true overrides. The dashboard cannot be mounted
// without authentication (dashboard.New refuses), so there is no override
// for that.
func selfCheck(ctx context.Context, rdb redis.UniversalClient, cfg *config.Config, embedded bool, log *slog.Logger) error {
	if embedded {
		return nil
	}
	res, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	policy := res["maxmemory-policy"]
	switch {
	case err != nil || policy == "":
		log.Warn("self-check: cannot read Redis maxmemory-policy (CONFIG GET refused?); make sure it is noeviction", "error", err)
	case policy != "noeviction" && cfg.AllowEviction:
		log.Warn("self-check: Redis may evict keys; serving anyway (POSTBUD_ALLOW_EVICTION=true)", "maxmemory_policy", policy)
	case policy != "noeviction":
		return fmt.Errorf("self-check: Redis maxmemory-policy is %q: under memory pressure it would evict queued alerts, "+
			"read state and idempotency marks; set maxmemory-policy noeviction (deploy/redis.conf), or "+
			"POSTBUD_ALLOW_EVICTION=true to serve anyway", policy)
	}
	return nil
}

// opsGuard builds the ops gate from the configured ops keys, auditing to
// POSTBUD_AUDIT_FILE (appended, 0600) or, without one, to stderr beside the
// logs; the returned func closes the file.
func opsGuard(cfg *config.Config, stderr io.Writer) (*opsauth.Guard, func(), error) {
	var keys []opsauth.Key
	for _, k := range cfg.OpsKeys {
		role, err := opsauth.ParseRole(k.Role)
		if err != nil {
			return nil, nil, fmt.Errorf("ops key %s: %w", k.Name, err)
		}
		keys = append(keys, opsauth.Key{Name: k.Name, Role: role, SHA256: k.KeySHA256})
	}
	w, closeFn := stderr, func() {}
	if cfg.AuditFile != "" {
		f, err := os.OpenFile(cfg.AuditFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("POSTBUD_AUDIT_FILE: %w", err)
		}
		w, closeFn = f, func() { _ = f.Close() }
	}
	g, err := opsauth.New(keys, w)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return g, closeFn, nil
}

// smsReports reads the SMS gateways' delivery reports for the HTTP API,
// each verified with its gateway's secret (the first gateway's, then the
// second's): a report signed under either is accepted. No secret turns the
// endpoint off.
func smsReports(secrets ...[]byte) func(*http.Request) (httpapi.SMSReport, error) {
	secrets = slices.DeleteFunc(secrets, func(s []byte) bool { return s == nil })
	if len(secrets) == 0 {
		return nil
	}
	return func(r *http.Request) (httpapi.SMSReport, error) {
		var rep sms.Report
		var err error
		for _, secret := range secrets {
			// The signature is checked before the body is read: a report
			// under the other gateway's secret leaves the body unread.
			if rep, err = sms.ParseReport(r, secret, 0); !errors.Is(err, sms.ErrBadSignature) {
				break
			}
		}
		if errors.Is(err, sms.ErrBadSignature) {
			return httpapi.SMSReport{}, fmt.Errorf("%w: %w", httpapi.ErrBadSignature, err)
		}
		if err != nil {
			return httpapi.SMSReport{}, err
		}
		return httpapi.SMSReport{ID: rep.ID, UserRef: rep.UserRef, Status: rep.Status, Code: rep.ErrorCode,
			Final: rep.Final, Dead: rep.Status == sms.StatusUndeliverable, At: rep.Time}, nil
	}
}

// trackReports lists the channels whose delivery reports postbud takes.
func trackReports(cfg *config.Config) []channels.Name {
	if cfg.Channels.SMS != nil && (cfg.Channels.SMSReportSecret != nil || cfg.Channels.SMSReportSecret2 != nil) {
		return []channels.Name{channels.SMS}
	}
	return nil
}

func channelNames(s map[channels.Name]channels.Sender) []string {
	var out []string
	for _, n := range []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM, channels.Paper} {
		if _, ok := s[n]; ok {
			out = append(out, string(n))
		}
	}
	return out
}

// providerState records a provider's state (metrics.ProviderState); nil
// records nothing.
type providerState func(ch channels.Name, provider, state string)

// buildSenders builds the configured channels; the returned func closes
// them. A channel with a second provider (POSTBUD_SMS_*_2,
// POSTBUD_SMTP_*_2) is a channels/failover Sender over both, named
// sms-1/sms-2 and smtp-1/smtp-2, whose states go to states.
func buildSenders(cfg *config.Config, log *slog.Logger, states providerState) (map[channels.Name]channels.Sender, func(), error) {
	out := map[channels.Name]channels.Sender{}
	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}
	ch := cfg.Channels
	// twoProviders puts a channel's providers behind one circuit-breaking
	// Sender.
	twoProviders := func(name channels.Name, kind string, ps ...channels.Sender) (channels.Sender, error) {
		fc := failover.Config{Channel: name, Threshold: ch.Failover.Threshold, OpenFor: ch.Failover.OpenFor,
			SpillOnThrottle: ch.Failover.OnThrottle, Logger: log}
		for i, p := range ps {
			fc.Providers = append(fc.Providers, failover.Provider{Name: fmt.Sprintf("%s-%d", kind, i+1), Sender: p})
		}
		if states != nil {
			fc.OnChange = func(provider string, _, to failover.State) { states(name, provider, to.String()) }
			for _, p := range fc.Providers {
				states(name, p.Name, failover.Closed.String())
			}
		}
		return failover.New(fc)
	}
	if ch.Email != nil {
		s, err := email.New(*ch.Email, log)
		if err != nil {
			return nil, closeAll, fmt.Errorf("POSTBUD_SMTP_*: %w", err)
		}
		out[channels.Email] = s
		if c, ok := any(s).(io.Closer); ok {
			closers = append(closers, c)
		}
		if ch.Email2 != nil {
			s2, err := email.New(*ch.Email2, log)
			if err != nil {
				closeAll()
				return nil, func() {}, fmt.Errorf("POSTBUD_SMTP_*_2: %w", err)
			}
			if c, ok := any(s2).(io.Closer); ok {
				closers = append(closers, c)
			}
			if out[channels.Email], err = twoProviders(channels.Email, "smtp", s, s2); err != nil {
				closeAll()
				return nil, func() {}, err
			}
		}
	}
	add := func(name channels.Name, s channels.Sender, err error) error {
		if err != nil {
			return fmt.Errorf("channel %s: %w", name, err)
		}
		out[name] = s
		if c, ok := s.(io.Closer); ok {
			closers = append(closers, c)
		}
		return nil
	}
	var errs []error
	if ch.SMS != nil {
		s, err := sms.New(*ch.SMS, log)
		errs = append(errs, add(channels.SMS, s, err))
		if err == nil && ch.SMS2 != nil {
			s2, err := sms.New(*ch.SMS2, log)
			if err != nil {
				errs = append(errs, fmt.Errorf("POSTBUD_SMS_*_2: %w", err))
			} else {
				closers = append(closers, s2)
				fs, err := twoProviders(channels.SMS, "sms", s, s2)
				errs = append(errs, err)
				if err == nil {
					out[channels.SMS] = fs
				}
			}
		}
	}
	if ch.APNs != nil {
		s, err := apns.New(*ch.APNs, log)
		errs = append(errs, add(channels.APNs, s, err))
	}
	if ch.FCM != nil {
		s, err := fcm.New(*ch.FCM, log)
		errs = append(errs, add(channels.FCM, s, err))
	}
	if ch.Paper != nil {
		s, err := paper.New(*ch.Paper, log)
		errs = append(errs, add(channels.Paper, s, err))
	}
	if err := errors.Join(errs...); err != nil {
		closeAll()
		return nil, func() {}, err
	}
	if len(out) == 0 {
		log.Warn("no channel is configured: letters are recorded as skipped (no contact)")
	}
	return out, closeAll, nil
}

// asynqLogger adapts slog to asynq's logger.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)) }
