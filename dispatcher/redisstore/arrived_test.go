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

// A letter write gives a letter hash without an expiry one (PEXPIRE NX),
// unless the write says the letter just Arrived (its arrival set the
// expiry): then it sends no PEXPIRE. The hash's expiry is removed
// (PERSIST) before each write to see which did.
func TestWriteArrivedSendsNoExpiry(t *testing.T) {
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
