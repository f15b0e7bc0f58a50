// Package publish is for platforms that enqueue events straight into
// postbud's asynq queues with the Go client instead of calling the HTTP API.
// Events are validated here first, with the same rules and messages as the
// HTTP API, so a bad event is refused at the caller instead of archived.
//
//	p := publish.New(asynq.RedisClientOpt{Addr: "redis:6379"}, "postbud")
//	defer p.Close()
//	dup, err := p.Publish(ctx, eventJSON)
//	results := p.PublishBatch(ctx, eventsJSON) // one answer per event
//
// The task carries the wire event, CPR included, until postbud first
// handles it; postbud keeps no completed task (no asynq retention).
//
// Letters that are not urgent, published one at a time by calls made at
// the same moment, share a task (package groupcommit), as PublishBatch's
// do: asynq's Redis cost is paid per group. A call that finds no enqueue
// on its way goes at once, alone. Each is marked queued once its task is
// in Redis, so a copy published while it waits is answered duplicate as
// for a letter in a task of its own. Ungrouped turns this off.
package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/groupcommit"
	"github.com/digitalpost/postbud/dispatcher/wake"
)

// Publisher enqueues events. It is safe for concurrent use.
type Publisher struct {
	client *asynq.Client
	rdb    redis.UniversalClient
	own    bool // Close closes rdb
	queues dispatcher.Queues
	// group gathers Publish's letters (nil: Ungrouped, or no rdb to keep
	// their queued marks in).
	group *groupcommit.Group[published, Result]
	log   *slog.Logger
}

// published is one Publish call's letter.
type published struct {
	raw []byte
	ev  *event.Event
}

// Option changes a Publisher.
type Option func(*Publisher)

// Ungrouped gives each letter Publish takes a task of its own, as
// before grouping (each then costs Redis an asynq task).
func Ungrouped() Option { return func(p *Publisher) { p.group = nil } }

// Logger is where the Publisher warns of what it cannot tell its
// callers (a queued mark not written: copies of those letters are then
// answered accepted, not duplicate); slog.Default() if not given.
func Logger(l *slog.Logger) Option { return func(p *Publisher) { p.log = l } }

// New returns a Publisher for postbud's Redis; queuePrefix is postbud's
// POSTBUD_QUEUE_PREFIX ("" for the default).
func New(r asynq.RedisConnOpt, queuePrefix string, opts ...Option) *Publisher {
	c, ok := r.MakeRedisClient().(redis.UniversalClient)
	if !ok { // asynq's own options all make one; another enqueues unkicked
		client := asynq.NewClient(r)
		return &Publisher{client: client, own: true, queues: dispatcher.DefaultQueues(queuePrefix)}
	}
	p := NewFromRedisClient(c, queuePrefix, opts...)
	p.own = true
	return p
}

