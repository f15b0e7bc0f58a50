package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// lookupGate is the real store whose arrivals (the write before a
// letter's sends) wait until want letters were looked up: runs of one
// letter that all read it before any of them wrote, the race an arrival's
// claims close.
type lookupGate struct {
	writeHook
	want   int64
	looked atomic.Int64
	all    chan struct{}
	once   sync.Once
	// loads and allLoaded are looked and all for Load (an access
	// holder's look-up) and the writes of in-flight marks without an
	// arrival (the holder's).
	loads     atomic.Int64
	allLoaded chan struct{}
	loadOnce  sync.Once
	mu        sync.Mutex
	events    map[string]bool // the event ids looked up
}

func newLookupGate(st dispatcher.Store) *lookupGate {
	g := &lookupGate{writeHook: writeHook{Store: st}, all: make(chan struct{}), allLoaded: make(chan struct{}),
		events: map[string]bool{}}
	g.before = g.wait
	return g
}

// saw notes the events looked up.
func (s *lookupGate) saw(evs ...dispatcher.EventRef) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range evs {
		s.events[ev.ID] = true
	}
}

func (s *lookupGate) count(n int) {
	if s.looked.Add(int64(n)) >= s.want {
		s.once.Do(func() { close(s.all) })
	}
}

func (s *lookupGate) Lookup(ctx context.Context, ev dispatcher.EventRef) (dispatcher.LetterView, error) {
	s.saw(ev)
	defer s.count(1)
	return s.Store.Lookup(ctx, ev)
}

func (s *lookupGate) Load(ctx context.Context, citizen, messageID string) (dispatcher.LetterView, error) {
	defer func() {
		if s.loads.Add(1) >= s.want {
			s.loadOnce.Do(func() { close(s.allLoaded) })
		}
	}()
	return s.Store.Load(ctx, citizen, messageID)
}

func (s *lookupGate) LookupAll(ctx context.Context, evs []dispatcher.EventRef) ([]dispatcher.LetterView, error) {
	s.saw(evs...)
	defer s.count(len(evs))
	return s.Store.LookupAll(ctx, evs)
}

// writeHook is the real store calling before with the writes of every
// Write and WriteAll, then writing them.
type writeHook struct {
	dispatcher.Store
	before func(ws ...dispatcher.LetterWrite)
}

func (s *writeHook) Write(ctx context.Context, w dispatcher.LetterWrite) (dispatcher.WriteResult, error) {
	s.before(w)
	return s.Store.Write(ctx, w)
}

func (s *writeHook) WriteAll(ctx context.Context, ws []dispatcher.LetterWrite) ([]dispatcher.WriteResult, error) {
	s.before(ws...)
	return s.Store.WriteAll(ctx, ws)
}

// wait holds an arrival until every run looked the letter up (at most
// 10 s: a run that never looks must not hang the test).
func (s *lookupGate) wait(ws ...dispatcher.LetterWrite) {
	for _, w := range ws {
		var until chan struct{}
		switch {
		case w.Arrive != nil:
			until = s.all
		case len(w.InFlight) > 0:
			until = s.allLoaded
		default:
			continue
		}
		select {
		case <-until:
		case <-time.After(10 * time.Second):
		}
		return
	}
}

// Two runs of one letter at once, each having looked it up before either
// wrote, send each alert once: the first arrival claims the deliveries,
// the second finds them taken and leaves them to it. Both events end
// marked processed. Runs at once happen when one letter is queued twice:
// two event ids for one message id ("at most one alert per letter ×
// channel × address, whatever event ids are used"), or a letter of a
// batch sent again on its own while the batch's task was queued.
func TestTwoRunsOfOneLetterAtOnceSendEachAlertOnce(t *testing.T) {
	const msg = "22222222-3333-4444-8555-666666666666"
	all := []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM}
	for _, tc := range []struct {
		name string
		// runs returns the two handler calls.
		runs func(h *harness) [2]func() error
	}{
		{"one event twice", func(h *harness) [2]func() error {
			task, _ := h.eventTask(letter("ev-twice", msg, annaCPR))
			run := func() error { return h.d.HandleEvent(context.Background(), task) }
			return [2]func() error{run, run}
		}},
		{"two event ids for one message id", func(h *harness) [2]func() error {
			a, _ := h.eventTask(letter("ev-a", msg, annaCPR))
			b, _ := h.eventTask(letter("ev-b", msg, annaCPR))
			return [2]func() error{
				func() error { return h.d.HandleEvent(context.Background(), a) },
				func() error { return h.d.HandleEvent(context.Background(), b) }}
		}},
		{"two letters tasks", func(h *harness) [2]func() error {
			a := h.lettersTaskOf(letter("ev-b1", msg, annaCPR))
			b := h.lettersTaskOf(letter("ev-b2", msg, annaCPR))
			return [2]func() error{
				func() error { return h.d.HandleLetters(context.Background(), a) },
				func() error { return h.d.HandleLetters(context.Background(), b) }}
		}},
		{"a letters task and the letter on its own", func(h *harness) [2]func() error {
			batch := h.lettersTaskOf(letter("ev-batch", msg, annaCPR))
			single, _ := h.eventTask(letter("ev-batch", msg, annaCPR))
			return [2]func() error{
				func() error { return h.d.HandleLetters(context.Background(), batch) },
				func() error { return h.d.HandleEvent(context.Background(), single) }}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gate *lookupGate
			h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
				gate = newLookupGate(h.store)
				c.Store = gate
			}, all...)
			registerNow(h, annaCPR)
			gate.looked.Store(0)
			gate.want = 2
			gate.events = map[string]bool{}
			runs := tc.runs(h)
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, run := range runs {
				wg.Go(func() { errs[i] = run() })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("run %d: %v", i+1, err)
				}
			}
			for _, ch := range all {
				if n := len(h.channels[ch].accepted()); n != 1 {
					t.Errorf("%s alerts: %d, want 1", ch, n)
				}
			}
			for _, id := range []string{"ev-twice", "ev-a", "ev-b", "ev-b1", "ev-b2", "ev-batch"} {
				_, ev := h.eventTask(letter(id, msg, annaCPR))
				if used := gate.events[ev.ID]; used && !h.marked(ev, msg) {
					t.Errorf("event %s not marked processed", id)
				}
			}
			trail := h.trail(msg)
			for _, ch := range all {
				if !hasEntry(trail, ch, dispatcher.ResultSent, "") {
					t.Errorf("trail %+v: no %s sent", trail, ch)
				}
			}
			// Nothing was left for a task of its own.
			for _, q := range []string{h.queues.Urgent, h.queues.Normal, h.queues.Bulk} {
				if tasks, err := h.insp.ListPendingTasks(q); err == nil && len(tasks) > 0 {
					t.Errorf("queue %s holds %d tasks, want none", q, len(tasks))
				}
			}
		})
	}
}

