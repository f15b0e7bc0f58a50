package dispatcher

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// A yielder takes a turn whole while urgent letters do not flow and in
// parts of at most YieldTurn, each within its rate, while they do: with
// one letter a second, a part taken at once empties the rate's bucket and
// the next one cannot be had within a tenth of a second.
func TestYielderTakesPartsWithinItsRateWhileUrgentLettersFlow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	flowing := false
	y := &yielder{flowing: func(context.Context) bool { return flowing }, pace: rate.NewLimiter(1, YieldTurn)}

	for range 3 {
		if n, err := y.take(ctx, log, 200); n != 200 || err != nil {
			t.Fatalf("not flowing: took %d of 200 (%v), want all of them", n, err)
		}
	}
	flowing = true
	if n, err := y.take(ctx, log, 200); n != YieldTurn || err != nil {
		t.Fatalf("flowing: took %d of 200 (%v), want %d", n, err, YieldTurn)
	}
	soon, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if n, err := y.take(soon, log, 200); err == nil {
		t.Errorf("flowing: took %d more at once at 1 letter a second, want to wait (an error within 100 ms)", n)
	}
	flowing = false
	if n, err := y.take(ctx, log, 200); n != 200 || err != nil {
		t.Errorf("flowing again not: took %d of 200 (%v), want all of them", n, err)
	}
}

// A yielder without a flow signal never yields.
func TestYielderWithoutFlowNeverYields(t *testing.T) {
	t.Parallel()
	y := &yielder{pace: rate.NewLimiter(1, YieldTurn)}
	for range 3 {
		if n, err := y.take(context.Background(), slog.New(slog.DiscardHandler), 500); n != 500 || err != nil {
			t.Fatalf("took %d of 500 (%v), want all of them", n, err)
		}
	}
}
