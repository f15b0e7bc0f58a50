package storetest

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Delivery reports.
var reportCases = []Case{
	{"ApplyReport", "a final state is never replaced; the same status applies once", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		o := sent(at, "d-sms", channels.SMS)
		record(t, s, alice, newLetter(msg1, at), []dispatcher.Outcome{o}, "ev-1")
		var want []dispatcher.Outcome
		want = append(want, inTrail(o))
		for i, step := range []struct {
			status string
			final  bool
			apply  bool
		}{
			{"ACCEPTED", false, true},
			{"ACCEPTED", false, false},
			{"BUFFERED", false, true},
			{"DELIVERED", true, true},
			{"DELIVERED", true, false},
			{"UNDELIVERABLE", true, false},
			{"BUFFERED", false, false},
		} {
			entry := dispatcher.Outcome{At: at.Add(time.Duration(i+1) * time.Millisecond), DeliveryID: "d-sms",
				Channel: channels.SMS, Result: dispatcher.ResultReport, Reason: step.status}
			applied, err := applyReport(ctx, s, alice, msg1, "d-sms", step.status, step.final, entry)
			must(t, err)
			if applied != step.apply {
				t.Errorf("step %d (%s, final %v): applied %v, want %v", i, step.status, step.final, applied, step.apply)
			}
			if step.apply {
				want = append(want, entry)
			}
		}
		got, err := s.Trail(ctx, msg1)
		must(t, err)
		if diff := cmp.Diff(want, got, equalTime); diff != "" {
			t.Errorf("trail (-want +got):\n%s", diff)
		}
	}},
	{"ApplyReport", "reports of two deliveries do not interfere", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		for _, d := range []string{"d-1", "d-2"} {
			entry := dispatcher.Outcome{At: at, DeliveryID: d, Result: dispatcher.ResultReport, Reason: "DELIVERED"}
			if ok, err := applyReport(ctx, s, alice, msg1, d, "DELIVERED", true, entry); err != nil || !ok {
				t.Errorf("ApplyReport(%s) = %v, %v; want applied", d, ok, err)
			}
		}
	}},
	{"ApplyReport", "a report for an unknown letter changes nothing", func(t *testing.T, s dispatcher.Store) {
		entry := dispatcher.Outcome{At: now(), DeliveryID: "d-1", Result: dispatcher.ResultReport, Reason: "DELIVERED"}
		if ok, err := applyReport(t.Context(), s, alice, msg1, "d-1", "DELIVERED", true, entry); err != nil || ok {
			t.Errorf("ApplyReport(unknown letter) = %v, %v; want not applied", ok, err)
		}
		_, _, err := loadView(t.Context(), s, alice, msg1)
		wantNotFound(t, "Load after a report for an unknown letter", err)
	}},
	{"ApplyReport", "concurrent copies of one report apply once", func(t *testing.T, s dispatcher.Store) {
		at := now()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		var applied atomic.Int32
		together(8, func(int) {
			entry := dispatcher.Outcome{At: at, DeliveryID: "d-1", Result: dispatcher.ResultReport, Reason: "DELIVERED"}
			ok, err := applyReport(t.Context(), s, alice, msg1, "d-1", "DELIVERED", true, entry)
			if err != nil {
				t.Error(err)
			}
			if ok {
				applied.Add(1)
			}
		})
		if n := applied.Load(); n != 1 {
			t.Errorf("%d copies applied, want 1", n)
		}
	}},
}