// Two runs of one letter at once whose owner has an access holder with
// notify: each run alerts the holder after its own sends, and both looked
// the holder up before either wrote; the holder's deliveries are claimed
// as the owner's are, and the holder gets each alert once.
func TestTwoRunsOfOneLetterAtOnceAlertAHolderOnce(t *testing.T) {
	const msg = "22222222-3333-4444-8555-777777777777"
	var gate *lookupGate
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		gate = newLookupGate(h.store)
		c.Store = gate
	}, channels.Email, channels.SMS, channels.APNs)
	setUpHolder(h, true)
	at := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	h.handle(accessEvent("acc-1", "access.granted", at, map[string]any{"scope": "read", "notify": true}))
	gate.looked.Store(0)
	gate.loads.Store(0)
	gate.want = 2
	a, _ := h.eventTask(letter("ev-ha", msg, annaCPR))
	b, _ := h.eventTask(letter("ev-hb", msg, annaCPR))
	var wg sync.WaitGroup
	for _, task := range []*asynq.Task{a, b} {
		wg.Go(func() {
			if err := h.d.HandleEvent(context.Background(), task); err != nil {
				t.Errorf("HandleEvent: %v", err)
			}
		})
	}
	wg.Wait()
	toHolder := map[string]int{}
	for _, ch := range h.channels {
		for _, s := range ch.accepted() {
			if holderAddrs[s.To.Value] {
				toHolder[string(ch.name)]++
			}
		}
	}
	if want := map[string]int{"email": 1, "sms": 1, "apns": 1}; fmt.Sprint(toHolder) != fmt.Sprint(want) {
		t.Errorf("alerts to the holder %v, want %v", toHolder, want)
	}
	if gate.loads.Load() < 2 {
		t.Errorf("%d holder look-ups, want 2: the runs did not both alert the holder", gate.loads.Load())
	}
}

