package dispatcher

import (
	"context"
	"fmt"
	"sync"

	"github.com/digitalpost/postbud/dispatcher/event"
)

// Group commit of single letters (Config.GroupAccepts). Letters accepted
// one at a time (POST /v1/events) by many requests at once are enqueued
// together: while one group's enqueue is on its way to Redis, the letters
// that arrive wait, and the first of them then enqueues them all as one
// group, as AcceptBatch enqueues a batch (one read of the processed
// marks, one TypeLetters task per lane of two or more letters). A letter
// that finds no enqueue on its way goes at once, alone, as Accept's own
// task: no letter waits for others to come, only for the enqueue before
// it. Urgent letters and other events never join a group. asynq's cost
// (its scripts and round trips, a task's memory) is then paid per group,
// not per letter.
//
// The answers stay Accept's. A group's task id cannot answer duplicate
// for each of its letters as Accept's own task id does, so once the
// group is enqueued its letters are marked queued (Store.Queue) before
// they are answered: a copy sent while the task waits finds the mark.

// acceptGroups gathers the letters of Accept calls made at once.
type acceptGroups struct {
	mu      sync.Mutex
	busy    bool             // a group's enqueue is on its way
	waiting []*groupedAccept // the letters that came meanwhile, in order
}

// groupedAccept is one Accept call's letter in a group.
type groupedAccept struct {
	ev    *event.Event
	ready chan struct{} // closed once answered, or to lead the next group
	lead  bool
	// answered and res are set by the group's lead before ready closes.
	answered bool
	res      Accepted
}

// acceptGrouped accepts a pseudonymised letter (batchable) in a group.
func (d *Dispatcher) acceptGrouped(ctx context.Context, ev *event.Event) (bool, error) {
	a := &groupedAccept{ev: ev, ready: make(chan struct{})}
	g := &d.groups
	g.mu.Lock()
	if g.busy {
		g.waiting = append(g.waiting, a)
		g.mu.Unlock()
		<-a.ready
	} else {
		g.busy, a.lead = true, true
		g.mu.Unlock()
	}
	if a.lead {
		d.commitGroup(ctx, a)
	}
	return a.res.Duplicate, a.res.Err
}

// commitGroup enqueues lead's letter with all those waiting (acceptAll
// cuts them into tasks of up to BatchSize letters), answers them, and
// hands the next group to the first letter that came meanwhile. The
// enqueue is not cut short by lead's caller giving up: the group's other
// letters are waiting on it. Should the enqueue panic, the letters that
// wait are answered unavailable and the next group still gets its lead
// before the panic goes on (net/http recovers a handler's panic: a lost
// hand-over would hang every later letter).
func (d *Dispatcher) commitGroup(ctx context.Context, lead *groupedAccept) {
	g := &d.groups
	g.mu.Lock()
	group := append([]*groupedAccept{lead}, g.waiting...)
	g.waiting = nil
	g.mu.Unlock()
	defer func() {
		p := recover()
		for _, a := range group[1:] {
			if !a.answered {
				a.res.Err = fmt.Errorf("%w: enqueuing the letter's group failed", ErrUnavailable)
				a.answer()
			}
		}
		g.handOff()
		if p != nil {
			panic(p)
		}
	}()
	evs := make([]*event.Event, len(group))
	for i, a := range group {
		evs[i] = a.ev
	}
	for i, res := range d.acceptAll(context.WithoutCancel(ctx), evs, true) {
		group[i].res = res
		if i > 0 {
			group[i].answer()
		}
	}
}

// answer hands a waiting letter its result.
func (a *groupedAccept) answer() {
	a.answered = true
	close(a.ready)
}

// handOff makes the first letter that came during a group's enqueue the
// lead of the next group, or ends the busy spell.
func (g *acceptGroups) handOff() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.waiting) == 0 {
		g.busy = false
		return
	}
	next := g.waiting[0]
	g.waiting = g.waiting[1:]
	next.lead = true
	close(next.ready)
}
