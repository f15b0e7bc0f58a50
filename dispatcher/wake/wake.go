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
//   - Enqueuer wraps the asynq client: after a task is enqueued pending on a
//     watched queue, it pushes a wake-up token on the queue's wake list
//     (Key: LPUSH, LTRIM to a few tokens, PEXPIRE).
//   - Client wraps the go-redis client given to the asynq server: when
//     asynq's dequeue script finds a watched queue empty, Client waits for a
//     token (BLPOP, at most the configured wait) and then runs the same
//     dequeue script once more before answering asynq. The task is still
//     taken by asynq's own script, lease and all; only the empty answer
//     comes later.
//
// A token wakes one waiting server. A lost token (a replica that died
// between its enqueue and its LPUSH, a failover) costs latency, never a
// task: the server's wait ends within the configured wait and asynq polls
// as before. A stale token (its task taken by a busy server) costs one
// empty dequeue. While a server waits, asynq holds one of its worker
// slots' tokens as it does while it sleeps, and shutdown waits for the
// wait to end (at most the configured wait).
package wake

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
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

// Kick pushes a wake-up token for queue q. Its error only delays the
// task (an idle server finds it at its next poll); callers ignore it.
func Kick(ctx context.Context, rdb redis.Cmdable, q string) error {
	k := Key(q)
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, k, "1")
		p.LTrim(ctx, k, 0, tokens-1)
		p.PExpire(ctx, k, tokenTTL)
		return nil
	})
	return err
}

// Enqueuer is an asynq client that kicks the wake list of a watched queue
// after each task it enqueues there pending (a scheduled task is moved to
// pending by asynq's forwarder, which a server's poll finds).
type Enqueuer struct {
	client  *asynq.Client
	rdb     redis.Cmdable
	watched map[string]bool
}

// NewEnqueuer wraps client, kicking through rdb (the client's Redis; nil:
// never) for the queues given.
func NewEnqueuer(client *asynq.Client, rdb redis.Cmdable, queues ...string) *Enqueuer {
	w := map[string]bool{}
	for _, q := range queues {
		w[q] = true
	}
	return &Enqueuer{client: client, rdb: rdb, watched: w}
}

// EnqueueContext enqueues t as asynq.Client does, then kicks its queue's
// wake list if it is watched and t is pending.
func (e *Enqueuer) EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	info, err := e.client.EnqueueContext(ctx, t, opts...)
	if err == nil && e.rdb != nil && info.State == asynq.TaskStatePending && e.watched[info.Queue] {
		_ = Kick(ctx, e.rdb, info.Queue) // only latency rides on it (package doc)
	}
	return info, err
}

// Client is the go-redis client to give an asynq server whose empty
// dequeues of the watched queues wait for a wake-up token (package doc).
// Every other command goes to the wrapped client unchanged.
type Client struct {
	redis.UniversalClient
	wait    time.Duration
	timeout string            // wait in seconds, BLPOP's form
	pending map[string]string // asynq pending list → its queue's wake list
	paused  map[string]string // asynq pending list → its queue's paused key
}

// NewClient wraps rdb for an asynq server working queues; wait bounds one
// wait for a token (at least 1 ms; the server's shutdown may take as
// long).
func NewClient(rdb redis.UniversalClient, wait time.Duration, queues ...string) *Client {
	c := &Client{UniversalClient: rdb, wait: max(wait, time.Millisecond),
		pending: map[string]string{}, paused: map[string]string{}}
	c.timeout = strconv.FormatFloat(c.wait.Seconds(), 'f', 3, 64)
	for _, q := range queues {
		p := "asynq:{" + q + "}:pending" // asynq's key names (its base package is internal)
		c.pending[p], c.paused[p] = Key(q), "asynq:{"+q+"}:paused"
	}
	return c
}

// EvalSha runs a script by its hash; asynq's dequeue script, finding a
// watched queue empty, answers after a wake-up token or the wait.
func (c *Client) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	cmd := c.UniversalClient.EvalSha(ctx, sha1, keys, args...)
	if c.woken(ctx, cmd, keys) {
		return c.UniversalClient.EvalSha(ctx, sha1, keys, args...)
	}
	return cmd
}

// Eval is EvalSha for a script sent whole (go-redis falls back to it when
// Redis has not loaded the script yet).
func (c *Client) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	cmd := c.UniversalClient.Eval(ctx, script, keys, args...)
	if c.woken(ctx, cmd, keys) {
		return c.UniversalClient.Eval(ctx, script, keys, args...)
	}
	return cmd
}

// woken reports whether cmd was asynq's dequeue of a watched queue that
// found it empty and a wake-up token came within the wait: the dequeue is
// then worth running again. An error of the wait (a failover, a closed
// client) is no token: asynq polls as before.
func (c *Client) woken(ctx context.Context, cmd *redis.Cmd, keys []string) bool {
	if len(keys) != 4 || !errors.Is(cmd.Err(), redis.Nil) {
		return false
	}
	wk, ok := c.pending[keys[0]]
	if !ok || keys[1] != c.paused[keys[0]] {
		return false
	}
	err := c.UniversalClient.Do(ctx, "BLPOP", wk, c.timeout).Err()
	return err == nil
}
