package redisstore

import (
	"context"
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
	pttl := func(msg string) time.Duration { t.Helper(); return letterPTTL(t, env, s, "cit", msg) }
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

// A letter write gives a letter hash without an expiry one (PEXPIRE NX),
// unless the write Follows its run's first write (which set the
// expiry): then it sends no PEXPIRE. The hash's expiry is removed
// (PERSIST) before each write to see which did.
func TestWriteThatFollowsSendsNoExpiry(t *testing.T) {
	env := redistest.New(t)
	s := New(env.Client, Options{Prefix: env.Prefix, Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	const citizen, msg = "c1", "m1"
	at := time.Now().UTC()
	if _, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: citizen, MessageID: msg, InFlight: []string{"d1", "d2"},
		Arrive: &dispatcher.Arrival{Meta: &dispatcher.Letter{MessageID: msg, SenderName: "Skat", ReceivedAt: at}}}); err != nil {
		t.Fatal(err)
	}
	key := s.letterKey(citizen, msg)
	for _, tc := range []struct {
		arrived bool
		want    bool // an expiry after the write
	}{{arrived: true, want: false}, {arrived: false, want: true}} {
		if err := env.Client.Persist(ctx, key).Err(); err != nil {
			t.Fatal(err)
		}
		done := dispatcher.Outcome{At: at, DeliveryID: "d1", Channel: channels.Email, Result: dispatcher.ResultSent}
		if tc.arrived {
			done.DeliveryID = "d2"
		}
		if _, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: citizen, MessageID: msg, Done: []dispatcher.Outcome{done},
			Follows: tc.arrived}); err != nil {
			t.Fatal(err)
		}
		ttl, err := env.Client.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := ttl > 0; got != tc.want {
			t.Errorf("Follows %v: the letter's expiry after the write %v, want an expiry: %v", tc.arrived, ttl, tc.want)
		}
	}
}

// TestLookupWriteAllExpiries: the transaction's plain commands give a
// letter the expiries the scripts give it: an unread arrival the letter's
// (POSTBUD_LETTER_TTL), an arrival read before the read letter's shorter
// one, a later write an expiry only where the hash has none and only
// unless it Follows.
func TestLookupWriteAllExpiries(t *testing.T) {
	env := redistest.New(t)
	s := New(env.Client, Options{Prefix: env.Prefix, Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	at := time.Now().Truncate(time.Millisecond)
	write := func(w dispatcher.LetterWrite) {
		t.Helper()
		if _, err := s.LookupWriteAll(ctx, []dispatcher.EventRef{{Citizen: w.Citizen, MessageID: w.MessageID}},
			func([]dispatcher.LetterView) ([]dispatcher.LetterWrite, error) {
				return []dispatcher.LetterWrite{w}, nil
			}); err != nil {
			t.Fatal(err)
		}
	}
	pttl := func(msg string) time.Duration { t.Helper(); return letterPTTL(t, env, s, "cit", msg) }
	arrive := func(msg string) dispatcher.LetterWrite {
		return dispatcher.LetterWrite{Citizen: "cit", MessageID: msg, InFlight: []string{"d-" + msg},
			Arrive: &dispatcher.Arrival{Meta: &dispatcher.Letter{MessageID: msg, SenderName: "Skat", ReceivedAt: at}}}
	}
	write(arrive("m-unread"))
	if d := pttl("m-unread"); d <= s.o.ReadTTL {
		t.Errorf("unread arrival: PTTL %v, want the letter's (> the read letter's %v)", d, s.o.ReadTTL)
	}
	if _, err := s.ApplyState(ctx, dispatcher.StateWrite{Citizen: "cit", MessageID: "m-read", Read: true, At: at}); err != nil {
		t.Fatal(err)
	}
	write(arrive("m-read"))
	if d := pttl("m-read"); d <= 0 || d > s.o.ReadTTL {
		t.Errorf("arrival of a letter read before: PTTL %v, want the read letter's (≤ %v)", d, s.o.ReadTTL)
	}
	done := dispatcher.Outcome{At: at, DeliveryID: "d-m-unread", Channel: channels.Email, Result: dispatcher.ResultSent}
	for _, follows := range []bool{true, false} {
		if err := env.Client.Persist(ctx, s.letterKey("cit", "m-unread")).Err(); err != nil {
			t.Fatal(err)
		}
		write(dispatcher.LetterWrite{Citizen: "cit", MessageID: "m-unread", Done: []dispatcher.Outcome{done}, Follows: follows})
		if d := pttl("m-unread"); (d > 0) == follows {
			t.Errorf("a later write, Follows %v: PTTL %v, want an expiry: %v", follows, d, !follows)
		}
	}
}

// letterPTTL is a letter hash's remaining expiry.
func letterPTTL(t *testing.T, env *redistest.Env, s *Store, citizen, msg string) time.Duration {
	t.Helper()
	d, err := env.Client.PTTL(t.Context(), s.letterKey(citizen, msg)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
