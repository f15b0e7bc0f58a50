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

// heldEnqueuer is asynq's client whose first enqueue waits until release
// is closed: a group's enqueue on its way while more letters come.
type heldEnqueuer struct {
	*asynq.Client
	release chan struct{}
	once    sync.Once
	held    chan struct{} // closed when the first enqueue waits
	calls   atomic.Int64
	panicAt int64 // the enqueue that panics (1: the first), 0: none
	failAt  int64 // the enqueue that fails, 0: none
}

func (e *heldEnqueuer) EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	first := false
	e.once.Do(func() { first = true })
	if first {
		close(e.held)
		<-e.release
	}
	switch e.calls.Add(1) {
	case e.panicAt:
		panic("enqueue bug")
	case e.failAt:
		return nil, errors.New("enqueue failed")
	}
	return e.Client.EnqueueContext(ctx, t, opts...)
}

// With POSTBUD_GROUP_ACCEPTS, letters accepted one at a time while a
// group's enqueue is on its way are enqueued together once it is done:
// the first letter alone (it waited for nothing), the nine that came
// meanwhile in one letters task, a copy among them answered duplicate.
// An urgent letter accepted meanwhile does not wait. Every letter is
// alerted once.
func TestGroupedAcceptsShareATask(t *testing.T) {
	var held *heldEnqueuer
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		held = &heldEnqueuer{Client: h.client, release: make(chan struct{}), held: make(chan struct{})}
		c.Enqueuer, c.GroupAccepts = held, true
	}, channels.Email)
	registerNow(h, annaCPR)
	accept := func(raw string) (bool, error) {
		ev, err := event.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return h.d.Accept(context.Background(), ev)
	}
	msg := func(i int) string { return fmt.Sprintf("33333333-4444-4555-8666-%012d", i) }

	type answer struct {
		dup bool
		err error
	}
	answers := make([]answer, 11)
	var wg sync.WaitGroup
	wg.Go(func() { answers[0].dup, answers[0].err = accept(letter("ev-g0", msg(0), annaCPR)) })
	<-held.held
	for i := 1; i <= 9; i++ {
		wg.Go(func() { answers[i].dup, answers[i].err = accept(letter(fmt.Sprintf("ev-g%d", i), msg(i), annaCPR)) })
	}
	// A copy of the fifth letter, in the same group.
	if !redistest.Within(10*time.Second, func() bool { return h.d.AcceptsWaiting() == 9 }) {
		t.Fatalf("%d letters wait for the group before them, want 9", h.d.AcceptsWaiting())
	}
	wg.Go(func() { answers[10].dup, answers[10].err = accept(letter("ev-g5", msg(5), annaCPR)) })
	if !redistest.Within(10*time.Second, func() bool { return h.d.AcceptsWaiting() == 10 }) {
		t.Fatalf("%d letters wait, want 10", h.d.AcceptsWaiting())
	}
	// An urgent letter goes its own way while the group's enqueue waits.
	urgent := make(chan error, 1)
	go func() {
		_, err := accept(urgentLetter("ev-urgent", msg(99), annaCPR))
		urgent <- err
	}()
	select {
	case err := <-urgent:
		if err != nil {
			t.Fatalf("urgent Accept: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the urgent letter waited for the group's enqueue")
	}
	close(held.release)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting letters were not answered")
	}
	for i, a := range answers {
		if a.err != nil {
			t.Errorf("letter %d: %v", i, a.err)
		}
		if want := i == 10; a.dup != want {
			t.Errorf("letter %d answered duplicate %v, want %v (the copy of the fifth letter, later in its group)", i, a.dup, want)
		}
	}
	// While their tasks wait, a copy of a letter of the group, or of the
	// one alone, is answered duplicate (the group's task id cannot say
	// so: Store.Queue's marks do), and queues nothing.
	for _, i := range []int{0, 3} {
		if dup, err := accept(letter(fmt.Sprintf("ev-g%d", i), msg(i), annaCPR)); err != nil || !dup {
			t.Errorf("a copy of queued letter %d answered duplicate %v (%v), want duplicate", i, dup, err)
		}
	}
	// The marks are keys of their own that expire (not fields of the
	// letter, which would outlive a task deleted unprocessed).
	marks, err := h.env.Client.Keys(context.Background(), h.env.Prefix+":*:q:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 10 {
		t.Errorf("%d queued marks, want 10 (each letter of the group and the one alone)", len(marks))
	}
	for _, k := range marks {
		if ttl := h.env.Client.PTTL(context.Background(), k).Val(); ttl <= 0 || ttl > dispatcher.QueuedTTL {
			t.Errorf("queued mark %q expires in %v, want within %v", k, ttl, dispatcher.QueuedTTL)
		}
	}
	tasks, err := h.insp.ListPendingTasks(h.queues.Normal)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	for _, tk := range tasks {
		types[tk.Type]++
	}
	if want := map[string]int{dispatcher.TypeEvent: 1, dispatcher.TypeLetters: 1}; fmt.Sprint(types) != fmt.Sprint(want) {
		t.Errorf("normal lane holds %v, want %v: the first letter alone, the nine that waited in one task", types, want)
	}
	// The group's task, as every payload, holds no CPR number.
	for _, l := range h.env.Leaks(t, "0101901234", "010190-1234") {
		t.Errorf("queued grouped letters: %s", l)
	}
	h.start()
	h.idle()
	sent := map[string]int{}
	for _, a := range h.channels[channels.Email].accepted() {
		sent[a.Alert.MessageID]++
	}
	for i := range 10 {
		if sent[msg(i)] != 1 {
			t.Errorf("letter %d: %d emails, want 1", i, sent[msg(i)])
		}
	}
}

