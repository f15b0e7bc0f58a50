package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// uniqueHandler drops an attribute whose key the line already has (from
// a logger's With or earlier in the same call): strict log pipelines
// refuse JSON objects with duplicate keys. The first value wins.
type uniqueHandler struct {
	next    slog.Handler
	keys    map[string]bool // keys added by WithAttrs, outside any group
	grouped bool            // WithGroup was called: keys are in a new namespace
}

func (h *uniqueHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *uniqueHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.grouped {
		return h.next.Handle(ctx, r)
	}
	seen := map[string]bool{}
	dup := false
	r.Attrs(func(a slog.Attr) bool {
		if h.keys[a.Key] || seen[a.Key] {
			dup = true
		}
		seen[a.Key] = true
		return true
	})
	if !dup {
		return h.next.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	seen = map[string]bool{}
	r.Attrs(func(a slog.Attr) bool {
		if !h.keys[a.Key] && !seen[a.Key] {
			out.AddAttrs(a)
		}
		seen[a.Key] = true
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *uniqueHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if h.grouped {
		return &uniqueHandler{next: h.next.WithAttrs(as), grouped: true}
	}
	keys := make(map[string]bool, len(h.keys)+len(as))
	for k := range h.keys {
		keys[k] = true
	}
	var keep []slog.Attr
	for _, a := range as {
		if !keys[a.Key] {
			keep = append(keep, a)
		}
		keys[a.Key] = true
	}
	return &uniqueHandler{next: h.next.WithAttrs(keep), keys: keys}
}

func (h *uniqueHandler) WithGroup(name string) slog.Handler {
	return &uniqueHandler{next: h.next.WithGroup(name), grouped: true}
}

// repeatHandler rate-limits repeated identical lines (a Redis outage makes
// asynq and go-redis say the same thing every second per replica): the
// first line of a (level, message, error) passes; identical ones within
// every following interval are counted, and the first after it passes
// with "repeated", the number held back.
type repeatHandler struct {
	next     slog.Handler
	interval time.Duration
	now      func() time.Time
	state    *repeatState
}

type repeatState struct {
	mu   sync.Mutex
	last map[string]*repeatEntry
}

type repeatEntry struct {
	at   time.Time
	held int
}

// repeatIntervalOverride, when positive, replaces the interval given to
// newRepeatHandler: an end-to-end test sets it so that an outage outlasts
// the window in seconds rather than minutes. Zero in production.
var repeatIntervalOverride atomic.Int64

func newRepeatHandler(next slog.Handler, interval time.Duration) *repeatHandler {
	if d := repeatIntervalOverride.Load(); d > 0 {
		interval = time.Duration(d)
	}
	return &repeatHandler{next: next, interval: interval, now: time.Now,
		state: &repeatState{last: map[string]*repeatEntry{}}}
}

func (h *repeatHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *repeatHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	var errText string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			errText = a.Value.String()
			return false
		}
		return true
	})
	key := r.Level.String() + "\x00" + r.Message + "\x00" + errText
	now := h.now()
	h.state.mu.Lock()
	e := h.state.last[key]
	if e != nil && now.Sub(e.at) < h.interval {
		e.held++
		h.state.mu.Unlock()
		return nil
	}
	held := 0
	if e != nil {
		held = e.held
	}
	if len(h.state.last) > 1000 { // bounded: forget all rather than grow
		clear(h.state.last)
	}
	h.state.last[key] = &repeatEntry{at: now}
	h.state.mu.Unlock()
	if held > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("repeated", held))
	}
	return h.next.Handle(ctx, r)
}

func (h *repeatHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &repeatHandler{next: h.next.WithAttrs(as), interval: h.interval, now: h.now, state: h.state}
}

func (h *repeatHandler) WithGroup(name string) slog.Handler {
	return &repeatHandler{next: h.next.WithGroup(name), interval: h.interval, now: h.now, state: h.state}
}

// redisLog is go-redis's logger: its lines go to the current daemon's
// slog logger as warnings of component redis. go-redis has one global
// logger, so the target is swapped atomically when a daemon starts.
var redisLog = struct {
	once   sync.Once
	target atomic.Pointer[slog.Logger]
}{}

type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if l := redisLog.target.Load(); l != nil {
		l.WarnContext(ctx, fmt.Sprintf(format, v...))
	}
}

// useRedisLogger sends go-redis's log lines to log.
func useRedisLogger(log *slog.Logger) {
	redisLog.target.Store(log.With("component", "redis"))
	redisLog.once.Do(func() { redis.SetLogger(redisLogger{}) })
}
