package dispatcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/rules"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// scripted is a channel whose answers a test sets: each Send pops the next
// scripted error (nil = accept) and records what was accepted.
type scripted struct {
	name channels.Name
	mu   sync.Mutex
	errs []error
	sent []sentAlert
	all  int
	cond chan struct{}
	// hold, when set, keeps every Send waiting until it is closed (only
	// those to an address holdOnly accepts, when that is set).
	hold     chan struct{}
	holdOnly func(to channels.Address) bool
}

type sentAlert struct {
	To    channels.Address
	Alert channels.Alert
}

func newScripted(name channels.Name) *scripted {
	return &scripted{name: name, cond: make(chan struct{}, 1000)}
}

func (s *scripted) failNext(errs ...error) {
	s.mu.Lock()
	s.errs = append(s.errs, errs...)
	s.mu.Unlock()
}

func (s *scripted) Send(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
	s.mu.Lock()
	hold := s.hold
	if s.holdOnly != nil && !s.holdOnly(to) {
		hold = nil
	}
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	s.mu.Lock()
	defer func() { s.cond <- struct{}{} }()
	defer s.mu.Unlock()
	s.all++
	if len(s.errs) > 0 {
		err := s.errs[0]
		s.errs = s.errs[1:]
		if err != nil {
			return channels.Receipt{}, err
		}
	}
	s.sent = append(s.sent, sentAlert{To: to, Alert: a})
	return channels.Receipt{ProviderID: fmt.Sprintf("%s-%d", s.name, len(s.sent))}, nil
}

func (s *scripted) accepted() []sentAlert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sentAlert(nil), s.sent...)
}

func (s *scripted) attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all
}

// alerts returns the visible (not silent) alerts accepted.
func (s *scripted) alerts() []sentAlert {
	var out []sentAlert
	for _, a := range s.accepted() {
		if !a.Alert.Silent {
			out = append(out, a)
		}
	}
	return out
}

// harness is a dispatcher on the test's Redis with running asynq workers.
type harness struct {
	t        *testing.T
	env      *redistest.Env
	store    *redisstore.Store
	d        *dispatcher.Dispatcher
	keyer    *dispatcher.Keyer
	sealer   *seal.Sealer
	client   *asynq.Client
	queues   dispatcher.Queues
	insp     *asynq.Inspector
	channels map[channels.Name]*scripted
	srv      *asynq.Server
	syncer   dispatcher.Syncer
	clock    atomic.Pointer[time.Time]
	// started and running count the workers' handler calls begun and in
	// progress (idle's proof that no handler ran across its look).
	started, running atomic.Int64
	// looks counts idle's looks at the queues.
	looks atomic.Int64
}

// now is the harness's clock: real time unless a test set it.
func (h *harness) now() time.Time {
	if t := h.clock.Load(); t != nil {
		return *t
	}
	return time.Now()
}

// eventTask returns a wire event's task as the HTTP API enqueues it, and
// the event pseudonymised.
func (h *harness) eventTask(raw string) (*asynq.Task, *event.Event) {
	h.t.Helper()
	ev, err := event.Parse([]byte(raw))
	if err != nil {
		h.t.Fatalf("event.Parse: %v", err)
	}
	pe := h.keyer.Pseudonymize(ev)
	task, err := dispatcher.NewEventTask(pe, h.queues)
	if err != nil {
		h.t.Fatal(err)
	}
	return task, pe
}

// marked reports whether letter messageID's event ev is marked processed.
func (h *harness) marked(ev *event.Event, messageID string) bool {
	h.t.Helper()
	v, err := h.store.Lookup(context.Background(), dispatcher.EventRef{Citizen: ev.CitizenKey, MessageID: messageID, ID: ev.ID})
	if err != nil {
		h.t.Fatalf("Lookup: %v", err)
	}
	return v.Seen
}

// handle runs one wire event through the dispatcher's task handler, here
// and now, without workers.
func (h *harness) handle(raw string) {
	h.t.Helper()
	task, ev := h.eventTask(raw)
	if err := h.d.HandleEvent(context.Background(), task); err != nil {
		h.t.Fatalf("HandleEvent(%s): %v", ev.Type, err)
	}
}

var testKey = []byte("test-pseudonymisation-key-0123456789")

func newHarness(t *testing.T, names ...channels.Name) *harness {
	return newHarnessSync(t, nil, names...)
}

func newHarnessSync(t *testing.T, syncer dispatcher.Syncer, names ...channels.Name) *harness {
	return newHarnessQuiet(t, syncer, nil, names...)
}

// newHarnessQuiet is a harness whose channels have quiet hours (other
// tests run at any hour, so they have none).
func newHarnessQuiet(t *testing.T, syncer dispatcher.Syncer, quiet map[channels.Name]rules.QuietHours, names ...channels.Name) *harness {
	return newHarnessWith(t, func(c *dispatcher.Config, _ *harness) { c.Syncer, c.QuietHours = syncer, quiet }, names...)
}

