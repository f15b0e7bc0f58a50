package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/digitalpost/postbud/dispatcher"
)

// Access relations: per owner its holders and per holder the mailboxes it
// holds, the grant state and notify each last writer wins, marked like the
// registry's writes.
var accessCases = []Case{
	{"SetAccess", "a grant is read from both sides; an update changes notify; a revoke removes it from both", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		at := now()
		exp := at.Add(24 * time.Hour)
		applied, err := setAccess(ctx, s, dispatcher.AccessGrant, true, exp, at, "ev-1")
		must(t, err)
		if !applied {
			t.Fatal("grant not applied")
		}
		want := []dispatcher.Access{{Owner: alice, Holder: bob, Granted: true, Notify: true, Expires: exp, Since: at}}
		wantAccess(t, s, "granted", want)
		must2(t)(setAccess(ctx, s, dispatcher.AccessUpdate, false, time.Time{}, at.Add(time.Minute), "ev-2"))
		want[0].Notify = false
		wantAccess(t, s, "notify off", want)
		must2(t)(setAccess(ctx, s, dispatcher.AccessRevoke, false, time.Time{}, at.Add(2*time.Minute), "ev-3"))
		wantAccess(t, s, "revoked", nil)
	}},
	{"SetAccess", "last writer wins: an older grant after the revoke, and an older update, change nothing", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		at := now()
		must2(t)(setAccess(ctx, s, dispatcher.AccessGrant, true, time.Time{}, at, "ev-1"))
		must2(t)(setAccess(ctx, s, dispatcher.AccessRevoke, false, time.Time{}, at.Add(time.Hour), "ev-3"))
		applied, err := setAccess(ctx, s, dispatcher.AccessGrant, true, time.Time{}, at.Add(time.Minute), "ev-2")
		must(t, err)
		if applied {
			t.Error("a grant older than the revoke applied")
		}
		wantAccess(t, s, "late grant", nil)
		must2(t)(setAccess(ctx, s, dispatcher.AccessGrant, false, time.Time{}, at.Add(2*time.Hour), "ev-4"))
		must2(t)(setAccess(ctx, s, dispatcher.AccessUpdate, true, time.Time{}, at.Add(90*time.Minute), "ev-old-update"))
		wantAccess(t, s, "granted anew, an older update", []dispatcher.Access{{Owner: alice, Holder: bob, Granted: true,
			Since: at.Add(2 * time.Hour)}})
		// An update that overtook its grant keeps its notify.
		must2(t)(setAccess(ctx, s, dispatcher.AccessUpdate, true, time.Time{}, at.Add(4*time.Hour), "ev-6"))
		must2(t)(setAccess(ctx, s, dispatcher.AccessGrant, false, time.Time{}, at.Add(3*time.Hour), "ev-5"))
		wantAccess(t, s, "update before its grant", []dispatcher.Access{{Owner: alice, Holder: bob, Granted: true,
			Notify: true, Since: at.Add(3 * time.Hour)}})
		applied, err = setAccess(ctx, s, dispatcher.AccessRevoke, false, time.Time{}, at.Add(150*time.Minute), "ev-r-old")
		must(t, err)
		if applied {
			t.Error("a revoke older than the grant applied")
		}
		wantAccess(t, s, "late revoke", []dispatcher.Access{{Owner: alice, Holder: bob, Granted: true,
			Notify: true, Since: at.Add(3 * time.Hour)}})
	}},
	{"SetAccess", "a marked write runs once: its re-run changes nothing", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		at := now()
		must2(t)(setAccess(ctx, s, dispatcher.AccessGrant, true, time.Time{}, at, "ev-1"))
		must2(t)(setAccess(ctx, s, dispatcher.AccessRevoke, false, time.Time{}, at.Add(time.Minute), "ev-2"))
		applied, err := setAccess(ctx, s, dispatcher.AccessGrant, true, time.Time{}, at.Add(time.Hour), "ev-1")
		must(t, err)
		if applied {
			t.Error("the re-run of a marked grant applied")
		}
		wantAccess(t, s, "re-run", nil)
		if seen, err := s.Seen(ctx, dispatcher.EventRef{Citizen: alice, ID: "ev-2"}); err != nil || !seen {
			t.Errorf("Seen(ev-2) = %v, %v; want the write's mark", seen, err)
		}
	}},
	{"HoldersOf", "an unknown owner has none; holders come by holder key", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		hs, err := s.HoldersOf(ctx, "cit-nobody")
		must(t, err)
		if len(hs) != 0 {
			t.Errorf("HoldersOf(unknown) = %v", hs)
		}
		at := now()
		for _, h := range []string{"cit-z", "cit-a"} {
			_, err := s.SetAccess(ctx, dispatcher.AccessWrite{Owner: alice, Holder: h, Change: dispatcher.AccessGrant, At: at})
			must(t, err)
		}
		hs, err = s.HoldersOf(ctx, alice)
		must(t, err)
		if len(hs) != 2 || hs[0].Holder != "cit-a" || hs[1].Holder != "cit-z" {
			t.Errorf("HoldersOf = %+v, want cit-a then cit-z", hs)
		}
	}},
	{"HeldBy", "a holder sees the mailboxes it holds, by owner key", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		at := now()
		for _, o := range []string{"cit-o2", "cit-o1"} {
			_, err := s.SetAccess(ctx, dispatcher.AccessWrite{Owner: o, Holder: bob, Change: dispatcher.AccessGrant, Notify: true, At: at})
			must(t, err)
		}
		hs, err := s.HeldBy(ctx, bob)
		must(t, err)
		if len(hs) != 2 || hs[0].Owner != "cit-o1" || hs[1].Owner != "cit-o2" || !hs[0].Notify {
			t.Errorf("HeldBy = %+v, want cit-o1 then cit-o2 with notify", hs)
		}
	}},
}

func setAccess(ctx context.Context, s dispatcher.Store, c dispatcher.AccessChange, notify bool, expires, at time.Time, ev string) (bool, error) {
	return s.SetAccess(ctx, dispatcher.AccessWrite{Owner: alice, Holder: bob, Change: c, Notify: notify, Expires: expires,
		At: at, Mark: dispatcher.EventRef{Citizen: alice, ID: ev}})
}

// wantAccess checks alice's holders and bob's mailboxes are want.
func wantAccess(t *testing.T, s dispatcher.Store, step string, want []dispatcher.Access) {
	t.Helper()
	got, err := s.HoldersOf(t.Context(), alice)
	must(t, err)
	if diff := cmp.Diff(want, got, equalTime); diff != "" {
		t.Errorf("%s: HoldersOf (-want +got):\n%s", step, diff)
	}
	held, err := s.HeldBy(t.Context(), bob)
	must(t, err)
	if diff := cmp.Diff(want, held, equalTime); diff != "" {
		t.Errorf("%s: HeldBy (-want +got):\n%s", step, diff)
	}
}
