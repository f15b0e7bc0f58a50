package channels_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	date := func(d time.Duration) string { return now.Add(d).UTC().Format(http.TimeFormat) }
	tests := []struct {
		name, value string
		want        time.Duration
	}{
		{"absent", "", 0},
		{"seconds", "7", 7 * time.Second},
		{"spaces around", " 120 ", 2 * time.Minute},
		{"zero", "0", 0},
		{"negative", "-5", 0},
		{"garbage", "soon", 0},
		{"fraction", "1.5", 0},
		{"http date", date(90 * time.Second), 90 * time.Second},
		{"http date rounds to the second", now.Add(30*time.Second + 600*time.Millisecond).UTC().Format(http.TimeFormat), 30 * time.Second},
		{"past http date", date(-time.Hour), 0},
		{"http date beyond the cap", date(48 * time.Hour), channels.MaxRetryAfter},
		{"seconds beyond the cap", "86401", channels.MaxRetryAfter},
		{"seconds at the cap", "86400", channels.MaxRetryAfter},
		{"seconds overflowing int64", "99999999999999999999", 0},
		{"huge seconds", "99999999999999", channels.MaxRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := channels.RetryAfter(tt.value, now); got != tt.want {
				t.Errorf("RetryAfter(%q) = %v, want %v", tt.value, got, tt.want)
			}
		})
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "7", "-1", "Sat, 01 Mar 2025 12:00:30 GMT", "9223372036854775807", "x"} {
		f.Add(s)
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		if d := channels.RetryAfter(s, now); d < 0 || d > channels.MaxRetryAfter {
			t.Fatalf("RetryAfter(%q) = %v, outside [0, %v]", s, d, channels.MaxRetryAfter)
		}
	})
}

func TestHTTPCode(t *testing.T) {
	for status, want := range map[int]string{503: "http_503", 429: "http_429", 410: "http_410"} {
		if got := channels.HTTPCode(status); got != want {
			t.Errorf("HTTPCode(%d) = %q, want %q", status, got, want)
		}
	}
}

func TestInterrupted(t *testing.T) {
	tests := []struct {
		err  error
		code string
	}{
		{context.Canceled, "canceled"},
		{context.DeadlineExceeded, "timeout"},
		{fmt.Errorf("send sms: %w", context.DeadlineExceeded), "timeout"},
		{fmt.Errorf("send sms: %w", context.Canceled), "canceled"},
	}
	for _, tt := range tests {
		err := channels.Interrupted(tt.err)
		if k, c := channels.KindOf(err), channels.CodeOf(err); k != channels.Transient || c != tt.code {
			t.Errorf("Interrupted(%v) = %v, %q; want transient, %q", tt.err, k, c, tt.code)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("Interrupted(%v) does not wrap it", tt.err)
		}
	}
}
