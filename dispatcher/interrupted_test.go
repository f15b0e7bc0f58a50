package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/rules"
)

// crashingStore is the real store whose Write fails when fail says so: a
// worker dying between a provider's answer and its record, as the store
// sees it.
type crashingStore struct {
	dispatcher.Store
	fail func(w dispatcher.LetterWrite) error
}

func (s *crashingStore) Write(ctx context.Context, w dispatcher.LetterWrite) (dispatcher.WriteResult, error) {
	if err := s.fail(w); err != nil {
		return dispatcher.WriteResult{}, err
	}
	return s.Store.Write(ctx, w)
}

// WriteAll fails as a whole when fail refuses one of its writes, as a
// pipeline with an error does.
func (s *crashingStore) WriteAll(ctx context.Context, ws []dispatcher.LetterWrite) ([]dispatcher.WriteResult, error) {
	for _, w := range ws {
		if err := s.fail(w); err != nil {
			return nil, err
		}
	}
	return s.Store.WriteAll(ctx, ws)
}

var errCrash = errors.New("simulated crash: the worker died before the outcome was written")

// failOnce fails the first write match accepts with err, then none.
func failOnce(match func(w dispatcher.LetterWrite) bool, err error) (func(w dispatcher.LetterWrite) error, *atomic.Bool) {
	var done atomic.Bool
	return func(w dispatcher.LetterWrite) error {
		if match(w) && done.CompareAndSwap(false, true) {
			return err
		}
		return nil
	}, &done
}

// outcomeOf matches a write that holds one channel's outcome (not the
// letter's first write, which only marks it in flight).
func outcomeOf(ch channels.Name) func(w dispatcher.LetterWrite) bool {
	return func(w dispatcher.LetterWrite) bool {
		return w.Arrive == nil && slices.ContainsFunc(w.Done, func(o dispatcher.Outcome) bool { return o.Channel == ch })
	}
}

// answersLast makes ch's provider answer only once the outcomes of every
// other channel of the letter went to the store, so ch's outcome is a
// write of its own (the recorder puts answers that are in together in one
// write). It returns fail, watching the writes.
func answersLast(c *dispatcher.Config, ch channels.Name, fail func(w dispatcher.LetterWrite) error) func(w dispatcher.LetterWrite) error {
	left := make(map[channels.Name]bool) // the other channels not written yet
	for name := range c.Senders {
		if name != ch {
			left[name] = true
		}
	}
	open := make(chan struct{})
	var mu sync.Mutex
	var once sync.Once
	next := c.Senders[ch]
	c.Senders[ch] = channels.SenderFunc(func(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
		select {
		case <-open:
		case <-ctx.Done():
			return channels.Receipt{}, ctx.Err()
		}
		return next.Send(ctx, to, a)
	})
	return func(w dispatcher.LetterWrite) error {
		mu.Lock()
		for _, o := range w.Done {
			delete(left, o.Channel)
		}
		for _, o := range w.Trail {
			delete(left, o.Channel)
		}
		all := len(left) == 0
		mu.Unlock()
		if all {
			once.Do(func() { close(open) })
		}
		return fail(w)
	}
}

// deliveryTaskErr returns the last error of a delivery's task, or "".
func (h *harness) deliveryTaskErr(deliveryID string) string {
	for _, q := range []string{h.queues.Urgent, h.queues.Normal, h.queues.Bulk} {
		if info, err := h.insp.GetTaskInfo(q, "dl:"+deliveryID); err == nil {
			return info.LastErr
		}
	}
	return ""
}

func (h *harness) trail(messageID string) []dispatcher.Outcome {
	h.t.Helper()
	trail, err := h.store.Trail(context.Background(), messageID)
	if err != nil {
		h.t.Fatalf("Trail: %v", err)
	}
	return trail
}

