package redisstore

import (
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// TestLetterWritesLeaveNoHashWithoutExpiry: every write that may create a
// letter's hash gives it an expiry. A write that Follows its run's first
// write sets none (that write did, moments before) and keeps the one it
// finds: a read letter's shorter one stays.
func TestLetterWritesLeaveNoHashWithoutExpiry(t *testing.T) {
	env := redistest.New(t)
	s := New(env.Client, Options{Prefix: env.Prefix, Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	at := time.Now()
	out := dispatcher.Outcome{At: at, DeliveryID: "d-mail", Channel: channels.Email, Result: dispatcher.ResultSent}
	pttl := func(msg string) time.Duration {
		t.Helper()
		d, err := env.Client.PTTL(ctx, s.letterKey("cit", msg)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// A write without Arrive to a letter with no hash yet (a holder's
	// outcome on a letter gone, a refused read's trail and mark).
	if _, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: "cit", MessageID: "m-none", Done: []dispatcher.Outcome{out}}); err != nil {
		t.Fatal(err)
	}
	if d := pttl("m-none"); d <= 0 {
		t.Errorf("a write that created the letter's hash left it without expiry (PTTL %v)", d)
	}
	if err := s.Mark(ctx, dispatcher.EventRef{Citizen: "cit", MessageID: "m-mark", ID: "ev-1"}); err != nil {
		t.Fatal(err)
	}
	if d := pttl("m-mark"); d <= 0 {
		t.Errorf("Mark left the letter's hash without expiry (PTTL %v)", d)
	}
	// The sends' writes after the arrival: the arrival's expiry stays.
	meta := &dispatcher.Letter{MessageID: "m-run", SenderName: "Skattestyrelsen", ReceivedAt: at}
	if _, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: "cit", MessageID: "m-run", Arrive: &dispatcher.Arrival{Meta: meta},
		InFlight: []string{"d-mail"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyState(ctx, dispatcher.StateWrite{Citizen: "cit", MessageID: "m-run", Read: true, At: at}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: "cit", MessageID: "m-run", Done: []dispatcher.Outcome{out}, Follows: true}); err != nil {
		t.Fatal(err)
	}
	if d := pttl("m-run"); d <= 0 || d > s.o.ReadTTL {
		t.Errorf("after the sends' write: PTTL %v, want the read letter's (≤ %v)", d, s.o.ReadTTL)
	}
}
