package redisstore

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
)

func TestOutcomeRoundTrip(t *testing.T) {
	for _, o := range []dispatcher.Outcome{
		{At: time.UnixMilli(1763863750352).UTC(), Channel: channels.Email, Result: "sent",
			ProviderID: "<0c7fb5d96977345a6f43869a0314c8e5@digitalpost.dk>", Attempt: 1, DurationMS: 12},
		{At: time.UnixMilli(1).UTC(), Channel: channels.APNs, App: "e-boks", Result: "gone", Reason: "address removed",
			Kind: "gone", Code: "410 Unregistered", Attempt: 3},
		{At: time.UnixMilli(2).UTC(), Channel: channels.SMS, Result: "skipped", Reason: "coalesced: one alert for 2 letters (x|y)"},
		{At: time.UnixMilli(3).UTC(), Channel: channels.SMS, Result: "sent", ProviderID: "1000001", Provider: "sms-2", Attempt: 2},
		{At: time.UnixMilli(4).UTC(), Channel: channels.Email, Result: "sent", Holder: "ab12…", Attempt: 1},
		{At: time.UnixMilli(5).UTC(), Channel: channels.SMS, Result: "sent", ProviderID: "7", Provider: "sms-1", Holder: "cd34…"},
	} {
		got, ok := decodeOutcome(encodeOutcome(o))
		if !ok {
			t.Fatalf("decodeOutcome(encodeOutcome(%+v)) failed", o)
		}
		if diff := cmp.Diff(o, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
	if _, ok := decodeOutcome(`{"result":"sent"}`); ok {
		t.Error("a JSON value decoded as a compact outcome")
	}
}
