// Package publish is for platforms that enqueue events straight into
// postbud's asynq queues with the Go client instead of calling the HTTP API.
// Events are validated here first, with the same rules and messages as the
// HTTP API, so a bad event is refused at the caller instead of archived.
//
//	p := publish.New(asynq.RedisClientOpt{Addr: "redis:6379"}, "postbud")
//	defer p.Close()
//	dup, err := p.Publish(ctx, eventJSON)
//
// The task carries the wire event, CPR included, until postbud first
// handles it; postbud keeps no completed task (no asynq retention).
package publish

import (
	"context"
	"errors"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Publisher enqueues events. It is safe for concurrent use.
type Publisher struct {
	client *asynq.Client
	queues dispatcher.Queues
}

// New returns a Publisher for postbud's Redis; queuePrefix is postbud's
// POSTBUD_QUEUE_PREFIX ("" for the default).
func New(r asynq.RedisConnOpt, queuePrefix string) *Publisher {
	return &Publisher{client: asynq.NewClient(r), queues: dispatcher.DefaultQueues(queuePrefix)}
}

// NewFromRedisClient returns a Publisher sharing an existing client, which
// Close leaves open.
func NewFromRedisClient(c redis.UniversalClient, queuePrefix string) *Publisher {
	return &Publisher{client: asynq.NewClientFromRedisClient(c), queues: dispatcher.DefaultQueues(queuePrefix)}
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

// Close closes the connection the Publisher made.
func (p *Publisher) Close() error { return p.client.Close() }
