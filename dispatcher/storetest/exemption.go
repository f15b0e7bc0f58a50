package storetest

import (
	"testing"
	"time"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// The exemption as the self-service systems ask for it: whether and since
// when, the same zero answer for a citizen postbud does not know.
var exemptionCases = []Case{
	{"ExemptionOf", "an unknown citizen and a known one who is not exempt read alike", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		must(t, updateContact(ctx, s, alice, &event.ContactData{Email: ptr("a@example.dk")}, now(), "ev-c"))
		for _, c := range []string{alice, bob} {
			x, err := s.ExemptionOf(ctx, c)
			must(t, err)
			if x != (dispatcher.Exemption{}) {
				t.Errorf("ExemptionOf(%s) = %+v, want the zero Exemption", c, x)
			}
		}
	}},
	{"ExemptionOf", "since is the grant that began the exemption, kept by later grants, gone with the revoke", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		at := now()
		want := func(step string, exempt bool, since time.Time) {
			t.Helper()
			x, err := s.ExemptionOf(ctx, alice)
			must(t, err)
			if x.Exempt != exempt || !x.Since.Equal(since) {
				t.Errorf("%s: ExemptionOf = %+v, want exempt %v since %v", step, x, exempt, since)
			}
			if c := registered(t, s, alice); c.Exempt != exempt || !c.ExemptSince.Equal(since) {
				t.Errorf("%s: Load's citizen exempt %v since %v, want %v since %v", step, c.Exempt, c.ExemptSince, exempt, since)
			}
		}
		must2(t)(setExemption(ctx, s, alice, true, "", at, "ev-1"))
		want("granted", true, at)
		must2(t)(setExemption(ctx, s, alice, true, "Postboks 7", at.Add(time.Hour), "ev-2"))
		want("granted again", true, at)
		must2(t)(setExemption(ctx, s, alice, true, "", at.Add(-time.Hour), "ev-old"))
		want("an older grant", true, at)
		must2(t)(setExemption(ctx, s, alice, false, "", at.Add(2*time.Hour), "ev-3"))
		want("revoked", false, time.Time{})
		must2(t)(setExemption(ctx, s, alice, true, "", at.Add(time.Hour), "ev-stale"))
		want("a grant older than the revoke", false, time.Time{})
		must2(t)(setExemption(ctx, s, alice, true, "", at.Add(3*time.Hour), "ev-4"))
		want("granted anew", true, at.Add(3*time.Hour))
		must2(t)(setExemption(ctx, s, alice, true, "", at.Add(4*time.Hour), "ev-1"))
		want("a re-run of the first grant", true, at.Add(3*time.Hour))
	}},
}

// must2 fails the test on the error of a call that also returns a value.
func must2(t *testing.T) func(bool, error) {
	return func(_ bool, err error) {
		t.Helper()
		must(t, err)
	}
}
