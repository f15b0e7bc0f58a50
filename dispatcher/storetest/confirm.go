package storetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Confirmed addresses: the confirmation state kept with a contact write,
// and the confirmation codes. Fingerprints and MACs are opaque strings to
// the store; the cases make up their own.

const (
	fpA   = "fp-a"   // the fingerprint of a@example.dk
	fpB   = "fp-b"   // the fingerprint of b@example.dk
	fpMob = "fp-mob" // the fingerprint of +4512345678
	macOK = "mac-right"
)

// contactFP registers an email (and mobile, if set) with fingerprints;
// confirmed marks them confirmed.
func contactFP(ctx context.Context, s dispatcher.Store, email, emailFP, mobile, mobileFP string, confirmed bool, at time.Time, eventID string) (bool, error) {
	c := &event.ContactData{}
	if email != "-" {
		c.Email = ptr(email)
	}
	if mobile != "-" {
		c.Mobile = ptr(mobile)
	}
	return s.UpdateContact(ctx, dispatcher.ContactWrite{Citizen: alice, Contact: c, At: at, Confirmed: confirmed,
		EmailFingerprint: emailFP, MobileFingerprint: mobileFP, Mark: registryRef(alice, eventID)})
}

// confirmedState returns whether alice's email and mobile are confirmed.
func confirmedState(t *testing.T, s dispatcher.Store) (email, mobile bool) {
	t.Helper()
	c := registered(t, s, alice)
	return c.EmailConfirmed, c.MobileConfirmed
}

// issue issues a code for alice's email.
func issue(t *testing.T, s dispatcher.Store, fp, mac, issuer string, at time.Time, replace bool) dispatcher.CodeIssue {
	t.Helper()
	r, err := s.IssueCode(t.Context(), dispatcher.CodeWrite{Citizen: alice, Channel: channels.Email, Fingerprint: fp,
		MAC: mac, Issuer: issuer, At: at, Replace: replace})
	must(t, err)
	return r
}

// check submits a code for alice's email.
func check(t *testing.T, s dispatcher.Store, mac string, at time.Time) (dispatcher.CodeAnswer, int) {
	t.Helper()
	a, left, err := s.CheckCode(t.Context(), dispatcher.CodeCheck{Citizen: alice, Channel: channels.Email, MAC: mac, At: at})
	must(t, err)
	return a, left
}

