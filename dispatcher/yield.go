package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// Batch tasks yield Redis to the urgent lane. Redis serves its clients
// one command at a time: while a release drains at full speed (≈ two
// thirds of a Redis core on the reference machine), every round trip of
// an urgent letter queues behind the batch tasks' pipelines and
// transactions, and its latency grows several-fold (README, runs 33–37).
// While the urgent lane's tasks flow (Config.UrgentFlowing: wake.Flow,
// one enqueued within the last second: an urgent letter, a read and its
// sync, a badge, a confirmation code), batch tasks take their letters in
// parts of at most YieldTurn, each when the pace (Config.YieldPace, a rate
// shared by every replica) allows it: the drain's Redis work comes in
// short pieces with idle time between them, where an urgent task's
// commands find Redis free. With no urgent-lane task for a second the
// drain goes at full speed again.

// DefaultYieldRate is the most letters a second batch tasks process while
// the urgent lane's tasks flow (POSTBUD_BATCH_YIELD_RATE's default, shared
// by every replica; a Dispatcher without Config.YieldPace paces its own
// at this rate).
const DefaultYieldRate = 5000

// YieldTurn is the most letters a batch task takes at once while the
// urgent lane's tasks flow: a part's longest Redis command (its
// transaction of arrivals) stays short.
const YieldTurn = 25

// yielder paces batch tasks while the urgent lane's tasks flow.
type yielder struct {
	flowing  func(context.Context) bool
	pace     Pacer
	yielding atomic.Bool // as last seen, for the log line when it changes
}

// take returns how many of a turn's next n letters a batch task processes
// now: all of them, unless the urgent lane's tasks flow; then at most YieldTurn,
// once the pace allows them. It gives up when ctx ends (a shutdown: the
// task runs again later) or the pace fails (Redis: the task runs again).
func (y *yielder) take(ctx context.Context, log *slog.Logger, n int) (int, error) {
	on := y.flowing != nil && y.flowing(ctx)
	if on != y.yielding.Swap(on) {
		if on {
			log.InfoContext(ctx, "urgent-lane tasks are flowing: batch tasks yield", "part", YieldTurn)
		} else {
			log.InfoContext(ctx, "no urgent-lane task for a second: batch tasks at full speed")
		}
	}
	if !on {
		return n, nil
	}
	n = min(n, YieldTurn)
	if err := y.pace.WaitN(ctx, n); err != nil {
		return 0, fmt.Errorf("yielding to the urgent lane: %w", err)
	}
	return n, nil
}
