package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Letters: Lookup, Load, Record and what Record leaves behind (Trail,
// CitizenOf, DeliveryRef, UnreadSince).
var letterCases = []Case{
	{"Lookup", "an unknown citizen and letter come back empty and usable", func(t *testing.T, s dispatcher.Store) {
		c, l, ok, err := lookup(t.Context(), s, alice, msg1, "ev-1")
		must(t, err)
		if ok {
			t.Fatal("seen, want not seen")
		}
		if c == nil || c.Key != alice || c.Email != "" || len(c.Devices) != 0 || c.Unread != 0 {
			t.Errorf("citizen = %+v, want an empty citizen keyed %s", c, alice)
		}
		if l == nil || l.MessageID != msg1 || l.SenderName != "" || l.Read || l.Version != 0 || len(l.Done) != 0 {
			t.Errorf("letter = %+v, want an empty letter with its id", l)
		}
	}},
	{"Lookup", "a processed event is seen and nothing else returned", func(t *testing.T, s dispatcher.Store) {
		at := now()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		c, l, ok, err := lookup(t.Context(), s, alice, msg1, "ev-1")
		if err != nil || !ok || c != nil || l != nil {
			t.Errorf("Lookup(ev-1) = %v, %v, seen %v, %v; want seen and nothing else", c, l, ok, err)
		}
		c, l, ok, err = lookup(t.Context(), s, alice, msg1, "ev-2")
		if err != nil || ok || l == nil || l.SenderName == "" || c == nil {
			t.Errorf("Lookup(ev-2) = %+v, %+v, seen %v, %v; want the stored letter", c, l, ok, err)
		}
		if _, _, ok, _ := lookup(t.Context(), s, alice, msg1, ""); ok {
			t.Error("Lookup with no event id: seen")
		}
	}},
	{"Lookup", "a read state that came before the letter comes with it", func(t *testing.T, s dispatcher.Store) {
		at := now()
		apply(t, s, alice, msg1, true, at, event.MitDK, "ev-read")
		_, l, ok, err := lookup(t.Context(), s, alice, msg1, "ev-arrive")
		if err != nil || ok {
			t.Fatalf("Lookup: seen %v, %v", ok, err)
		}
		want := &dispatcher.Letter{MessageID: msg1, Read: true, Version: 1, ChangeAt: at, ChangeBy: event.MitDK}
		if diff := cmp.Diff(want, l, letterOpts...); diff != "" {
			t.Errorf("letter (-want +got):\n%s", diff)
		}
	}},
	{"Lookup", "the citizen as registered, devices in a stable order", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		must(t, updateContact(ctx, s, alice, &event.ContactData{Email: ptr("a@example.dk"), Mobile: ptr("+4512345678"),
			Language: ptr("en"), Address: ptr("Vej 1, 8000 Aarhus C")}, at, "ev-c"))
		for i, d := range []dispatcher.Device{
			{App: "mit.dk", Provider: "fcm", Token: "f-2", Environment: "production", RegisteredAt: at},
			{App: "e-boks", Provider: "apns", Token: "a-2", Environment: "sandbox", RegisteredAt: at.Add(time.Second)},
			{App: "e-boks", Provider: "fcm", Token: "f-1", Environment: "production", RegisteredAt: at},
			{App: "e-boks", Provider: "apns", Token: "a-1", Environment: "production", RegisteredAt: at},
		} {
			must(t, registerDevice(ctx, s, alice, d, "ev-d"+string(rune('0'+i))))
		}
		c, _, _, err := lookup(ctx, s, alice, msg1, "")
		must(t, err)
		want := &dispatcher.Citizen{Key: alice, Email: "a@example.dk", Mobile: "+4512345678", Language: "en",
			Address: "Vej 1, 8000 Aarhus C", Devices: []dispatcher.Device{
				{App: "e-boks", Provider: "apns", Token: "a-1", Environment: "production", RegisteredAt: at},
				{App: "e-boks", Provider: "apns", Token: "a-2", Environment: "sandbox", RegisteredAt: at.Add(time.Second)},
				{App: "e-boks", Provider: "fcm", Token: "f-1", Environment: "production", RegisteredAt: at},
				{App: "mit.dk", Provider: "fcm", Token: "f-2", Environment: "production", RegisteredAt: at},
			}}
		if diff := cmp.Diff(want, c, equalTime); diff != "" {
			t.Errorf("citizen (-want +got):\n%s", diff)
		}
	}},

	// Load returns usable values together with ErrNotFound for a letter not
	// stored: the badge update and delivery reports use the citizen even
	// then.
	{"Load", "an unknown letter: ErrNotFound with the citizen and an empty letter", func(t *testing.T, s dispatcher.Store) {
		must(t, updateContact(t.Context(), s, alice, &event.ContactData{Email: ptr("a@example.dk")}, now(), "ev-c"))
		c, l, err := loadView(t.Context(), s, alice, msg1)
		wantNotFound(t, "Load(unknown letter)", err)
		if c == nil || c.Key != alice || c.Email != "a@example.dk" {
			t.Errorf("citizen = %+v, want the registered citizen", c)
		}
		if l == nil || l.MessageID != msg1 || l.SenderName != "" {
			t.Errorf("letter = %+v, want an empty letter with its id", l)
		}
	}},
	{"Load", "a stored letter and its citizen", func(t *testing.T, s dispatcher.Store) {
		at := now()
		want := newLetter(msg1, at)
		record(t, s, alice, want, nil, "ev-1")
		c, l := load(t, s, alice, msg1)
		if diff := cmp.Diff(want, l, letterOpts...); diff != "" {
			t.Errorf("letter (-want +got):\n%s", diff)
		}
		if c.Key != alice || c.Unread != 1 {
			t.Errorf("citizen = %+v, want %s with 1 unread", c, alice)
		}
	}},
	{"Load", "a read state alone is not a stored letter", func(t *testing.T, s dispatcher.Store) {
		apply(t, s, alice, msg1, true, now(), event.EBoks, "ev-read")
		_, l, err := loadView(t.Context(), s, alice, msg1)
		wantNotFound(t, "Load(read state only)", err)
		if l == nil || !l.Read || l.Version != 1 {
			t.Errorf("letter = %+v, want its read state", l)
		}
	}},

	{"Write", "a first processing stores the letter, files it unread and marks the event", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		want := newLetter(msg1, at)
		record(t, s, alice, want, []dispatcher.Outcome{sent(at, "d-mail", channels.Email)}, "ev-1")
		c, l := load(t, s, alice, msg1)
		if diff := cmp.Diff(want, l, letterOpts...); diff != "" {
			t.Errorf("letter (-want +got):\n%s", diff)
		}
		if c.Unread != 1 {
			t.Errorf("unread = %d, want 1", c.Unread)
		}
		if ids, err := s.UnreadSince(ctx, alice, at, at); err != nil || !cmp.Equal(ids, []string{msg1}) {
			t.Errorf("UnreadSince = %v, %v; want [%s]", ids, err, msg1)
		}
		if who, err := s.CitizenOf(ctx, msg1); err != nil || who != alice {
			t.Errorf("CitizenOf = %q, %v; want %s", who, err, alice)
		}
		if !seen(t, s, alice, msg1, "ev-1") {
			t.Error("the event is not marked")
		}
	}},
	{"Write", "final outcomes are done, others are not", func(t *testing.T, s dispatcher.Store) {
		at := now()
		gone := dispatcher.Outcome{At: at, DeliveryID: "d-push", Channel: channels.APNs, App: "e-boks",
			Result: dispatcher.ResultGone, Kind: "gone", Code: "410"}
		record(t, s, alice, newLetter(msg1, at), []dispatcher.Outcome{sent(at, "d-mail", channels.Email),
			retrying(at, "d-sms", channels.SMS), gone}, "ev-1")
		_, l := load(t, s, alice, msg1)
		if got := sortedKeys(l.Done); !cmp.Equal(got, []string{"d-mail", "d-push"}) {
			t.Errorf("done = %v, want [d-mail d-push]", got)
		}
		record(t, s, alice, l, []dispatcher.Outcome{sent(at.Add(time.Second), "d-sms", channels.SMS)}, "")
		_, l = load(t, s, alice, msg1)
		if got := sortedKeys(l.Done); !cmp.Equal(got, []string{"d-mail", "d-push", "d-sms"}) {
			t.Errorf("done after the retry = %v, want [d-mail d-push d-sms]", got)
		}
	}},
	// The doc says Record "stores the letter's metadata if it is new"; it
	// stores it with the record that carries the event id, and only then:
	// outcomes recorded before (the dispatcher records what it sent, then
	// enqueues the rest, then marks the event) leave the letter not found.
	{"Write", "outcomes before the event mark: done, but the letter is stored with the mark", func(t *testing.T, s dispatcher.Store) {
		at := now()
		l := newLetter(msg1, at)
		record(t, s, alice, l, []dispatcher.Outcome{sent(at, "d-mail", channels.Email), retrying(at, "d-sms", channels.SMS)}, "")
		_, got, err := loadView(t.Context(), s, alice, msg1)
		wantNotFound(t, "Load before the event's record", err)
		if _, ok := got.Done["d-mail"]; !ok {
			t.Errorf("done = %v, want d-mail", got.Done)
		}
		if seen(t, s, alice, msg1, "ev-1") {
			t.Error("event seen before it was marked")
		}
		record(t, s, alice, l, nil, "ev-1")
		c, got := load(t, s, alice, msg1)
		if _, ok := got.Done["d-mail"]; !ok || got.SenderName != l.SenderName || c.Unread != 1 {
			t.Errorf("after the event's record: letter %+v, unread %d; want stored, d-mail done, 1 unread", got, c.Unread)
		}
	}},
	{"Write", "a later record keeps the stored metadata", func(t *testing.T, s dispatcher.Store) {
		at := now()
		want := newLetter(msg1, at)
		record(t, s, alice, want, nil, "ev-1")
		changed := *want
		changed.SenderName, changed.Priority = "Someone else", event.Urgent
		record(t, s, alice, &changed, []dispatcher.Outcome{sent(at, "d-mail", channels.Email)}, "")
		_, l := load(t, s, alice, msg1)
		if diff := cmp.Diff(want, l, letterOpts...); diff != "" {
			t.Errorf("letter (-want +got):\n%s", diff)
		}
	}},
	{"Write", "a second arrival (another event of the letter, run at once) keeps the first metadata, writes the rest", func(t *testing.T, s dispatcher.Store) {
		at := now()
		want := newLetter(msg1, at)
		record(t, s, alice, want, nil, "ev-1")
		changed := *want
		changed.SenderName, changed.Priority = "Someone else", event.Urgent
		record(t, s, alice, &changed, []dispatcher.Outcome{sent(at, "d-mail", channels.Email)}, "ev-2")
		_, l := load(t, s, alice, msg1)
		if !l.Done["d-mail"] {
			t.Errorf("done %v: the second arrival's done mark is missing", l.Done)
		}
		want.Done = l.Done
		if diff := cmp.Diff(want, l, letterOpts...); diff != "" {
			t.Errorf("letter (-want +got):\n%s", diff)
		}
		if !seen(t, s, alice, msg1, "ev-2") {
			t.Error("the second arrival's event mark is missing")
		}
	}},
	{"Write", "an arrival's (or a Claim write's) in-flight marks are claims: another run's mark or a done mark is taken, not overwritten", func(t *testing.T, s dispatcher.Store) {
		// Two runs of one letter at once (two event ids for one message
		// id) each looked it up before either wrote: the first arrival
		// claims its deliveries, the second gets them back as taken.
		at := now()
		arrive := func(inFlight ...string) dispatcher.LetterWrite {
			return dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Arrive: &dispatcher.Arrival{Meta: newLetter(msg1, at)},
				InFlight: inFlight}
		}
		if res := write(t, s, arrive("d-mail", "d-sms")); len(res.Taken) != 0 {
			t.Fatalf("first arrival: taken %v, want none", res.Taken)
		}
		write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Follows: true, Done: []dispatcher.Outcome{sent(at, "d-sms", channels.SMS)}})
		res := write(t, s, arrive("d-mail", "d-sms", "d-push"))
		slices.Sort(res.Taken)
		if want := []string{"d-mail", "d-sms"}; !slices.Equal(res.Taken, want) {
			t.Errorf("second arrival: taken %v, want %v (d-mail in flight in the first run, d-sms done)", res.Taken, want)
		}
		_, l := load(t, s, alice, msg1)
		if !l.Done["d-sms"] {
			t.Errorf("done %v: the second arrival overwrote d-sms's done mark", l.Done)
		}
		if _, ok := l.InFlight["d-mail"]; !ok || len(l.InFlight) != 2 {
			t.Errorf("in flight %v, want d-mail (the first run's) and d-push (the second's)", l.InFlight)
		}
		// A Claim write without Arrive (an access holder's deliveries)
		// claims as an arrival does.
		holder := func() dispatcher.WriteResult {
			return write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Follows: true, InFlight: []string{"d-holder"}, Claim: true})
		}
		if res := holder(); len(res.Taken) != 0 {
			t.Errorf("first holder claim: taken %v, want none", res.Taken)
		}
		if res := holder(); !slices.Equal(res.Taken, []string{"d-holder"}) {
			t.Errorf("second holder claim: taken %v, want [d-holder]", res.Taken)
		}
		// A write without Arrive or Claim (a delivery's own task) marks as before.
		if res := write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, InFlight: []string{"d-mail"}}); len(res.Taken) != 0 {
			t.Errorf("write without arrival: taken %v, want none", res.Taken)
		}
	}},
	{"Write", "a tracked delivery can be found, an untracked one cannot", func(t *testing.T, s dispatcher.Store) {
		at := now()
		w := letterWrite(alice, newLetter(msg1, at), []dispatcher.Outcome{sent(at, "d-sms", channels.SMS), sent(at, "d-mail", channels.Email)}, "ev-1")
		w.Track = []string{"d-sms"}
		write(t, s, w)
		if c, m, err := s.DeliveryRef(t.Context(), "d-sms"); err != nil || c != alice || m != msg1 {
			t.Errorf("DeliveryRef(tracked) = %q, %q, %v; want %s, %s", c, m, err, alice, msg1)
		}
		_, _, err := s.DeliveryRef(t.Context(), "d-mail")
		wantNotFound(t, "DeliveryRef(untracked)", err)
	}},
	{"Write", "Windows opens the channel's window", func(t *testing.T, s dispatcher.Store) {
		at := now()
		w := letterWrite(alice, newLetter(msg1, at), []dispatcher.Outcome{sent(at, "d-sms", channels.SMS), sent(at, "d-mail", channels.Email)}, "ev-1")
		w.Windows = map[channels.Name]time.Time{channels.SMS: at.Add(10 * time.Minute)}
		write(t, s, w)
		c, _ := load(t, s, alice, msg1)
		want := map[channels.Name]time.Time{channels.SMS: at.Add(10 * time.Minute)}
		if diff := cmp.Diff(want, c.Windows, equalTime); diff != "" {
			t.Errorf("windows (-want +got):\n%s", diff)
		}
	}},
	{"Write", "a letter read before it arrived stays read and is not counted", func(t *testing.T, s dispatcher.Store) {
		at := now()
		apply(t, s, alice, msg1, true, at, event.BorgerDK, "ev-read")
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		c, l := load(t, s, alice, msg1)
		if !l.Read || l.Version != 1 || l.ChangeBy != event.BorgerDK || c.Unread != 0 {
			t.Errorf("letter %+v, unread %d; want read at version 1 by borger.dk, 0 unread", l, c.Unread)
		}
		if ids, err := s.UnreadSince(t.Context(), alice, at.Add(-time.Hour), at.Add(time.Hour)); err != nil || len(ids) != 0 {
			t.Errorf("UnreadSince = %v, %v; want none", ids, err)
		}
		if st := state(t, s, alice, msg1); !st.Received || !st.Read {
			t.Errorf("state = %+v, want received and read", st)
		}
	}},
	{"Write", "the first and every 16th letter filed drop letters past retention from the unread index", func(t *testing.T, s dispatcher.Store) {
		at := now()
		old := at.AddDate(-10, 0, 0)
		past := func() int {
			t.Helper()
			ids, err := s.UnreadSince(t.Context(), alice, old.Add(-time.Hour), old.Add(time.Hour))
			must(t, err)
			return len(ids)
		}
		record(t, s, alice, newLetter(msg1, old), nil, "ev-1")
		c, _ := load(t, s, alice, msg1)
		if c.Unread != 0 {
			t.Errorf("unread = %d: a letter past retention counts", c.Unread)
		}
		record(t, s, alice, newLetter(msg2, at), nil, "ev-2") // the first filed (count 1)
		if n := past(); n != 0 {
			t.Fatalf("after the first letter filed: %d letters past retention in the unread index, want 0", n)
		}
		for i := 2; i <= 17; i++ {
			if res := write(t, s, letterWrite(alice, newLetter(fmt.Sprintf("msg-trim-%d", i), at), nil, fmt.Sprintf("ev-trim-%d", i))); res.Unread != i {
				t.Fatalf("letter %d filed: unread %d, want %d", i, res.Unread, i)
			}
			if i == 2 { // filed at a count of 2: not trimmed yet
				record(t, s, alice, newLetter("msg-old-2", old), nil, "ev-old-2")
			}
			if n := past(); i < 17 && n != 1 {
				t.Fatalf("after letter %d filed: %d letters past retention, want 1 (trimmed only at 1, 17, 33 …)", i, n)
			}
		}
		if n := past(); n != 0 {
			t.Errorf("after the 17th letter filed: %d letters past retention in the unread index, want 0", n)
		}
	}},
	{"Write", "an Arrive of a stored letter keeps its metadata and returns the unread count", func(t *testing.T, s dispatcher.Store) {
		at := now()
		first := newLetter(msg1, at)
		record(t, s, alice, first, nil, "ev-1")
		record(t, s, alice, newLetter(msg2, at), nil, "ev-2")
		again := *first
		again.SenderName, again.Notification = "Another name", "Another text"
		w := dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Arrive: &dispatcher.Arrival{Meta: &again}, InFlight: []string{"d-mail"}}
		if res := write(t, s, w); res.Unread != 2 {
			t.Errorf("Arrive of a stored letter: unread %d, want 2", res.Unread)
		}
		_, l := load(t, s, alice, msg1)
		if l.SenderName != first.SenderName || l.Notification != first.Notification {
			t.Errorf("letter = %+v; want the first arrival's metadata kept", l)
		}
		if _, ok := l.InFlight["d-mail"]; !ok {
			t.Errorf("in flight = %v, want d-mail", l.InFlight)
		}
		apply(t, s, alice, msg2, true, at, event.EBoks, "ev-read")
		if res := write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg2, Arrive: &dispatcher.Arrival{Meta: newLetter(msg2, at)}}); res.Unread != 1 {
			t.Errorf("Arrive of a stored letter read since: unread %d, want 1 (it stays unfiled)", res.Unread)
		}
	}},
	{"Lookup", "reads no unread count; Load does", func(t *testing.T, s dispatcher.Store) {
		at := now()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		c, _, _, err := lookup(t.Context(), s, alice, msg2, "ev-2")
		must(t, err)
		if c.Unread != 0 {
			t.Errorf("Lookup: unread %d, want 0 (not read)", c.Unread)
		}
		vs, err := s.LookupAll(t.Context(), []dispatcher.EventRef{letterRef(alice, msg2, "ev-2")})
		must(t, err)
		if vs[0].Citizen.Unread != 0 {
			t.Errorf("LookupAll: unread %d, want 0 (not read)", vs[0].Citizen.Unread)
		}
		if c, _ := load(t, s, alice, msg1); c.Unread != 1 {
			t.Errorf("Load: unread %d, want 1", c.Unread)
		}
	}},
	{"Write", "a write that Follows its run's first write lands as any other", func(t *testing.T, s dispatcher.Store) {
		at := now()
		w := letterWrite(alice, newLetter(msg1, at), nil, "")
		w.Arrive, w.InFlight = &dispatcher.Arrival{Meta: newLetter(msg1, at)}, []string{"d-mail", "d-sms"}
		write(t, s, w)
		write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Follows: true,
			Done: []dispatcher.Outcome{sent(at, "d-mail", channels.Email)}, Trail: []dispatcher.Outcome{retrying(at, "d-sms", channels.SMS)},
			Mark: letterRef(alice, msg1, "ev-1")})
		_, l := load(t, s, alice, msg1)
		if !l.Done["d-mail"] || len(l.InFlight) != 0 {
			t.Errorf("done %v, in flight %v; want d-mail done, nothing in flight", l.Done, l.InFlight)
		}
		if !seen(t, s, alice, msg1, "ev-1") {
			t.Error("the event is not marked")
		}
	}},
	// The doc says Record is atomic. It is not one transaction (trail
	// entries, the unread index and the look-up keys are separate
	// commands); what must land together is what a re-run decides by: the
	// metadata, the done marks and the event mark. A reader never sees
	// one without the others.
	{"Write", "metadata, done marks and the event mark land together", func(t *testing.T, s dispatcher.Store) {
		at := now()
		outs := []dispatcher.Outcome{sent(at, "d-mail", channels.Email), sent(at, "d-sms", channels.SMS)}
		for round := range 20 {
			id := "msg-atomic-" + string(rune('a'+round))
			done := make(chan error, 1)
			go func() {
				_, err := s.Write(t.Context(), letterWrite(alice, newLetter(id, at), outs, "ev-"+id))
				done <- err
			}()
			finished := false
			for {
				_, l, ok, err := lookup(t.Context(), s, alice, id, "ev-"+id)
				must(t, err)
				if ok {
					break
				}
				if l.SenderName != "" || len(l.Done) != 0 {
					t.Fatalf("a reader saw part of Record: metadata %q, done %v, event not marked", l.SenderName, l.Done)
				}
				if finished {
					t.Fatal("Record returned without marking the event")
				}
				select {
				case err := <-done:
					must(t, err)
					finished = true
				default:
				}
			}
			if !finished {
				must(t, <-done)
			}
			_, l := load(t, s, alice, id)
			if len(l.Done) != 2 {
				t.Fatalf("done = %v, want both deliveries", l.Done)
			}
		}
	}},

	// A letter read before its first processing must never be counted
	// unread, not even while the Write that files it runs: a badge or an
	// exemption forwarding computed in that moment would be wrong.
	{"Write", "a letter read before it arrived is never counted during its Write", func(t *testing.T, s dispatcher.Store) {
		at := now()
		for round := range 20 {
			id := fmt.Sprintf("msg-gap-%d", round)
			apply(t, s, alice, id, true, at, event.BorgerDK, "ev-read-"+id)
			done := make(chan error, 1)
			go func() {
				_, err := s.Write(t.Context(), letterWrite(alice, newLetter(id, at), []dispatcher.Outcome{sent(at, "d-mail", channels.Email)}, "ev-"+id))
				done <- err
			}()
			for finished := false; !finished; {
				select {
				case err := <-done:
					must(t, err)
					finished = true
				default:
				}
				v, err := s.Load(t.Context(), alice, id)
				must(t, err)
				if v.Citizen.Unread != 0 {
					t.Fatalf("round %d: a letter read before it arrived was counted unread (%d) during its Write", round, v.Citizen.Unread)
				}
			}
		}
	}},
	{"Write", "an Arrive returns the unread count including the letter", func(t *testing.T, s dispatcher.Store) {
		at := now()
		for i, id := range []string{msg1, msg2} {
			if res := write(t, s, letterWrite(alice, newLetter(id, at), nil, "ev-"+id)); res.Unread != i+1 {
				t.Errorf("Arrive of letter %d: unread %d, want %d", i+1, res.Unread, i+1)
			}
		}
		apply(t, s, alice, msg3, true, at, event.EBoks, "ev-read")
		if res := write(t, s, letterWrite(alice, newLetter(msg3, at), nil, "ev-3")); res.Unread != 2 {
			t.Errorf("Arrive of a read letter: unread %d, want 2", res.Unread)
		}
	}},
	{"Write", "in-flight marks show until the delivery's outcome is written", func(t *testing.T, s dispatcher.Store) {
		at := now()
		w := letterWrite(alice, newLetter(msg1, at), nil, "")
		w.Arrive = &dispatcher.Arrival{Meta: newLetter(msg1, at)}
		w.InFlight = []string{"d-mail", "d-sms", "d-push"}
		write(t, s, w)
		_, l := load(t, s, alice, msg1)
		if got := sortedKeys(l.InFlight); !cmp.Equal(got, []string{"d-mail", "d-push", "d-sms"}) {
			t.Fatalf("in flight = %v, want all three", got)
		}
		write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Done: []dispatcher.Outcome{sent(at, "d-mail", channels.Email)}})
		write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Trail: []dispatcher.Outcome{retrying(at, "d-sms", channels.SMS)}})
		_, l = load(t, s, alice, msg1)
		if got := sortedKeys(l.InFlight); !cmp.Equal(got, []string{"d-push"}) || !l.Done["d-mail"] || l.Done["d-sms"] {
			t.Errorf("in flight = %v, done = %v; want d-push in flight, d-mail done", got, l.Done)
		}
		if trail, err := s.Trail(t.Context(), msg1); err != nil || len(trail) != 2 {
			t.Errorf("Trail = %+v, %v; want the two outcomes, no in-flight mark", trail, err)
		}
	}},
	{"Write", "a delivery handed to a provider stays in flight, pinned to it, past its trail entry", func(t *testing.T, s dispatcher.Store) {
		at := now()
		w := letterWrite(alice, newLetter(msg1, at), nil, "")
		w.Arrive = &dispatcher.Arrival{Meta: newLetter(msg1, at)}
		w.InFlight = []string{"d-sms", "d-mail"}
		write(t, s, w)
		write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Handed: map[string]string{"d-sms": "sms-1"}})
		_, l := load(t, s, alice, msg1)
		if _, ok := l.InFlight["d-sms"]; !ok || l.Handed["d-sms"] != "sms-1" || l.Handed["d-mail"] != "" {
			t.Fatalf("in flight = %v, handed = %v; want d-sms in flight handed to sms-1", l.InFlight, l.Handed)
		}
		// sms-1 refused it clearly; handed to sms-2, which timed out: the
		// outcome's trail entry leaves the mark, now naming sms-2.
		write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Handed: map[string]string{"d-sms": "sms-2"}})
		o := retrying(at, "d-sms", channels.SMS)
		o.Provider = "sms-2"
		write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Trail: []dispatcher.Outcome{o},
			Handed: map[string]string{"d-sms": "sms-2"}})
		_, l = load(t, s, alice, msg1)
		if _, ok := l.InFlight["d-sms"]; !ok || l.Handed["d-sms"] != "sms-2" || l.Done["d-sms"] {
			t.Fatalf("in flight = %v, handed = %v, done = %v; want d-sms in flight handed to sms-2", l.InFlight, l.Handed, l.Done)
		}
		// A trail entry without Handed clears the mark and the pin.
		write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Trail: []dispatcher.Outcome{retrying(at, "d-sms", channels.SMS)}})
		_, l = load(t, s, alice, msg1)
		if _, ok := l.InFlight["d-sms"]; ok || l.Handed["d-sms"] != "" {
			t.Fatalf("in flight = %v, handed = %v; want d-sms cleared", l.InFlight, l.Handed)
		}
		// Done: the provider shows in the trail.
		done := sent(at, "d-sms", channels.SMS)
		done.Provider = "sms-2"
		write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Done: []dispatcher.Outcome{done}})
		_, l = load(t, s, alice, msg1)
		if !l.Done["d-sms"] || l.Handed["d-sms"] != "" {
			t.Errorf("done = %v, handed = %v; want d-sms done, unpinned", l.Done, l.Handed)
		}
		trail, err := s.Trail(t.Context(), msg1)
		if err != nil {
			t.Fatal(err)
		}
		var providers []string
		for _, o := range trail {
			providers = append(providers, o.Provider)
		}
		if !cmp.Equal(providers, []string{"sms-2", "", "sms-2"}) {
			t.Errorf("trail providers = %q, want [sms-2 \"\" sms-2]", providers)
		}
	}},
	{"Write", "a delivery is in flight or done, never both: its outcome replaces the mark", func(t *testing.T, s dispatcher.Store) {
		at := now()
		w := letterWrite(alice, newLetter(msg1, at), nil, "")
		w.Arrive = &dispatcher.Arrival{Meta: newLetter(msg1, at)}
		w.InFlight = []string{"d-mail"}
		write(t, s, w)
		write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Done: []dispatcher.Outcome{sent(at, "d-mail", channels.Email)}})
		_, l := load(t, s, alice, msg1)
		if _, ok := l.InFlight["d-mail"]; ok || !l.Done["d-mail"] {
			t.Errorf("in flight = %v, done = %v; want d-mail done only", l.InFlight, l.Done)
		}
	}},
	{"Write", "a later trail entry of a done delivery leaves it done", func(t *testing.T, s dispatcher.Store) {
		at := now()
		w := letterWrite(alice, newLetter(msg1, at), nil, "")
		w.Arrive = &dispatcher.Arrival{Meta: newLetter(msg1, at)}
		w.InFlight = []string{"d-sms"}
		write(t, s, w)
		// Another run recorded the SMS sent; this one's answer comes late.
		write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Done: []dispatcher.Outcome{sent(at, "d-sms", channels.SMS)}})
		write(t, s, dispatcher.LetterWrite{Citizen: alice, MessageID: msg1, Trail: []dispatcher.Outcome{retrying(at, "d-sms", channels.SMS)}})
		_, l := load(t, s, alice, msg1)
		if _, ok := l.InFlight["d-sms"]; ok || !l.Done["d-sms"] {
			t.Errorf("in flight = %v, done = %v; want d-sms done", l.InFlight, l.Done)
		}
	}},

	{"Trail", "an unknown letter has no trail", func(t *testing.T, s dispatcher.Store) {
		_, err := s.Trail(t.Context(), msg1)
		wantNotFound(t, "Trail(unknown)", err)
	}},
	{"Trail", "every kind of entry, oldest first, as written", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		note := dispatcher.Outcome{At: at, Result: dispatcher.ResultNote, Reason: "sender's alert text used"}
		retry := retrying(at.Add(1*time.Millisecond), "d-sms", channels.SMS)
		mail := sent(at.Add(2*time.Millisecond), "d-mail", channels.Email)
		push := dispatcher.Outcome{At: at.Add(3 * time.Millisecond), DeliveryID: "d-push", Channel: channels.APNs,
			App: "e-boks", Result: dispatcher.ResultGone, Reason: "address removed", Kind: "gone", Code: "410 Unregistered",
			Attempt: 1, DurationMS: 40}
		record(t, s, alice, newLetter(msg1, at), []dispatcher.Outcome{push, note, mail, retry}, "ev-1")
		sms := sent(at.Add(5*time.Millisecond), "d-sms", channels.SMS)
		_, l := load(t, s, alice, msg1)
		record(t, s, alice, l, []dispatcher.Outcome{sms}, "")
		report := dispatcher.Outcome{At: at.Add(4 * time.Millisecond), DeliveryID: "d-mail", Channel: channels.Email,
			Result: dispatcher.ResultReport, Reason: "DELIVERED", ProviderID: "prov-d-mail"}
		if ok, err := applyReport(ctx, s, alice, msg1, "d-mail", "DELIVERED", true, report); err != nil || !ok {
			t.Fatalf("ApplyReport = %v, %v", ok, err)
		}
		got, err := s.Trail(ctx, msg1)
		must(t, err)
		want := []dispatcher.Outcome{inTrail(note), inTrail(retry), inTrail(mail), inTrail(push), report, inTrail(sms)}
		if diff := cmp.Diff(want, got, equalTime); diff != "" {
			t.Errorf("trail (-want +got):\n%s", diff)
		}
	}},

	{"CitizenOf", "a recorded letter's citizen; ErrNotFound for an unknown letter", func(t *testing.T, s dispatcher.Store) {
		record(t, s, bob, newLetter(msg1, now()), nil, "ev-1")
		if c, err := s.CitizenOf(t.Context(), msg1); err != nil || c != bob {
			t.Errorf("CitizenOf = %q, %v; want %s", c, err, bob)
		}
		_, err := s.CitizenOf(t.Context(), msg2)
		wantNotFound(t, "CitizenOf(unknown)", err)
	}},

	{"DeliveryRef", "an unknown delivery is ErrNotFound", func(t *testing.T, s dispatcher.Store) {
		_, _, err := s.DeliveryRef(t.Context(), "d-none")
		wantNotFound(t, "DeliveryRef(unknown)", err)
	}},
	{"DeliveryRef", "a tracked delivery recorded later is found", func(t *testing.T, s dispatcher.Store) {
		at := now()
		record(t, s, bob, newLetter(msg1, at), []dispatcher.Outcome{retrying(at, "d-sms", channels.SMS)}, "ev-1")
		_, l := load(t, s, bob, msg1)
		w := letterWrite(bob, l, []dispatcher.Outcome{sent(at.Add(time.Second), "d-sms", channels.SMS)}, "")
		w.Track = []string{"d-sms"}
		write(t, s, w)
		if c, m, err := s.DeliveryRef(t.Context(), "d-sms"); err != nil || c != bob || m != msg1 {
			t.Errorf("DeliveryRef = %q, %q, %v; want %s, %s", c, m, err, bob, msg1)
		}
	}},

	{"UnreadSince", "unread letters received in [from, to], oldest first", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		for i, id := range []string{"m-0", "m-1", "m-2", "m-3", "m-4"} {
			record(t, s, alice, newLetter(id, at.Add(time.Duration(i)*time.Minute)), nil, "ev-"+id)
		}
		record(t, s, bob, newLetter("m-bob", at.Add(2*time.Minute)), nil, "ev-bob")
		apply(t, s, alice, "m-2", true, at.Add(time.Hour), event.EBoks, "ev-read")
		got, err := s.UnreadSince(ctx, alice, at.Add(time.Minute), at.Add(4*time.Minute-time.Millisecond))
		must(t, err)
		if want := []string{"m-1", "m-3"}; !cmp.Equal(got, want) {
			t.Errorf("UnreadSince = %v, want %v (bounds inclusive, read and other citizens' letters out)", got, want)
		}
		got, err = s.UnreadSince(ctx, alice, at.Add(3*time.Minute), at.Add(4*time.Minute))
		must(t, err)
		if want := []string{"m-3", "m-4"}; !cmp.Equal(got, want) {
			t.Errorf("UnreadSince (to inclusive) = %v, want %v", got, want)
		}
		if got, err := s.UnreadSince(ctx, "cit-nobody", at, at.Add(time.Hour)); err != nil || len(got) != 0 {
			t.Errorf("UnreadSince(unknown citizen) = %v, %v; want none", got, err)
		}
	}},
}