var confirmCases = []Case{
	{"UpdateContact", "a new address is unconfirmed; core's confirmed flag confirms it", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		if _, err := contactFP(ctx, s, "a@example.dk", fpA, "+4512345678", fpMob, false, at, "ev-1"); err != nil {
			t.Fatal(err)
		}
		if e, m := confirmedState(t, s); e || m {
			t.Errorf("confirmed email %v, mobile %v after a plain update, want neither", e, m)
		}
		if _, err := contactFP(ctx, s, "a@example.dk", fpA, "-", "", true, at.Add(time.Second), "ev-2"); err != nil {
			t.Fatal(err)
		}
		if e, m := confirmedState(t, s); !e || m {
			t.Errorf("confirmed email %v, mobile %v after core confirmed the email, want the email only", e, m)
		}
	}},
	{"UpdateContact", "a changed, fingerprintless or removed address loses its confirmation; the same keeps it", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		step := 0
		next := func(email, fp string, confirmed bool) {
			step++
			if _, err := contactFP(ctx, s, email, fp, "-", "", confirmed, at.Add(time.Duration(step)*time.Second), fmt.Sprint("ev-", step)); err != nil {
				t.Fatal(err)
			}
		}
		next("a@example.dk", fpA, true)
		next("a@example.dk", fpA, false) // the same address again
		if e, _ := confirmedState(t, s); !e {
			t.Error("the same address sent again lost its confirmation")
		}
		next("b@example.dk", fpB, false)
		if e, _ := confirmedState(t, s); e {
			t.Error("a changed address kept the old one's confirmation")
		}
		next("b@example.dk", fpB, true)
		next("b@example.dk", "", false) // no fingerprint: counts as changed
		if e, _ := confirmedState(t, s); e {
			t.Error("an address written without a fingerprint kept its confirmation")
		}
		next("b@example.dk", fpB, true)
		next("", "", false)
		next("b@example.dk", fpB, false) // removed, then registered again
		if e, _ := confirmedState(t, s); e {
			t.Error("an address removed and registered again is still confirmed")
		}
	}},
	{"UpdateContact", "a stale confirmed event confirms nothing", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		if _, err := contactFP(ctx, s, "b@example.dk", fpB, "-", "", false, at, "ev-new"); err != nil {
			t.Fatal(err)
		}
		if _, err := contactFP(ctx, s, "b@example.dk", fpB, "-", "", true, at.Add(-time.Minute), "ev-old"); err != nil {
			t.Fatal(err)
		}
		if e, _ := confirmedState(t, s); e {
			t.Error("an older confirmed event confirmed the address")
		}
	}},
	{"RemoveAddress", "a gone email or mobile loses its confirmation", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		if _, err := contactFP(ctx, s, "a@example.dk", fpA, "+4512345678", fpMob, true, at, "ev-1"); err != nil {
			t.Fatal(err)
		}
		for _, to := range []channels.Address{{Channel: channels.Email, Value: "a@example.dk"}, {Channel: channels.SMS, Value: "+4512345678"}} {
			if ok, err := s.RemoveAddress(ctx, alice, to, at.Add(time.Second)); err != nil || !ok {
				t.Fatalf("RemoveAddress(%s) = %v, %v", to.Channel, ok, err)
			}
		}
		// The provider's word was wrong, and the same addresses come back.
		if _, err := contactFP(ctx, s, "a@example.dk", fpA, "+4512345678", fpMob, false, at.Add(2*time.Second), "ev-2"); err != nil {
			t.Fatal(err)
		}
		if e, m := confirmedState(t, s); e || m {
			t.Errorf("confirmed email %v, mobile %v after they were gone and came back, want neither", e, m)
		}
	}},

	{"IssueCode", "only for the registered, unconfirmed address", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		if r := issue(t, s, fpA, macOK, "i1", at, false); r != dispatcher.CodeStale {
			t.Errorf("a code for an unknown citizen: %v, want stale", r)
		}
		if _, err := contactFP(ctx, s, "a@example.dk", fpA, "-", "", false, at, "ev-1"); err != nil {
			t.Fatal(err)
		}
		if r := issue(t, s, fpB, macOK, "i1", at, false); r != dispatcher.CodeStale {
			t.Errorf("a code for another address: %v, want stale", r)
		}
		if r := issue(t, s, fpA, macOK, "i1", at, false); r != dispatcher.CodeIssued {
			t.Errorf("a code for the registered address: %v, want issued", r)
		}
		if _, err := contactFP(ctx, s, "a@example.dk", fpA, "-", "", true, at.Add(time.Second), "ev-2"); err != nil {
			t.Fatal(err)
		}
		if r := issue(t, s, fpA, macOK, "i2", at, true); r != dispatcher.CodeConfirmed {
			t.Errorf("a code for a confirmed address: %v, want confirmed", r)
		}
	}},
	{"IssueCode", "a valid code of another request stands unless replaced; a retry replaces its own", func(t *testing.T, s dispatcher.Store) {
		at := now()
		if _, err := contactFP(t.Context(), s, "a@example.dk", fpA, "-", "", false, at, "ev-1"); err != nil {
			t.Fatal(err)
		}
		if r := issue(t, s, fpA, "mac-1", "i1", at, false); r != dispatcher.CodeIssued {
			t.Fatalf("first code: %v", r)
		}
		if r := issue(t, s, fpA, "mac-2", "i2", at, false); r != dispatcher.CodePending {
			t.Errorf("a second request while a code is valid: %v, want pending", r)
		}
		if r := issue(t, s, fpA, "mac-1b", "i1", at, false); r != dispatcher.CodeIssued {
			t.Errorf("a retry of the first request: %v, want issued", r)
		}
		if a, _ := check(t, s, "mac-1", at); a != dispatcher.AnswerWrong {
			t.Errorf("the replaced code: %v, want wrong", a)
		}
		if r := issue(t, s, fpA, "mac-3", "i3", at, true); r != dispatcher.CodeIssued {
			t.Errorf("a resend: %v, want issued", r)
		}
		if a, _ := check(t, s, "mac-1b", at); a != dispatcher.AnswerWrong {
			t.Errorf("the code a resend replaced: %v, want wrong", a)
		}
		// Past its validity a pending code no longer stands.
		if r := issue(t, s, fpA, "mac-4", "i4", at.Add(dispatcher.CodeTTL), false); r != dispatcher.CodeIssued {
			t.Errorf("a request after the code expired: %v, want issued", r)
		}
	}},
	{"IssueCode", "at most CodesPerHour requests per address in an hour", func(t *testing.T, s dispatcher.Store) {
		at := now()
		if _, err := contactFP(t.Context(), s, "a@example.dk", fpA, "-", "", false, at, "ev-1"); err != nil {
			t.Fatal(err)
		}
		for i := range dispatcher.CodesPerHour {
			if r := issue(t, s, fpA, macOK, fmt.Sprint("i", i), at.Add(time.Duration(i)*time.Minute), true); r != dispatcher.CodeIssued {
				t.Fatalf("request %d: %v, want issued", i+1, r)
			}
		}
		if r := issue(t, s, fpA, macOK, "one-more", at.Add(10*time.Minute), true); r != dispatcher.CodeLimited {
			t.Errorf("request %d within the hour: %v, want limited", dispatcher.CodesPerHour+1, r)
		}
		if r := issue(t, s, fpA, macOK, "i0", at.Add(10*time.Minute), true); r != dispatcher.CodeIssued {
			t.Errorf("a retry of a counted request: %v, want issued (it spends none)", r)
		}
		if r := issue(t, s, fpA, macOK, "later", at.Add(time.Hour+time.Millisecond), true); r != dispatcher.CodeIssued {
			t.Errorf("a request an hour after the first: %v, want issued", r)
		}
	}},
	{"ReserveCode", "reserves one of the hour's requests; the issue of a reserved request goes through", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		if _, err := contactFP(ctx, s, "a@example.dk", fpA, "-", "", false, at, "ev-1"); err != nil {
			t.Fatal(err)
		}
		for i := range dispatcher.CodesPerHour {
			ok, err := s.ReserveCode(ctx, alice, channels.Email, fpA, fmt.Sprint("r", i), at)
			if err != nil || !ok {
				t.Fatalf("reservation %d: %v, %v", i+1, ok, err)
			}
		}
		if ok, err := s.ReserveCode(ctx, alice, channels.Email, fpA, "r-more", at); err != nil || ok {
			t.Errorf("reservation %d: %v, %v; want none left", dispatcher.CodesPerHour+1, ok, err)
		}
		if ok, err := s.ReserveCode(ctx, alice, channels.Email, fpA, "r1", at); err != nil || !ok {
			t.Errorf("reserving again for a request that has one: %v, %v; want true", ok, err)
		}
		if ok, err := s.ReserveCode(ctx, alice, channels.Email, fpB, "r-other", at); err != nil || !ok {
			t.Errorf("another address: %v, %v; want its own requests", ok, err)
		}
		if r := issue(t, s, fpA, macOK, "r2", at, true); r != dispatcher.CodeIssued {
			t.Errorf("the issue of a reserved request: %v, want issued", r)
		}
		if r := issue(t, s, fpA, macOK, "unreserved", at, true); r != dispatcher.CodeLimited {
			t.Errorf("an unreserved request past the limit: %v, want limited", r)
		}
	}},

	{"CheckCode", "the answers: none, wrong, confirmed (then used up), expired", func(t *testing.T, s dispatcher.Store) {
		at := now()
		if _, err := contactFP(t.Context(), s, "a@example.dk", fpA, "-", "", false, at, "ev-1"); err != nil {
			t.Fatal(err)
		}
		if a, _ := check(t, s, macOK, at); a != dispatcher.AnswerNone {
			t.Errorf("before any code: %v, want none", a)
		}
		issue(t, s, fpA, macOK, "i1", at, false)
		if a, left := check(t, s, "mac-wrong", at); a != dispatcher.AnswerWrong || left != dispatcher.CodeAttempts-1 {
			t.Errorf("a wrong code: %v, %d left; want wrong, %d left", a, left, dispatcher.CodeAttempts-1)
		}
		if a, _ := check(t, s, "mac-righ", at); a != dispatcher.AnswerWrong {
			t.Errorf("a prefix of the right MAC: %v, want wrong", a)
		}
		if e, _ := confirmedState(t, s); e {
			t.Fatal("confirmed by wrong codes")
		}
		if a, _ := check(t, s, macOK, at.Add(time.Minute)); a != dispatcher.AnswerConfirmed {
			t.Errorf("the right code: %v, want confirmed", a)
		}
		if e, _ := confirmedState(t, s); !e {
			t.Error("the right code did not confirm the address")
		}
		if a, _ := check(t, s, macOK, at.Add(time.Minute)); a != dispatcher.AnswerNone {
			t.Errorf("the right code again: %v, want none (used up)", a)
		}
		_, _ = contactFP(t.Context(), s, "b@example.dk", fpB, "-", "", false, at.Add(time.Second), "ev-2")
		issue(t, s, fpB, macOK, "i2", at, false)
		if a, _ := check(t, s, macOK, at.Add(dispatcher.CodeTTL)); a != dispatcher.AnswerExpired {
			t.Errorf("the right code at its expiry: %v, want expired", a)
		}
		if e, _ := confirmedState(t, s); e {
			t.Error("an expired code confirmed the address")
		}
	}},
	{"CheckCode", "after CodeAttempts attempts even the right code is refused", func(t *testing.T, s dispatcher.Store) {
		at := now()
		if _, err := contactFP(t.Context(), s, "a@example.dk", fpA, "-", "", false, at, "ev-1"); err != nil {
			t.Fatal(err)
		}
		issue(t, s, fpA, macOK, "i1", at, false)
		for i := range dispatcher.CodeAttempts {
			if a, _ := check(t, s, fmt.Sprint("guess-", i), at); a != dispatcher.AnswerWrong {
				t.Fatalf("guess %d: %v, want wrong", i+1, a)
			}
		}
		if a, _ := check(t, s, macOK, at); a != dispatcher.AnswerTooMany {
			t.Errorf("the right code at attempt %d: %v, want too many", dispatcher.CodeAttempts+1, a)
		}
		if e, _ := confirmedState(t, s); e {
			t.Error("confirmed after the attempts ran out")
		}
	}},
	{"CheckCode", "concurrent guesses never make more than CodeAttempts attempts", func(t *testing.T, s dispatcher.Store) {
		at := now()
		if _, err := contactFP(t.Context(), s, "a@example.dk", fpA, "-", "", false, at, "ev-1"); err != nil {
			t.Fatal(err)
		}
		issue(t, s, fpA, macOK, "i1", at, false)
		var wrong, tooMany atomic.Int32
		together(40, func(i int) {
			a, _, err := s.CheckCode(context.Background(), dispatcher.CodeCheck{Citizen: alice, Channel: channels.Email,
				MAC: fmt.Sprint("guess-", i), At: at})
			switch {
			case err != nil:
				t.Error(err)
			case a == dispatcher.AnswerWrong:
				wrong.Add(1)
			case a == dispatcher.AnswerTooMany:
				tooMany.Add(1)
			}
		})
		if wrong.Load() != dispatcher.CodeAttempts || tooMany.Load() != 40-dispatcher.CodeAttempts {
			t.Errorf("%d wrong and %d too many of 40 concurrent guesses, want %d and %d", wrong.Load(), tooMany.Load(),
				dispatcher.CodeAttempts, 40-dispatcher.CodeAttempts)
		}
	}},
	{"CheckCode", "a code sent to an earlier address confirms nothing", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		if _, err := contactFP(ctx, s, "a@example.dk", fpA, "-", "", false, at, "ev-1"); err != nil {
			t.Fatal(err)
		}
		issue(t, s, fpA, macOK, "i1", at, false)
		if _, err := contactFP(ctx, s, "b@example.dk", fpB, "-", "", false, at.Add(time.Second), "ev-2"); err != nil {
			t.Fatal(err)
		}
		if a, _ := check(t, s, macOK, at); a != dispatcher.AnswerNone {
			t.Errorf("the old address's code after a change: %v, want none", a)
		}
		if e, _ := confirmedState(t, s); e {
			t.Error("the new address was confirmed with the old one's code")
		}
	}},
}