func hasEntry(trail []dispatcher.Outcome, ch channels.Name, result, reasonPrefix string) bool {
	return slices.ContainsFunc(trail, func(o dispatcher.Outcome) bool {
		return o.Channel == ch && o.Result == result && strings.HasPrefix(o.Reason, reasonPrefix)
	})
}

// registerNow registers a citizen as register does, through the event
// handler here and now (for tests without workers).
func registerNow(h *harness, cpr string) {
	h.handle(wire("c-"+cpr, "contact.updated", map[string]any{"cpr": cpr, "email": "anna@example.dk", "mobile": "20123456", "confirmed": true}))
	h.handle(wire("d1-"+cpr, "device.registered", map[string]any{"cpr": cpr, "app": "digital-post-app", "provider": "apns", "token": "a1b2c3d4e5f6a7b8"}))
	h.handle(wire("d2-"+cpr, "device.registered", map[string]any{"cpr": cpr, "app": "e-boks", "provider": "fcm", "token": "fcm-token-0001"}))
	for _, p := range []string{"e-boks", "mit.dk"} {
		h.handle(wire("cs-"+p+"-"+cpr, "consent.granted", map[string]any{"cpr": cpr, "platform": p}))
	}
}

const msgInterrupted = "11111111-2222-4333-8444-555555555555"

// An SMS whose outcome was not written (the worker died after the gateway
// took it) is not sent again while its delivery report may still come, and
// the report records it sent. The deliveries with an outcome are never
// sent again.
func TestInterruptedSMSWaitsForItsReportAndIsNotResent(t *testing.T) {
	fail, crashed := failOnce(outcomeOf(channels.SMS), errCrash)
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		c.TrackReports = []channels.Name{channels.SMS}
		c.Store = &crashingStore{Store: h.store, fail: answersLast(c, channels.SMS, fail)}
	}, channels.Email, channels.SMS, channels.APNs, channels.FCM)
	registerNow(h, annaCPR)
	h.start()
	h.accept(letter("ev-int-sms", msgInterrupted, annaCPR))
	sms := h.channels[channels.SMS]
	h.waitFor("the SMS sent and its record lost", func() bool { return crashed.Load() && len(sms.accepted()) == 1 })
	id := sms.accepted()[0].Alert.DeliveryID
	h.waitFor("the SMS's task to wait for its delivery report", func() bool {
		return strings.Contains(h.deliveryTaskErr(id), "waiting for its delivery report")
	})
	if n := sms.attempts(); n != 1 {
		t.Fatalf("SMS attempts while its report is awaited: %d, want 1", n)
	}
	if err := h.d.Report(context.Background(), dispatcher.DeliveryReport{Channel: channels.SMS, DeliveryID: id,
		ProviderID: "gw-1", Status: "DELIVERED", Final: true, At: time.Now()}); err != nil {
		t.Fatalf("Report: %v", err)
	}
	h.idle()
	if n := sms.attempts(); n != 1 {
		t.Errorf("SMS attempts: %d, want 1 (the interrupted send was confirmed, not repeated)", n)
	}
	for _, ch := range []channels.Name{channels.Email, channels.APNs, channels.FCM} {
		if n := h.channels[ch].attempts(); n != 1 {
			t.Errorf("%s attempts: %d, want 1 (its outcome was written)", ch, n)
		}
	}
	if trail := h.trail(msgInterrupted); !hasEntry(trail, channels.SMS, dispatcher.ResultSent, dispatcher.ReasonConfirmed) {
		t.Errorf("trail %+v: no SMS %q", trail, dispatcher.ReasonConfirmed)
	}
}

