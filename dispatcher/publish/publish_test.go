package publish_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/publish"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

func consent(source, platform string) []byte {
	return []byte(`{"id":"cs-1","type":"consent.granted","occurred_at":"2026-11-30T10:00:00Z","source":"` + source +
		`","data":{"cpr":"010190-1234","platform":"` + platform + `"}}`)
}

// The Go client takes the consent events, and refuses a platform changing
// another platform's consent before it is enqueued.
func TestPublishConsent(t *testing.T) {
	env := redistest.New(t)
	p := publish.NewFromRedisClient(env.Client, env.QueuePrefix)
	defer p.Close()
	ctx := t.Context()
	if _, err := p.Publish(ctx, consent("e-boks", "e-boks")); err != nil {
		t.Errorf("e-boks's own consent: %v", err)
	}
	_, err := p.Publish(ctx, consent("e-boks", "mit.dk"))
	var ve *event.ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != "data.platform" ||
		!strings.Contains(ve.Errors[0].Reason, "only its own consent") {
		t.Errorf("e-boks changing mit.dk's consent: %v, want a ValidationError naming data.platform", err)
	}
	// PublishBatch answers each event as Publish would.
	res := p.PublishBatch(ctx, [][]byte{consent("e-boks", "mit.dk"), consent("mit.dk", "mit.dk")})
	if !errors.As(res[0].Err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != "data.platform" {
		t.Errorf("PublishBatch, e-boks changing mit.dk's consent: %+v, want a ValidationError naming data.platform", res[0])
	}
	if res[1].Err != nil || res[1].Duplicate {
		t.Errorf("PublishBatch, mit.dk's own consent: %+v, want accepted", res[1])
	}
}

// holdHook holds the first asynq enqueue (a script call) on a Redis client
// until release is closed, and fails the failAt-th (0: none): a group's
// enqueue on its way while more letters are published.
type holdHook struct {
	release chan struct{}
	held    chan struct{}
	once    sync.Once
	calls   atomic.Int64
	failAt  int64
}

func (h *holdHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := h.enqueue(cmd); err != nil {
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h *holdHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if err := h.enqueue(c); err != nil {
				c.SetErr(err)
				return err
			}
		}
		return next(ctx, cmds)
	}
}

func (h *holdHook) enqueue(cmd redis.Cmder) error {
	if n := cmd.Name(); n != "evalsha" && n != "eval" {
		return nil
	}
	first := false
	h.once.Do(func() { first = true })
	if first {
		close(h.held)
		<-h.release
	}
	if h.calls.Add(1) == h.failAt {
		return errors.New("enqueue failed")
	}
	return nil
}

func heldPublisher(t *testing.T, env *redistest.Env, failAt int64, opts ...publish.Option) (*publish.Publisher, *holdHook) {
	h := &holdHook{release: make(chan struct{}), held: make(chan struct{}), failAt: failAt}
	c := redis.NewClient(env.Client.Options())
	c.AddHook(h)
	t.Cleanup(func() { c.Close() })
	p := publish.NewFromRedisClient(c, env.QueuePrefix, opts...)
	t.Cleanup(func() { p.Close() })
	return p, h
}

func letter(id, messageID string) []byte {
	return []byte(`{"id":"` + id + `","type":"message.received","occurred_at":"2026-11-30T10:00:00Z","source":"core",` +
		`"data":{"message_id":"` + messageID + `","recipient":{"cpr":"010190-1234"},"sender":{"id":"skat","name":"Skattestyrelsen","kind":"public"}}}`)
}

func msgID(i int) string { return fmt.Sprintf("77777777-4444-4555-8666-%012d", i) }

type answer struct {
	dup bool
	err error
}

// publishHeld publishes letter 0, holds its enqueue while letters 1..n
// (and extra) are published, then releases it and returns every answer.
func publishHeld(t *testing.T, p *publish.Publisher, h *holdHook, n int, extra ...[]byte) []answer {
	t.Helper()
	answers := make([]answer, 1+n+len(extra))
	var wg sync.WaitGroup
	wg.Go(func() { answers[0].dup, answers[0].err = p.Publish(context.Background(), letter("pl-0", msgID(0))) })
	<-h.held
	raws := make([][]byte, 0, n+len(extra))
	for i := 1; i <= n; i++ {
		raws = append(raws, letter(fmt.Sprintf("pl-%d", i), msgID(i)))
	}
	for i, raw := range append(raws, extra...) {
		wg.Go(func() { answers[1+i].dup, answers[1+i].err = p.Publish(context.Background(), raw) })
		// In order: a copy among them comes after its first.
		if !redistest.Within(10*time.Second, func() bool { return p.Waiting() == i+1 }) {
			t.Fatalf("%d letters wait for the group before them, want %d", p.Waiting(), i+1)
		}
	}
	close(h.release)
	wg.Wait()
	return answers
}

func pendingTypes(t *testing.T, env *redistest.Env) map[string]int {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(env.Client)
	tasks, err := insp.ListPendingTasks(dispatcher.DefaultQueues(env.QueuePrefix).Normal)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	for _, tk := range tasks {
		types[tk.Type]++
	}
	return types
}

