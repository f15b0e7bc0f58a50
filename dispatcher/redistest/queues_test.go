package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestQueuesIdle: a task pending, scheduled, in retry or active makes the
// queues busy; asynq's key names are what QueuesIdle reads (were they to
// change, every queue would look idle and tests would count too early).
func TestQueuesIdle(t *testing.T) {
	env := redistest.New(t)
	ctx := context.Background()
	urgent, normal := env.QueuePrefix+".urgent", env.QueuePrefix+".normal"
	idle := func() bool {
		t.Helper()
		ok, err := env.QueuesIdle(ctx, urgent, normal)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !idle() {
		t.Fatal("queues that never had a task: not idle")
	}
	client := asynq.NewClientFromRedisClient(env.Client)
	insp := asynq.NewInspectorFromRedisClient(env.Client)
	if _, err := client.Enqueue(asynq.NewTask("t", nil), asynq.Queue(normal), asynq.TaskID("p")); err != nil {
		t.Fatal(err)
	}
	if idle() {
		t.Error("a pending task: idle")
	}
	if err := insp.DeleteTask(normal, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Enqueue(asynq.NewTask("t", nil), asynq.Queue(urgent), asynq.ProcessIn(time.Hour), asynq.TaskID("s")); err != nil {
		t.Fatal(err)
	}
	if idle() {
		t.Error("a scheduled task: idle")
	}
	if err := insp.DeleteTask(urgent, "s"); err != nil {
		t.Fatal(err)
	}
	if !idle() {
		t.Fatal("after the tasks were deleted: not idle")
	}
	// Active, then retry: a worker takes the task and fails it.
	taken, failed := make(chan struct{}), make(chan struct{})
	srv := asynq.NewServerFromRedisClient(env.Client, asynq.Config{Queues: map[string]int{normal: 1},
		TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.FatalLevel,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour }})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		close(taken)
		<-failed
		return context.Canceled
	})); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if _, err := client.Enqueue(asynq.NewTask("t", nil), asynq.Queue(normal), asynq.TaskID("a")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-taken:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker never took the task")
	}
	if idle() {
		t.Error("an active task: idle")
	}
	close(failed)
	var info *asynq.TaskInfo
	var err error
	if !redistest.Within(30*time.Second, func() bool {
		info, err = insp.GetTaskInfo(normal, "a")
		return err == nil && info.State == asynq.TaskStateRetry
	}) {
		t.Fatalf("the failed task never went to retry: %v, %v", info, err)
	}
	if idle() {
		t.Error("a task in retry: idle")
	}
}
