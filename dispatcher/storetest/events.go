package storetest

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Processed marks. An event is marked processed by Mark, or by a write
// whose Mark names it (Write, UpdateContact, SetDevice, SetExemption). A
// marked event is seen by Seen and, for a letter's events, by Lookup and
// ApplyState (as its Guard).
var eventCases = []Case{
	{"Seen", "an unknown event is not seen", func(t *testing.T, s dispatcher.Store) {
		if seen(t, s, alice, msg1, "ev-1") || seen(t, s, alice, "", "ev-1") {
			t.Error("an event never processed is seen")
		}
	}},
	{"Seen", "each way of marking is seen", eventMarkedEachWay},
	{"Seen", "marks belong to their citizen", func(t *testing.T, s dispatcher.Store) {
		at := now()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		must(t, s.Mark(t.Context(), registryRef(alice, "ev-2")))
		if seen(t, s, bob, msg1, "ev-1") || seen(t, s, bob, "", "ev-2") {
			t.Error("another citizen's processed event is seen")
		}
	}},
	{"Mark", "a marked letter event is seen by EventSeen, Lookup and ApplyState", func(t *testing.T, s dispatcher.Store) {
		at := now()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-arrive")
		st := apply(t, s, alice, msg1, true, at.Add(time.Second), event.EBoks, "ev-read")
		must(t, s.Mark(t.Context(), letterRef(alice, msg1, "ev-read")))
		if !seen(t, s, alice, msg1, "ev-read") {
			t.Error("EventSeen: a marked event is not seen")
		}
		if _, _, ok, err := lookup(t.Context(), s, alice, msg1, "ev-read"); err != nil || !ok {
			t.Errorf("Lookup of a marked event: seen %v, %v; want seen", ok, err)
		}
		got, ok, err := applyState(t.Context(), s, alice, msg1, true, at.Add(time.Second), event.EBoks, "ev-read")
		if err != nil || !ok {
			t.Fatalf("ApplyState of a marked event: seen %v, %v; want seen", ok, err)
		}
		if !reflect.DeepEqual(got, applied{}) {
			t.Errorf("ApplyState of a marked event returned %+v, want nothing", got)
		}
		if now := state(t, s, alice, msg1); now.Version != st.Version || now.Read != st.Read {
			t.Errorf("state after a re-run: %+v, want as before %+v", now, st)
		}
	}},
	{"Mark", "marking an event does not make a letter", func(t *testing.T, s dispatcher.Store) {
		must(t, s.Mark(t.Context(), letterRef(alice, msg1, "ev-read")))
		_, _, err := loadView(t.Context(), s, alice, msg1)
		wantNotFound(t, "Load after Mark alone", err)
		_, err = s.State(t.Context(), alice, msg1)
		wantNotFound(t, "State after Mark alone", err)
		at := now()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-arrive")
		if !seen(t, s, alice, msg1, "ev-read") || !seen(t, s, alice, msg1, "ev-arrive") {
			t.Error("the letter's first processing lost an earlier mark, or did not mark its own")
		}
	}},
	{"Queue", "a queued letter event is seen by SeenAll only: not Seen, not Lookup; it makes no letter", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		must(t, s.Queue(ctx, []dispatcher.EventRef{letterRef(alice, msg1, "ev-q"), registryRef(alice, "ev-r")}, time.Hour))
		must(t, s.Queue(ctx, nil, time.Hour))
		got, err := s.SeenAll(ctx, []dispatcher.EventRef{letterRef(alice, msg1, "ev-q"), letterRef(alice, msg1, "ev-2"),
			registryRef(alice, "ev-r"), letterRef(bob, msg1, "ev-q"), letterRef(alice, msg2, "ev-q")})
		must(t, err)
		if want := []bool{true, false, false, false, false}; !slices.Equal(got, want) {
			t.Errorf("SeenAll after Queue = %v, want %v (a letter event queued, no other)", got, want)
		}
		if seen(t, s, alice, msg1, "ev-q") {
			t.Error("Seen counts a queued event: the worker would skip a letter it never processed")
		}
		if _, _, ok, err := lookup(ctx, s, alice, msg1, "ev-q"); err != nil || ok {
			t.Errorf("Lookup of a queued event: seen %v, %v; want unseen", ok, err)
		}
		_, _, err = loadView(ctx, s, alice, msg1)
		wantNotFound(t, "Load after Queue alone", err)
		record(t, s, alice, newLetter(msg1, now()), nil, "ev-q")
		if !seen(t, s, alice, msg1, "ev-q") {
			t.Error("the queued event's processing did not mark it")
		}
	}},
	{"Queue", "a queued mark expires after its TTL, also for a stored letter", func(t *testing.T, s dispatcher.Store) {
		ctx := t.Context()
		record(t, s, alice, newLetter(msg1, now()), nil, "ev-arrive")
		refs := []dispatcher.EventRef{letterRef(alice, msg1, "ev-q"), letterRef(alice, msg2, "ev-q")}
		must(t, s.Queue(ctx, refs, 300*time.Millisecond))
		if got, err := s.SeenAll(ctx, refs); err != nil || !slices.Equal(got, []bool{true, true}) {
			t.Fatalf("SeenAll after Queue = %v, %v; want both seen", got, err)
		}
		// The task went (deleted by ops unprocessed, say): once the mark
		// expires, a copy is accepted again rather than lost.
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := s.SeenAll(ctx, refs)
			must(t, err)
			if slices.Equal(got, []bool{false, false}) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("SeenAll = %v 10 s after a 300 ms queued mark, want neither seen", got)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}},
	{"Mark", "a marked registry event is seen", func(t *testing.T, s dispatcher.Store) {
		must(t, s.Mark(t.Context(), registryRef(alice, "ev-x")))
		if !seen(t, s, alice, "", "ev-x") {
			t.Error("EventSeen: a marked registry event is not seen")
		}
		must(t, s.Mark(t.Context(), registryRef(alice, "ev-x"))) // a re-run marks again, harmlessly
		if !seen(t, s, alice, "", "ev-x") {
			t.Error("EventSeen after marking twice: not seen")
		}
	}},
}

