package wake

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Flow tells whether tasks are flowing into a watched queue: whether a
// Client, on any replica, put one pending on it within the last
// FlowWindow (its flow key exists). It reads the key at most once per
// its interval, however many goroutines ask, and none waits for a read in
// progress (it gets the last answer); a read that fails keeps the last
// answer.
type Flow struct {
	rdb   redis.UniversalClient
	key   string
	every time.Duration

	mu      sync.Mutex
	at      time.Time // of the last read; zero: never read
	on      bool
	reading bool
}

// FlowRead is how often a replica reads whether a queue flows (the
// daemon's and the benchmark's Flow): batch tasks start yielding within it
// of the first urgent-lane enqueue, and stop within it of the flow key's
// expiry.
const FlowRead = 100 * time.Millisecond

// NewFlow returns the Flow of queue q, reading its flow key at most once
// per every.
func NewFlow(rdb redis.UniversalClient, q string, every time.Duration) *Flow {
	return &Flow{rdb: rdb, key: FlowKey(q), every: every}
}

// On reports whether the queue is flowing, as of at most the interval
// ago (or of the read in progress's start).
func (f *Flow) On(ctx context.Context) bool {
	f.mu.Lock()
	if f.reading || (!f.at.IsZero() && time.Since(f.at) < f.every) {
		on := f.on
		f.mu.Unlock()
		return on
	}
	f.reading = true
	f.mu.Unlock()
	n, err := f.rdb.Exists(ctx, f.key).Result()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reading, f.at = false, time.Now()
	if err == nil {
		f.on = n == 1
	}
	return f.on
}
