package redisstore

import (
	"testing"
	"time"

	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// TestExemptionSinceOfOlderRecords: a citizen exempted before the
// exemption's start was kept has only the time of the last change, the
// grant: ExemptionOf and Load answer it as the start.
func TestExemptionSinceOfOlderRecords(t *testing.T) {
	env := redistest.New(t)
	s := New(env.Client, Options{Prefix: env.Prefix, Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	at := time.UnixMilli(1764500000000)
	if err := env.Client.HSet(t.Context(), s.citizenKey("cit-old"), "x", "1", "xt", at.UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	x, err := s.ExemptionOf(t.Context(), "cit-old")
	if err != nil || !x.Exempt || !x.Since.Equal(at) {
		t.Errorf("ExemptionOf = %+v, %v; want exempt since %v", x, err, at)
	}
	v, err := s.Load(t.Context(), "cit-old", "no-letter")
	if err != nil || !v.Citizen.Exempt || !v.Citizen.ExemptSince.Equal(at) {
		t.Errorf("Load's citizen = %+v, %v; want exempt since %v", v.Citizen, err, at)
	}
}