// Read state.
var stateCases = []Case{
	{"ApplyState", "a read on a stored letter: changed, one version, the count follows", func(t *testing.T, s dispatcher.Store) {
		at := now()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		st := apply(t, s, alice, msg1, true, at.Add(time.Second), event.EBoks, "ev-read")
		want := applied{ReadState: dispatcher.ReadState{MessageID: msg1, Read: true, Version: 1, ChangedAt: at.Add(time.Second),
			ChangedBy: event.EBoks, Unread: 0, Received: true}, Changed: true}
		if diff := cmp.Diff(want, st, equalTime); diff != "" {
			t.Errorf("state (-want +got):\n%s", diff)
		}
	}},
	{"ApplyState", "the version grows by one per change, and only then", func(t *testing.T, s dispatcher.Store) {
		at := now()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		record(t, s, alice, newLetter(msg2, at), nil, "ev-2")
		for i, step := range []struct {
			read       bool
			platform   event.Platform
			wantV      int64
			wantChange bool
			wantUnread int
		}{
			{true, event.EBoks, 1, true, 1},
			{false, event.MitDK, 2, true, 2},
			{false, event.BorgerDK, 2, false, 2},
			{true, event.DigitalPostApp, 3, true, 1},
			{true, event.DigitalPostApp, 3, false, 1},
		} {
			st := apply(t, s, alice, msg1, step.read, at.Add(time.Duration(i+1)*time.Second), step.platform, fmt.Sprintf("ev-s%d", i))
			if st.Version != step.wantV || st.Changed != step.wantChange || st.Read != step.read || st.Unread != step.wantUnread || st.Correct {
				t.Errorf("step %d: %+v; want version %d, changed %v, read %v, unread %d", i, st, step.wantV, step.wantChange,
					step.read, step.wantUnread)
			}
		}
	}},
	{"ApplyState", "last writer wins by time; ties go to read, then to the greater platform name", applyStateLWW},
	{"ApplyState", "every order of arrival ends in the same state", applyStateOrders},
	// ApplyState does not mark its event (the dispatcher marks it after the
	// fan-out, with Mark): a re-run before the mark gets the first run's
	// answer and changes nothing — a change still says so, or the other
	// platforms are never told.
	{"ApplyState", "a re-run before Mark answers as the first run and changes nothing", func(t *testing.T, s dispatcher.Store) {
		at := now()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		first := apply(t, s, alice, msg1, true, at, event.EBoks, "ev-read")
		again := apply(t, s, alice, msg1, true, at, event.EBoks, "ev-read")
		if !first.Changed {
			t.Fatalf("first run %+v: not changed", first)
		}
		if diff := cmp.Diff(first, again, equalTime); diff != "" {
			t.Errorf("re-run (-first +again):\n%s", diff)
		}
		if st := state(t, s, alice, msg1); st.Version != 1 {
			t.Errorf("version after the re-run = %d, want 1", st.Version)
		}
	}},
	{"ApplyState", "a losing event re-run before Mark counts one correction", func(t *testing.T, s dispatcher.Store) {
		at := now()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		apply(t, s, alice, msg1, true, at, event.EBoks, "ev-read")
		first := apply(t, s, alice, msg1, false, at.Add(-time.Second), event.MitDK, "ev-unread")
		again := apply(t, s, alice, msg1, false, at.Add(-time.Second), event.MitDK, "ev-unread")
		if !first.Correct || first.Version != 2 {
			t.Fatalf("first run %+v: want a correction, version 2", first)
		}
		if diff := cmp.Diff(first, again, equalTime); diff != "" {
			t.Errorf("re-run (-first +again):\n%s", diff)
		}
		if st := state(t, s, alice, msg1); st.Version != 2 {
			t.Errorf("version after the re-run = %d, want 2", st.Version)
		}
	}},
	{"ApplyState", "a read before the letter arrives is kept and shows on the letter", func(t *testing.T, s dispatcher.Store) {
		at := now()
		st := apply(t, s, alice, msg1, true, at, event.MitDK, "ev-read")
		want := applied{ReadState: dispatcher.ReadState{MessageID: msg1, Read: true, Version: 1, ChangedAt: at, ChangedBy: event.MitDK,
			Received: false}, Changed: true}
		if diff := cmp.Diff(want, st, equalTime); diff != "" {
			t.Errorf("state (-want +got):\n%s", diff)
		}
		got := state(t, s, alice, msg1)
		if !got.Read || got.Version != 1 || got.Received {
			t.Errorf("State before arrival = %+v; want read, version 1, not received", got)
		}
		record(t, s, alice, newLetter(msg1, at.Add(time.Second)), nil, "ev-arrive")
		c, l := load(t, s, alice, msg1)
		if !l.Read || l.Version != 1 || c.Unread != 0 {
			t.Errorf("after arrival: letter %+v, unread %d; want read at version 1, 0 unread", l, c.Unread)
		}
		if got := state(t, s, alice, msg1); !got.Received || !got.Read {
			t.Errorf("State after arrival = %+v; want received and read", got)
		}
	}},
	{"ApplyState", "read then unread before the letter arrives: it arrives unread and counted", func(t *testing.T, s dispatcher.Store) {
		at := now()
		apply(t, s, alice, msg1, true, at, event.MitDK, "ev-read")
		if st := apply(t, s, alice, msg1, false, at.Add(time.Second), event.EBoks, "ev-unread"); st.Version != 2 || st.Read {
			t.Errorf("unread before arrival: %+v; want unread at version 2", st)
		}
		record(t, s, alice, newLetter(msg1, at), nil, "ev-arrive")
		if c, l := load(t, s, alice, msg1); l.Read || c.Unread != 1 {
			t.Errorf("after arrival: read %v, unread %d; want unread and counted", l.Read, c.Unread)
		}
	}},
	{"ApplyState", "the unread count follows across letters", func(t *testing.T, s dispatcher.Store) {
		at := now()
		for _, id := range []string{msg1, msg2, msg3} {
			record(t, s, alice, newLetter(id, at), nil, "ev-"+id)
		}
		record(t, s, bob, newLetter(msg1, at), nil, "ev-bob")
		apply(t, s, alice, msg1, true, at.Add(time.Second), event.EBoks, "ev-r1")
		if st := apply(t, s, alice, msg2, true, at.Add(time.Second), event.EBoks, "ev-r2"); st.Unread != 1 {
			t.Errorf("after two reads: unread %d, want 1", st.Unread)
		}
		if st := apply(t, s, alice, msg1, false, at.Add(2*time.Second), event.EBoks, "ev-u1"); st.Unread != 2 {
			t.Errorf("after an unread: unread %d, want 2", st.Unread)
		}
		if c, _ := load(t, s, bob, msg1); c.Unread != 1 {
			t.Errorf("bob's unread = %d, want 1: another citizen's reads counted", c.Unread)
		}
	}},
	{"ApplyState", "concurrent writers converge to the last writer", func(t *testing.T, s dispatcher.Store) {
		at := now()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		platforms := []event.Platform{event.BorgerDK, event.DigitalPostApp, event.EBoks, event.MitDK}
		const n = 16
		together(n, func(i int) {
			// Event i happened at i ms; the last one (n-1) is an unread.
			read := i%2 == 0
			_, _, err := applyState(t.Context(), s, alice, msg1, read, at.Add(time.Duration(i)*time.Millisecond),
				platforms[i%len(platforms)], fmt.Sprintf("ev-%d", i))
			if err != nil {
				t.Error(err)
			}
		})
		st := state(t, s, alice, msg1)
		last := n - 1
		if st.Read != (last%2 == 0) || !st.ChangedAt.Equal(at.Add(time.Duration(last)*time.Millisecond)) ||
			st.ChangedBy != platforms[last%len(platforms)] {
			t.Errorf("state = %+v; want event %d's", st, last)
		}
		if want := map[bool]int{true: 0, false: 1}[st.Read]; st.Unread != want {
			t.Errorf("unread = %d with read %v, want %d", st.Unread, st.Read, want)
		}
	}},

	{"State", "an unknown letter is ErrNotFound", func(t *testing.T, s dispatcher.Store) {
		_, err := s.State(t.Context(), alice, msg1)
		wantNotFound(t, "State(unknown)", err)
	}},
	{"State", "a stored letter: received, unread, version 0, the citizen's count", func(t *testing.T, s dispatcher.Store) {
		at := now()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		record(t, s, alice, newLetter(msg2, at), nil, "ev-2")
		st := state(t, s, alice, msg1)
		if st.MessageID != msg1 || !st.Received || st.Read || st.Version != 0 || st.Unread != 2 || len(st.Acked) != 0 {
			t.Errorf("state = %+v", st)
		}
	}},
}

