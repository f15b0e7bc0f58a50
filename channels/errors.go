package channels

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Kind is what kind of failure a send met. The dispatcher maps each kind to
// one course of action; adapters only classify.
type Kind int

const (
	// Transient failures (network, 5xx, SMTP 4xx) are retried with
	// exponential backoff and jitter. It is the kind of any error that does
	// not say otherwise.
	Transient Kind = iota
	// Gone means the address or token no longer exists (APNs 410
	// Unregistered, FCM UNREGISTERED, SMTP 550 5.1.1): it is removed from the
	// registry and the send is not retried.
	Gone
	// Permanent means the request itself is wrong (malformed, too large):
	// the delivery is archived for ops.
	Permanent
	// Throttled means the provider asked us to slow down: wait RetryAfter
	// without spending a retry.
	Throttled
	// Misconfigured means our credentials or setup are refused (APNs 403
	// InvalidProviderToken, FCM auth errors, SMTP 535): retried and logged
	// at error level.
	Misconfigured
)

var kindNames = [...]string{"transient", "gone", "permanent", "throttled", "misconfigured"}

// String returns the kind's lower-case name, as used in metrics and trails.
func (k Kind) String() string {
	if int(k) < len(kindNames) && k >= 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a classified send failure.
type Error struct {
	Kind Kind
	// Code is the provider's reason ("Unregistered", "QUOTA_EXCEEDED",
	// "5.1.1"); it must hold no personal data.
	Code string
	// RetryAfter is how long the provider asked us to wait (Throttled).
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	s := e.Kind.String()
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Fail returns an *Error of kind k with the provider's code.
func Fail(k Kind, code string, err error) error {
	return &Error{Kind: k, Code: code, Err: err}
}

// Throttle returns a Throttled *Error asking to wait d.
func Throttle(d time.Duration, code string, err error) error {
	return &Error{Kind: Throttled, Code: code, RetryAfter: d, Err: err}
}

// KindOf returns the kind of err: the Kind of the first *Error in its
// chain, else Transient. A cancelled or timed-out context is Transient.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Transient
}

// RetryAfterOf returns the wait a Throttled error asks for, or 0.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// CodeOf returns the provider code of err, or "".
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return ""
}

// GoneAt returns when the provider says an address stopped being valid, for
// errors that carry that time (an APNs 410 timestamp) by implementing
// GoneSince() time.Time. The dispatcher keeps an address registered after
// that time.
func GoneAt(err error) (time.Time, bool) {
	var g interface{ GoneSince() time.Time }
	if errors.As(err, &g) {
		if t := g.GoneSince(); !t.IsZero() {
			return t, true
		}
	}
	return time.Time{}, false
}
