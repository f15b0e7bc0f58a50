// Package groupcommit gathers calls made at the same moment into one
// commit: while one group's commit is on its way, the calls that come
// wait, and the first of them then commits them all as the next group. A
// call that finds no commit on its way commits at once, alone: no call
// waits for others to come, only for the commit before it. postbud uses
// it to enqueue single letters together (dispatcher's Accept,
// POSTBUD_GROUP_ACCEPTS; publish.Publish), so asynq's cost is paid per
// group rather than per letter.
package groupcommit

import (
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultTimeout bounds a commit when Group.Timeout is zero.
const DefaultTimeout = 10 * time.Second

var (
	errNoAnswer = errors.New("groupcommit: the group's commit gave no answer for this call")
	errPanicked = errors.New("groupcommit: the group's commit failed (panic)")
)

// Group gathers the calls of one kind. The zero Group is ready to use; it
// must not be copied after first use.
type Group[T, R any] struct {
	// Timeout bounds one commit (0: DefaultTimeout). A commit is not cut
	// short by its leading caller giving up, since the group's other
	// calls wait on it; this bounds it instead.
	Timeout time.Duration

	mu      sync.Mutex
	busy    bool          // a group's commit is on its way
	waiting []*call[T, R] // the calls that came meanwhile, in order
}

// call is one Do in a group.
type call[T, R any] struct {
	item  T
	ready chan struct{} // closed once answered, or to lead the next group
	lead  bool
	// answered and res are set by the group's lead before ready closes.
	answered bool
	res      R
}

// Do commits item with the calls made at the same moment and returns its
// result. commit gets the group's items, this call's first when it leads,
// and returns one result for each, in order, under a context of the
// leading call's values bounded by Timeout. fail makes the result of a
// call the commit did not answer: the caller's ctx ended while it waited
// (it then leaves the group, its item not committed), the commit
// answered fewer items than it got, or it panicked. A panic goes on in
// the leading call once the group's other calls are answered and the next
// group has its lead (net/http recovers a handler's panic: a lost
// hand-over would leave every later call waiting).
func (g *Group[T, R]) Do(ctx context.Context, item T, commit func(context.Context, []T) []R, fail func(error) R) R {
	c := &call[T, R]{item: item, ready: make(chan struct{})}
	g.mu.Lock()
	if g.busy {
		g.waiting = append(g.waiting, c)
		g.mu.Unlock()
		select {
		case <-c.ready:
		case <-ctx.Done():
			if g.leave(c) {
				return fail(ctx.Err())
			}
			// Already in a group, or leading the next: its answer is on
			// its way, within one commit's Timeout.
			<-c.ready
		}
	} else {
		g.busy, c.lead = true, true
		g.mu.Unlock()
	}
	if c.lead {
		g.commit(ctx, c, commit, fail)
	}
	return c.res
}

// leave takes a waiting call out of the next group, if it is still there.
func (g *Group[T, R]) leave(c *call[T, R]) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, w := range g.waiting {
		if w == c {
			g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
			return true
		}
	}
	return false
}

// commit commits lead's item with those of the calls waiting, answers
// them and hands the next group to the first call that came meanwhile.
func (g *Group[T, R]) commit(ctx context.Context, lead *call[T, R], commit func(context.Context, []T) []R, fail func(error) R) {
	g.mu.Lock()
	group := append([]*call[T, R]{lead}, g.waiting...)
	g.waiting = nil
	g.mu.Unlock()
	defer func() {
		p := recover()
		for _, c := range group[1:] {
			if !c.answered {
				c.res = fail(errPanicked)
				c.answer()
			}
		}
		g.handOff()
		if p != nil {
			panic(p)
		}
	}()
	items := make([]T, len(group))
	for i, c := range group {
		items[i] = c.item
	}
	timeout := g.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	results := commit(cctx, items)
	for i, c := range group {
		if i < len(results) {
			c.res = results[i]
		} else {
			c.res = fail(errNoAnswer)
		}
		if i > 0 {
			c.answer()
		}
	}
}

// answer hands a waiting call its result.
func (c *call[T, R]) answer() {
	c.answered = true
	close(c.ready)
}

// handOff makes the first call that came during a group's commit the lead
// of the next group, or ends the busy spell.
func (g *Group[T, R]) handOff() {
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

// Waiting returns how many calls wait for the commit on its way.
func (g *Group[T, R]) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting)
}