// applyStateLWW applies one event over a prior state, for each rule of the
// last-writer-wins order.
func applyStateLWW(t *testing.T, s dispatcher.Store) {
	at := now()
	type ev struct {
		read     bool
		at       time.Time
		platform event.Platform
	}
	for i, tc := range []struct {
		name                  string
		prior, event          ev
		wantRead              bool
		wantBy                event.Platform
		wantAt                time.Time
		wantV                 int64
		wantChanged, wantCorr bool
	}{
		{"later and different: wins", ev{true, at, event.EBoks}, ev{false, at.Add(time.Second), event.MitDK},
			false, event.MitDK, at.Add(time.Second), 2, true, false},
		{"older and different, another platform: loses, that platform is corrected",
			ev{true, at, event.EBoks}, ev{false, at.Add(-time.Second), event.MitDK},
			true, event.EBoks, at, 2, false, true},
		{"older and different, same platform: loses quietly", ev{true, at, event.EBoks}, ev{false, at.Add(-time.Second), event.EBoks},
			true, event.EBoks, at, 1, false, false},
		{"older and the same: nothing", ev{true, at, event.EBoks}, ev{true, at.Add(-time.Second), event.MitDK},
			true, event.EBoks, at, 1, false, false},
		{"later and the same: takes over, no new version", ev{true, at, event.EBoks}, ev{true, at.Add(time.Second), event.BorgerDK},
			true, event.BorgerDK, at.Add(time.Second), 1, false, false},
		{"tie: read beats unread", ev{true, at, event.BorgerDK}, ev{false, at, event.MitDK},
			true, event.BorgerDK, at, 2, false, true},
		{"tie: a read wins over an unread", ev{false, at, event.MitDK}, ev{true, at, event.BorgerDK},
			true, event.BorgerDK, at, 1, true, false},
		{"tie, same state: the greater platform name wins", ev{true, at, event.BorgerDK}, ev{true, at, event.MitDK},
			true, event.MitDK, at, 1, false, false},
		{"tie, same state: the lesser platform name loses", ev{true, at, event.MitDK}, ev{true, at, event.BorgerDK},
			true, event.MitDK, at, 1, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A citizen of its own, for the unread count.
			citizen, id := fmt.Sprintf("cit-lww-%d", i), fmt.Sprintf("msg-lww-%d", i)
			record(t, s, citizen, newLetter(id, at.Add(-time.Hour)), nil, "ev-arrive")
			apply(t, s, citizen, id, tc.prior.read, tc.prior.at, tc.prior.platform, "ev-prior")
			st := apply(t, s, citizen, id, tc.event.read, tc.event.at, tc.event.platform, "ev-event")
			want := applied{ReadState: dispatcher.ReadState{MessageID: id, Read: tc.wantRead, Version: tc.wantV, ChangedAt: tc.wantAt,
				ChangedBy: tc.wantBy, Unread: map[bool]int{true: 0, false: 1}[tc.wantRead], Received: true},
				Changed: tc.wantChanged, Correct: tc.wantCorr}
			if diff := cmp.Diff(want, st, equalTime); diff != "" {
				t.Errorf("ApplyState (-want +got):\n%s", diff)
			}
			got := state(t, s, citizen, id)
			got.Acked = nil
			if diff := cmp.Diff(want.ReadState, got, equalTime); diff != "" {
				t.Errorf("State (-want +got):\n%s", diff)
			}
		})
	}
}