// An email whose outcome was not written is sent again by its own task,
// with the same delivery id (so the same Message-ID), and the trail says
// it may be a repeat.
func TestInterruptedEmailIsResentWithTheSameMessageIDAndMarked(t *testing.T) {
	fail, crashed := failOnce(outcomeOf(channels.Email), errCrash)
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		c.TrackReports = []channels.Name{channels.SMS}
		c.Store = &crashingStore{Store: h.store, fail: answersLast(c, channels.Email, fail)}
	}, channels.Email, channels.SMS, channels.APNs)
	registerNow(h, annaCPR)
	h.start()
	h.accept(letter("ev-int-mail", msgInterrupted, annaCPR))
	mail := h.channels[channels.Email]
	h.waitFor("the email sent twice", func() bool { return crashed.Load() && len(mail.accepted()) == 2 })
	h.idle()
	got := mail.accepted()
	if len(got) != 2 || got[0].Alert.DeliveryID != got[1].Alert.DeliveryID {
		t.Fatalf("emails %+v: want two with one delivery id", got)
	}
	if trail := h.trail(msgInterrupted); !hasEntry(trail, channels.Email, dispatcher.ResultSent, dispatcher.ReasonResent) {
		t.Errorf("trail %+v: the re-sent email is not marked %q", trail, dispatcher.ReasonResent)
	}
	for _, ch := range []channels.Name{channels.SMS, channels.APNs} {
		if n := h.channels[ch].attempts(); n != 1 {
			t.Errorf("%s attempts: %d, want 1 (its outcome was written)", ch, n)
		}
	}
}

// A transient store error while recording a provider's answer is retried
// there and then: the letter's task does not fail, nothing is sent twice.
func TestTransientStoreErrorAfterASendIsRetriedNotResent(t *testing.T) {
	var fails atomic.Int32
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		c.Store = &crashingStore{Store: h.store, fail: func(w dispatcher.LetterWrite) error {
			if outcomeOf(channels.SMS)(w) && fails.Add(1) <= 2 {
				return fmt.Errorf("write letter: %w: LOADING Redis is loading the dataset in memory", dispatcher.ErrTransient)
			}
			return nil
		}}
	}, channels.Email, channels.SMS)
	registerNow(h, annaCPR)
	h.handle(letter("ev-transient", msgInterrupted, annaCPR)) // fails the test if the task errs
	if n := h.channels[channels.SMS].attempts(); n != 1 || fails.Load() != 3 {
		t.Errorf("SMS attempts %d, record attempts %d; want 1 send recorded on the third try", n, fails.Load())
	}
	if trail := h.trail(msgInterrupted); !hasEntry(trail, channels.SMS, dispatcher.ResultSent, "") {
		t.Errorf("trail %+v: the SMS is not recorded sent", trail)
	}
}

// A processed event that runs again (a late copy) sends nothing, not even
// a delivery that failed and has a task of its own.
func TestProcessedEventRunAgainSendsNothing(t *testing.T) {
	h := newHarness(t, channels.Email, channels.SMS)
	registerNow(h, annaCPR)
	h.channels[channels.SMS].failNext(channels.Fail(channels.Transient, "http 503", errors.New("gateway busy")))
	raw := letter("ev-again", msgInterrupted, annaCPR)
	h.handle(raw)
	h.handle(raw)
	if m, s := h.channels[channels.Email].attempts(), h.channels[channels.SMS].attempts(); m != 1 || s != 1 {
		t.Errorf("attempts: email %d, SMS %d; want 1 each (the second run is a processed event)", m, s)
	}
}

// A letter's task that runs again before its event was marked (a crash
// after the sends) skips every delivery already done.
func TestRerunSkipsDeliveriesAlreadyDone(t *testing.T) {
	fail, crashed := failOnce(func(w dispatcher.LetterWrite) bool { return !w.Mark.IsZero() }, errCrash)
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		c.Store = &crashingStore{Store: h.store, fail: fail}
	}, channels.Email, channels.SMS)
	registerNow(h, annaCPR)
	task, _ := h.eventTask(letter("ev-rerun", msgInterrupted, annaCPR))
	if err := h.d.HandleEvent(context.Background(), task); !errors.Is(err, errCrash) || !crashed.Load() {
		t.Fatalf("first run: %v, want the simulated crash", err)
	}
	if err := h.d.HandleEvent(context.Background(), task); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if m, s := h.channels[channels.Email].attempts(), h.channels[channels.SMS].attempts(); m != 1 || s != 1 {
		t.Errorf("attempts: email %d, SMS %d; want 1 each", m, s)
	}
}

