// Package reaper gives asynq's recoverer back the tasks a Redis failover
// orphaned.
//
// asynq (v0.26) keeps a task it works on in two places: the queue's active
// list (asynq:{<queue>}:active) and, scored by the lease's expiry in Unix
// seconds, the lease ZSET (asynq:{<queue>}:lease). Its recoverer retries
// the tasks whose lease expired more than 30 s ago, so a task whose worker
// died is picked up again. A failover can promote a replica that holds a
// task in the active list but not its lease (the two are written by one
// script, but the replica may have missed a later ZADD, or a lease may be
// removed by a recoverer on the old primary whose other writes were lost).
// Such a task is invisible to the recoverer, and asynq's heartbeat only
// extends leases that exist (ZADD XX), so it stays active forever: asynq
// issue #1144.
//
// The reaper finds those tasks and gives each a lease that expires now
// (ZADD NX): a worker that is still on the task extends it at its next
// heartbeat (every 5 s, ZADD XX finds it now), and one that is gone lets it
// expire, so asynq's own recoverer retries it at its next pass (within
// 30 s + 1 min). Only one replica reaps per interval (a short Redis lock).
package reaper

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultInterval is how often Run reaps.
const DefaultInterval = 30 * time.Second

// Config configures a Reaper.
type Config struct {
	// Client is the Redis asynq uses.
	Client redis.UniversalClient
	// Queues are the asynq queue names to watch.
	Queues []string
	// LockKey is the key of the lock that keeps the replicas from reaping
	// at once, e.g. "pb:reaper".
	LockKey string
	// Interval between passes (default DefaultInterval); the lock is held
	// for most of it, so the replicas together reap about once an
	// interval.
	Interval time.Duration
	// WorkingFunc reports whether this process works on the task id now;
	// those are left alone. Nil: none.
	WorkingFunc func(id string) bool
	Logger      *slog.Logger
	// Now is the clock (default time.Now): the lease score.
	Now func() time.Time
}

// Reaper re-attaches expired leases to orphaned active tasks.
type Reaper struct {
	cfg   Config
	token string
}

// New returns a Reaper.
func New(cfg Config) *Reaper {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.WorkingFunc == nil {
		cfg.WorkingFunc = func(string) bool { return false }
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Reaper{cfg: cfg, token: hex.EncodeToString(b[:])}
}

// Run reaps every Interval until ctx ends.
func (r *Reaper) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := r.Reap(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.cfg.Logger.Warn("reaper: pass failed", "error", err)
		case n > 0:
			r.cfg.Logger.Warn("reaper: gave orphaned active tasks an expired lease; asynq's recoverer retries them", "tasks", n)
		}
	}
}

// Reap makes one pass if no other process holds the lock, and returns how
// many orphans it found.
func (r *Reaper) Reap(ctx context.Context) (int, error) {
	ok, err := r.cfg.Client.SetNX(ctx, r.cfg.LockKey, r.token, r.cfg.Interval*4/5).Result()
	if err != nil {
		return 0, fmt.Errorf("reaper lock: %w", err)
	}
	if !ok {
		return 0, nil
	}
	return r.reapAll(ctx)
}

func (r *Reaper) reapAll(ctx context.Context) (int, error) {
	total := 0
	score := r.cfg.Now().Unix()
	for _, q := range r.cfg.Queues {
		prefix := "asynq:{" + q + "}:"
		active, err := r.cfg.Client.LRange(ctx, prefix+"active", 0, -1).Result()
		if err != nil {
			return total, fmt.Errorf("reaper: queue %s: %w", q, err)
		}
		var skip []any
		for _, id := range active {
			if r.cfg.WorkingFunc(id) {
				skip = append(skip, id)
			}
		}
		if len(active) == len(skip) {
			continue
		}
		n, err := reapScript.Run(ctx, r.cfg.Client, []string{prefix + "active", prefix + "lease"},
			append([]any{score}, skip...)...).Int()
		if err != nil {
			return total, fmt.Errorf("reaper: queue %s: %w", q, err)
		}
		total += n
	}
	return total, nil
}

// reapScript gives every task of the active list that has no lease, and
// is not named in ARGV, a lease expiring at ARGV[1]; atomic, so a task
// that finished meanwhile (gone from the active list) gets none.
//
// KEYS[1] asynq:{<queue>}:active
// KEYS[2] asynq:{<queue>}:lease
// ARGV[1] the lease score (Unix seconds)
// ARGV[2:] ids this process works on
// Returns the number of leases added.
var reapScript = redis.NewScript(`
local skip = {}
for i = 2, #ARGV do skip[ARGV[i]] = true end
local n = 0
for _, id in ipairs(redis.call("LRANGE", KEYS[1], 0, -1)) do
	if not skip[id] and not redis.call("ZSCORE", KEYS[2], id) then
		n = n + redis.call("ZADD", KEYS[2], "NX", ARGV[1], id)
	end
end
return n`)
