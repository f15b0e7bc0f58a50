package channels

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	// refused is set by Refused: the provider answered and did not take
	// the alert.
	refused bool
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

// Refused returns err, a failure the provider answered with (an HTTP
// status, an SMTP reply code), marked as refused: the provider said it did
// not take the alert. Only a refused or never-started call lets a channel
// with several providers hand the alert to another one (see Unsure).
func Refused(err error) error {
	var e *Error
	if errors.As(err, &e) {
		c := *e
		c.refused = true
		return &c
	}
	return &Error{Kind: Transient, Err: err, refused: true}
}

// Unsure reports whether err leaves open that the provider took the alert:
// a call interrupted after the request was sent (a timeout, a cancelled
// context, a connection reset or closed before the answer). It is false for
// a classified answer of the provider (any kind but Transient, or a
// Transient error marked Refused), for a connection that was never made
// (refused, unreachable, DNS) and for nil.
func Unsure(err error) bool {
	if err == nil {
		return false
	}
	var e *Error
	if errors.As(err, &e) && (e.Kind != Transient || e.refused) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	var dns *net.DNSError
	return !errors.As(err, &dns)
}

// ProviderError is a failure of one of a channel's several providers (see
// package channels/failover): it names the provider, and says whether the
// provider may have taken the alert.
type ProviderError struct {
	// Provider is the provider's configured name ("sms-1").
	Provider string
	// Unsure says the provider was handed the alert and may have taken
	// it: the delivery must not go to another provider.
	Unsure bool
	Err    error
}

func (e *ProviderError) Error() string { return e.Provider + ": " + e.Err.Error() }
func (e *ProviderError) Unwrap() error { return e.Err }

// ProviderOf returns the provider a failed send was last handed to, and
// whether that provider may have taken it; "" for a channel of one
// provider.
func ProviderOf(err error) (provider string, unsure bool) {
	var e *ProviderError
	if errors.As(err, &e) {
		return e.Provider, e.Unsure
	}
	return "", false
}

type handoffKey struct{}

// WithHandoff returns a context carrying f, which a sender of several
// providers calls (Handoff) before it hands an alert to one of them, so
// that the caller can record the provider first. An error from f stops the
// send before the provider is called.
func WithHandoff(ctx context.Context, f func(provider string) error) context.Context {
	return context.WithValue(ctx, handoffKey{}, f)
}

// Handoff calls the function WithHandoff put in ctx, if any.
func Handoff(ctx context.Context, provider string) error {
	if f, ok := ctx.Value(handoffKey{}).(func(string) error); ok && f != nil {
		return f(provider)
	}
	return nil
}
