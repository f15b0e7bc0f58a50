package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/config"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/metrics"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/wake"
)

// workerServers are the two asynq servers of one replica. The main server
// works every lane (weights normal 6, bulk 2, urgent 1: Queues.Weights;
// POSTBUD_CONCURRENCY, POSTBUD_TASK_CHECK_INTERVAL): under load its fetch
// loop never sleeps, so an urgent task may start in its next free slot
// without waiting for the urgent server's poll. The urgent
// server works the urgent lane alone in slots of its own, polled often
// (POSTBUD_URGENT_*): when a provider that hangs to its timeout fills the
// main server's slots, urgent tasks still start within one short poll, and
// on an idle replica an urgent enqueue's wake-up token starts them at once
// (POSTBUD_URGENT_WAKE_WAIT, package dispatcher/wake). Both run the same handlers (one mux) and register
// with asynq as servers of their own, so the dashboard lists both and
// every queue. POSTBUD_WORKERS runs one of them, or neither (nil); a main
// server run alone leaves the urgent lane to the urgent replicas
// (Queues.MainOnlyWeights).
type workerServers struct {
	urgent, main *asynq.Server
}

// newWorkerServers configures the servers POSTBUD_WORKERS names; d
// supplies the retry delay.
func newWorkerServers(rdb redis.UniversalClient, cfg *config.Config, queues dispatcher.Queues, d *dispatcher.Dispatcher, log *slog.Logger) *workerServers {
	one := func(rdb redis.UniversalClient, name string, conc int, poll time.Duration, weights map[string]int) *asynq.Server {
		l := log.With("component", "asynq", "server", name)
		return asynq.NewServerFromRedisClient(rdb, asynq.Config{
			Concurrency:    conc,
			Queues:         weights,
			RetryDelayFunc: d.RetryDelay,
			// Retries are scheduled tasks: look for due ones often enough
			// that a short backoff is honoured (asynq's default is 5 s).
			DelayedTaskCheckInterval: min(time.Second, cfg.RetryBase),
			IsFailure:                dispatcher.IsFailure,
			ShutdownTimeout:          cfg.ShutdownTimeout,
			TaskCheckInterval:        poll,
			Logger:                   asynqLogger{l},
			LogLevel:                 asynq.WarnLevel,
			ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
				n, _ := asynq.GetRetryCount(ctx)
				id, _ := asynq.GetTaskID(ctx)
				// The dispatcher logged the failure with its channel and
				// kind: one line per failed send; this one only for
				// debugging.
				l.DebugContext(ctx, "task failed", "task_type", t.Type(), "task_id", id, "attempt", n+1, "error", err)
			}),
		})
	}
	urgentRDB := rdb
	if cfg.UrgentWakeWait > 0 {
		// The urgent server alone waits for wake-up tokens: the main
		// server also tries the urgent lane, and must go on to the others.
		urgentRDB = wake.NewClient(rdb, cfg.UrgentWakeWait, queues.Urgent)
	}
	s := &workerServers{}
	if cfg.Workers == "all" || cfg.Workers == "urgent" {
		s.urgent = one(urgentRDB, metrics.ServerUrgent, cfg.UrgentConcurrency, cfg.UrgentTaskCheckInterval, queues.UrgentWeights())
	}
	switch cfg.Workers {
	case "all":
		s.main = one(rdb, metrics.ServerMain, cfg.Concurrency, cfg.TaskCheckInterval, queues.Weights())
	case "main":
		// Beside urgent replicas: they alone take urgent letters.
		s.main = one(rdb, metrics.ServerMain, cfg.Concurrency, cfg.TaskCheckInterval, queues.MainOnlyWeights())
	}
	return s
}

// running returns the servers this replica runs.
func (s *workerServers) running() []*asynq.Server {
	var out []*asynq.Server
	for _, srv := range []*asynq.Server{s.urgent, s.main} {
		if srv != nil {
			out = append(out, srv)
		}
	}
	return out
}

// names returns the names of the servers this replica runs (for its log
// line).
func (s *workerServers) names() []string {
	var out []string
	if s.urgent != nil {
		out = append(out, metrics.ServerUrgent)
	}
	if s.main != nil {
		out = append(out, metrics.ServerMain)
	}
	return out
}

// start starts the servers on h, each task counted in w under its
// server's name; if the second fails to start, the first is shut down.
func (s *workerServers) start(h asynq.Handler, w *metrics.Workers, cfg *config.Config) error {
	counted := func(server string) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			defer w.Start(server)()
			return h.ProcessTask(ctx, t)
		})
	}
	if s.urgent != nil {
		w.Slots(metrics.ServerUrgent, cfg.UrgentConcurrency)
		if err := s.urgent.Start(counted(metrics.ServerUrgent)); err != nil {
			return fmt.Errorf("start the urgent workers: %w", err)
		}
	}
	if s.main != nil {
		w.Slots(metrics.ServerMain, cfg.Concurrency)
		if err := s.main.Start(counted(metrics.ServerMain)); err != nil {
			if s.urgent != nil {
				s.urgent.Shutdown()
			}
			return fmt.Errorf("start the workers: %w", err)
		}
	}
	return nil
}

// shutdown stops the servers pulling tasks, then waits for their
// in-flight tasks side by side: the whole takes at most one
// POSTBUD_SHUTDOWN_TIMEOUT (and asynq's moment to re-queue what it
// aborted), as the deploy manifests' grace periods assume, not two.
func (s *workerServers) shutdown() {
	srvs := s.running()
	for _, srv := range srvs {
		srv.Stop()
	}
	var wg sync.WaitGroup
	for _, srv := range srvs {
		wg.Go(srv.Shutdown)
	}
	wg.Wait()
}

// yielding is the dispatcher's Config.UrgentFlowing and YieldPace: the
// urgent lane's wake.Flow (the key every urgent-lane enqueue marks), each
// answer also recorded in w (postbud_batch_yielding), and
// POSTBUD_BATCH_YIELD_RATE letters a second shared by every replica; no
// flow (batch tasks never yield) when that rate is 0.
func yielding(rdb redis.UniversalClient, cfg *config.Config, queues dispatcher.Queues, w *metrics.Workers) (func(context.Context) bool, dispatcher.Pacer) {
	if cfg.BatchYieldRate <= 0 {
		return nil, nil
	}
	flow := wake.NewFlow(rdb, queues.Urgent, wake.FlowRead)
	return func(ctx context.Context) bool {
		on := flow.On(ctx)
		w.Yielding(on)
		return on
	}, redisstore.NewPacer(rdb, cfg.KeyPrefix, cfg.BatchYieldRate, dispatcher.YieldTurn)
}