// A group whose enqueue panics (a bug; net/http recovers the request's
// panic and postbud goes on) answers its waiting letters unavailable, so
// their platforms retry, and hands the next group on: letters accepted
// after it are not left waiting forever.
func TestGroupedAcceptsSurviveAPanickingEnqueue(t *testing.T) {
	var held *heldEnqueuer
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		// The first enqueue (a letter alone) waits while three letters
		// come; their group's enqueue, the second, panics.
		held = &heldEnqueuer{Client: h.client, release: make(chan struct{}), held: make(chan struct{}), panicAt: 2}
		c.Enqueuer, c.GroupAccepts = held, true
	}, channels.Email)
	type answer struct {
		err      error
		panicked bool
	}
	accept := func(id string, i int) (a answer) {
		defer func() { a.panicked = recover() != nil }()
		ev, err := event.Parse([]byte(letter(id, fmt.Sprintf("55555555-4444-4555-8666-%012d", i), annaCPR)))
		if err != nil {
			return answer{err: err}
		}
		_, a.err = h.d.Accept(context.Background(), ev)
		return a
	}
	answers := make(chan answer, 5)
	go func() { answers <- accept("ev-p0", 0) }()
	<-held.held
	for i := 1; i <= 3; i++ {
		go func() { answers <- accept(fmt.Sprintf("ev-p%d", i), i) }()
	}
	if !redistest.Within(10*time.Second, func() bool { return h.d.AcceptsWaiting() == 3 }) {
		t.Fatalf("%d letters wait, want 3", h.d.AcceptsWaiting())
	}
	close(held.release)
	var ok, unavailable, panicked int
	for range 4 {
		select {
		case a := <-answers:
			switch {
			case a.panicked:
				panicked++
			case a.err == nil:
				ok++
			case errors.Is(a.err, dispatcher.ErrUnavailable):
				unavailable++
			default:
				t.Errorf("answer: %v", a.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a letter of the panicked group was never answered")
		}
	}
	// The first letter alone went through; of the group of three, its
	// lead panicked and the two that waited on it are told to retry.
	if ok != 1 || panicked != 1 || unavailable != 2 {
		t.Errorf("%d accepted, %d panicked, %d unavailable; want 1, 1, 2", ok, panicked, unavailable)
	}
	go func() { answers <- accept("ev-p9", 9) }()
	select {
	case a := <-answers:
		if a.err != nil || a.panicked {
			t.Errorf("a letter after the panic: %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a letter after the panic was never answered: the group's turn was lost")
	}
}

// A group whose enqueue fails leaves no queued mark: its letters are
// answered unavailable, and the copies their platforms send again are
// accepted, queued and alerted, not answered duplicate and lost.
func TestGroupedAcceptsMarkOnlyWhatIsQueued(t *testing.T) {
	var held *heldEnqueuer
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		held = &heldEnqueuer{Client: h.client, release: make(chan struct{}), held: make(chan struct{}), failAt: 2}
		c.Enqueuer, c.GroupAccepts = held, true
	}, channels.Email)
	registerNow(h, annaCPR)
	msg := func(i int) string { return fmt.Sprintf("66666666-4444-4555-8666-%012d", i) }
	accept := func(i int) (bool, error) {
		ev, err := event.Parse([]byte(letter(fmt.Sprintf("ev-f%d", i), msg(i), annaCPR)))
		if err != nil {
			t.Fatal(err)
		}
		return h.d.Accept(context.Background(), ev)
	}
	errs := make([]error, 4)
	var wg sync.WaitGroup
	wg.Go(func() { _, errs[0] = accept(0) })
	<-held.held
	for i := 1; i <= 3; i++ {
		wg.Go(func() { _, errs[i] = accept(i) })
	}
	if !redistest.Within(10*time.Second, func() bool { return h.d.AcceptsWaiting() == 3 }) {
		t.Fatalf("%d letters wait, want 3", h.d.AcceptsWaiting())
	}
	close(held.release)
	wg.Wait()
	for i, err := range errs {
		if want := i > 0; errors.Is(err, dispatcher.ErrUnavailable) != want {
			t.Errorf("letter %d: %v, want unavailable %v (the group's enqueue failed)", i, err, want)
		}
	}
	for i := 1; i <= 3; i++ {
		if dup, err := accept(i); err != nil || dup {
			t.Errorf("letter %d sent again: duplicate %v, %v; want accepted", i, dup, err)
		}
	}
	h.start()
	h.idle()
	sent := map[string]int{}
	for _, a := range h.channels[channels.Email].accepted() {
		sent[a.Alert.MessageID]++
	}
	for i := range 4 {
		if sent[msg(i)] != 1 {
			t.Errorf("letter %d: %d emails, want 1", i, sent[msg(i)])
		}
	}
}

