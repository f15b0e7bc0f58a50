package wake_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/wake"
)

// The tests run on a redis-server of their own: CLIENT LIST then shows the
// test's server alone, so "a client blocked in BLPOP" is the test's.

const (
	queue = "wq.urgent"
	// poll is the server's asynq poll interval: once its wait ends without
	// a token, asynq sleeps 0.5–1.5 × poll before it dequeues again.
	poll = 6 * time.Second
	// wait bounds one wait for a token.
	wait = 2 * time.Second
)

type started struct {
	at time.Time
	id string
}

// serve starts an asynq server on the queue whose Redis client is rdb; its
// handler reports each task it starts.
func serve(t *testing.T, rdb redis.UniversalClient) <-chan started {
	t.Helper()
	ch := make(chan started, 16)
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 2, Queues: map[string]int{queue: 1},
		TaskCheckInterval: poll, LogLevel: asynq.FatalLevel, ShutdownTimeout: time.Second})
	if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		ch <- started{time.Now(), id}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return ch
}

// waiting returns once a client is blocked in BLPOP (blocked). Without a
// wake-up, a task enqueued after that starts no earlier than the end of
// that wait plus asynq's sleep of at least poll/2: the order
// startedBefore relies on, however long the wait has run already.
func waiting(t *testing.T, c *redis.Client) time.Time {
	t.Helper()
	if !redistest.Within(20*time.Second, func() bool { return blocked(t, c) }) {
		t.Fatal("no client waited for a wake-up token within 20s")
	}
	return time.Now()
}

// blocked reports whether a client is blocked in BLPOP now (CLIENT LIST:
// cmd=blpop with flag b; cmd alone names the last command, which a client
// just woken still shows). Not "for less than a second" (idle=0), as
// before: a test goroutine starved for a second on a loaded machine then
// missed a 20 s wait's first second, and waited out the rest.
func blocked(t *testing.T, c *redis.Client) bool {
	t.Helper()
	list, err := c.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(line, " cmd=blpop") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if flags, ok := strings.CutPrefix(f, "flags="); ok && strings.Contains(flags, "b") {
				return true
			}
		}
	}
	return false
}

// longWait is the wait of the servers that newWaiting starts: long, so
// that a test's enqueue lands within the wait it saw begin, however
// loaded the machine.
const longWait = 20 * time.Second

// newWaiting starts a server on a redis-server of the test's own whose
// empty dequeues wait up to longWait for a token, and returns its Redis,
// an asynq client that kicks, and the tasks it starts.
func newWaiting(t *testing.T) (*redis.Client, *asynq.Client, <-chan started) {
	t.Helper()
	srv := redistest.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: 2 * longWait})
	t.Cleanup(func() { rdb.Close() }) // after the server's shutdown
	wc := wake.NewClient(rdb, longWait, queue)
	starts := serve(t, wc)
	enq := asynq.NewClientFromRedisClient(wc)
	t.Cleanup(func() {
		// Before the server's shutdown: a woken task, so that its fetch
		// loop neither waits out longWait nor sleeps a poll.
		_, _ = enq.Enqueue(asynq.NewTask("t", nil), asynq.Queue(queue), asynq.TaskID("last"))
	})
	return rdb, enq, starts
}

// startedBefore fails the test unless the next task started is id and
// started before the server's next poll could have found it: without a
// wake-up the server dequeues again only after asynq's sleep of at least
// poll/2 from t0 (after its wait, which is longer, or at once if a token
// ended the wait without a task): an order of events, seconds apart.
func startedBefore(t *testing.T, starts <-chan started, id string, t0 time.Time) {
	t.Helper()
	earliestPoll := t0.Add(poll / 2)
	select {
	case s := <-starts:
		if s.id != id {
			t.Fatalf("started %q, want %q", s.id, id)
		}
		t.Logf("started %v after the wait was seen", s.at.Sub(t0).Round(time.Millisecond))
		if !s.at.Before(earliestPoll) {
			t.Errorf("the task started %v after the wait began, not before the server's next poll (%v): no wake-up",
				s.at.Sub(t0).Round(time.Millisecond), earliestPoll.Sub(t0))
		}
	case <-time.After(2 * longWait):
		t.Fatalf("task %s never started", id)
	}
}

func TestIdleServerStartsAWokenTaskBeforeItsNextPoll(t *testing.T) {
	t.Parallel()
	rdb, enq, starts := newWaiting(t)
	// On this fresh Redis asynq's enqueue script is not loaded: its EVALSHA
	// fails (NOSCRIPT) but the token in its pipeline wakes the server
	// before the task exists; the script then runs whole (EVAL) with a
	// second token. The wait must go on after the first.
	t0 := waiting(t, rdb)
	if _, err := enq.EnqueueContext(context.Background(), asynq.NewTask("t", nil), asynq.Queue(queue), asynq.TaskID("woken")); err != nil {
		t.Fatal(err)
	}
	startedBefore(t, starts, "woken", t0)
}

