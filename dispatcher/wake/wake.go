// Package wake lets an asynq server start a task enqueued while it is idle
// without polling Redis every few milliseconds.
//
// asynq's fetch loop, finding its queues empty, sleeps for its poll
// interval and has no wake-up call: an idle server's latency is its poll
// interval, and a short interval is paid in Redis CPU (one dequeue script
// call per poll) whether tasks come or not. Package wake turns the empty
// dequeue into a long poll without forking asynq and without a second
// consumer:
//
//   - Client wraps the go-redis client given to asynq (its client and its
//     server). When asynq's enqueue script puts a task pending on a watched
//     queue, Client sends a wake-up token for the queue's wake list in the
//     same pipeline, right after it (Key: LPUSH, LTRIM to a few tokens,
//     PEXPIRE): no round trip of its own.
//   - When asynq's dequeue script finds a watched queue empty, Client waits
//     for a token (BLPOP, at most the configured wait) and then runs the
//     same dequeue script once more before answering asynq. The task is
//     still taken by asynq's own script, lease and all; only the empty
//     answer comes later.
//
// Client also marks a watched queue as flowing (FlowKey, in the same
// pipeline as the token): a flow key that lives FlowWindow after each
// enqueue. Flow reads it, so that work of lower priority (a bulk release's
// batch tasks) can yield Redis to the queue's tasks while they come.
//
// A token wakes one waiting server. A lost token (a connection that broke
// after the enqueue script ran, a failover, a task enqueued by a client
// without this wrapper) costs latency, never a task: the server's wait ends within the configured wait and asynq polls
// as before. A stale token (its task taken by a busy server) costs one
// empty dequeue, and the wait goes on. While a server waits, asynq holds one of its worker
// slots' tokens as it does while it sleeps, and shutdown waits for the
// wait to end (at most the configured wait).
package wake

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// tokens is the most wake-up tokens a queue's wake list keeps: enough to
// wake several idle replicas at once, few enough that stale ones after a
// burst cost little.
const tokens = 16

// tokenTTL drops the tokens of a queue no server waits on.
const tokenTTL = time.Minute

// Key is the wake list of asynq queue q, in the queue's hash slot.
func Key(q string) string { return "asynq:{" + q + "}:postbud-wake" }

// FlowKey is the flow key of asynq queue q (in the queue's hash slot): it
// exists while a task was put pending on q within the last FlowWindow.
func FlowKey(q string) string { return "asynq:{" + q + "}:postbud-flow" }

// FlowWindow is how long after a watched queue's last enqueue its flow
// key lives: one enqueue a second keeps the queue flowing.
const FlowWindow = time.Second

// kick queues a wake-up token for wake list k and the flow key f on p.
func kick(ctx context.Context, p redis.Pipeliner, k, f string) {
	p.LPush(ctx, k, "1")
	p.LTrim(ctx, k, 0, tokens-1)
	p.PExpire(ctx, k, tokenTTL)
	p.Set(ctx, f, "1", FlowWindow)
}

// Client is the go-redis client to give asynq: its enqueues of a task
// pending on a watched queue push a wake-up token, and its server's empty
// dequeues of a watched queue wait for one (package doc). Every other
// command goes to the wrapped client unchanged.
type Client struct {
	redis.UniversalClient
	wait    time.Duration
	pending map[string]string // asynq pending list → its queue's wake list
	flow    map[string]string // asynq pending list → its queue's flow key
	paused  map[string]string // asynq pending list → its queue's paused key
	task    map[string]string // asynq pending list → its queue's task key prefix
}

// NewClient wraps rdb for asynq, watching queues; wait bounds one wait of
// a server for a token (at least 1 ms; the server's shutdown may take as
// long; an asynq client never waits).
func NewClient(rdb redis.UniversalClient, wait time.Duration, queues ...string) *Client {
	c := &Client{UniversalClient: rdb, wait: max(wait, time.Millisecond),
		pending: map[string]string{}, flow: map[string]string{}, paused: map[string]string{}, task: map[string]string{}}
	for _, q := range queues {
		p := "asynq:{" + q + "}:pending" // asynq's key names (its base package is internal)
		c.pending[p], c.flow[p], c.paused[p], c.task[p] = Key(q), FlowKey(q), "asynq:{"+q+"}:paused", "asynq:{"+q+"}:t:"
	}
	return c
}