// NewFromRedisClient returns a Publisher sharing an existing client, which
// Close leaves open.
func NewFromRedisClient(c redis.UniversalClient, queuePrefix string, opts ...Option) *Publisher {
	q := dispatcher.DefaultQueues(queuePrefix)
	// An urgent event wakes an idle postbud urgent server at once
	// (POSTBUD_URGENT_WAKE_WAIT) instead of at its next poll: its token
	// goes in the enqueue's round trip.
	client := asynq.NewClientFromRedisClient(wake.NewClient(c, 0, q.Urgent))
	p := &Publisher{client: client, rdb: c, queues: q, group: &groupcommit.Group[published, Result]{}, log: slog.Default()}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Publish validates one event in the wire form of contract v1 and enqueues
// it. A *event.ValidationError names every bad field, or the field a
// source may not set (a platform changing another platform's consent:
// event.Forbidden). Every event type of the contract is taken, the
// consent events (consent.granted, consent.revoked) too. duplicate is true
// when an event with the same id is still queued. A letter that is not
// urgent may share its task with letters published at the same moment
// (Ungrouped).
func (p *Publisher) Publish(ctx context.Context, raw []byte) (duplicate bool, err error) {
	ev, err := event.Parse(raw)
	if err != nil {
		return false, err
	}
	if f := ev.Forbidden(); f != nil {
		// postbud would reject it (a platform may change only its own
		// consent): refused here, as the HTTP API answers 403.
		return false, &event.ValidationError{Errors: []event.FieldError{*f}}
	}
	if p.group != nil && dispatcher.SharesTask(ev) {
		// A caller that gives up while its letter waits for the group
		// before it leaves the group (not queued); the group's own enqueue
		// is bounded by groupcommit's timeout, not by its leading caller.
		r := p.group.Do(ctx, published{raw, ev}, p.publishGroup, func(err error) Result {
			return Result{Err: fmt.Errorf("publish: enqueuing the letter's group: %w", err)}
		})
		return r.Duplicate, r.Err
	}
	t := dispatcher.NewInboundTask(raw, ev, p.queues)
	_, err = p.client.EnqueueContext(ctx, t)
	if errors.Is(err, asynq.ErrTaskIDConflict) || errors.Is(err, asynq.ErrDuplicateTask) {
		return true, nil
	}
	return false, err
}

// Result is PublishBatch's answer for one event.
type Result struct {
	// Duplicate: an event with the same id is still queued (or came
	// earlier in the batch).
	Duplicate bool
	// Err is a *event.ValidationError for an invalid event, or the error
	// of the enqueue.
	Err error
}

// PublishBatch validates each event alone (a forbidden one refused as
// Publish refuses it) and enqueues the valid ones in a few tasks: letters
// that are not urgent in tasks of up to dispatcher.DefaultBatchSize
// letters of one lane (TypeInboundLetters), every other event in a task of
// its own, urgent letters first. Each event gets its own Result, in order.
func (p *Publisher) PublishBatch(ctx context.Context, raws [][]byte) []Result {
	out := make([]Result, len(raws))
	evs := make([]*event.Event, len(raws))
	for i, raw := range raws {
		ev, err := event.Parse(raw)
		if err != nil {
			out[i].Err = err
			continue
		}
		if f := ev.Forbidden(); f != nil { // as Publish refuses it
			out[i].Err = &event.ValidationError{Errors: []event.FieldError{*f}}
			continue
		}
		evs[i] = ev
	}
	p.publishAll(ctx, raws, evs, out, false)
	return out
}

// publishGroup enqueues the letters of Publish calls made at once as
// PublishBatch enqueues a batch's, and marks them queued: a copy
// published while their task waits is then answered duplicate. The marks
// are read first (one round trip) and written once the tasks are in
// Redis, never before (a mark whose task failed would answer a letter
// that is nowhere duplicate).
func (p *Publisher) publishGroup(ctx context.Context, ls []published) []Result {
	out := make([]Result, len(ls))
	raws, evs := make([][]byte, len(ls)), make([]*event.Event, len(ls))
	for i, l := range ls {
		raws[i], evs[i] = l.raw, l.ev
	}
	p.publishAll(ctx, raws, evs, out, true)
	return out
}

// queuedKey is the queued mark of a grouped letter, in its lane's asynq
// key space (its Redis Cluster slot): named by the id its own task would
// have had (a hash; no CPR number, no event id in clear).
func (p *Publisher) queuedKey(ev *event.Event) string {
	return "asynq:{" + p.queues.For(ev.Message.Priority) + "}:postbud-q:" +
		dispatcher.EventTaskID(string(ev.Source), ev.Citizen().Digits(), ev.ID)
}

// queuedMarks reads the letters' queued marks (false for other events).
func (p *Publisher) queuedMarks(ctx context.Context, evs []*event.Event) ([]bool, error) {
	cmds := make([]*redis.IntCmd, len(evs))
	_, err := p.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, ev := range evs {
			if ev != nil && dispatcher.SharesTask(ev) {
				cmds[i] = pl.Exists(ctx, p.queuedKey(ev))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("publish: reading queued marks: %w", err)
	}
	marked := make([]bool, len(evs))
	for i, c := range cmds {
		marked[i] = c != nil && c.Val() == 1
	}
	return marked, nil
}

// markQueued marks the letters enqueued (not refused, not duplicates).
// Should it fail the letters are queued all the same and answered so;
// only a copy published meanwhile is answered accepted too (and is
// processed once).
func (p *Publisher) markQueued(ctx context.Context, evs []*event.Event, out []Result) {
	n := 0
	_, err := p.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, ev := range evs {
			if ev != nil && dispatcher.SharesTask(ev) && out[i].Err == nil && !out[i].Duplicate {
				pl.Set(ctx, p.queuedKey(ev), "1", dispatcher.QueuedTTL)
				n++
			}
		}
		return nil
	})
	if err != nil {
		p.log.WarnContext(ctx, "publish: marking published letters queued failed: a copy sent while they wait is answered accepted", "letters", n, "error", err)
	}
}