func urgentLetter(id, messageID, cpr string) string {
	return wire(id, "message.received", map[string]any{"message_id": messageID, "recipient": map[string]any{"cpr": cpr},
		"priority": "urgent", "sender": map[string]any{"id": "rh", "name": "Rigshospitalet", "kind": "public"}})
}

// Without POSTBUD_GROUP_ACCEPTS every letter Accept takes is a task of its
// own, and a copy of a queued letter is answered duplicate.
func TestUngroupedAcceptsTakeATaskEach(t *testing.T) {
	h := newHarness(t, channels.Email)
	registerNow(h, annaCPR)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			h.accept(letter(fmt.Sprintf("ev-u%d", i), fmt.Sprintf("44444444-4444-4555-8666-%012d", i), annaCPR))
		})
	}
	wg.Wait()
	if !h.accept(letter("ev-u0", "44444444-4444-4555-8666-000000000000", annaCPR)) {
		t.Error("a copy of a queued letter answered accepted, want duplicate")
	}
	tasks, err := h.insp.ListPendingTasks(h.queues.Normal)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 5 {
		t.Errorf("%d tasks, want 5", len(tasks))
	}
	for _, tk := range tasks {
		if tk.Type != dispatcher.TypeEvent {
			t.Errorf("task type %s, want %s", tk.Type, dispatcher.TypeEvent)
		}
	}
}