// failedSMS processes a letter whose SMS fails (its delivery task is
// enqueued, to run once workers start) and returns the delivery's id.
func failedSMS(h *harness) string {
	h.t.Helper()
	registerNow(h, annaCPR)
	sms := h.channels[channels.SMS]
	sms.failNext(channels.Fail(channels.Transient, "http 503", errors.New("gateway busy")))
	h.handle(letter("ev-retry", msgInterrupted, annaCPR))
	if sms.attempts() != 1 {
		h.t.Fatalf("SMS attempts %d, want 1", sms.attempts())
	}
	trail := h.trail(msgInterrupted)
	i := slices.IndexFunc(trail, func(o dispatcher.Outcome) bool { return o.Channel == channels.SMS })
	if i < 0 {
		h.t.Fatalf("trail %+v: no SMS entry", trail)
	}
	return trail[i].DeliveryID
}

// A delivery retried after its alert expired is dropped: "skipped: expired".
func TestDeliveryRetryPastExpiryIsSkipped(t *testing.T) {
	h := newHarness(t, channels.SMS)
	failedSMS(h)
	later := time.Now().Add(49 * time.Hour) // past the default 48h alert TTL
	h.clock.Store(&later)
	h.start()
	h.waitFor("the SMS recorded skipped: expired", func() bool {
		return hasEntry(h.trail(msgInterrupted), channels.SMS, dispatcher.ResultSkipped, "expired")
	})
	if n := h.channels[channels.SMS].attempts(); n != 1 {
		t.Errorf("SMS attempts: %d, want 1 (an expired alert is not sent)", n)
	}
}

// A delivery retried inside its channel's quiet hours waits for their end
// without spending a retry.
func TestDeliveryRetryInsideQuietHoursWaits(t *testing.T) {
	cph, err := time.LoadLocation("Europe/Copenhagen")
	if err != nil {
		t.Fatal(err)
	}
	y, m, d := time.Now().In(cph).Date()
	noon, night := time.Date(y, m, d, 12, 0, 0, 0, cph), time.Date(y, m, d, 23, 0, 0, 0, cph)
	h := newHarnessQuiet(t, nil, map[channels.Name]rules.QuietHours{channels.SMS: {Start: rules.Clock{Hour: 22}, End: rules.Clock{Hour: 7}}},
		channels.SMS)
	h.clock.Store(&noon)
	id := failedSMS(h)
	h.clock.Store(&night)
	h.start()
	h.waitFor("the SMS's task to wait for the quiet hours' end", func() bool {
		return strings.Contains(h.deliveryTaskErr(id), "delivery held: quiet hours")
	})
	if n := h.channels[channels.SMS].attempts(); n != 1 {
		t.Errorf("SMS attempts: %d, want 1 (no send inside quiet hours)", n)
	}
}

// barrier is a channel that holds every send until n have arrived, so n
// letters are all past their look-up before any alert goes out.
type barrier struct {
	n       int
	mu      sync.Mutex
	badges  []int
	release chan struct{}
}

func (b *barrier) Send(ctx context.Context, _ channels.Address, a channels.Alert) (channels.Receipt, error) {
	b.mu.Lock()
	b.badges = append(b.badges, a.Badge)
	if len(b.badges) == b.n {
		close(b.release)
	}
	b.mu.Unlock()
	select {
	case <-b.release:
		return channels.Receipt{ProviderID: "apns-1"}, nil
	case <-ctx.Done():
		return channels.Receipt{}, ctx.Err()
	}
}