// eventMarkedEachWay marks one event in each of the ways there are and
// checks each is seen where the dispatcher looks.
func eventMarkedEachWay(t *testing.T, s dispatcher.Store) {
	at := now()
	ctx := t.Context()
	letterMarks := []struct {
		name string
		mark func(eventID string) error
	}{
		{"Write", func(ev string) error {
			_, err := s.Write(ctx, letterWrite(alice, newLetter(msg1, at), nil, ev))
			return err
		}},
		{"Write with outcomes", func(ev string) error {
			_, err := s.Write(ctx, letterWrite(alice, newLetter(msg2, at), []dispatcher.Outcome{sent(at, "d-1", channels.Email)}, ev))
			return err
		}},
		{"Mark", func(ev string) error { return s.Mark(ctx, letterRef(alice, msg3, ev)) }},
	}
	for i, m := range letterMarks {
		id := []string{msg1, msg2, msg3}[i]
		ev := "ev-" + m.name
		if seen(t, s, alice, id, ev) {
			t.Fatalf("%s: seen before marking", m.name)
		}
		if err := m.mark(ev); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if !seen(t, s, alice, id, ev) {
			t.Errorf("%s: EventSeen does not see the mark", m.name)
		}
		if c, l, ok, err := lookup(ctx, s, alice, id, ev); err != nil || !ok || c != nil || l != nil {
			t.Errorf("%s: Lookup = %v, %v, seen %v, %v; want seen and nothing else", m.name, c, l, ok, err)
		}
		if _, ok, err := applyState(ctx, s, alice, id, true, at, event.EBoks, ev); err != nil || !ok {
			t.Errorf("%s: ApplyState seen %v, %v; want seen", m.name, ok, err)
		}
	}
	registryMarks := []struct {
		name string
		mark func(eventID string) error
	}{
		{"Mark", func(ev string) error { return s.Mark(ctx, registryRef(alice, ev)) }},
		{"UpdateContact", func(ev string) error {
			return updateContact(ctx, s, alice, &event.ContactData{Email: ptr("a@example.dk")}, at, ev)
		}},
		{"UpdateContact, stale", func(ev string) error {
			return updateContact(ctx, s, alice, &event.ContactData{Email: ptr("old@example.dk")}, at.Add(-time.Hour), ev)
		}},
		{"SetDevice", func(ev string) error {
			return registerDevice(ctx, s, alice, dispatcher.Device{App: "e-boks", Provider: "apns", Token: "tok", RegisteredAt: at}, ev)
		}},
		{"SetDevice, remove", func(ev string) error {
			return unregisterDevice(ctx, s, alice, dispatcher.Device{App: "e-boks", Provider: "apns", Token: "tok"}, ev)
		}},
		{"SetExemption", func(ev string) error {
			_, err := setExemption(ctx, s, alice, true, "", at, ev)
			return err
		}},
		{"SetExemption, stale", func(ev string) error {
			_, err := setExemption(ctx, s, alice, false, "", at.Add(-time.Hour), ev)
			return err
		}},
	}
	for _, m := range registryMarks {
		ev := "ev-" + m.name
		if seen(t, s, alice, "", ev) {
			t.Fatalf("%s: seen before marking", m.name)
		}
		if err := m.mark(ev); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if !seen(t, s, alice, "", ev) {
			t.Errorf("%s: EventSeen does not see the mark", m.name)
		}
	}
}
