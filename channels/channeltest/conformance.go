// Package channeltest is the conformance suite every channel adapter runs
// against its own protocol-speaking fake. The same cases, the same
// expectations: a success yields a provider id and exactly one delivery;
// each failure the provider can signal is classified into the right
// channels.Kind; a stalled provider and a cancelled context end the send
// with a transient error and no delivery.
package channeltest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
)

// Failure is a way the fake can be told to fail the next send.
type Failure struct {
	// Name labels the subtest ("smtp 550 5.1.1").
	Name string
	// Want is the kind the adapter must classify the failure as.
	Want channels.Kind
	// RetryAfter, for Throttled, is the least wait the error must ask for.
	RetryAfter time.Duration
	// Arm tells the fake to fail the next send this way.
	Arm func()
}

// Harness is one adapter wired to a fresh fake of its provider.
type Harness struct {
	Sender channels.Sender
	// To is a valid address the fake accepts.
	To channels.Address
	// Delivered returns the raw payloads the fake accepted so far, in
	// order (an email's DATA, a request body).
	Delivered func() [][]byte
	// Failures lists every failure the fake can be told to produce.
	Failures []Failure
	// Stall makes the fake hold every later request until the test ends.
	Stall func()
}

// Alert returns a typical alert for the suite.
func Alert() channels.Alert {
	return channels.Alert{
		DeliveryID: "d7c4f1c0a1b2c3d4e5f60718293a4b5c",
		MessageID:  "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
		Language:   "da",
		Senders:    []string{"Skattestyrelsen"},
		Count:      1,
		MailboxURL: "https://www.borger.dk/digitalpost",
		Badge:      3,
		Expires:    time.Now().Add(24 * time.Hour),
	}
}

// Run runs the conformance suite. newHarness must return a harness on a
// fresh fake each call; it registers its own cleanups on t.
func Run(t *testing.T, newHarness func(t *testing.T) *Harness) {
	t.Run("success", func(t *testing.T) {
		h := newHarness(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rc, err := h.Sender.Send(ctx, h.To, Alert())
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		if rc.ProviderID == "" {
			t.Errorf("Receipt.ProviderID is empty")
		}
		got := h.Delivered()
		if len(got) != 1 {
			t.Fatalf("fake accepted %d payloads, want 1", len(got))
		}
		if !containsAny(got[0], "Skattestyrelsen") {
			t.Errorf("delivered payload does not name the sender: %q", got[0])
		}
	})
	for _, f := range newHarness(t).Failures {
		t.Run("failure/"+f.Name, func(t *testing.T) {
			h := newHarness(t)
			var arm func()
			for _, g := range h.Failures {
				if g.Name == f.Name {
					arm = g.Arm
				}
			}
			arm()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := h.Sender.Send(ctx, h.To, Alert())
			if err == nil {
				t.Fatalf("Send succeeded, want a %s error", f.Want)
			}
			if k := channels.KindOf(err); k != f.Want {
				t.Errorf("KindOf(%v) = %s, want %s", err, k, f.Want)
			}
			if f.Want == channels.Throttled {
				if ra := channels.RetryAfterOf(err); ra < f.RetryAfter {
					t.Errorf("RetryAfterOf = %v, want ≥ %v", ra, f.RetryAfter)
				}
			}
		})
	}
	t.Run("stalled provider past the deadline", func(t *testing.T) {
		h := newHarness(t)
		h.Stall()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := h.Sender.Send(ctx, h.To, Alert())
		if err == nil {
			t.Fatal("Send to a stalled provider succeeded")
		}
		if k := channels.KindOf(err); k != channels.Transient {
			t.Errorf("KindOf(%v) = %s, want transient", err, k)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		h := newHarness(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := h.Sender.Send(ctx, h.To, Alert())
		if err == nil {
			t.Fatal("Send with a cancelled context succeeded")
		}
		if !errors.Is(err, context.Canceled) && channels.KindOf(err) != channels.Transient {
			t.Errorf("err = %v, want context.Canceled or a transient error", err)
		}
		if n := len(h.Delivered()); n != 0 {
			t.Errorf("fake accepted %d payloads after a cancelled send", n)
		}
	})
}

func containsAny(b []byte, s ...string) bool {
	for _, x := range s {
		if strings.Contains(string(b), x) {
			return true
		}
	}
	return false
}
