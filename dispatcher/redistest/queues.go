package redistest

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// QueuesIdle reports whether the asynq queues hold no pending, active,
// scheduled or retry task, read at one instant: one MULTI over asynq's
// keys of every queue (a queue that never had a task has none of them).
// Read one queue after the other, as asynq's Inspector does, a running
// task could enqueue a follow-up into a queue already read and finish
// before its own queue was read, and the queues would look idle with the
// follow-up waiting. An error is no answer: the caller asks again.
func (e *Env) QueuesIdle(ctx context.Context, queues ...string) (bool, error) {
	var counts []*redis.IntCmd
	_, err := e.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, q := range queues {
			k := "asynq:{" + q + "}:"
			counts = append(counts, p.LLen(ctx, k+"pending"), p.LLen(ctx, k+"active"),
				p.ZCard(ctx, k+"scheduled"), p.ZCard(ctx, k+"retry"))
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	for _, c := range counts {
		if c.Val() > 0 {
			return false, nil
		}
	}
	return true, nil
}