// newHarnessWith lets a test adjust the dispatcher's configuration.
func newHarnessWith(t *testing.T, adjust func(*dispatcher.Config, *harness), names ...channels.Name) *harness {
	t.Helper()
	env := redistest.New(t)
	h := &harness{t: t, env: env, channels: map[channels.Name]*scripted{}}
	h.sealer = seal.Ephemeral()
	h.store = redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix, Sealer: h.sealer})
	t.Cleanup(func() { h.store.Close() })
	var err error
	h.keyer, err = dispatcher.NewKeyer(testKey)
	if err != nil {
		t.Fatal(err)
	}
	h.client = asynq.NewClientFromRedisClient(env.Client)
	h.insp = asynq.NewInspectorFromRedisClient(env.Client)
	h.queues = dispatcher.DefaultQueues(env.QueuePrefix)
	senders := map[channels.Name]channels.Sender{}
	for _, n := range names {
		h.channels[n] = newScripted(n)
		senders[n] = h.channels[n]
	}
	cfg := dispatcher.Config{Store: h.store, Keyer: h.keyer, Sealer: h.sealer, Enqueuer: h.client,
		Queues: h.queues, Senders: senders, MailboxURL: "https://www.borger.dk/digitalpost",
		Logger:          slog.New(slog.DiscardHandler),
		FirstRetryDelay: func(error) time.Duration { return 0 }, Now: h.now,
		PaperForMinors: true, ReminderBefore: 72 * time.Hour}
	adjust(&cfg, h)
	h.syncer = cfg.Syncer
	h.d, err = dispatcher.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// start runs asynq workers until the test ends.
func (h *harness) start() {
	h.srv = asynq.NewServerFromRedisClient(h.env.Client, asynq.Config{
		Concurrency: 8, Queues: h.queues.Weights(),
		RetryDelayFunc: func(n int, err error, t *asynq.Task) time.Duration {
			if d := channels.RetryAfterOf(err); d > 0 && d < time.Second {
				return d // a throttle's wait (the rate limiter's) is honoured
			}
			return 20 * time.Millisecond // the policy is tested on its own
		},
		IsFailure:                dispatcher.IsFailure,
		TaskCheckInterval:        10 * time.Millisecond,
		DelayedTaskCheckInterval: 100 * time.Millisecond,
		LogLevel:                 asynq.FatalLevel,
		ShutdownTimeout:          5 * time.Second,
	})
	mux := asynq.NewServeMux()
	mux.Use(func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			h.started.Add(1)
			h.running.Add(1)
			defer h.running.Add(-1)
			return next.ProcessTask(ctx, t)
		})
	})
	h.d.Register(mux)
	if err := h.srv.Start(mux); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(h.srv.Shutdown)
}

// accept parses and accepts one wire event.
func (h *harness) accept(raw string) (dup bool) {
	h.t.Helper()
	ev, err := event.Parse([]byte(raw))
	if err != nil {
		h.t.Fatalf("event.Parse: %v", err)
	}
	dup, err = h.d.Accept(context.Background(), ev)
	if err != nil {
		h.t.Fatalf("Accept: %v", err)
	}
	return dup
}

// waitFor polls cond on a ticker until it holds or 60 s pass: a deadline
// for a failing condition, generous for a loaded CI machine (with -race).
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			h.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// idle waits until the dispatcher has nothing left to do: no task of the
// test's lanes pending, active, scheduled or in retry, and no handler
// running. The lanes are read at one instant (redistest's QueuesIdle:
// read one after the other, a task could enqueue a follow-up into a lane
// already read and finish before its own lane was read). No handler may
// start or run across the look, which covers a handler still running after
// asynq gave its task up (a timeout) and enqueuing after the read. A Redis
// error is no evidence of empty queues: the look is repeated.
func (h *harness) idle() {
	h.t.Helper()
	h.waitFor("queues to drain and handlers to finish", func() bool {
		h.looks.Add(1)
		before := h.started.Load()
		if h.running.Load() > 0 {
			return false
		}
		empty, err := h.env.QueuesIdle(context.Background(), h.queues.Urgent, h.queues.Normal, h.queues.Bulk)
		return err == nil && empty && h.started.Load() == before
	})
}

func wire(id, typ string, data map[string]any) string {
	b, _ := json.Marshal(map[string]any{"id": id, "type": typ, "occurred_at": time.Now().UTC().Format(time.RFC3339Nano),
		"source": "core", "data": data})
	return string(b)
}

const annaCPR = "010190-1234"

func register(h *harness, cpr string) {
	h.accept(wire("c-"+cpr, "contact.updated", map[string]any{"cpr": cpr, "email": "anna@example.dk", "mobile": "20123456", "confirmed": true}))
	h.accept(wire("d1-"+cpr, "device.registered", map[string]any{"cpr": cpr, "app": "digital-post-app", "provider": "apns", "token": "a1b2c3d4e5f6a7b8"}))
	h.accept(wire("d2-"+cpr, "device.registered", map[string]any{"cpr": cpr, "app": "e-boks", "provider": "fcm", "token": "fcm-token-0001"}))
	consent(h, cpr, "e-boks", "mit.dk")
}

// consent grants the platforms consent to show the citizen public post
// (the state of every citizen migrated with a core bulk of
// consent.granted).
func consent(h *harness, cpr string, platforms ...string) {
	for _, p := range platforms {
		h.accept(wire("cs-"+p+"-"+cpr, "consent.granted", map[string]any{"cpr": cpr, "platform": p}))
	}
}

func letter(id, messageID, cpr string) string {
	return wire(id, "message.received", map[string]any{"message_id": messageID, "recipient": map[string]any{"cpr": cpr},
		"sender": map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"}})
}
