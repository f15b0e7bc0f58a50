package dispatcher

import (
	"context"
	"fmt"

	"github.com/digitalpost/postbud/dispatcher/event"
)

// Group commit of single letters (Config.GroupAccepts; package
// groupcommit). Letters accepted one at a time (POST /v1/events) by many
// requests at once are enqueued together: while one group's enqueue is on
// its way to Redis, the letters that arrive wait, and the first of them
// then enqueues them all as one group, as AcceptBatch enqueues a batch
// (one read of the processed marks, one TypeLetters task per lane of two
// or more letters). A letter that finds no enqueue on its way goes at
// once, alone, as Accept's own task: no letter waits for others to come,
// only for the enqueue before it. Urgent letters and other events never
// join a group. asynq's cost (its scripts and round trips, a task's
// memory) is then paid per group, not per letter.
//
// The answers stay Accept's. A group's task id cannot answer duplicate
// for each of its letters as Accept's own task id does, so once the
// group is enqueued its letters are marked queued (Store.Queue) before
// they are answered: a copy sent while the task waits finds the mark.

// acceptGrouped accepts a pseudonymised letter (batchable) in a group. A
// caller that gives up while its letter waits for the group before it
// leaves the group, not queued (answered unavailable); the group's own
// enqueue is bounded by groupcommit's timeout, not by its leading caller.
func (d *Dispatcher) acceptGrouped(ctx context.Context, ev *event.Event) (bool, error) {
	res := d.groups.Do(ctx, ev, func(ctx context.Context, evs []*event.Event) []Accepted {
		return d.acceptAll(ctx, evs, true)
	}, func(err error) Accepted {
		return Accepted{Err: fmt.Errorf("%w: enqueuing the letter's group: %w", ErrUnavailable, err)}
	})
	return res.Duplicate, res.Err
}
