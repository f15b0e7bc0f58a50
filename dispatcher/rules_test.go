package dispatcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/rules"
)

// TestRules is the table of the Digital Post rules: citizens (exempt or
// not, around their 15th birthday including one born 29 February, with and
// without addresses) × sender kinds × times (day, night, both DST switch
// nights) → exactly the expected deliveries and the reason of each.
func TestRules(t *testing.T) {
	t.Parallel()
	h := newHarnessQuiet(t, nil, map[channels.Name]rules.QuietHours{channels.SMS: {Start: rules.Clock{Hour: 22}, End: rules.Clock{Hour: 7}}},
		channels.Email, channels.SMS, channels.APNs, channels.Paper)
	cph, _ := time.LoadLocation("Europe/Copenhagen")
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, cph)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	const (
		day     = "2026-06-10 12:00"
		night   = "2026-06-10 23:00"
		spring  = "2026-03-29 01:30" // the night 02:00 CET becomes 03:00 CEST
		autumn  = "2026-10-25 01:30" // the night 03:00 CEST becomes 02:00 CET
		morning = "2026-06-10 07:00" // the window's end: outside
	)
	sent := []string{"apns sent", "email sent", "sms sent"}
	deferredSMS := func(until string) []string {
		return []string{"apns sent", "email sent", "sms deferred quiet hours until " + until}
	}
	skippedAll := func(reason string) []string {
		return []string{"apns skipped " + reason, "email skipped " + reason, "sms skipped " + reason}
	}
	paper := func(rest []string) []string { return append(rest, "paper sent") }

	type row struct {
		name     string
		cpr      string // digits chosen for the birth date
		exempt   bool
		contacts bool
		address  bool
		kind     string
		priority string
		legal    bool
		when     string
		want     []string
	}
	rows := []row{
		{name: "adult public day", cpr: "010190-1001", contacts: true, address: true, kind: "public", when: day, want: sent},
		{name: "adult public at 07:00", cpr: "010190-1002", contacts: true, address: true, kind: "public", when: morning, want: sent},
		{name: "adult public night", cpr: "010190-1003", contacts: true, address: true, kind: "public", when: night, want: deferredSMS("2026-06-11 07:00 CEST")},
		{name: "adult public spring DST night", cpr: "010190-1004", contacts: true, address: true, kind: "public", when: spring, want: deferredSMS("2026-03-29 07:00 CEST")},
		{name: "adult public autumn DST night", cpr: "010190-1005", contacts: true, address: true, kind: "public", when: autumn, want: deferredSMS("2026-10-25 07:00 CET")},
		{name: "adult urgent night", cpr: "010190-1006", contacts: true, address: true, kind: "public", priority: "urgent", when: night, want: sent},
		{name: "adult legal notification night", cpr: "010190-1007", contacts: true, address: true, kind: "public", legal: true, when: night, want: sent},
		{name: "adult private night", cpr: "010190-1008", contacts: true, address: true, kind: "private", when: night, want: deferredSMS("2026-06-11 07:00 CEST")},
		{name: "adult without contact", cpr: "010190-1009", address: true, kind: "public", when: day, want: []string{" skipped no contact"}},

		{name: "exempt public day", cpr: "010190-2001", exempt: true, contacts: true, address: true, kind: "public", when: day, want: paper(skippedAll("exempt"))},
		{name: "exempt public night", cpr: "010190-2002", exempt: true, contacts: true, address: true, kind: "public", when: night, want: paper(skippedAll("exempt"))},
		{name: "exempt public-special day", cpr: "010190-2003", exempt: true, contacts: true, address: true, kind: "public-special", when: day, want: sent},
		{name: "exempt public-special night", cpr: "010190-2004", exempt: true, contacts: true, address: true, kind: "public-special", when: night, want: deferredSMS("2026-06-11 07:00 CEST")},
		{name: "exempt private day", cpr: "010190-2005", exempt: true, contacts: true, address: true, kind: "private", when: day, want: sent},
		{name: "exempt without address", cpr: "010190-2006", exempt: true, contacts: true, kind: "public", when: day,
			want: append(skippedAll("exempt"), "paper skipped exempt: no registered address")},
		{name: "exempt without contact", cpr: "010190-2007", exempt: true, address: true, kind: "public", when: day,
			want: []string{" skipped exempt", "paper sent"}},

		// Born 11 June 2011: 15 on 2026-06-11.
		{name: "14 the day before 15", cpr: "110611-4001", contacts: true, address: true, kind: "public", when: "2026-06-10 23:59", want: paper(skippedAll("under 15"))},
		{name: "15 on the birthday", cpr: "110611-4002", contacts: true, address: true, kind: "public", when: "2026-06-11 00:01", want: deferredSMS("2026-06-11 07:00 CEST")},
		{name: "15 on the birthday, day", cpr: "110611-4003", contacts: true, address: true, kind: "public", when: "2026-06-11 12:00", want: sent},
		{name: "under 15 private", cpr: "110611-4004", contacts: true, address: true, kind: "private", when: "2026-06-10 12:00", want: sent},
		{name: "under 15 public-special", cpr: "110611-4005", contacts: true, address: true, kind: "public-special", when: "2026-06-10 12:00", want: sent},
		// Born 29 February 2008: 15 on 1 March 2023.
		{name: "leapling on 28 February", cpr: "290208-4001", contacts: true, address: true, kind: "public", when: "2023-02-28 12:00", want: paper(skippedAll("under 15"))},
		{name: "leapling on 1 March", cpr: "290208-4002", contacts: true, address: true, kind: "public", when: "2023-03-01 12:00", want: sent},
		{name: "leapling in a leap year, 29 February", cpr: "290208-4003", contacts: true, address: true, kind: "public", when: "2024-02-29 12:00", want: sent},
	}
	ctx := context.Background()
	for i, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			when := at(r.when)
			setup := when.Add(-time.Hour)
			h.clock.Store(&setup)
			data := map[string]any{"cpr": r.cpr}
			if r.contacts {
				data["email"], data["mobile"], data["confirmed"] = "c@example.dk", "20123456", true
			}
			if r.address {
				data["address"] = "Vestergade 1\n8000 Aarhus C"
			}
			ts := setup.UTC().Format(time.RFC3339Nano)
			h.handle(wireAt(fmt.Sprintf("c%d", i), "contact.updated", ts, data))
			if r.contacts {
				h.handle(wireAt(fmt.Sprintf("d%d", i), "device.registered", ts, map[string]any{"cpr": r.cpr,
					"app": "digital-post-app", "provider": "apns", "token": "abcdef0123456789"}))
			}
			if r.exempt {
				h.handle(wireAt(fmt.Sprintf("x%d", i), "exemption.granted", ts, map[string]any{"cpr": r.cpr}))
			}
			h.clock.Store(&when)
			msgID := fmt.Sprintf("%08x-0000-4000-8000-00000000a%03d", i, i)
			letter := map[string]any{"message_id": msgID, "recipient": map[string]any{"cpr": r.cpr},
				"sender": map[string]any{"id": "s", "name": "Skattestyrelsen", "kind": r.kind}}
			if r.priority != "" {
				letter["priority"] = r.priority
			}
			if r.legal {
				letter["legal_notification"] = true
			}
			h.handle(wireAt(fmt.Sprintf("l%d", i), "message.received", when.UTC().Format(time.RFC3339Nano), letter))
			trail, err := h.store.Trail(ctx, msgID)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range trail {
				got = append(got, strings.TrimSpace(string(o.Channel)+" "+o.Result+" "+o.Reason))
			}
			want := slices.Clone(r.want)
			for i := range want {
				want[i] = strings.TrimSpace(want[i])
			}
			slices.Sort(got)
			slices.Sort(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("deliveries (-want +got):\n%s", diff)
			}
		})
	}
	// Each deferred SMS has its delivery task in asynq (due at the window's
	// end; these nights are in the past, so they are pending already).
	pending, err := h.insp.ListPendingTasks(h.queues.Normal)
	if err != nil {
		t.Fatal(err)
	}
	scheduled, err := h.insp.ListScheduledTasks(h.queues.Normal)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ti := range append(pending, scheduled...) {
		if ti.Type == dispatcher.TypeDelivery {
			n++
		}
	}
	if n != 6 {
		t.Errorf("%d delivery tasks queued, want the 6 deferred SMS", n)
	}
}

