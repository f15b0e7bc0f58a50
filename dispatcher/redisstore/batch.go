package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
)

// Group commit. The dispatcher's hot path makes two store calls per letter,
// from many workers at once. Each call's commands are queued on a batcher
// that sends whatever has gathered as one pipeline: at low load a call goes
// out alone at once (no added wait), under load a few dozen calls share one
// round trip. Redis time per call is then mostly the commands themselves,
// not the reading and writing of a request each.

// op is one store call's commands.
type op struct {
	ctx   context.Context
	build func(p redis.Pipeliner) []redis.Cmder
	cmds  []redis.Cmder
	done  chan struct{}
}

// DefaultLinger is how long a batcher under load waits for more calls.
const DefaultLinger = 300 * time.Microsecond

const (
	maxBatch    = 64
	batchers    = 1
	execTimeout = 10 * time.Second
)

func (s *Store) startBatchers() {
	s.ops = make(chan *op, 1024)
	s.stop = make(chan struct{})
	for range batchers {
		s.wg.Go(s.batcher)
	}
}

// Close stops the batchers. Calls made after Close fail.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
	return nil
}

var errClosed = errors.New("redisstore: closed")

// BatchStats returns how many store calls went to Redis in how many
// pipelines since the store started.
func (s *Store) BatchStats() (calls, roundTrips int64) { return s.nOps.Load(), s.nBatches.Load() }

func (s *Store) batcher() {
	batch := make([]*op, 0, maxBatch)
	for {
		select {
		case <-s.stop:
			return
		case o := <-s.ops:
			batch = append(batch[:0], o)
		}
		// Under load, linger a moment for more calls: a round trip saved
		// is Redis time saved. When the previous batch was a single call
		// (low load) there is no wait at all.
		var linger <-chan time.Time
		if s.busy {
			linger = time.After(s.linger)
		}
	more:
		for len(batch) < maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			case <-linger:
				break more
			default:
				if linger == nil {
					break more
				}
				select {
				case o := <-s.ops:
					batch = append(batch, o)
				case <-linger:
					break more
				}
			}
		}
		s.busy = len(batch) > 1
		s.flush(batch)
	}
}

func (s *Store) flush(batch []*op) {
	live := batch[:0:0]
	for _, o := range batch {
		if o.ctx.Err() == nil {
			live = append(live, o)
		} else {
			close(o.done)
		}
	}
	if len(live) == 0 {
		return
	}
	s.nBatches.Add(1)
	s.nOps.Add(int64(len(live)))
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, o := range live {
			o.cmds = o.build(p)
		}
		return nil
	})
	for _, o := range live {
		close(o.done)
	}
}

// do runs build's commands in the next batch and returns them once
// executed. A script Redis has lost (after a restart: NOSCRIPT) is loaded
// and the call run again on its own.
//
// While a Sentinel failover is under way (Options.Fence closed) the call
// waits; one that was running when the failover began reports
// dispatcher.ErrTransient (ErrFenced), as its writes may be on the old
// primary only: the caller writes again once the fence opens.
func (s *Store) do(ctx context.Context, build func(p redis.Pipeliner) []redis.Cmder) ([]redis.Cmder, error) {
	return s.doN(ctx, 1, build)
}

// ownPipeline is the size (store calls' worth: letters of a LookupAll or
// WriteAll) from which a call is a pipeline of its own: it has nothing to
// gain from the group commit, and the batcher's one pipeline at a time
// would make the batch calls of many workers wait for each other.
const ownPipeline = 8

// doN is do for a call worth n single calls (a batch of letters), fenced
// like do.
func (s *Store) doN(ctx context.Context, n int, build func(p redis.Pipeliner) []redis.Cmder) ([]redis.Cmder, error) {
	if err := s.o.Fence.Wait(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w (%w)", dispatcher.ErrTransient, ErrFenced, err)
	}
	tok := s.o.Fence.Token()
	cmds, err := s.run(ctx, n, build)
	if s.o.Fence.Broken(tok) {
		return cmds, fmt.Errorf("%w: %w", dispatcher.ErrTransient, ErrFenced)
	}
	return cmds, err
}

// run sends a call's commands: a large call (n ≥ ownPipeline) or an
// urgent one (dispatcher.WithUrgent) as a pipeline of its own at once, any
// other through the batcher.
func (s *Store) run(ctx context.Context, n int, build func(p redis.Pipeliner) []redis.Cmder) ([]redis.Cmder, error) {
	if n >= ownPipeline || dispatcher.Urgent(ctx) {
		var cmds []redis.Cmder
		_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			cmds = build(p)
			return nil
		})
		s.nBatches.Add(1)
		s.nOps.Add(int64(n))
		return s.done(ctx, cmds, build)
	}
	o := &op{ctx: ctx, build: build, done: make(chan struct{})}
	select {
	case s.ops <- o:
	case <-s.stop:
		return nil, errClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-o.done:
	case <-s.stop:
		// Closed with the call queued: nobody will run it (a caller
		// without a deadline would wait forever).
		return nil, errClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if o.cmds == nil {
		return nil, ctx.Err()
	}
	return s.done(ctx, o.cmds, build)
}

// done returns a call's executed commands, or their first error; a script
// Redis has lost (NOSCRIPT) is loaded and the call run again on its own.
//
// The call runs again whole, in order: its commands after a failed script
// call ran meanwhile, and running only the failed ones would apply them
// out of order (an arrival's in-flight mark over a done mark of the same
// call). Every command of a call must therefore be safe to run twice, as
// it should be anyway: go-redis runs a whole pipeline again when its
// connection fails before the replies are in. Trail entries are appended
// with an id (trailEntry), so an entry appended twice is read once.
func (s *Store) done(ctx context.Context, cmds []redis.Cmder, build func(p redis.Pipeliner) []redis.Cmder) ([]redis.Cmder, error) {
	if err := firstErr(cmds); err != nil {
		if !redis.HasErrorPrefix(err, "NOSCRIPT") {
			return cmds, classify(err)
		}
		if err := s.LoadScripts(ctx); err != nil {
			return nil, classify(err)
		}
		cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			build(p)
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return cmds, classify(err)
		}
		return cmds, nil
	}
	return cmds, nil
}

// LoadScripts loads every script of the store into Redis (on every shard
// of a cluster client). Call it once at start, best effort: a call whose
// script Redis lacks meets NOSCRIPT and runs again whole (done), which
// each call must survive, but need not pay for on a fresh Redis.
func (s *Store) LoadScripts(ctx context.Context) error {
	for _, sc := range allScripts {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return fmt.Errorf("load scripts: %w", err)
		}
	}
	return nil
}

// classify wraps an error that may pass on a later call with
// dispatcher.ErrTransient: Redis loading its data set, a read-only replica
// or a master going down during a failover, a cluster resharding, a
// refused or reset connection, an I/O timeout.
func classify(err error) error {
	if err == nil || errors.Is(err, dispatcher.ErrTransient) {
		return err
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("%w: %w", dispatcher.ErrTransient, err)
	}
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY"} {
		if redis.HasErrorPrefix(err, p) {
			return fmt.Errorf("%w: %w", dispatcher.ErrTransient, err)
		}
	}
	return err
}

func firstErr(cmds []redis.Cmder) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}
