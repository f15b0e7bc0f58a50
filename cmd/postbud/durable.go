package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/dispatcher/redisstore"
)

// workingSet is the task ids this process works on now; the orphan
// reaper leaves them alone.
type workingSet struct {
	mu  sync.Mutex
	ids map[string]int
}

func (w *workingSet) add(id string) {
	w.mu.Lock()
	w.ids[id]++
	w.mu.Unlock()
}

func (w *workingSet) remove(id string) {
	w.mu.Lock()
	if w.ids[id]--; w.ids[id] <= 0 {
		delete(w.ids, id)
	}
	w.mu.Unlock()
}

func (w *workingSet) has(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ids[id] > 0
}

// taskMiddleware notes the tasks in work and, with wait, holds a task that
// succeeded until its writes are on enough Redis replicas, before asynq
// marks it done: a failover after that cannot lose the outcome and re-run
// the task blindly. A task whose writes did not replicate in time fails and
// is retried; its done marks make the re-run skip what was sent.
func taskMiddleware(working *workingSet, replicas *redisstore.Replicas, wait bool) asynq.MiddlewareFunc {
	return func(h asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			id, _ := asynq.GetTaskID(ctx)
			working.add(id)
			defer working.remove(id)
			if err := h.ProcessTask(ctx, t); err != nil || !wait {
				return err
			}
			if err := replicas.WaitReplicas(ctx); err != nil {
				return fmt.Errorf("task outcome not on enough Redis replicas: %w", err)
			}
			return nil
		})
	}
}
