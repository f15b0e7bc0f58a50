package dispatcher

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
)

// This file is the one place where a channel's failure kind becomes what
// asynq does with the task (see doc.go for the table).

// taskError maps a send error to the error a task handler returns.
func taskError(err error) error {
	if err == nil {
		return nil
	}
	switch channels.KindOf(err) {
	case channels.Gone:
		return nil // the address is removed and the outcome recorded
	case channels.Permanent:
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry) // archived for ops
	}
	return err // transient, misconfigured, throttled: retried
}

// IsFailure tells asynq whether err spends one of the task's retries: a
// throttled send waits as told without spending one.
func IsFailure(err error) bool {
	return channels.KindOf(err) != channels.Throttled || !isChannelError(err)
}

func isChannelError(err error) bool {
	var e *channels.Error
	return errors.As(err, &e)
}

// RetryDelay is the asynq RetryDelayFunc with the default 5 s base: the
// provider's Retry-After for a throttled send, else exponential backoff with
// jitter. Dispatcher.RetryDelay uses the configured base.
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	return retryDelay(DefaultRetryBase, n, err)
}

// RetryDelay is the asynq RetryDelayFunc for this dispatcher's RetryBase.
func (d *Dispatcher) RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	return retryDelay(d.cfg.RetryBase, n, err)
}

// Backoff bounds.
const (
	DefaultRetryBase = 5 * time.Second
	backoffMax       = time.Hour
)

func retryDelay(base time.Duration, n int, err error) time.Duration {
	if isChannelError(err) && channels.KindOf(err) == channels.Throttled {
		if d := channels.RetryAfterOf(err); d > time.Second {
			return d
		}
		return time.Second
	}
	d := backoffMax
	if n < 20 {
		d = min(base<<n, backoffMax)
	}
	// Equal jitter: somewhere in [d/2, d).
	return d/2 + rand.N(d/2)
}
