package email

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestBoundedConnClampsDeadlines: a deadline later than the limit (as
// go-mail sets before each phase) is cut to the limit, and expire ends a
// blocked read at once.
func TestBoundedConnClampsDeadlines(t *testing.T) {
	tests := []struct {
		name   string
		limit  time.Duration
		set    func(b *boundedConn) error
		expire bool
	}{
		{"SetDeadline past the limit", 50 * time.Millisecond,
			func(b *boundedConn) error { return b.SetDeadline(time.Now().Add(time.Hour)) }, false},
		{"SetReadDeadline past the limit", 50 * time.Millisecond,
			func(b *boundedConn) error { return b.SetReadDeadline(time.Now().Add(time.Hour)) }, false},
		{"zero deadline", 50 * time.Millisecond,
			func(b *boundedConn) error { return b.SetDeadline(time.Time{}) }, false},
		{"expired", time.Hour,
			func(b *boundedConn) error { return b.SetDeadline(time.Now().Add(2 * time.Hour)) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			b := newBoundedConn(client, time.Now().Add(tt.limit))
			defer b.Close()
			if err := tt.set(b); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := b.Read(make([]byte, 1))
				done <- err
			}()
			if tt.expire {
				b.expire()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			select {
			case err := <-done:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("Read = %v, want a deadline error", err)
				}
				if !b.timedOut() {
					t.Error("timedOut() = false after the deadline")
				}
			case <-ctx.Done():
				t.Fatal("Read was not ended by the limit")
			}
		})
	}
}
