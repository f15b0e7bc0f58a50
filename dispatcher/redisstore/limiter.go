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

// Pacer is a rate of letters shared by every replica: while the urgent
// lane's tasks flow, the batch tasks of all of postbud together process
// at most its rate (dispatcher.Config.YieldPace), so the Redis time a
// release's drain takes meanwhile does not grow with the replicas that
// drain it. Each WaitN reserves its letters' time in one script call
// (paceScript) and sleeps until then: one round trip a part, however many
// tasks wait, and parts go in the order they asked.
type Pacer struct {
	rdb   redis.UniversalClient
	key   string
	per   int64 // µs a letter
	burst int
}

// NewPacer returns the Pacer of perSecond letters (at least 1), at most
// burst at once after a pause.
func NewPacer(rdb redis.UniversalClient, prefix string, perSecond, burst int) *Pacer {
	return &Pacer{rdb: rdb, key: prefix + ":yield", per: max(1, int64(time.Second/time.Microsecond)/int64(max(1, perSecond))), burst: burst}
}

// paceScript reserves the time of ARGV[2] letters on a pace of ARGV[1] µs
// a letter that lets ARGV[3] letters go at once after a pause (GCRA with
// reservations): the letters' time is taken whether they wait or not.
//
// KEYS[1] the pace: when the letters reserved so far are all through (µs
// of Redis TIME)
// Returns how many µs to wait before the letters may go (0: at once).
var paceScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local per = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local done = tat + per * tonumber(ARGV[2])
local wait = done - per * tonumber(ARGV[3]) - now
if wait < 0 then wait = 0 end
redis.call('SET', KEYS[1], string.format('%d', done), 'PX', math.floor((done - now) / 1000) + 1)
return wait
`)

// WaitN reserves n letters' time and returns once it has come, or with
// ctx's error (at once when ctx's deadline comes first: the time is not
// given back), or Redis's.
func (p *Pacer) WaitN(ctx context.Context, n int) error {
	wait, err := paceScript.Run(ctx, p.rdb, []string{p.key}, p.per, n, p.burst).Int64()
	if err != nil {
		return fmt.Errorf("yield pace: %w", err)
	}
	if wait <= 0 {
		return nil
	}
	d := time.Duration(wait) * time.Microsecond
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return fmt.Errorf("yield pace: a wait of %v would pass the deadline: %w", d, context.DeadlineExceeded)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