// Letters emitted back to back to one citizen: each alert's badge counts
// every letter filed so far, itself included — the last says 4, not 1.
func TestBadgeCountsEveryLetterFiledSoFar(t *testing.T) {
	const n = 4
	b := &barrier{n: n, release: make(chan struct{})}
	h := newHarnessWith(t, func(c *dispatcher.Config, _ *harness) {
		c.Senders[channels.APNs] = b
		c.SendTimeout = 10 * time.Second
	})
	registerNow(h, annaCPR)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		task, _ := h.eventTask(letter(fmt.Sprintf("ev-badge-%d", i), fmt.Sprintf("22222222-2222-4333-8444-55555555555%d", i), annaCPR))
		wg.Go(func() { errs[i] = h.d.HandleEvent(context.Background(), task) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	got := slices.Sorted(slices.Values(b.badges))
	b.mu.Unlock()
	if want := []int{1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("badges %v, want %v: each alert counts the letters filed before it and itself", got, want)
	}
}

// failingEnqueuer is the real asynq client whose enqueue of a task of
// type typ fails once: Redis gone between a letter's sends and its
// delivery task.
// newHarnessFailingDeliveryTasks is a harness whose enqueue of a
// postbud:delivery task fails (failingEnqueuer), once.
func newHarnessFailingDeliveryTasks(t *testing.T, names ...channels.Name) (*harness, *failingEnqueuer) {
	var enq *failingEnqueuer
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		enq = &failingEnqueuer{Enqueuer: c.Enqueuer, typ: dispatcher.TypeDelivery}
		c.Enqueuer = enq
	}, names...)
	return h, enq
}

type failingEnqueuer struct {
	dispatcher.Enqueuer
	typ    string
	failed atomic.Bool
}

func (e *failingEnqueuer) EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	if t.Type() == e.typ && e.failed.CompareAndSwap(false, true) {
		return nil, errCrash
	}
	return e.Enqueuer.EnqueueContext(ctx, t, opts...)
}

// A letter's event is marked processed only once every delivery that
// failed has its task: the mark may go in the sends' last write only when
// every send came to a final outcome. Here the SMS fails, enqueueing its
// task fails, and the event runs again: it must not be marked yet, so the
// run again gives the SMS its task (the email, done, is not sent again).
func TestEventIsNotMarkedBeforeAFailedDeliveryHasItsTask(t *testing.T) {
	h, enq := newHarnessFailingDeliveryTasks(t, channels.Email, channels.SMS)
	registerNow(h, annaCPR)
	h.channels[channels.SMS].failNext(channels.Fail(channels.Transient, "http 503", errors.New("gateway busy")))
	task, pe := h.eventTask(letter("ev-unmarked", msgInterrupted, annaCPR))
	if err := h.d.HandleEvent(context.Background(), task); !errors.Is(err, errCrash) || !enq.failed.Load() {
		t.Fatalf("first run: %v, want the failed enqueue", err)
	}
	if h.marked(pe, msgInterrupted) {
		t.Fatal("the event is marked processed while its failed SMS has no task: a run again would skip it for good")
	}
	if err := h.d.HandleEvent(context.Background(), task); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if m, s := h.channels[channels.Email].attempts(), h.channels[channels.SMS].attempts(); m != 1 || s != 2 {
		t.Errorf("attempts: email %d, SMS %d; want the email once and the SMS again (it had failed)", m, s)
	}
	if !h.marked(pe, msgInterrupted) {
		t.Error("after the second run: the event is not marked")
	}
}