// The second of two runs of one letter at once reads the letter after the
// first marked deliveries in flight, while the first is still in those
// provider calls: the marks are the first run's claims, made under another
// event id, and the second leaves them to it (no task of their own, which
// would re-send them, marked, while the first is still sending). Each
// alert goes out once, nothing is marked re-sent, and both events are
// marked processed. The first run is held in its sends to the owner, or
// (an access holder with notify) in its sends to the holder.
func TestSecondRunLeavesAnotherRunsDeliveriesInFlightToIt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		holder bool
		// failover: SMS goes through a channel of several providers,
		// which pins the delivery to the provider it hands it to.
		failover bool
		all      []channels.Name
		// held: the letter as the first run leaves it, in its held sends.
		held func(l *dispatcher.Letter) bool
	}{
		{"owner's deliveries", false, false, []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM},
			func(l *dispatcher.Letter) bool { return len(l.InFlight) == 4 }},
		{"owner's deliveries, SMS pinned to a provider", false, true, []channels.Name{channels.Email, channels.SMS},
			func(l *dispatcher.Letter) bool { return len(l.InFlight) == 2 && len(l.Handed) == 1 }},
		{"access holder's deliveries", true, false, []channels.Name{channels.Email, channels.SMS, channels.APNs},
			func(l *dispatcher.Letter) bool { return len(l.Done) == 3 && len(l.InFlight) == 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const msg = "22222222-3333-4444-8555-888888888888"
			h := newHarnessWith(t, func(c *dispatcher.Config, hh *harness) {
				if tc.failover {
					sms := hh.channels[channels.SMS]
					c.Senders[channels.SMS] = channels.SenderFunc(func(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
						if err := channels.Handoff(ctx, "sms-2"); err != nil {
							return channels.Receipt{}, err
						}
						return sms.Send(ctx, to, a)
					})
				}
			}, tc.all...)
			hold := make(chan struct{})
			var only func(channels.Address) bool
			if tc.holder {
				setUpHolder(h, true)
				h.handle(accessEvent("acc-1", "access.granted", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339),
					map[string]any{"scope": "read", "notify": true}))
				only = func(to channels.Address) bool { return holderAddrs[to.Value] }
			} else {
				registerNow(h, annaCPR)
			}
			h.start()
			for _, c := range h.channels {
				c.mu.Lock()
				c.hold, c.holdOnly = hold, only
				c.mu.Unlock()
			}
			a, evA := h.eventTask(letter("ev-first", msg, annaCPR))
			b, evB := h.eventTask(letter("ev-second", msg, annaCPR))
			first := make(chan error, 1)
			go func() { first <- h.d.HandleEvent(context.Background(), a) }()
			if !redistest.Within(10*time.Second, func() bool {
				v, err := h.store.Load(context.Background(), evA.CitizenKey, msg)
				return err == nil && tc.held(v.Letter)
			}) {
				t.Fatal("the first run never reached its held sends")
			}
			if err := h.d.HandleEvent(context.Background(), b); err != nil {
				t.Fatalf("second run: %v", err)
			}
			if n := deliveryTasks(t, h); n != 0 {
				t.Errorf("%d delivery tasks after the second run, want 0", n)
			}
			close(hold)
			if err := <-first; err != nil {
				t.Fatalf("first run: %v", err)
			}
			h.idle()
			want := 1
			if tc.holder {
				want = 2 // the owner's and the holder's
			}
			for _, ch := range tc.all {
				if n := h.channels[ch].attempts(); n != want {
					t.Errorf("%s attempts: %d, want %d", ch, n, want)
				}
			}
			trail := h.trail(msg)
			for _, ch := range tc.all {
				if hasEntry(trail, ch, dispatcher.ResultSent, dispatcher.ReasonResent) {
					t.Errorf("trail %+v: %s re-sent", trail, ch)
				}
			}
			for _, ev := range []*event.Event{evA, evB} {
				if !h.marked(ev, msg) {
					t.Errorf("event %s not marked processed", ev.ID)
				}
			}
		})
	}
}

// A claim past claimAbandoned is no longer left to its run: that run is
// gone (crashed and not yet run again, or its task archived), and another
// event's run hands the deliveries to their own tasks, as an interrupted
// attempt's. A younger claim stays its run's. The first run here is held
// in its sends (its claims in Redis); the second runs on a clock that far
// ahead.
func TestSecondRunHandsOnAnAbandonedClaim(t *testing.T) {
	for _, tc := range []struct {
		age   time.Duration
		tasks int
	}{{10 * time.Minute, 0}, {2 * time.Hour, 4}} {
		t.Run(tc.age.String(), func(t *testing.T) {
			const msg = "22222222-3333-4444-8555-999999999999"
			all := []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM}
			h := newHarness(t, all...)
			registerNow(h, annaCPR)
			hold := make(chan struct{})
			for _, c := range h.channels {
				c.mu.Lock()
				c.hold = hold
				c.mu.Unlock()
			}
			a, evA := h.eventTask(letter("ev-first", msg, annaCPR))
			b, _ := h.eventTask(letter("ev-second", msg, annaCPR))
			first := make(chan error, 1)
			go func() { first <- h.d.HandleEvent(context.Background(), a) }()
			t.Cleanup(func() { <-first })
			defer close(hold)
			if !redistest.Within(10*time.Second, func() bool {
				v, err := h.store.Load(context.Background(), evA.CitizenKey, msg)
				return err == nil && len(v.Letter.InFlight) == 4
			}) {
				t.Fatal("the first run never reached its held sends")
			}
			later := time.Now().Add(tc.age)
			h.clock.Store(&later)
			if err := h.d.HandleEvent(context.Background(), b); err != nil {
				t.Fatalf("second run: %v", err)
			}
			if n := deliveryTasks(t, h); n != tc.tasks {
				t.Errorf("%d delivery tasks after the second run, a claim %v old; want %d", n, tc.age, tc.tasks)
			}
		})
	}
}

// deliveryTasks counts the delivery tasks of the test's lanes, in any
// state but done.
func deliveryTasks(t *testing.T, h *harness) int {
	t.Helper()
	n := 0
	for _, q := range []string{h.queues.Urgent, h.queues.Normal, h.queues.Bulk} {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
			h.insp.ListPendingTasks, h.insp.ListActiveTasks, h.insp.ListScheduledTasks, h.insp.ListRetryTasks} {
			tasks, err := list(q)
			if errors.Is(err, asynq.ErrQueueNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, tk := range tasks {
				if tk.Type == dispatcher.TypeDelivery {
					n++
				}
			}
		}
	}
	return n
}
