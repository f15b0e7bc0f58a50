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
package publish

import (
	"context"
	"errors"
	"slices"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/wake"
)

// Publisher enqueues events. It is safe for concurrent use.
type Publisher struct {
	client *asynq.Client
	rdb    redis.UniversalClient
	own    bool // Close closes rdb
	queues dispatcher.Queues
}

// New returns a Publisher for postbud's Redis; queuePrefix is postbud's
// POSTBUD_QUEUE_PREFIX ("" for the default).
func New(r asynq.RedisConnOpt, queuePrefix string) *Publisher {
	c, ok := r.MakeRedisClient().(redis.UniversalClient)
	if !ok { // asynq's own options all make one; another enqueues unkicked
		client := asynq.NewClient(r)
		return &Publisher{client: client, own: true, queues: dispatcher.DefaultQueues(queuePrefix)}
	}
	p := NewFromRedisClient(c, queuePrefix)
	p.own = true
	return p
}

// NewFromRedisClient returns a Publisher sharing an existing client, which
// Close leaves open.
func NewFromRedisClient(c redis.UniversalClient, queuePrefix string) *Publisher {
	q := dispatcher.DefaultQueues(queuePrefix)
	// An urgent event wakes an idle postbud urgent server at once
	// (POSTBUD_URGENT_WAKE_WAIT) instead of at its next poll: its token
	// goes in the enqueue's round trip.
	client := asynq.NewClientFromRedisClient(wake.NewClient(c, 0, q.Urgent))
	return &Publisher{client: client, rdb: c, queues: q}
}

// Publish validates one event in the wire form of contract v1 and enqueues
// it. A *event.ValidationError names every bad field, or the field a
// source may not set (a platform changing another platform's consent:
// event.Forbidden). Every event type of the contract is taken, the
// consent events (consent.granted, consent.revoked) too. duplicate is true
// when an event with the same id is still queued.
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
	type key struct{ source, cpr, id string }
	first := map[key]bool{}
	var single []int
	lanes := map[string][]int{}
	var order []string
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
		k := key{string(ev.Source), ev.Citizen().Digits(), ev.ID}
		if first[k] {
			out[i].Duplicate = true
			continue
		}
		first[k], evs[i] = true, ev
		if ev.Message == nil || ev.Message.Priority == event.Urgent {
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
			cr, ce := make([][]byte, n), make([]*event.Event, n)
			for j, i := range chunk {
				cr[j], ce[j] = raws[i], evs[i]
			}
			t, err := dispatcher.NewInboundLettersTask(cr, ce, p.queues)
			enqueue(chunk, t, err)
		}
	}
	return out
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
