package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/config"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// newSealer returns the Sealer of the configured seal keys; its tags are
// keyed by the pseudonymisation key, which is never rotated.
func newSealer(cfg *config.Config) (*seal.Sealer, error) {
	s, err := seal.New(seal.Keys{Current: cfg.SealKey, Previous: cfg.SealKeyPrevious, Tag: cfg.PseudonymKey})
	if err != nil {
		return nil, fmt.Errorf("POSTBUD_SEAL_KEY: %w", err)
	}
	return s, nil
}

// reseal seals every citizen's contact data again under POSTBUD_SEAL_KEY:
// values under POSTBUD_SEAL_KEY_PREVIOUS and values stored before sealing.
// It goes on from where an interrupted run stopped (the SCAN cursor is kept
// in Redis) unless -restart; every step is idempotent either way. Then it
// counts the queued event tasks whose contact data is sealed under another
// key: the previous key must stay until they are worked.
func reseal(ctx context.Context, args []string, e env, stdout, stderr io.Writer) error {
	fs := newFlagSet("reseal", "", "Seals every citizen's contact data in Redis again under POSTBUD_SEAL_KEY (values sealed\n"+
		"under POSTBUD_SEAL_KEY_PREVIOUS, and values stored before sealing), with progress; an interrupted\n"+
		"run goes on where it stopped. Then it counts the queued tasks still sealed under another key.\n"+
		"Configuration: the POSTBUD_* variables of serve. README, \"Rotating the seal key\".")
	restart := fs.Bool("restart", false, "start from the beginning instead of the saved cursor")
	count := fs.Int64("count", 500, "citizen hashes per step (SCAN COUNT)")
	every := fs.Duration("progress", 2*time.Second, "how often progress is printed")
	if err := parse(fs, args, 0, stdout, stderr); err != nil {
		return err
	}
	cfg, err := config.LoadEnviron(e.get, e.names)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	sealer, err := newSealer(cfg)
	if err != nil {
		return err
	}
	rdb := newRedisClient(cfg.Redis)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("POSTBUD_REDIS_URL: Redis does not answer: %w", err)
	}
	store := redisstore.New(rdb, redisstore.Options{Prefix: cfg.KeyPrefix, Sealer: sealer})
	defer store.Close()

	var cursor uint64
	if !*restart {
		if cursor, err = store.ResealState(ctx); err != nil {
			return fmt.Errorf("reseal: the saved cursor: %w", err)
		}
	}
	prev := sealer.PreviousKeyID()
	if prev == "" {
		prev = "none"
	}
	fmt.Fprintf(stdout, "reseal: sealing contact data under key %s (previous key %s), ", sealer.KeyID(), prev)
	if cursor != 0 {
		fmt.Fprintf(stdout, "going on from cursor %d\n", cursor)
	} else {
		fmt.Fprintln(stdout, "from the start")
	}
	var total redisstore.ResealProgress
	last := time.Now()
	report := func(tail string) {
		fmt.Fprintf(stdout, "reseal: %d citizens, %d values sealed again, %d that do not open%s\n",
			total.Citizens, total.Resealed, total.Failed, tail)
	}
	for {
		if err := ctx.Err(); err != nil {
			report(fmt.Sprintf(" — interrupted at cursor %d: run it again to go on", cursor))
			return err
		}
		p, err := store.Reseal(ctx, cursor, *count)
		if err != nil {
			report(fmt.Sprintf(" — stopped at cursor %d: run it again to go on", cursor))
			return err
		}
		total.Citizens += p.Citizens
		total.Resealed += p.Resealed
		total.Failed += p.Failed
		cursor = p.Cursor
		if p.Done {
			break
		}
		if time.Since(last) >= *every {
			report(fmt.Sprintf(" (cursor %d)", cursor))
			last = time.Now()
		}
	}
	report(": every citizen done")
	queued, err := queuedUnderOtherKeys(rdb, dispatcher.DefaultQueues(cfg.QueuePrefix), sealer.KeyID())
	if err != nil {
		return fmt.Errorf("reseal: the queued tasks: %w", err)
	}
	var errs []error
	if total.Failed > 0 {
		errs = append(errs, fmt.Errorf("reseal: %d values do not open (tampered with, or sealed under a key that is not configured): they were left as they are", total.Failed))
	}
	if queued > 0 {
		errs = append(errs, fmt.Errorf("reseal: %d queued event tasks hold contact data sealed under another key: keep POSTBUD_SEAL_KEY_PREVIOUS until they are worked (or deleted), then run reseal again", queued))
	} else {
		fmt.Fprintln(stdout, "reseal: no queued task holds contact data sealed under another key")
	}
	if len(errs) == 0 && sealer.PreviousKeyID() != "" {
		fmt.Fprintln(stdout, "reseal: POSTBUD_SEAL_KEY_PREVIOUS can be removed")
	}
	return errors.Join(errs...)
}

// queuedUnderOtherKeys counts the event tasks waiting in the queues
// (pending, scheduled, retry, archived) whose contact data is sealed under
// a key other than current.
func queuedUnderOtherKeys(rdb redis.UniversalClient, q dispatcher.Queues, current string) (int, error) {
	insp := asynq.NewInspectorFromRedisClient(rdb)
	n := 0
	for _, queue := range []string{q.Urgent, q.Normal, q.Bulk} {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
			insp.ListPendingTasks, insp.ListScheduledTasks, insp.ListRetryTasks, insp.ListArchivedTasks} {
			for page := 1; ; page++ {
				tasks, err := list(queue, asynq.PageSize(1000), asynq.Page(page))
				if errors.Is(err, asynq.ErrQueueNotFound) {
					break
				}
				if err != nil {
					return 0, err
				}
				for _, t := range tasks {
					if t.Type != dispatcher.TypeEvent {
						continue
					}
					var ev event.Event
					if json.Unmarshal(t.Payload, &ev) != nil {
						continue
					}
					for _, id := range dispatcher.SealedKeyIDs(&ev) {
						if id != current {
							n++
							break
						}
					}
				}
				if len(tasks) < 1000 {
					break
				}
			}
		}
	}
	return n, nil
}