// A token that brings no task (stale: its task was taken by a busy server)
// does not end the wait: the next enqueue still wakes the server.
func TestTokenWithoutTaskDoesNotEndTheWait(t *testing.T) {
	t.Parallel()
	rdb, enq, starts := newWaiting(t)
	t0 := waiting(t, rdb)
	ctx := context.Background()
	if err := rdb.LPush(ctx, wake.Key(queue), "1").Err(); err != nil {
		t.Fatal(err)
	}
	// The server takes the token and finds no task; it waits again (for a
	// moment it is not in BLPOP: give it up to 2 s to be back).
	redistest.Within(2*time.Second, func() bool { return rdb.LLen(ctx, wake.Key(queue)).Val() == 0 && blocked(t, rdb) })
	if _, err := enq.EnqueueContext(ctx, asynq.NewTask("t", nil), asynq.Queue(queue), asynq.TaskID("after-stale")); err != nil {
		t.Fatal(err)
	}
	startedBefore(t, starts, "after-stale", t0)
}

// A task enqueued without a token (by asynq's forwarder, a plain client, a
// lost LPUSH) is still found: the wait ends and asynq polls as before.
func TestTaskWithoutTokenIsFoundByThePoll(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() }) // after the server's shutdown
	starts := serve(t, wake.NewClient(rdb, wait, queue))
	waiting(t, rdb)
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("t", nil), asynq.Queue(queue), asynq.TaskID("plain")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-starts:
		if s.id != "plain" {
			t.Fatalf("started %q", s.id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a task enqueued without a token never started")
	}
}

// Only a pending task on a watched queue pushes a token: a scheduled one
// (asynq's forwarder moves it), or one on another queue, does not.
func TestClientKicksWatchedPendingTasksOnly(t *testing.T) {
	t.Parallel()
	rt := redistest.New(t)
	watched, other := rt.QueuePrefix+".urgent", rt.QueuePrefix+".normal"
	enq := asynq.NewClientFromRedisClient(wake.NewClient(rt.Client, wait, watched))
	ctx := context.Background()
	tokens := func() int64 { return rt.Client.LLen(ctx, wake.Key(watched)).Val() }

	if _, err := enq.EnqueueContext(ctx, asynq.NewTask("t", nil), asynq.Queue(watched), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := enq.EnqueueContext(ctx, asynq.NewTask("t", nil), asynq.Queue(other)); err != nil {
		t.Fatal(err)
	}
	if n := tokens(); n != 0 {
		t.Fatalf("%d tokens after a scheduled task and another queue's task, want 0", n)
	}
	for range 20 {
		if _, err := enq.EnqueueContext(ctx, asynq.NewTask("t", nil), asynq.Queue(watched)); err != nil {
			t.Fatal(err)
		}
	}
	if n := tokens(); n != 16 {
		t.Errorf("%d tokens after 20 pending tasks, want the list trimmed to 16", n)
	}
	if ttl := rt.Client.PTTL(ctx, wake.Key(watched)).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("the wake list's TTL is %v, want at most a minute", ttl)
	}
}

// An enqueue of a pending task on a watched queue marks the queue flowing
// for FlowWindow; a scheduled task, or one on another queue, does not.
// Flow reads the mark.
func TestClientMarksWatchedQueueFlowing(t *testing.T) {
	t.Parallel()
	rt := redistest.New(t)
	watched, other := rt.QueuePrefix+".urgent", rt.QueuePrefix+".normal"
	enq := asynq.NewClientFromRedisClient(wake.NewClient(rt.Client, wait, watched))
	ctx := context.Background()
	flow := wake.NewFlow(rt.Client, watched, 0)

	if _, err := enq.EnqueueContext(ctx, asynq.NewTask("t", nil), asynq.Queue(watched), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := enq.EnqueueContext(ctx, asynq.NewTask("t", nil), asynq.Queue(other)); err != nil {
		t.Fatal(err)
	}
	if flow.On(ctx) || wake.NewFlow(rt.Client, other, 0).On(ctx) {
		t.Fatal("flowing after a scheduled task and another queue's task, want not")
	}
	if _, err := enq.EnqueueContext(ctx, asynq.NewTask("t", nil), asynq.Queue(watched)); err != nil {
		t.Fatal(err)
	}
	if !flow.On(ctx) {
		t.Fatal("not flowing after a pending task on the watched queue")
	}
	if ttl := rt.Client.PTTL(ctx, wake.FlowKey(watched)).Val(); ttl <= 0 || ttl > wake.FlowWindow {
		t.Errorf("the flow key's TTL is %v, want at most %v", ttl, wake.FlowWindow)
	}
	rt.Client.Del(ctx, wake.FlowKey(watched))
	if flow.On(ctx) {
		t.Error("still flowing once the flow key is gone")
	}
}

// Flow reads Redis at most once per its interval, and a read that fails
// keeps the last answer.
func TestFlowReadsOncePerIntervalAndKeepsItsAnswerOnError(t *testing.T) {
	t.Parallel()
	rt := redistest.New(t)
	q := rt.QueuePrefix + ".urgent"
	ctx := context.Background()

	cached := wake.NewFlow(rt.Client, q, time.Hour)
	if cached.On(ctx) {
		t.Fatal("flowing with no flow key")
	}
	rt.Client.Set(ctx, wake.FlowKey(q), "1", time.Minute)
	if cached.On(ctx) {
		t.Error("read Redis again within the interval, want the answer of the first read")
	}

	c := redis.NewClient(&redis.Options{Addr: rt.Client.Options().Addr, DB: rt.Client.Options().DB})
	flow := wake.NewFlow(c, q, 0)
	if !flow.On(ctx) {
		t.Fatal("not flowing with the flow key set")
	}
	c.Close()
	if !flow.On(ctx) {
		t.Error("a failed read answered not flowing, want the last answer kept")
	}
}