// A letter's event is marked processed only after what follows its sends:
// a held delivery's task, the reply_by reminder, the access holders'
// alerts. When that step fails the event must stay unmarked, so that its
// run again does it (a mark in the sends' last write would skip it for
// good).
func TestEventIsNotMarkedBeforeWhatFollowsTheSends(t *testing.T) {
	t.Parallel()
	const day, night = "2026-06-10T12:00:00+02:00", "2026-06-10T23:00:00+02:00"
	rows := []struct {
		name  string
		at    string
		data  map[string]any // added to the letter's data
		fail  string         // the task type whose enqueue fails, or
		crash bool           // the holder's first write fails
		setup func(h *harness)
	}{
		{name: "a held delivery's task", at: night, fail: dispatcher.TypeDelivery},
		{name: "the reply_by reminder", at: day, fail: dispatcher.TypeReminder,
			data: map[string]any{"reply_by": "2026-07-10T12:00:00+02:00"}},
		{name: "the access holder's alerts", at: day, crash: true, setup: func(h *harness) {
			setUpHolder(h, true)
			h.handle(accessEvent("acc-1", "access.granted", "2026-06-10T08:00:00+02:00", map[string]any{"scope": "read", "notify": true}))
		}},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var enq *failingEnqueuer
			var crashed *atomic.Bool
			h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
				c.QuietHours = map[channels.Name]rules.QuietHours{channels.SMS: {Start: rules.Clock{Hour: 22}, End: rules.Clock{Hour: 7}}}
				enq = &failingEnqueuer{Enqueuer: c.Enqueuer, typ: tc.fail}
				c.Enqueuer = enq
				var fail func(dispatcher.LetterWrite) error
				fail, crashed = failOnce(func(w dispatcher.LetterWrite) bool {
					// A holder's first write: in-flight marks, no arrival.
					return tc.crash && w.Arrive == nil && len(w.InFlight) > 0
				}, errCrash)
				c.Store = &crashingStore{Store: h.store, fail: fail}
			}, channels.Email, channels.SMS, channels.APNs)
			clock, _ := time.Parse(time.RFC3339, tc.at)
			h.clock.Store(&clock)
			registerNow(h, annaCPR)
			if tc.setup != nil {
				tc.setup(h)
			}
			data := map[string]any{"message_id": msgInterrupted, "recipient": map[string]any{"cpr": annaCPR},
				"sender": map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"}}
			for k, v := range tc.data {
				data[k] = v
			}
			task, pe := h.eventTask(wireAt("ev-follow", "message.received", tc.at, data))
			err := h.d.HandleEvent(context.Background(), task)
			if !errors.Is(err, errCrash) || !(enq.failed.Load() || crashed.Load()) {
				t.Fatalf("first run: %v, want the simulated failure", err)
			}
			if h.marked(pe, msgInterrupted) {
				t.Fatal("after the failed step: the event is marked; want it not marked, so its run again does the step")
			}
			if err := h.d.HandleEvent(context.Background(), task); err != nil {
				t.Fatalf("second run: %v", err)
			}
			if !h.marked(pe, msgInterrupted) {
				t.Error("after the second run: the event is not marked")
			}
		})
	}
}

// A letter's run again after its arrival (here: the SMS failed and its
// task could not be enqueued) sends the deliveries left with the badge of
// every letter filed, as the first run would: the look-up reads no unread
// count, so the run files the stored letter again for it.
func TestRunAgainCountsTheBadge(t *testing.T) {
	h, _ := newHarnessFailingDeliveryTasks(t, channels.Email, channels.SMS)
	registerNow(h, annaCPR)
	h.handle(letter("ev-badge-earlier", "22222222-2222-4333-8444-555555555550", annaCPR))
	h.channels[channels.SMS].failNext(channels.Fail(channels.Transient, "http 503", errors.New("gateway busy")))
	task, _ := h.eventTask(letter("ev-badge-again", msgInterrupted, annaCPR))
	if err := h.d.HandleEvent(context.Background(), task); !errors.Is(err, errCrash) {
		t.Fatalf("first run: %v, want the failed enqueue", err)
	}
	if err := h.d.HandleEvent(context.Background(), task); err != nil {
		t.Fatalf("run again: %v", err)
	}
	var badges []int
	for _, a := range h.channels[channels.SMS].alerts() {
		badges = append(badges, a.Alert.Badge)
	}
	if want := []int{1, 2}; !slices.Equal(badges, want) {
		t.Errorf("SMS badges %v, want %v: the run again counts both letters filed", badges, want)
	}
}