func wireAt(id, typ, at string, data map[string]any) string {
	b, _ := json.Marshal(map[string]any{"id": id, "type": typ, "occurred_at": at, "source": "core", "data": data})
	return string(b)
}

// TestForwardUnopenedOnExemption: on exemption with forward_unopened, every
// unread letter from a public sender received in the six months before is
// sent on paper to the given address — the boundary included, a
// millisecond earlier not, read letters and other senders not.
func TestForwardUnopenedOnExemption(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email, channels.Paper)
	const cpr = "050585-1234"
	granted := time.Now().Truncate(time.Minute)
	start := rules.ForwardWindowStart(granted)
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	h.handle(wireAt("c", "contact.updated", ts(start.Add(-time.Hour)), map[string]any{"cpr": cpr,
		"email": "x@example.dk", "address": "Vestergade 1\n8000 Aarhus C", "confirmed": true}))
	letters := []struct {
		id   string
		at   time.Time
		kind string
		read bool
		want bool
	}{
		{"00000001-0000-4000-8000-000000000001", start, "public", false, true},
		{"00000002-0000-4000-8000-000000000002", start.Add(-time.Millisecond), "public", false, false},
		{"00000003-0000-4000-8000-000000000003", start.Add(24 * time.Hour), "public", true, false},
		{"00000004-0000-4000-8000-000000000004", start.Add(48 * time.Hour), "public-special", false, false},
		{"00000005-0000-4000-8000-000000000005", granted.Add(-time.Minute), "public", false, true},
		{"00000006-0000-4000-8000-000000000006", granted, "private", false, false},
		{"00000007-0000-4000-8000-000000000007", start.Add(-48 * time.Hour), "public", true, false},
	}
	for i, l := range letters {
		h.handle(wireAt(fmt.Sprintf("l%d", i), "message.received", ts(l.at), map[string]any{"message_id": l.id,
			"recipient": map[string]any{"cpr": cpr}, "sender": map[string]any{"id": "s", "name": "Aarhus Kommune", "kind": l.kind}}))
		if l.read {
			h.handle(wireAt(fmt.Sprintf("r%d", i), "message.read", ts(l.at.Add(time.Hour)), map[string]any{"message_id": l.id,
				"recipient": map[string]any{"cpr": cpr}, "platform": "borger.dk", "at": ts(l.at.Add(time.Hour))}))
		}
	}
	fwd := "c/o Jensen\nPostboks 7\n9000 Aalborg"
	ev := wireAt("x", "exemption.granted", ts(granted), map[string]any{"cpr": cpr, "forward_unopened": true, "forward_address": fwd})
	h.handle(ev)
	h.handle(ev) // a repeat prints nothing twice
	var got, want []string
	for _, a := range h.channels[channels.Paper].accepted() {
		got = append(got, a.Alert.MessageID)
		if a.To.Value != fwd {
			t.Errorf("paper job for %s went to %q, want the forwarding address", a.Alert.MessageID, a.To.Value)
		}
	}
	for _, l := range letters {
		if l.want {
			want = append(want, l.id)
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("letters forwarded on paper (-want +got):\n%s", diff)
	}
	// Exempt from now on: a new public letter goes on paper, to the
	// registered address; revoked, digital again.
	h.handle(wireAt("l-new", "message.received", ts(time.Now()), map[string]any{"message_id": "00000008-0000-4000-8000-000000000008",
		"recipient": map[string]any{"cpr": cpr}, "sender": map[string]any{"id": "s", "name": "Aarhus Kommune", "kind": "public"}}))
	p := h.channels[channels.Paper].accepted()
	if last := p[len(p)-1]; last.Alert.MessageID != "00000008-0000-4000-8000-000000000008" || last.To.Value != "Vestergade 1\n8000 Aarhus C" {
		t.Errorf("new letter while exempt: paper %+v", last)
	}
	emails := len(h.channels[channels.Email].alerts())
	h.handle(wireAt("x-off", "exemption.revoked", ts(time.Now()), map[string]any{"cpr": cpr}))
	h.handle(wireAt("l-after", "message.received", ts(time.Now()), map[string]any{"message_id": "00000009-0000-4000-8000-000000000009",
		"recipient": map[string]any{"cpr": cpr}, "sender": map[string]any{"id": "s", "name": "Aarhus Kommune", "kind": "public"}}))
	if n := len(h.channels[channels.Email].alerts()) - emails; n != 1 {
		t.Errorf("after revocation: %d emails, want 1", n)
	}
}

