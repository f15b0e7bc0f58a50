// Package groupcommit gathers calls made at the same moment into one
// commit: while one group's commit is on its way, the calls that come
// wait, and the first of them then commits them all as the next group. A
// call that finds no commit on its way commits at once, alone: no call
// waits for others to come, only for the commit before it. postbud uses
// it to enqueue single letters together (dispatcher's Accept,
// POSTBUD_GROUP_ACCEPTS; publish.Publish), so asynq's cost is paid per
// group rather than per letter.
package groupcommit

import "sync"

// Group gathers the calls of one kind. The zero Group is ready to use; it
// must not be copied after first use.
type Group[T, R any] struct {
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
// and returns one result for each, in order. Should commit panic, the
// group's other calls get failed, the next group still gets its lead, and
// the panic goes on in the leading call (net/http recovers a handler's
// panic: a lost hand-over would leave every later call waiting).
func (g *Group[T, R]) Do(item T, commit func([]T) []R, failed R) R {
	c := &call[T, R]{item: item, ready: make(chan struct{})}
	g.mu.Lock()
	if g.busy {
		g.waiting = append(g.waiting, c)
		g.mu.Unlock()
		<-c.ready
	} else {
		g.busy, c.lead = true, true
		g.mu.Unlock()
	}
	if c.lead {
		g.commit(c, commit, failed)
	}
	return c.res
}

// commit commits lead's item with those of the calls waiting, answers
// them and hands the next group to the first call that came meanwhile.
func (g *Group[T, R]) commit(lead *call[T, R], commit func([]T) []R, failed R) {
	g.mu.Lock()
	group := append([]*call[T, R]{lead}, g.waiting...)
	g.waiting = nil
	g.mu.Unlock()
	defer func() {
		p := recover()
		for _, c := range group[1:] {
			if !c.answered {
				c.res = failed
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
	for i, r := range commit(items) {
		group[i].res = r
		if i > 0 {
			group[i].answer()
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
