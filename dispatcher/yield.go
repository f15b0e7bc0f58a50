package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// Batch tasks yield Redis to urgent letters. Redis serves its clients one
// command at a time: while a release drains at full speed (≈ two thirds
// of a Redis core on the reference machine), every round trip of an
// urgent letter queues behind the batch tasks' pipelines and transactions,
// and its latency grows several-fold (README, runs 33–37). While urgent
// letters flow (Config.UrgentFlowing: wake.Flow, one enqueued within the
// last second), batch tasks take their letters in parts of at most
// YieldTurn, each part when a rate of YieldRate letters a second allows
// it: the drain's Redis work comes in short pieces with idle time between
// them, where an urgent letter's commands find Redis free. When no urgent
// letter has come for a second, the drain goes at full speed again.

// DefaultYieldRate is the most letters a second one Dispatcher's batch
// tasks process while urgent letters flow, unless configured
// (POSTBUD_BATCH_YIELD_RATE).
const DefaultYieldRate = 5000

// YieldTurn is the most letters a batch task takes at once while urgent
// letters flow: a part's longest Redis command (its transaction of
// arrivals) stays short.
const YieldTurn = 25

// yielder paces batch tasks while urgent letters flow.
type yielder struct {
	flowing  func(context.Context) bool
	pace     Pacer
	yielding atomic.Bool // as last seen, for the log line when it changes
}

// take returns how many of a turn's next n letters a batch task processes
// now: all of them, unless urgent letters flow; then at most YieldTurn,
// once the pace allows them. It gives up when ctx ends (a shutdown: the
// task runs again later) or the pace fails (Redis: the task runs again).
func (y *yielder) take(ctx context.Context, log *slog.Logger, n int) (int, error) {
	on := y.flowing != nil && y.flowing(ctx)
	if on != y.yielding.Swap(on) {
		if on {
			log.InfoContext(ctx, "urgent letters are flowing: batch tasks yield", "part", YieldTurn)
		} else {
			log.InfoContext(ctx, "no urgent letter for a second: batch tasks at full speed")
		}
	}
	if !on {
		return n, nil
	}
	n = min(n, YieldTurn)
	if err := y.pace.WaitN(ctx, n); err != nil {
		return 0, fmt.Errorf("yielding to urgent letters: %w", err)
	}
	return n, nil
}
