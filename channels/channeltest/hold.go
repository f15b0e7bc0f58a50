package channeltest

import (
	"context"
	"time"
)

// Hold is how a protocol fake holds a request it was told to stall or
// delay: it waits until stall is closed (if not nil), then for delay, and
// reports whether the request should still be answered — false when the
// client gave up (ctx) or the fake is closing (done).
func Hold(ctx context.Context, stall <-chan struct{}, delay time.Duration, done <-chan struct{}) bool {
	if stall != nil {
		select {
		case <-stall:
		case <-ctx.Done():
			return false
		case <-done:
			return false
		}
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		case <-done:
			return false
		}
	}
	return ctx.Err() == nil
}
