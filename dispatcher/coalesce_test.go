package dispatcher_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
)

func TestCoalescing(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(c *dispatcher.Config, _ *harness) {
		c.Coalesce = map[channels.Name]time.Duration{channels.Email: 2 * time.Second}
	}, channels.Email, channels.SMS)
	h.start()
	h.accept(wire("c", "contact.updated", map[string]any{"cpr": annaCPR, "email": "anna@example.dk", "mobile": "20123456", "confirmed": true}))
	consent(h, annaCPR, "e-boks")
	h.idle()
	sendLetter := func(id, msg, sender, priority string) {
		data := map[string]any{"message_id": msg, "recipient": map[string]any{"cpr": annaCPR},
			"sender": map[string]any{"id": "s", "name": sender, "kind": "public"}}
		if priority != "" {
			data["priority"] = priority
		}
		h.accept(wire(id, "message.received", data))
	}
	const (
		m1 = "00000001-0000-4000-8000-000000000001"
		m2 = "00000002-0000-4000-8000-000000000002"
		m3 = "00000003-0000-4000-8000-000000000003"
		m4 = "00000004-0000-4000-8000-000000000004"
		m5 = "00000005-0000-4000-8000-000000000005"
	)
	// The first letter alerts at once and opens the window.
	sendLetter("l1", m1, "Skattestyrelsen", "")
	h.waitFor("the first email", func() bool { return len(h.channels[channels.Email].alerts()) == 1 })
	// Three more within the window: held; one is read before the window
	// ends; an urgent one is never held.
	sendLetter("l2", m2, "Aarhus Kommune", "")
	sendLetter("l3", m3, "Udbetaling Danmark", "")
	sendLetter("l4", m4, "Region Midtjylland", "")
	sendLetter("l5", m5, "Aarhus Universitetshospital", "urgent")
	h.waitFor("the urgent email", func() bool { return len(h.channels[channels.Email].alerts()) == 2 })
	// Checked at once, inside the window: a held urgent letter would make
	// the second email the coalesced one, at the window's end.
	if a := h.channels[channels.Email].alerts()[1].Alert; a.MessageID != m5 || a.Count != 1 {
		t.Fatalf("second email %+v, want the urgent letter alone, before the window ends", a)
	}
	// Every letter processed (its SMS sent) before the read, so the read
	// only takes its letter out of the coalesced email.
	h.waitFor("an SMS per letter", func() bool { return len(h.channels[channels.SMS].alerts()) == 5 })
	h.accept(wire("r3", "message.read", map[string]any{"message_id": m3, "recipient": map[string]any{"cpr": annaCPR},
		"platform": "e-boks", "at": time.Now().UTC().Format(time.RFC3339Nano)}))
	h.waitFor("the coalesced email", func() bool { return len(h.channels[channels.Email].alerts()) == 3 })
	h.idle()

	got := h.channels[channels.Email].alerts()
	if len(got) != 3 {
		t.Fatalf("%d emails, want 3 (first, urgent, one for the held)", len(got))
	}
	if a := got[1].Alert; a.MessageID != m5 || a.Count != 1 {
		t.Errorf("second email %+v, want the urgent letter alone", a)
	}
	co := got[2].Alert
	senders := slices.Sorted(slices.Values(co.Senders)) // held in the order workers took them
	if co.Count != 2 || strings.Join(senders, ",") != "Aarhus Kommune,Region Midtjylland" {
		t.Errorf("coalesced alert Count=%d Senders=%v, want 2 from Aarhus Kommune and Region Midtjylland", co.Count, co.Senders)
	}
	if h := channels.Headline(co); h != "Du har 2 nye breve i Digital Post fra "+co.Senders[0]+" og "+co.Senders[1]+"." {
		t.Errorf("headline %q", h)
	}
	// SMS is not coalesced here: one per letter, the read one excepted.
	if n := len(h.channels[channels.SMS].alerts()); n != 5 {
		t.Errorf("%d SMS, want 5", n)
	}
	// Each held letter's trail says where its alert went.
	for _, m := range []string{m2, m4} {
		trail, err := h.store.Trail(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		var results []string
		for _, o := range trail {
			if o.Channel == channels.Email {
				results = append(results, o.Result+": "+o.Reason)
			}
		}
		if len(results) != 2 || !strings.HasPrefix(results[0], "deferred: coalescing until") ||
			!strings.HasPrefix(results[1], "sent: coalesced: one alert for 2 letters") {
			t.Errorf("letter %s email trail %q", m, results)
		}
	}
	trail, _ := h.store.Trail(context.Background(), m3)
	found := false
	for _, o := range trail {
		if o.Channel == channels.Email && o.Result == dispatcher.ResultSkipped && o.Reason == "read" {
			found = true
		}
	}
	if !found {
		t.Errorf("the letter read in the window: trail %+v, want email skipped: read", trail)
	}
}

// TestHeldLetterIsNotCoalesced: a letter held by do_not_deliver_until
// inside an open window waits on its own, not for the window's alert.
func TestHeldLetterIsNotCoalesced(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(c *dispatcher.Config, _ *harness) {
		c.Coalesce = map[channels.Name]time.Duration{channels.Email: time.Second}
	}, channels.Email)
	h.start()
	h.accept(wire("c", "contact.updated", map[string]any{"cpr": annaCPR, "email": "anna@example.dk", "confirmed": true}))
	h.idle()
	h.accept(letter("l1", "00000001-0000-4000-8000-000000000001", annaCPR))
	h.waitFor("the first email", func() bool { return len(h.channels[channels.Email].alerts()) == 1 })
	tomorrow := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339Nano)
	h.accept(wire("l2", "message.received", map[string]any{"message_id": "00000002-0000-4000-8000-000000000002",
		"recipient": map[string]any{"cpr": annaCPR}, "do_not_deliver_until": tomorrow,
		"sender": map[string]any{"id": "s", "name": "Aarhus Kommune", "kind": "public"}}))
	h.accept(letter("l3", "00000003-0000-4000-8000-000000000003", annaCPR))
	h.waitFor("the coalesced email", func() bool { return len(h.channels[channels.Email].alerts()) == 2 })
	if a := h.channels[channels.Email].alerts()[1].Alert; a.Count != 1 || a.MessageID != "00000003-0000-4000-8000-000000000003" {
		t.Errorf("window's alert %+v, want only the third letter", a)
	}
	scheduled, _ := h.insp.ListScheduledTasks(h.queues.Normal)
	if len(scheduled) != 1 || scheduled[0].Type != dispatcher.TypeDelivery {
		t.Errorf("scheduled tasks %d, want the held letter's delivery", len(scheduled))
	}
}
