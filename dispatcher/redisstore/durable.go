package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
)

// Acknowledged means durable. Redis replicates asynchronously: a write the
// primary answered can be lost when the primary dies before a replica has
// it, and a Sentinel failover then promotes a replica without it. WAIT n t
// blocks until n replicas have acknowledged the replication offset of the
// calling connection's last write. asynq enqueues on connections of its
// own, so a caller cannot WAIT for "its" enqueue directly; instead Replicas
// writes one tiny key and WAITs on the same connection. That write comes
// after every write the callers finished before they asked, so once it is
// on n replicas, theirs are too (one primary, one replication stream).
//
// Group commit: every caller that asks while no WAIT is in flight shares
// the next one, so the cost under load is one INCR and one WAIT per round
// trip, not per event.

// ErrNotReplicated is returned when fewer replicas than required
// acknowledged within the timeout.
var ErrNotReplicated = errors.New("redisstore: not enough replicas acknowledged the write")

// Replicas waits for writes to reach a number of Redis replicas.
type Replicas struct {
	rdb     redis.UniversalClient
	key     string
	n       int
	timeout time.Duration

	fence *Fence

	reqs      chan chan error
	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	rounds    atomic.Int64 // WAITs sent
}

// NewReplicas returns a Replicas that waits for n replicas, at most
// timeout per round; it writes the key prefix+":ack". timeout must stay
// below the client's read timeout (go-redis: 3 s), as the WAIT shares a
// pipeline with its write. Close stops it.
func NewReplicas(rdb redis.UniversalClient, prefix string, n int, timeout time.Duration) *Replicas {
	if prefix == "" {
		prefix = "pb"
	}
	r := &Replicas{rdb: rdb, key: prefix + ":ack", n: n, timeout: timeout,
		reqs: make(chan chan error, 1024), stop: make(chan struct{})}
	r.wg.Go(r.loop)
	return r
}

// UseFence makes WaitReplicas fail while a Sentinel failover is under
// way; call it before the first wait.
func (r *Replicas) UseFence(f *Fence) { r.fence = f }

// WaitReplicas returns nil once every write this process finished before
// the call is on the required number of replicas; ErrNotReplicated when
// they did not acknowledge in time, or Redis's error. With a fence (see
// UseFence) it also fails, with dispatcher.ErrTransient and ErrFenced,
// when a Sentinel failover was under way at any moment of the call: the
// replica that acknowledged may be attached to a primary that is being
// replaced (during a planned failover the old primary keeps its other
// replicas for about a second after the new one was promoted).
func (r *Replicas) WaitReplicas(ctx context.Context) error {
	if r.n <= 0 {
		return nil
	}
	tok := r.fence.Token()
	err := r.wait(ctx)
	if err == nil && r.fence.Broken(tok) {
		return fmt.Errorf("wait for replicas: %w: %w", dispatcher.ErrTransient, ErrFenced)
	}
	return err
}

func (r *Replicas) wait(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case r.reqs <- done:
	case <-r.stop:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the loop; waits asked after Close fail.
func (r *Replicas) Close() error {
	r.closeOnce.Do(func() { close(r.stop) })
	r.wg.Wait()
	return nil
}

// Rounds returns how many WAITs were sent.
func (r *Replicas) Rounds() int64 { return r.rounds.Load() }

func (r *Replicas) loop() {
	var group []chan error
	for {
		select {
		case <-r.stop:
			return
		case w := <-r.reqs:
			group = append(group[:0], w)
		}
		// Everyone who asked before the write goes out shares it.
	more:
		for {
			select {
			case w := <-r.reqs:
				group = append(group, w)
			default:
				break more
			}
		}
		err := r.round()
		for _, w := range group {
			w <- err
		}
	}
}

// round writes the ack key and WAITs, both on one connection: a go-redis
// pipeline runs on a single connection taken from the pool (a fresh one
// after a failover, where a kept go-redis Conn would stay on the old
// primary).
func (r *Replicas) round() error {
	r.rounds.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout+2*time.Second)
	defer cancel()
	var wait *redis.Cmd
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, r.key)
		wait = p.Do(ctx, "WAIT", r.n, r.timeout.Milliseconds())
		return nil
	})
	if err != nil {
		return fmt.Errorf("wait for replicas: %w", err)
	}
	if got, _ := wait.Int64(); got < int64(r.n) {
		return fmt.Errorf("%w: %d of %d within %s", ErrNotReplicated, got, r.n, r.timeout)
	}
	return nil
}
