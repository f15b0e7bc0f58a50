package channels

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxRetryAfter caps the wait RetryAfter reads from a provider: a day, so
// that a provider's typo cannot park a delivery for a year.
const MaxRetryAfter = 24 * time.Hour

// RetryAfter reads an HTTP Retry-After header value (RFC 9110 §10.2.3):
// delay-seconds or an HTTP-date, relative to now. An absent, unreadable,
// zero or past value gives 0, so that the adapter applies its own default;
// a value above MaxRetryAfter gives MaxRetryAfter. A date is rounded to
// the second.
func RetryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(value, 10, 64); err == nil {
		if n > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(value); err == nil {
		d = t.Sub(now).Round(time.Second)
	}
	return min(max(d, 0), MaxRetryAfter)
}

// HTTPCode is the one spelling of a provider's HTTP status in an error
// Code, and so in trails and metrics: "http_503".
func HTTPCode(status int) string { return "http_" + strconv.Itoa(status) }

// Interrupted classifies err, which holds a done context's error (the
// context's own Err or a client error wrapping it), as Transient with the
// code "timeout" for an expired deadline and "canceled" otherwise.
func Interrupted(err error) error {
	code := "canceled"
	if errors.Is(err, context.DeadlineExceeded) {
		code = "timeout"
	}
	return Fail(Transient, code, err)
}