// EvalSha runs a script by its hash; asynq's dequeue script, finding a
// watched queue empty, answers after a wake-up token or the wait.
func (c *Client) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	if c.enqueue(keys) {
		return c.kicking(ctx, keys[1], func(p redis.Pipeliner) *redis.Cmd { return p.EvalSha(ctx, sha1, keys, args...) })
	}
	cmd := c.UniversalClient.EvalSha(ctx, sha1, keys, args...)
	return c.dequeued(ctx, cmd, keys, func() *redis.Cmd { return c.UniversalClient.EvalSha(ctx, sha1, keys, args...) })
}

// Eval is EvalSha for a script sent whole (go-redis falls back to it when
// Redis has not loaded the script yet).
func (c *Client) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	if c.enqueue(keys) {
		return c.kicking(ctx, keys[1], func(p redis.Pipeliner) *redis.Cmd { return p.Eval(ctx, script, keys, args...) })
	}
	cmd := c.UniversalClient.Eval(ctx, script, keys, args...)
	return c.dequeued(ctx, cmd, keys, func() *redis.Cmd { return c.UniversalClient.Eval(ctx, script, keys, args...) })
}

// enqueue reports whether keys are those of asynq's enqueue script
// putting a task pending on a watched queue (KEYS: the task's hash, the
// queue's pending list).
func (c *Client) enqueue(keys []string) bool {
	if len(keys) != 2 {
		return false
	}
	_, ok := c.pending[keys[1]]
	return ok && strings.HasPrefix(keys[0], c.task[keys[1]])
}

// kicking runs the script call run builds and, in the same pipeline right
// after it, pushes a token on the wake list of the queue whose pending
// list is pending and marks the queue flowing. The token goes even when
// the script enqueued nothing (a task id already taken): a stale token
// costs one empty dequeue. The kick's own errors only delay a task.
func (c *Client) kicking(ctx context.Context, pending string, run func(p redis.Pipeliner) *redis.Cmd) *redis.Cmd {
	var cmd *redis.Cmd
	_, _ = c.UniversalClient.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmd = run(p)
		kick(ctx, p, c.pending[pending], c.flow[pending])
		return nil
	})
	return cmd
}

// dequeued is the answer to give asynq for cmd. When cmd was asynq's
// dequeue of a watched queue that found it empty, it waits for a wake-up
// token and, given one, runs the dequeue again (again), until a run brings
// a task or the wait ends; every other cmd is the answer as it is. A
// token that brings no task (stale, or pushed in the same pipeline as an
// enqueue script Redis had not loaded yet, before the script ran again
// whole) does not end the wait. An error of the wait (a failover, a closed
// client) ends it: asynq polls as before.
func (c *Client) dequeued(ctx context.Context, cmd *redis.Cmd, keys []string, again func() *redis.Cmd) *redis.Cmd {
	if len(keys) != 4 || !errors.Is(cmd.Err(), redis.Nil) {
		return cmd
	}
	wk, ok := c.pending[keys[0]]
	if !ok || keys[1] != c.paused[keys[0]] {
		return cmd
	}
	deadline := time.Now().Add(c.wait)
	for {
		left := time.Until(deadline)
		if left < time.Millisecond { // BLPOP's 0 would wait for ever
			return cmd
		}
		if err := c.UniversalClient.Do(ctx, "BLPOP", wk, strconv.FormatFloat(left.Seconds(), 'f', 3, 64)).Err(); err != nil {
			return cmd // no token within the wait (redis.Nil), or an error
		}
		if cmd = again(); !errors.Is(cmd.Err(), redis.Nil) {
			return cmd // a task, or an error for asynq
		}
	}
}