// Letters published one at a time while an enqueue is on its way share a
// task (the first went alone), each answered for itself: a copy among
// them is the duplicate, and copies published while their tasks wait are
// answered duplicate (the queued marks) and queue nothing. No key names
// the CPR number.
func TestPublishGroupsLettersAtOnce(t *testing.T) {
	env := redistest.New(t)
	p, h := heldPublisher(t, env, 0)
	answers := publishHeld(t, p, h, 5, letter("pl-3", msgID(3)))
	for i, a := range answers {
		if want := i == 6; a.err != nil || a.dup != want {
			t.Errorf("letter %d: duplicate %v, %v; want duplicate %v", i, a.dup, a.err, want)
		}
	}
	want := map[string]int{dispatcher.TypeInbound: 1, dispatcher.TypeInboundLetters: 1}
	if got := pendingTypes(t, env); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("normal lane holds %v, want %v: the first letter alone, the five that waited in one task", got, want)
	}
	for _, i := range []int{0, 2} {
		if dup, err := p.Publish(t.Context(), letter(fmt.Sprintf("pl-%d", i), msgID(i))); err != nil || !dup {
			t.Errorf("a copy of queued letter %d: duplicate %v, %v; want duplicate", i, dup, err)
		}
	}
	if got := pendingTypes(t, env); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the copies the normal lane holds %v, want %v", got, want)
	}
	keys, err := env.Client.Keys(t.Context(), "*postbud-q*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 6 {
		t.Errorf("%d queued marks, want 6", len(keys))
	}
	for _, k := range keys {
		if strings.Contains(k, "0101901234") || strings.Contains(k, "010190-1234") || strings.Contains(k, "pl-") {
			t.Errorf("queued mark %q names the CPR number or the event id", k)
		}
		if ttl := env.Client.PTTL(t.Context(), k).Val(); ttl <= 0 || ttl > dispatcher.QueuedTTL {
			t.Errorf("queued mark %q expires in %v, want within %v", k, ttl, dispatcher.QueuedTTL)
		}
	}
}

// A group whose enqueue fails leaves no queued mark: its letters are
// answered with the error, and published again they are accepted and
// queued, not answered duplicate and lost.
func TestPublishGroupMarksOnlyWhatIsQueued(t *testing.T) {
	env := redistest.New(t)
	p, h := heldPublisher(t, env, 2)
	answers := publishHeld(t, p, h, 3)
	for i, a := range answers {
		if want := i > 0; (a.err != nil) != want || a.dup {
			t.Errorf("letter %d: duplicate %v, %v; want failed %v (the group's enqueue failed)", i, a.dup, a.err, want)
		}
	}
	for i := 1; i <= 3; i++ {
		if dup, err := p.Publish(t.Context(), letter(fmt.Sprintf("pl-%d", i), msgID(i))); err != nil || dup {
			t.Errorf("letter %d published again: duplicate %v, %v; want accepted", i, dup, err)
		}
	}
	if got, want := pendingTypes(t, env), map[string]int{dispatcher.TypeInbound: 4}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("normal lane holds %v, want %v (each letter published again alone)", got, want)
	}
}

// Ungrouped, each letter is a task of its own, and no mark is kept.
func TestPublishUngrouped(t *testing.T) {
	env := redistest.New(t)
	p := publish.NewFromRedisClient(env.Client, env.QueuePrefix, publish.Ungrouped())
	defer p.Close()
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			if _, err := p.Publish(context.Background(), letter(fmt.Sprintf("pu-%d", i), msgID(i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got, want := pendingTypes(t, env), map[string]int{dispatcher.TypeInbound: 5}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("normal lane holds %v, want %v", got, want)
	}
	if keys := env.Client.Keys(t.Context(), "*postbud-q*").Val(); len(keys) != 0 {
		t.Errorf("queued marks %v, want none", keys)
	}
}

// A Publish whose context ends while its letter waits for the group before
// it returns at once with the context's error, and its letter is not
// queued: published again, it is accepted.
func TestPublishLeavesTheGroupOnItsContext(t *testing.T) {
	env := redistest.New(t)
	p, h := heldPublisher(t, env, 0)
	first := make(chan error, 1)
	go func() { _, err := p.Publish(context.Background(), letter("pc-0", msgID(0))); first <- err }()
	<-h.held
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() { _, err := p.Publish(ctx, letter("pc-1", msgID(1))); left <- err }()
	if !redistest.Within(10*time.Second, func() bool { return p.Waiting() == 1 }) {
		t.Fatalf("%d letters wait, want 1", p.Waiting())
	}
	cancel()
	select {
	case err := <-left:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Publish after its context ended: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a Publish whose context ended still waits for the group before it")
	}
	close(h.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got, want := pendingTypes(t, env), map[string]int{dispatcher.TypeInbound: 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("normal lane holds %v, want %v: the letter that left is not queued", got, want)
	}
	if dup, err := p.Publish(t.Context(), letter("pc-1", msgID(1))); err != nil || dup {
		t.Errorf("the letter that left, published again: duplicate %v, %v; want accepted", dup, err)
	}
}
