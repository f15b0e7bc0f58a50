package reaper_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/digitalpost/postbud/dispatcher/reaper"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// orphan enqueues a task and moves it to the active list the way asynq's
// dequeue script does, but without the lease: what a failover leaves.
func orphan(t *testing.T, rdb redis.UniversalClient, queue, id string) {
	t.Helper()
	ctx := context.Background()
	c := asynq.NewClientFromRedisClient(rdb)
	if _, err := c.EnqueueContext(ctx, asynq.NewTask("orphan", nil), asynq.Queue(queue), asynq.TaskID(id)); err != nil {
		t.Fatal(err)
	}
	prefix := "asynq:{" + queue + "}:"
	if err := rdb.LRem(ctx, prefix+"pending", 0, id).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.LPush(ctx, prefix+"active", id).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, prefix+"t:"+id, "state", "active").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HDel(ctx, prefix+"t:"+id, "pending_since").Err(); err != nil {
		t.Fatal(err)
	}
}

// TestReapRequeuesOrphan: an active task without a lease is run again by
// asynq's own recoverer once the reaper has given it an expired lease; a
// task this process works on, and one with a lease, are left alone.
func TestReapRequeuesOrphan(t *testing.T) {
	env := redistest.New(t)
	if env.Embedded {
		t.Skip("asynq's scripts need a real Redis")
	}
	ctx := context.Background()
	q := env.QueuePrefix + ".normal"
	orphan(t, env.Client, q, "lost")
	orphan(t, env.Client, q, "mine")
	orphan(t, env.Client, q, "leased")
	lease := "asynq:{" + q + "}:lease"
	future := float64(time.Now().Add(time.Hour).Unix())
	if err := env.Client.ZAdd(ctx, lease, redis.Z{Score: future, Member: "leased"}).Err(); err != nil {
		t.Fatal(err)
	}

	// A clock a minute behind: the lease is past the recoverer's 30 s
	// cutoff at once, so the test need not wait for it.
	r := reaper.New(reaper.Config{Client: env.Client, Queues: []string{q}, LockKey: env.Prefix + ":reaper",
		WorkingFunc: func(id string) bool { return id == "mine" },
		Now:         func() time.Time { return time.Now().Add(-time.Minute) }})
	n, err := r.Reap(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1 orphan", n, err)
	}
	if _, err := env.Client.ZScore(ctx, lease, "mine").Result(); !errors.Is(err, redis.Nil) {
		t.Errorf("the task this process works on got a lease (err %v)", err)
	}
	if s, _ := env.Client.ZScore(ctx, lease, "leased").Result(); s != future {
		t.Errorf("the leased task's lease changed to %v", s)
	}
	if n, _ := r.Reap(ctx); n != 0 {
		t.Errorf("a second pass within the interval reaped %d, want 0 (lock)", n)
	}

	var mu sync.Mutex
	ran := map[string]bool{}
	done := make(chan struct{})
	srv := asynq.NewServerFromRedisClient(env.Client, asynq.Config{Queues: map[string]int{q: 1},
		LogLevel: asynq.FatalLevel, DelayedTaskCheckInterval: 50 * time.Millisecond,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return 0 }})
	mux := asynq.NewServeMux()
	mux.HandleFunc("orphan", func(ctx context.Context, _ *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		mu.Lock()
		defer mu.Unlock()
		if id == "lost" && !ran[id] {
			close(done)
		}
		ran[id] = true
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the orphaned task was not run again within 20 s")
	}
	mu.Lock()
	defer mu.Unlock()
	if ran["leased"] || ran["mine"] {
		t.Errorf("tasks with a lease or worked on here ran again: %v", ran)
	}
}