// TestSchedulingRemindersAndSenderText: do_not_deliver_until holds alerts;
// reply_by schedules one reminder, not sent once the letter is read; the
// sender's own text is used only when it passes the privacy check.
func TestSchedulingRemindersAndSenderText(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	h.clock.Store(&now)
	ts := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	const cpr = "070780-1234"
	h.handle(wireAt("c", "contact.updated", ts(now), map[string]any{"cpr": cpr, "email": "x@example.dk", "confirmed": true}))
	letterData := func(msg string, extra map[string]any) map[string]any {
		d := map[string]any{"message_id": msg, "recipient": map[string]any{"cpr": cpr},
			"sender": map[string]any{"id": "s", "name": "Aarhus Kommune", "kind": "public"}}
		for k, v := range extra {
			d[k] = v
		}
		return d
	}
	trailOf := func(msg string) []string {
		tr, err := h.store.Trail(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range tr {
			out = append(out, strings.TrimSpace(string(o.Channel)+" "+o.Result+" "+o.Reason))
		}
		return out
	}

	// Held until tomorrow 09:00.
	release := now.Add(24 * time.Hour)
	h.handle(wireAt("l1", "message.received", ts(now), letterData("00000001-0000-4000-8000-0000000000a1",
		map[string]any{"do_not_deliver_until": ts(release)})))
	got := trailOf("00000001-0000-4000-8000-0000000000a1")
	want := "email deferred scheduled until " + release.In(cph(t)).Format("2006-01-02 15:04 MST")
	if len(got) != 1 || got[0] != want {
		t.Errorf("held letter trail %q, want [%q]", got, want)
	}
	scheduled, _ := h.insp.ListScheduledTasks(h.queues.Normal)
	if len(scheduled) != 1 || scheduled[0].Type != dispatcher.TypeDelivery || !scheduled[0].NextProcessAt.Equal(release.Truncate(time.Second)) {
		t.Errorf("scheduled %+v, want one delivery at %v", scheduled, release)
	}

	// A reply_by in 10 days: one reminder task 72 h before.
	replyBy := now.Add(10 * 24 * time.Hour)
	h.handle(wireAt("l2", "message.received", ts(now), letterData("00000002-0000-4000-8000-0000000000a2",
		map[string]any{"reply_by": ts(replyBy), "notification": "Husk at svare på høringen senest fredag."})))
	scheduled, _ = h.insp.ListScheduledTasks(h.queues.Normal)
	var reminder *asynq.TaskInfo
	for _, ti := range scheduled {
		if ti.Type == dispatcher.TypeReminder {
			reminder = ti
		}
	}
	if reminder == nil || !reminder.NextProcessAt.Equal(replyBy.Add(-72*time.Hour).Truncate(time.Second)) {
		t.Fatalf("reminder task %+v, want one at reply_by − 72h", reminder)
	}
	// The sender's text passed the check and is the alert's text.
	sent := h.channels[channels.Email].alerts()
	if a := sent[len(sent)-1].Alert; a.Notification != "Husk at svare på høringen senest fredag." {
		t.Errorf("alert text %q, want the sender's own", a.Notification)
	}
	// Run the reminder now: it is sent while the letter is unread...
	if err := h.d.HandleReminder(ctx, asynq.NewTask(dispatcher.TypeReminder, reminder.Payload)); err != nil {
		t.Fatal(err)
	}
	sent = h.channels[channels.Email].alerts()
	if a := sent[len(sent)-1].Alert; !strings.HasPrefix(a.Notification, "Påmindelse: Du har ulæst Digital Post fra Aarhus Kommune") {
		t.Errorf("reminder text %q", a.Notification)
	}
	// ...and not once read.
	n := len(sent)
	h.handle(wireAt("r2", "message.read", ts(now.Add(time.Hour)), map[string]any{"message_id": "00000002-0000-4000-8000-0000000000a2",
		"recipient": map[string]any{"cpr": cpr}, "platform": "mit.dk", "at": ts(now.Add(time.Hour))}))
	if err := h.d.HandleReminder(ctx, asynq.NewTask(dispatcher.TypeReminder, reminder.Payload)); err != nil {
		t.Fatal(err)
	}
	if len(h.channels[channels.Email].alerts()) != n {
		t.Error("a reminder went out for a read letter")
	}

	// A sender text with an account number is refused: the generic text.
	h.handle(wireAt("l3", "message.received", ts(now), letterData("00000003-0000-4000-8000-0000000000a3",
		map[string]any{"notification": "Beløbet er sat ind på konto 1234 5678901234."})))
	sent = h.channels[channels.Email].alerts()
	if a := sent[len(sent)-1].Alert; a.Notification != "" {
		t.Errorf("alert text %q, want the generic text", a.Notification)
	}
	found := false
	for _, e := range trailOf("00000003-0000-4000-8000-0000000000a3") {
		if strings.HasPrefix(e, "note sender's alert text refused") {
			found = true
		}
	}
	if !found {
		t.Errorf("the refusal is not in the trail: %q", trailOf("00000003-0000-4000-8000-0000000000a3"))
	}
}

func cph(t *testing.T) *time.Location {
	l, err := time.LoadLocation("Europe/Copenhagen")
	if err != nil {
		t.Fatal(err)
	}
	return l
}
