package storetest

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Webhook sync: the per-letter, per-platform lock, acknowledgements, and
// disabled platforms.
var syncCases = []Case{
	{"LockSync", "one holder per citizen, letter and platform", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		lock := func(citizen, id string, p event.Platform) bool {
			t.Helper()
			l, err := s.LockSync(ctx, syncKey(citizen, id, p), time.Minute)
			must(t, err)
			return l != nil
		}
		if !lock(alice, msg1, event.EBoks) {
			t.Fatal("a free lock was not taken")
		}
		if lock(alice, msg1, event.EBoks) {
			t.Error("a held lock was taken again")
		}
		if !lock(alice, msg1, event.MitDK) || !lock(alice, msg2, event.EBoks) || !lock(bob, msg1, event.EBoks) {
			t.Error("the lock of another platform, letter or citizen was held")
		}
	}},
	{"LockSync", "concurrent takers: exactly one wins", func(t *testing.T, s dispatcher.Store) {
		var won atomic.Int32
		together(8, func(int) {
			l, err := s.LockSync(t.Context(), syncKey(alice, msg1, event.BorgerDK), time.Minute)
			if err != nil {
				t.Error(err)
			}
			if l != nil {
				won.Add(1)
			}
		})
		if n := won.Load(); n != 1 {
			t.Errorf("%d takers won, want 1", n)
		}
	}},
	{"LockSync", "a lock lapses after its ttl", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		if l, err := s.LockSync(ctx, syncKey(alice, msg1, event.EBoks), 100*time.Millisecond); err != nil || l == nil {
			t.Fatalf("LockSync = %v, %v", l, err)
		}
		if l, _ := s.LockSync(ctx, syncKey(alice, msg1, event.EBoks), time.Minute); l != nil {
			t.Fatal("taken again at once")
		}
		eventually(t, 5*time.Second, "the lock did not lapse", func() bool {
			l, err := s.LockSync(ctx, syncKey(alice, msg1, event.EBoks), time.Minute)
			must(t, err)
			return l != nil
		})
	}},
	{"LockSync", "Unlock frees the lock of that platform only; unlocking twice is no error", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		locks := map[event.Platform]dispatcher.SyncLock{}
		for _, p := range []event.Platform{event.EBoks, event.MitDK} {
			l, err := s.LockSync(ctx, syncKey(alice, msg1, p), time.Minute)
			if err != nil || l == nil {
				t.Fatalf("LockSync(%s) = %v, %v", p, l, err)
			}
			locks[p] = l
		}
		must(t, locks[event.EBoks].Unlock(ctx))
		if l, err := s.LockSync(ctx, syncKey(alice, msg1, event.EBoks), time.Minute); err != nil || l == nil {
			t.Errorf("after Unlock: LockSync = %v, %v; want taken", l, err)
		}
		if l, _ := s.LockSync(ctx, syncKey(alice, msg1, event.MitDK), time.Minute); l != nil {
			t.Error("Unlock freed another platform's lock")
		}
		must(t, locks[event.MitDK].Unlock(ctx))
		must(t, locks[event.MitDK].Unlock(ctx))
	}},
	// A holder whose lock lapsed (a slow webhook) must not free the lock
	// its successor took meanwhile: the successor's sends would then run
	// beside a third holder's, and versions could go out of order.
	{"LockSync", "a lapsed holder's Unlock does not free its successor's lock", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		k := syncKey(alice, msg1, event.EBoks)
		first, err := s.LockSync(ctx, k, 50*time.Millisecond)
		if err != nil || first == nil {
			t.Fatalf("LockSync = %v, %v", first, err)
		}
		var next dispatcher.SyncLock
		eventually(t, 5*time.Second, "the lock did not lapse", func() bool {
			next, err = s.LockSync(ctx, k, time.Minute)
			must(t, err)
			return next != nil
		})
		must(t, first.Unlock(ctx))
		if l, _ := s.LockSync(ctx, k, time.Minute); l != nil {
			t.Fatal("the lapsed holder's Unlock freed its successor's lock")
		}
		must(t, next.Unlock(ctx))
		if l, _ := s.LockSync(ctx, k, time.Minute); l == nil {
			t.Error("the successor's Unlock did not free its lock")
		}
	}},
	{"AckSync", "acknowledgements only go up, per platform", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		for _, a := range []struct {
			p event.Platform
			v int64
		}{{event.EBoks, 2}, {event.MitDK, 1}, {event.EBoks, 3}, {event.EBoks, 1}, {event.MitDK, 1}} {
			must(t, s.AckSync(ctx, syncKey(alice, msg1, a.p), a.v))
		}
		st := state(t, s, alice, msg1)
		if st.Acked[event.EBoks] != 3 || st.Acked[event.MitDK] != 1 || len(st.Acked) != 2 {
			t.Errorf("acked = %v, want e-boks 3, mit.dk 1", st.Acked)
		}
	}},
	{"AckSync", "an acknowledgement for an unknown letter makes no letter", func(t *testing.T, s dispatcher.Store) {
		must(t, s.AckSync(t.Context(), syncKey(alice, msg1, event.EBoks), 4))
		_, err := s.State(t.Context(), alice, msg1)
		wantNotFound(t, "State after AckSync of an unknown letter", err)
	}},
	{"PlatformDisabled", "no platform is disabled at first", func(t *testing.T, s dispatcher.Store) {
		for _, p := range []event.Platform{event.BorgerDK, event.DigitalPostApp, event.EBoks, event.MitDK} {
			if off, err := s.PlatformDisabled(t.Context(), p); err != nil || off {
				t.Errorf("PlatformDisabled(%s) = %v, %v; want enabled", p, off, err)
			}
		}
	}},
	{"SetPlatformDisabled", "disables and re-enables one platform", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		off := func(p event.Platform) bool {
			t.Helper()
			v, err := s.PlatformDisabled(ctx, p)
			must(t, err)
			return v
		}
		must(t, s.SetPlatformDisabled(ctx, event.MitDK, true))
		must(t, s.SetPlatformDisabled(ctx, event.MitDK, true))
		if !off(event.MitDK) || off(event.EBoks) {
			t.Error("after disabling mit.dk: wrong platforms disabled")
		}
		must(t, s.SetPlatformDisabled(ctx, event.MitDK, false))
		must(t, s.SetPlatformDisabled(ctx, event.EBoks, false))
		if off(event.MitDK) || off(event.EBoks) {
			t.Error("after re-enabling: a platform still disabled")
		}
	}},
}

