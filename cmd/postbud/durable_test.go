package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestTaskMiddleware: a task that succeeded is done only once its writes
// are on the required replicas (the test Redis has none: it fails, so
// asynq retries it), a failed task keeps its own error, and the task is in
// the working set while it runs.
func TestTaskMiddleware(t *testing.T) {
	env := redistest.New(t)
	if env.Embedded {
		t.Skip("WAIT needs a real Redis")
	}
	replicas := redisstore.NewReplicas(env.Client, env.Prefix, 1, 20*time.Millisecond)
	t.Cleanup(func() { replicas.Close() })
	working := &workingSet{ids: map[string]int{}}
	var sawWorking bool
	ok := asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		sawWorking = working.has("")
		return nil
	})
	boom := errors.New("boom")
	failing := asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return boom })
	task := asynq.NewTask("t", nil)
	ctx := context.Background()

	if err := taskMiddleware(working, replicas, true)(ok).ProcessTask(ctx, task); !errors.Is(err, redisstore.ErrNotReplicated) {
		t.Errorf("a task whose writes are on no replica = %v, want ErrNotReplicated (not done)", err)
	}
	if !sawWorking || working.has("") {
		t.Errorf("working set: during the task %v, after %v; want true, false", sawWorking, working.has(""))
	}
	if err := taskMiddleware(working, replicas, true)(failing).ProcessTask(ctx, task); !errors.Is(err, boom) {
		t.Errorf("a failed task = %v, want its own error", err)
	}
	if err := taskMiddleware(working, replicas, false)(ok).ProcessTask(ctx, task); err != nil {
		t.Errorf("without POSTBUD_ACK_REPLICAS = %v, want nil", err)
	}
}