// applyStateOrders applies the same events in every order, each order to a
// letter of its own: all end in the same read state.
func applyStateOrders(t *testing.T, s dispatcher.Store) {
	at := now()
	type ev struct {
		read     bool
		at       time.Time
		platform event.Platform
	}
	events := []ev{
		{true, at, event.BorgerDK},
		{false, at.Add(time.Second), event.EBoks},
		{true, at.Add(time.Second), event.DigitalPostApp},
		{false, at.Add(time.Second), event.MitDK},
	}
	want := dispatcher.ReadState{Read: true, ChangedAt: at.Add(time.Second), ChangedBy: event.DigitalPostApp}
	n := 0
	for order := range permutations(len(events)) {
		id := fmt.Sprintf("msg-order-%d", n)
		n++
		for _, k := range order {
			e := events[k]
			apply(t, s, alice, id, e.read, e.at, e.platform, fmt.Sprintf("ev-%d", k))
		}
		st := state(t, s, alice, id)
		if st.Read != want.Read || !st.ChangedAt.Equal(want.ChangedAt) || st.ChangedBy != want.ChangedBy {
			t.Errorf("order %v: read %v at %v by %s; want read %v at %v by %s", order, st.Read, st.ChangedAt, st.ChangedBy,
				want.Read, want.ChangedAt, want.ChangedBy)
		}
	}
	if n != 24 {
		t.Fatalf("%d orders, want 24", n)
	}
}

// permutations yields every order of [0, n).
func permutations(n int) func(yield func([]int) bool) {
	return func(yield func([]int) bool) {
		var rec func(prefix []int, rest []int) bool
		rec = func(prefix, rest []int) bool {
			if len(rest) == 0 {
				return yield(slices.Clone(prefix))
			}
			for i := range rest {
				next := append(slices.Clone(rest[:i]), rest[i+1:]...)
				if !rec(append(prefix, rest[i]), next) {
					return false
				}
			}
			return true
		}
		rest := make([]int, n)
		for i := range rest {
			rest[i] = i
		}
		rec(nil, rest)
	}
}