// publishAll enqueues the parsed events (nil: refused, out has its
// answer): letters that are not urgent in tasks of up to
// dispatcher.DefaultBatchSize letters of one lane, every other event and
// a lane's lone letter in a task of its own, urgent letters first. mark
// makes it read and write the letters' queued marks (publishGroup).
func (p *Publisher) publishAll(ctx context.Context, raws [][]byte, evs []*event.Event, out []Result, mark bool) {
	type key struct{ source, cpr, id string }
	first := map[key]bool{}
	var single []int
	lanes := map[string][]int{}
	var order []string
	var marked []bool
	if mark {
		var err error
		if marked, err = p.queuedMarks(ctx, evs); err != nil {
			for i := range out {
				out[i].Err = err
			}
			return
		}
	}
	for i, ev := range evs {
		if ev == nil {
			continue
		}
		k := key{string(ev.Source), ev.Citizen().Digits(), ev.ID}
		if first[k] || (marked != nil && marked[i]) {
			out[i].Duplicate = true
			continue
		}
		first[k], evs[i] = true, ev
		if !dispatcher.SharesTask(ev) {
			single = append(single, i)
			continue
		}
		q := p.queues.For(ev.Message.Priority) + "|" + string(ev.Source)
		if _, ok := lanes[q]; !ok {
			order = append(order, q)
		}
		lanes[q] = append(lanes[q], i)
	}
	enqueue := func(idx []int, t *asynq.Task, err error) {
		if err == nil {
			_, err = p.client.EnqueueContext(ctx, t)
		}
		dup := errors.Is(err, asynq.ErrTaskIDConflict) || errors.Is(err, asynq.ErrDuplicateTask)
		for _, i := range idx {
			if dup {
				out[i].Duplicate = true
			} else {
				out[i].Err = err
			}
		}
	}
	slices.SortStableFunc(single, func(a, b int) int {
		return urgent(evs[b]) - urgent(evs[a])
	})
	for _, i := range single {
		enqueue([]int{i}, dispatcher.NewInboundTask(raws[i], evs[i], p.queues), nil)
	}
	for _, q := range order {
		idx := lanes[q]
		for len(idx) > 0 {
			n := min(len(idx), dispatcher.DefaultBatchSize)
			chunk := idx[:n]
			idx = idx[n:]
			if n == 1 { // alone: its own task, as Publish makes it
				enqueue(chunk, dispatcher.NewInboundTask(raws[chunk[0]], evs[chunk[0]], p.queues), nil)
				continue
			}
			cr, ce := make([][]byte, n), make([]*event.Event, n)
			for j, i := range chunk {
				cr[j], ce[j] = raws[i], evs[i]
			}
			t, err := dispatcher.NewInboundLettersTask(cr, ce, p.queues)
			enqueue(chunk, t, err)
		}
	}
	if mark {
		p.markQueued(ctx, evs, out)
	}
}

func urgent(ev *event.Event) int {
	if ev.Message != nil && ev.Message.Priority == event.Urgent {
		return 1
	}
	return 0
}

// Close closes the connection the Publisher made (none when it shares a
// client).
func (p *Publisher) Close() error {
	if !p.own {
		return nil
	}
	if p.rdb == nil {
		return p.client.Close()
	}
	return p.rdb.Close()
}
