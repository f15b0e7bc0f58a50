package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels"
)

// Limiter is a send-rate limit per channel shared by every replica (GCRA in
// Redis, github.com/go-redis/redis_rate): an SMS gateway that takes only
// so many messages a second takes that many from all of postbud.
type Limiter struct {
	l      *redis_rate.Limiter
	prefix string
	limits map[channels.Name]redis_rate.Limit
}

// NewLimiter limits the channels in perSecond (sends per second; a channel
// not listed, or 0, is unlimited).
func NewLimiter(rdb redis.UniversalClient, prefix string, perSecond map[channels.Name]int) *Limiter {
	l := &Limiter{l: redis_rate.NewLimiter(rdb), prefix: prefix, limits: map[channels.Name]redis_rate.Limit{}}
	for ch, n := range perSecond {
		if n > 0 {
			l.limits[ch] = redis_rate.PerSecond(n)
		}
	}
	return l
}

// Reserve takes one send from the channel's rate; when none is left it
// returns how long to wait before trying again.
func (l *Limiter) Reserve(ctx context.Context, ch channels.Name) (time.Duration, error) {
	limit, ok := l.limits[ch]
	if !ok {
		return 0, nil
	}
	res, err := l.l.Allow(ctx, l.prefix+":send:"+string(ch), limit)
	if err != nil {
		return 0, fmt.Errorf("rate limit %s: %w", ch, err)
	}
	if res.Allowed > 0 {
		return 0, nil
	}
	return max(res.RetryAfter, time.Millisecond), nil
}

// Pacer is a rate of letters shared by every replica (GCRA in Redis, as
// Limiter's): while urgent letters flow, the batch tasks of all of
// postbud together process at most its rate (dispatcher.Config.Yield), so
// the Redis time a release's drain takes meanwhile does not grow with the
// replicas that drain it.
type Pacer struct {
	l     *redis_rate.Limiter
	key   string
	limit redis_rate.Limit
}

// NewPacer returns the Pacer of perSecond letters, at most burst at once.
func NewPacer(rdb redis.UniversalClient, prefix string, perSecond, burst int) *Pacer {
	return &Pacer{l: redis_rate.NewLimiter(rdb), key: prefix + ":yield",
		limit: redis_rate.Limit{Rate: perSecond, Burst: burst, Period: time.Second}}
}

// WaitN returns once n more letters (at most the burst) may be processed,
// or with ctx's error, or Redis's.
func (p *Pacer) WaitN(ctx context.Context, n int) error {
	if n > p.limit.Burst {
		// GCRA would never allow it: refused, not waited for.
		return fmt.Errorf("yield pace: %d letters at once, more than its burst of %d", n, p.limit.Burst)
	}
	for {
		res, err := p.l.AllowN(ctx, p.key, p.limit, n)
		if err != nil {
			return fmt.Errorf("yield pace: %w", err)
		}
		if res.Allowed > 0 {
			return nil
		}
		t := time.NewTimer(max(res.RetryAfter, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
