package main

import (
	"context"
	"fmt"
	"time"
)

// Scenario is one selectable fault schedule.
type Scenario struct {
	Name string
	// Letters is the default number of letters (-n overrides).
	Letters int
	// Sentinel runs Redis as primary + replica + three sentinels.
	Sentinel bool
	// Target is the scenario's own target, applied over the flags'.
	Target func(Target) Target
	// Faults injects the faults while the letters are driven (for drive,
	// the time the letters take at -rate) and returns how many it injected.
	Faults func(ctx context.Context, h *Harness, drive time.Duration) (int, error)
}

// scenarios are the selectable scenarios, by name.
var scenarios = map[string]Scenario{
	"kill9": {Name: "kill9", Letters: 2000, Faults: func(ctx context.Context, h *Harness, drive time.Duration) (int, error) {
		return h.every(ctx, drive, h.kill9)
	}},
	"sigterm": {Name: "sigterm", Letters: 2000, Target: func(t Target) Target { t.MaxDupRaw = 0; return t },
		Faults: func(ctx context.Context, h *Harness, drive time.Duration) (int, error) {
			return h.every(ctx, drive, h.sigterm)
		}},
	"redis-restart": {Name: "redis-restart", Letters: 2000, Faults: func(ctx context.Context, h *Harness, drive time.Duration) (int, error) {
		return h.at(ctx, []time.Duration{drive / 3}, func(ctx context.Context) error { return h.redis.restartPrimary(ctx, 3*time.Second) })
	}},
	"failover": {Name: "failover", Letters: 2000, Sentinel: true, Faults: func(ctx context.Context, h *Harness, drive time.Duration) (int, error) {
		return h.at(ctx, []time.Duration{drive / 4}, func(ctx context.Context) error { return h.redis.failover(ctx, 5*time.Second) })
	}},
	"switchover": {Name: "switchover", Letters: 2000, Sentinel: true, Faults: func(ctx context.Context, h *Harness, drive time.Duration) (int, error) {
		return h.at(ctx, []time.Duration{drive / 4, drive * 2 / 3}, h.redis.switchover)
	}},
	"provider-5xx": {Name: "provider-5xx", Letters: 2000, Faults: func(ctx context.Context, h *Harness, drive time.Duration) (int, error) {
		return h.burst(ctx, drive/10, Mode5xx)
	}},
	"provider-429": {Name: "provider-429", Letters: 2000, Faults: func(ctx context.Context, h *Harness, drive time.Duration) (int, error) {
		return h.burst(ctx, drive/10, Mode429)
	}},
	"provider-hang": {Name: "provider-hang", Letters: 2000, Faults: func(ctx context.Context, h *Harness, drive time.Duration) (int, error) {
		return h.burst(ctx, drive/10, ModeHang)
	}},
	// small is the quick mix CI can run: a few kills, one Redis restart
	// (back before the sentinels notice) and one failover.
	"small": {Name: "small", Letters: 1000, Sentinel: true, Faults: func(ctx context.Context, h *Harness, drive time.Duration) (int, error) {
		n, err := h.at(ctx, []time.Duration{drive / 8, drive * 2 / 8, drive * 3 / 8}, h.kill9)
		if err != nil {
			return n, err
		}
		m, err := h.at(ctx, []time.Duration{drive / 2}, func(ctx context.Context) error {
			p, err := h.redis.primary(ctx)
			if err != nil {
				return err
			}
			if err := p.proc.Kill9(); err != nil {
				return err
			}
			pause(ctx, 500*time.Millisecond)
			if err := p.proc.Start(); err != nil {
				return err
			}
			return waitPing(ctx, p.addr())
		})
		n += m
		if err != nil {
			return n, err
		}
		// Let the sentinels settle on the restarted primary first.
		m, err = h.at(ctx, []time.Duration{drive * 3 / 4}, func(ctx context.Context) error {
			if err := h.redis.waitSynced(ctx); err != nil {
				return err
			}
			return h.redis.failover(ctx, 5*time.Second)
		})
		return n + m, err
	}},
}

// every runs fault every -every from the start for as long as drive lasts.
func (h *Harness) every(ctx context.Context, drive time.Duration, fault func(context.Context) error) (int, error) {
	var at []time.Duration
	for t := h.opts.every; t < drive; t += h.opts.every {
		at = append(at, t)
	}
	return h.at(ctx, at, fault)
}

// at runs fault at each offset from now (one after the other: a fault
// that takes long pushes the next back).
func (h *Harness) at(ctx context.Context, offsets []time.Duration, fault func(context.Context) error) (int, error) {
	start := time.Now()
	n := 0
	for _, off := range offsets {
		select {
		case <-ctx.Done():
			return n, nil
		case <-time.After(time.Until(start.Add(off))):
		}
		n++
		if err := fault(ctx); err != nil {
			return n, fmt.Errorf("fault %d: %w", n, err)
		}
	}
	return n, nil
}

// burst switches the providers to mode after delay, for -burst.
func (h *Harness) burst(ctx context.Context, delay time.Duration, mode Mode) (int, error) {
	select {
	case <-ctx.Done():
		return 0, nil
	case <-time.After(delay):
	}
	h.fakes.SetMode(mode)
	defer h.fakes.SetMode(ModeOK)
	select {
	case <-ctx.Done():
	case <-time.After(h.opts.burst):
	}
	return 1, nil
}