// Coalescing: the letters held while a channel's window is open.
var coalesceCases = []Case{
	{"Hold", "the first held letter of a channel says so", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		hold := func(citizen string, ch channels.Name, id string) bool {
			t.Helper()
			first, err := s.Hold(ctx, citizen, ch, id)
			must(t, err)
			return first
		}
		if !hold(alice, channels.SMS, msg1) {
			t.Error("the first letter is not first")
		}
		if hold(alice, channels.SMS, msg2) {
			t.Error("the second letter is first")
		}
		if !hold(alice, channels.Email, msg2) || !hold(bob, channels.SMS, msg1) {
			t.Error("the first letter of another channel or citizen is not first")
		}
		must(t, s.Release(ctx, alice, channels.SMS, 2))
		if !hold(alice, channels.SMS, msg3) {
			t.Error("the first letter after a release of all is not first")
		}
	}},
	{"Hold", "concurrent holds: exactly one is first", func(t *testing.T, s dispatcher.Store) {
		var firsts atomic.Int32
		together(8, func(i int) {
			first, err := s.Hold(t.Context(), alice, channels.Email, string(rune('a'+i)))
			if err != nil {
				t.Error(err)
			}
			if first {
				firsts.Add(1)
			}
		})
		if n := firsts.Load(); n != 1 {
			t.Errorf("%d holds were first, want 1", n)
		}
		if ids, err := s.Held(t.Context(), alice, channels.Email); err != nil || len(ids) != 8 {
			t.Errorf("Held = %v, %v; want 8 letters", ids, err)
		}
	}},
	// A call run again (a lost connection, a task retried) or a letter's
	// second device on one channel holds it again.
	{"Hold", "a letter held again is held once, where it was, and answers the same", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		hold := func(id string) bool {
			t.Helper()
			first, err := s.Hold(ctx, alice, channels.SMS, id)
			must(t, err)
			return first
		}
		if !hold(msg1) || hold(msg2) {
			t.Fatal("first answers wrong before the test")
		}
		if !hold(msg1) {
			t.Error("the first letter held again: not first")
		}
		if hold(msg2) {
			t.Error("the second letter held again: first")
		}
		if ids, err := s.Held(ctx, alice, channels.SMS); err != nil || !equalIDs(ids, msg1, msg2) {
			t.Errorf("Held = %v, %v; want [%s %s]", ids, err, msg1, msg2)
		}
	}},
	{"Held", "oldest first, per citizen and channel; none held is empty", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		for _, id := range []string{msg3, msg1, msg2} {
			_, err := s.Hold(ctx, alice, channels.SMS, id)
			must(t, err)
		}
		_, err := s.Hold(ctx, alice, channels.Email, "msg-mail")
		must(t, err)
		if ids, err := s.Held(ctx, alice, channels.SMS); err != nil || !equalIDs(ids, msg3, msg1, msg2) {
			t.Errorf("Held(sms) = %v, %v; want [%s %s %s]", ids, err, msg3, msg1, msg2)
		}
		if ids, err := s.Held(ctx, bob, channels.SMS); err != nil || len(ids) != 0 {
			t.Errorf("Held(bob) = %v, %v; want none", ids, err)
		}
	}},
	{"Release", "forgets the first n; letters held meanwhile stay", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		for _, id := range []string{msg1, msg2} {
			_, err := s.Hold(ctx, alice, channels.SMS, id)
			must(t, err)
		}
		snapshot, err := s.Held(ctx, alice, channels.SMS)
		must(t, err)
		_, err = s.Hold(ctx, alice, channels.SMS, msg3) // held while the flush sends
		must(t, err)
		must(t, s.Release(ctx, alice, channels.SMS, len(snapshot)))
		if ids, err := s.Held(ctx, alice, channels.SMS); err != nil || !equalIDs(ids, msg3) {
			t.Errorf("Held after Release(%d) = %v, %v; want [%s]", len(snapshot), ids, err, msg3)
		}
		must(t, s.Release(ctx, alice, channels.SMS, 0))
		if ids, _ := s.Held(ctx, alice, channels.SMS); !equalIDs(ids, msg3) {
			t.Errorf("Held after Release(0) = %v, want [%s]", ids, msg3)
		}
		must(t, s.Release(ctx, alice, channels.SMS, 5))
		if ids, err := s.Held(ctx, alice, channels.SMS); err != nil || len(ids) != 0 {
			t.Errorf("Held after releasing more than held = %v, %v; want none", ids, err)
		}
	}},
}

var miscCases = []Case{
	{"Remember", "a key is new once, until its ttl lapses", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		remember := func(key string, ttl time.Duration) bool {
			t.Helper()
			ok, err := s.Remember(ctx, key, ttl)
			must(t, err)
			return ok
		}
		if !remember("wh:e-boks:1", 100*time.Millisecond) {
			t.Fatal("a new key is not new")
		}
		if remember("wh:e-boks:1", time.Minute) {
			t.Fatal("a remembered key is new again at once")
		}
		if !remember("wh:mit.dk:1", time.Minute) {
			t.Error("another key is not new")
		}
		eventually(t, 5*time.Second, "the key was not forgotten after its ttl", func() bool {
			return remember("wh:e-boks:1", time.Minute)
		})
	}},
	{"Ping", "a working store answers", func(t *testing.T, s dispatcher.Store) {
		must(t, s.Ping(t.Context()))
	}},
}

func equalIDs(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}
