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

// acceptGrouped accepts a pseudonymised letter (batchable) in a group.
// The group's enqueue is not cut short by its leading caller giving up:
// the group's other letters are waiting on it.
func (d *Dispatcher) acceptGrouped(ctx context.Context, ev *event.Event) (bool, error) {
	res := d.groups.Do(ev, func(evs []*event.Event) []Accepted {
		return d.acceptAll(context.WithoutCancel(ctx), evs, true)
	}, Accepted{Err: fmt.Errorf("%w: enqueuing the letter's group failed", ErrUnavailable)})
	return res.Duplicate, res.Err
}
