package storetest

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// The batch calls (SeenAll, LookupAll, WriteAll): each item is what the
// single call would make of it.
var batchCases = []Case{
	{"SeenAll", "each event as Seen says, in order", func(t *testing.T, s dispatcher.Store) {
		at := now()
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		must(t, s.Mark(t.Context(), registryRef(bob, "ev-2")))
		refs := []dispatcher.EventRef{letterRef(alice, msg1, "ev-1"), letterRef(alice, msg2, "ev-1"),
			registryRef(bob, "ev-2"), registryRef(alice, "ev-2"), letterRef(alice, msg1, "ev-3")}
		got, err := s.SeenAll(t.Context(), refs)
		must(t, err)
		if want := []bool{true, false, true, false, false}; !slices.Equal(got, want) {
			t.Errorf("SeenAll = %v, want %v", got, want)
		}
		if got, err := s.SeenAll(t.Context(), nil); err != nil || len(got) != 0 {
			t.Errorf("SeenAll(nil) = %v, %v; want nothing", got, err)
		}
	}},
	{"LookupAll", "each view as Lookup returns it, a citizen named twice read once", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		must(t, updateContact(ctx, s, alice, &event.ContactData{Email: ptr("alice@example.dk"), Mobile: ptr("+4520000001")}, at, "c-1"))
		record(t, s, alice, newLetter(msg1, at), nil, "ev-1")
		record(t, s, bob, newLetter(msg3, at), nil, "ev-3")
		refs := []dispatcher.EventRef{letterRef(alice, msg1, "ev-1"), letterRef(alice, msg2, "ev-2"),
			letterRef(bob, msg3, "ev-9"), letterRef(alice, msg1, "ev-4")}
		got, err := s.LookupAll(ctx, refs)
		must(t, err)
		if len(got) != len(refs) {
			t.Fatalf("LookupAll returned %d views for %d refs", len(got), len(refs))
		}
		for i, ref := range refs {
			want, err := s.Lookup(ctx, ref)
			must(t, err)
			if diff := cmp.Diff(want, got[i], equalTime); diff != "" {
				t.Errorf("view %d (%s/%s) differs from Lookup's (-Lookup +LookupAll):\n%s", i, ref.MessageID, ref.ID, diff)
			}
		}
		if !got[0].Seen || got[1].Seen || got[1].Stored || !got[2].Stored || got[3].Letter.SenderName == "" {
			t.Errorf("views = %+v", got)
		}
		if got[1].Citizen == got[3].Citizen {
			t.Error("two views share one *Citizen: a caller changing one changes the other")
		}
	}},
	{"WriteAll", "each write as Write makes it, in order, arrivals counted", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		o1 := sent(at, "d-1", channels.Email)
		o2 := retrying(at, "d-2", channels.SMS)
		ws := []dispatcher.LetterWrite{
			{Citizen: alice, MessageID: msg1, Arrive: &dispatcher.Arrival{Meta: newLetter(msg1, at)}, InFlight: []string{"d-1", "d-2"}},
			{Citizen: alice, MessageID: msg2, Arrive: &dispatcher.Arrival{Meta: newLetter(msg2, at.Add(1))}},
			{Citizen: bob, MessageID: msg3, Arrive: &dispatcher.Arrival{Meta: newLetter(msg3, at)}, Track: []string{"d-3"}},
			{Citizen: alice, MessageID: msg1, Done: []dispatcher.Outcome{o1}, Trail: []dispatcher.Outcome{o2},
				Mark: letterRef(alice, msg1, "ev-1")},
		}
		res, err := s.WriteAll(ctx, ws)
		must(t, err)
		if got := []int{res[0].Unread, res[1].Unread, res[2].Unread, res[3].Unread}; !slices.Equal(got, []int{1, 2, 1, 0}) {
			t.Errorf("unread counts = %v, want [1 2 1 0]", got)
		}
		_, l := load(t, s, alice, msg1)
		if !l.Done["d-1"] || l.Done["d-2"] || len(l.InFlight) != 0 {
			t.Errorf("letter 1: done %v, in flight %v; want d-1 done, d-2 neither", l.Done, l.InFlight)
		}
		if !seen(t, s, alice, msg1, "ev-1") {
			t.Error("the mark of the last write is not set")
		}
		if c, m, err := s.DeliveryRef(ctx, "d-3"); err != nil || c != bob || m != msg3 {
			t.Errorf("DeliveryRef(d-3) = %s, %s, %v", c, m, err)
		}
		trail, err := s.Trail(ctx, msg1)
		must(t, err)
		if len(trail) != 2 {
			t.Errorf("trail of letter 1 = %+v, want its two outcomes", trail)
		}
		if res, err := s.WriteAll(ctx, nil); err != nil || len(res) != 0 {
			t.Errorf("WriteAll(nil) = %v, %v", res, err)
		}
	}},
}
