package dispatcher_test

import (
	"context"
	"encoding/json"
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

const holderCPR = "020285-2345"

// holderAddrs are the holder's own addresses in these tests.
var holderAddrs = map[string]bool{"holder@example.dk": true, "+4530123456": true, "b1b2c3d4e5f6a7b8": true}

func accessEvent(id, typ, at string, data map[string]any) string {
	data["cpr"] = annaCPR
	data["holder"] = map[string]any{"cpr": holderCPR}
	return wireAt(id, typ, at, data)
}

// TestAccessHolderAlerts is the table of access holders' alerts: for a
// letter to the owner, what the holder gets (and what the trail says).
func TestAccessHolderAlerts(t *testing.T) {
	t.Parallel()
	const (
		day   = "2026-06-10T12:00:00+02:00"
		night = "2026-06-10T23:00:00+02:00"
		early = "2026-06-10T08:00:00+02:00" // the grant, before the letter
	)
	sentAll := []string{"apns sent", "email sent", "sms sent"}
	type row struct {
		name      string
		access    []string // access events, in order
		exempt    bool     // the owner is exempt
		confirmed bool     // the holder's email and mobile are confirmed
		at        string   // the letter's time and the clock
		clock     string   // the clock, if not at
		readFirst bool     // the owner read the letter before it arrived here
		want      []string // the holder's deliveries as the trail has them
	}
	grant := func(notify bool, extra map[string]any) string {
		d := map[string]any{"scope": "read", "notify": notify}
		for k, v := range extra {
			d[k] = v
		}
		return accessEvent("acc-1", "access.granted", early, d)
	}
	rows := []row{
		{name: "notify on", access: []string{grant(true, nil)}, confirmed: true, at: day, want: sentAll},
		{name: "notify off", access: []string{grant(false, nil)}, confirmed: true, at: day},
		{name: "notify turned off by access.updated", access: []string{grant(true, nil),
			accessEvent("acc-2", "access.updated", "2026-06-10T09:00:00+02:00", map[string]any{"notify": false})}, confirmed: true, at: day},
		{name: "notify turned on by access.updated", access: []string{grant(false, nil),
			accessEvent("acc-2", "access.updated", "2026-06-10T09:00:00+02:00", map[string]any{"notify": true})}, confirmed: true, at: day, want: sentAll},
		{name: "expired", access: []string{grant(true, map[string]any{"expires_at": "2026-06-10T11:00:00+02:00"})}, confirmed: true, at: day},
		{name: "not expired yet", access: []string{grant(true, map[string]any{"expires_at": "2026-06-10T13:00:00+02:00"})}, confirmed: true, at: day, want: sentAll},
		{name: "revoked", access: []string{grant(true, nil),
			accessEvent("acc-2", "access.revoked", "2026-06-10T09:00:00+02:00", map[string]any{})}, confirmed: true, at: day},
		{name: "a late grant older than the revoke", access: []string{
			accessEvent("acc-2", "access.revoked", "2026-06-10T09:00:00+02:00", map[string]any{}), grant(true, nil)}, confirmed: true, at: day},
		{name: "holder gave the app's platform no consent", access: []string{grant(true, nil),
			wireAt("cs-h2", "consent.revoked", early, map[string]any{"cpr": holderCPR, "platform": "mit.dk"})}, confirmed: true, at: day,
			want: []string{"apns skipped no consent (mit.dk)", "email sent", "sms sent"}},
		{name: "exempt owner: paper, no holder alerted", access: []string{grant(true, nil)}, exempt: true, confirmed: true, at: day},
		{name: "holder in quiet hours", access: []string{grant(true, nil)}, confirmed: true, at: night,
			want: []string{"apns sent", "email sent", "sms deferred"}},
		{name: "holder with no confirmed address", access: []string{grant(true, nil)}, at: day,
			want: []string{"apns sent", "email skipped email not confirmed", "sms skipped sms not confirmed"}},
		{name: "letter read already", access: []string{grant(true, nil)}, confirmed: true, at: day, readFirst: true,
			want: []string{"apns skipped read", "email skipped read", "sms skipped read"}},
		{name: "alert expired (letter processed late)", access: []string{grant(true, nil)}, confirmed: true, at: day,
			clock: "2026-06-13T12:00:00+02:00", want: []string{"apns skipped expired", "email skipped expired", "sms skipped expired"}},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarnessQuiet(t, nil, map[channels.Name]rules.QuietHours{channels.SMS: {Start: rules.Clock{Hour: 22}, End: rules.Clock{Hour: 7}}},
				channels.Email, channels.SMS, channels.APNs)
			clockAt := tc.at
			if tc.clock != "" {
				clockAt = tc.clock
			}
			clock, _ := time.Parse(time.RFC3339, clockAt)
			h.clock.Store(&clock)
			setUpHolder(h, tc.confirmed)
			if tc.exempt {
				h.handle(wireAt("x-1", "exemption.granted", early, map[string]any{"cpr": annaCPR}))
			}
			for _, ev := range tc.access {
				h.handle(ev)
			}
			const msg = "9a1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
			if tc.readFirst {
				b, _ := json.Marshal(map[string]any{"id": "r-0", "type": "message.read", "occurred_at": early, "source": "e-boks",
					"data": map[string]any{"message_id": msg, "recipient": map[string]any{"cpr": annaCPR}, "platform": "e-boks", "at": early}})
				h.handle(string(b))
			}
			h.handle(wireAt("l-1", "message.received", tc.at, map[string]any{"message_id": msg,
				"recipient":    map[string]any{"cpr": annaCPR},
				"sender":       map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"},
				"notification": "Anna Jensen: din årsopgørelse er klar"}))
			got := holderTrail(t, h, msg)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("holder deliveries in the trail (-want +got):\n%s", diff)
			}
			var sentTo []string
			for _, ch := range h.channels {
				for _, a := range ch.accepted() {
					if !holderAddrs[a.To.Value] {
						continue
					}
					sentTo = append(sentTo, string(a.To.Channel))
					checkHolderAlert(t, a)
				}
			}
			slices.Sort(sentTo)
			var want []string
			for _, w := range tc.want {
				if ch, ok := strings.CutSuffix(w, " sent"); ok {
					want = append(want, ch)
				}
			}
			if diff := cmp.Diff(want, sentTo); diff != "" {
				t.Errorf("alerts to the holder (-want +got):\n%s", diff)
			}
			// The owner's own alerts are as without holders.
			if !tc.exempt && !tc.readFirst && tc.clock == "" {
				if n := len(h.channels[channels.Email].accepted()) - count(sentTo, "email"); n != 1 {
					t.Errorf("%d emails to the owner, want 1", n)
				}
			}
		})
	}
}

func count(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// setUpHolder registers the owner (anna) and the holder, who reads English.
func setUpHolder(h *harness, confirmed bool) {
	h.t.Helper()
	at := "2026-06-01T08:00:00+02:00"
	h.handle(wireAt("c-owner", "contact.updated", at, map[string]any{"cpr": annaCPR, "email": "anna@example.dk", "mobile": "20123456", "confirmed": true}))
	h.handle(wireAt("d-owner", "device.registered", at, map[string]any{"cpr": annaCPR, "app": "digital-post-app", "provider": "apns", "token": "a1b2c3d4e5f6a7b8"}))
	// mit.dk may show the owner's public post: a holder reads there.
	h.handle(wireAt("cs-owner", "consent.granted", at, map[string]any{"cpr": annaCPR, "platform": "mit.dk"}))
	c := map[string]any{"cpr": holderCPR, "email": "holder@example.dk", "mobile": "30123456", "language": "en"}
	if confirmed {
		c["confirmed"] = true
	}
	h.handle(wireAt("c-holder", "contact.updated", at, c))
	h.handle(wireAt("d-holder", "device.registered", at, map[string]any{"cpr": holderCPR, "app": "mit.dk", "provider": "apns", "token": "b1b2c3d4e5f6a7b8"}))
	// The holder's app is mit.dk's: mit.dk may show the holder public post.
	h.handle(wireAt("cs-holder", "consent.granted", at, map[string]any{"cpr": holderCPR, "platform": "mit.dk"}))
}

// holderTrail returns the holder's deliveries of msg as the trail has them:
// "<channel> <result>", and the reason of a skip.
func holderTrail(t *testing.T, h *harness, msg string) []string {
	t.Helper()
	trail, err := h.store.Trail(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range trail {
		if o.Holder == "" || o.DeliveryID == "" {
			continue
		}
		if o.Holder != dispatcher.HolderRef(h.keyer.CitizenKey(mustCPR(t, holderCPR))) {
			t.Errorf("trail names the holder %q", o.Holder)
		}
		s := string(o.Channel) + " " + o.Result
		if o.Result == dispatcher.ResultSkipped {
			s += " " + o.Reason
		}
		got = append(got, s)
	}
	slices.Sort(got)
	return got
}

// checkHolderAlert checks an alert to the holder says what the holder
// needs and nothing of the owner.
func checkHolderAlert(t *testing.T, a sentAlert) {
	t.Helper()
	if want := rules.HolderText("en", "Skattestyrelsen"); a.Alert.Notification != want {
		t.Errorf("%s alert text %q, want %q", a.To.Channel, a.Alert.Notification, want)
	}
	if a.Alert.Language != "en" {
		t.Errorf("%s alert in %q, want the holder's language en", a.To.Channel, a.Alert.Language)
	}
	b, _ := json.Marshal(a.Alert)
	for _, s := range []string{"Anna", "anna", "0101901234", "010190-1234", "årsopgørelse"} {
		if strings.Contains(string(b), s) {
			t.Errorf("%s alert to the holder reveals the owner (%q): %s", a.To.Channel, s, b)
		}
	}
}

// TestAccessHolderPendingStopsOnRevoke: a holder's delivery held for quiet
// hours looks the relation up again when it runs: revoked (or notify
// turned off) in between, it is skipped, not sent; still granted, it goes
// out. A letter processed again sends no holder alert twice.
func TestAccessHolderPendingStopsOnRevoke(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		after string // the access event between the letter and the held delivery's run
		want  string // the held SMS's outcome
	}{
		{"still granted", "", "sms sent"},
		{"revoked", "access.revoked", "sms skipped access holder: access revoked"},
		{"alerts off", "access.updated", "sms skipped access holder: alerts off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarnessQuiet(t, nil, map[channels.Name]rules.QuietHours{channels.SMS: {Start: rules.Clock{Hour: 22}, End: rules.Clock{Hour: 7}}},
				channels.Email, channels.SMS, channels.APNs)
			clock, _ := time.Parse(time.RFC3339, "2026-06-10T23:00:00+02:00")
			h.clock.Store(&clock)
			setUpHolder(h, true)
			h.handle(accessEvent("acc-1", "access.granted", "2026-06-10T08:00:00+02:00", map[string]any{"scope": "read", "notify": true}))
			const msg = "9a1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
			received := func(id string) {
				h.handle(wireAt(id, "message.received", "2026-06-10T23:00:00+02:00", map[string]any{"message_id": msg,
					"recipient": map[string]any{"cpr": annaCPR},
					"sender":    map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"}}))
			}
			received("l-1")
			received("l-2") // the same letter again: nothing is sent twice
			if n := len(h.channels[channels.Email].accepted()); n != 2 {
				t.Errorf("%d emails, want 2 (owner and holder, once each)", n)
			}
			switch tc.after {
			case "access.revoked":
				h.handle(accessEvent("acc-2", tc.after, "2026-06-10T23:30:00+02:00", map[string]any{}))
			case "access.updated":
				h.handle(accessEvent("acc-2", tc.after, "2026-06-10T23:30:00+02:00", map[string]any{"notify": false}))
			}
			morning, _ := time.Parse(time.RFC3339, "2026-06-11T07:00:00+02:00")
			h.clock.Store(&morning)
			// Held until a morning in the past: pending already.
			pending, err := h.insp.ListPendingTasks(h.queues.Normal)
			if err != nil {
				t.Fatal(err)
			}
			scheduled, err := h.insp.ListScheduledTasks(h.queues.Normal)
			if err != nil {
				t.Fatal(err)
			}
			ran := 0
			for _, ti := range append(pending, scheduled...) {
				if ti.Type != dispatcher.TypeDelivery {
					continue
				}
				if err := h.d.HandleDelivery(context.Background(), asynq.NewTask(ti.Type, ti.Payload)); err != nil {
					t.Fatalf("HandleDelivery: %v", err)
				}
				ran++
			}
			if ran != 2 {
				t.Fatalf("%d held deliveries, want 2 (the owner's and the holder's SMS)", ran)
			}
			var holderSMS []string
			for _, s := range holderTrail(t, h, msg) {
				if strings.HasPrefix(s, "sms") && s != "sms deferred" {
					holderSMS = append(holderSMS, s)
				}
			}
			if diff := cmp.Diff([]string{tc.want}, holderSMS); diff != "" {
				t.Errorf("the held holder SMS (-want +got):\n%s", diff)
			}
			toHolder := 0
			for _, a := range h.channels[channels.SMS].accepted() {
				if holderAddrs[a.To.Value] {
					toHolder++
					checkHolderAlert(t, a)
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tc.want == "sms sent"]; toHolder != want {
				t.Errorf("%d SMS to the holder, want %d", toHolder, want)
			}
		})
	}
}

// TestAccessHolderRead: a holder's read (data.reader) reads the letter for
// everyone, and the trail says who read.
func TestAccessHolderRead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, reader, want string
	}{
		{"holder", holderCPR, "read by access holder on mit.dk"},
		{"no access", "030375-3456", "read on mit.dk by a reader other than the recipient, without current access"},
		{"the recipient", annaCPR, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, channels.Email)
			setUpHolder(h, true)
			h.handle(accessEvent("acc-1", "access.granted", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), map[string]any{"scope": "read"}))
			const msg = "9a1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
			h.handle(letter("l-1", msg, annaCPR))
			b, _ := json.Marshal(map[string]any{"id": "r-1", "type": "message.read", "occurred_at": time.Now().UTC().Format(time.RFC3339Nano),
				"source": "mit.dk", "data": map[string]any{"message_id": msg, "recipient": map[string]any{"cpr": annaCPR},
					"platform": "mit.dk", "at": time.Now().UTC().Format(time.RFC3339Nano), "reader": map[string]any{"cpr": tc.reader}}})
			h.handle(string(b))
			st, err := h.store.State(context.Background(), h.keyer.CitizenKey(mustCPR(t, annaCPR)), msg)
			if err != nil || !st.Read {
				t.Fatalf("State = %+v, %v; want read", st, err)
			}
			trail, _ := h.store.Trail(context.Background(), msg)
			var notes []string
			for _, o := range trail {
				if o.Result == dispatcher.ResultNote && strings.Contains(o.Reason, "read") {
					notes = append(notes, o.Reason)
				}
			}
			var want []string
			if tc.want != "" {
				want = []string{tc.want}
			}
			if diff := cmp.Diff(want, notes); diff != "" {
				t.Errorf("read notes in the trail (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAccessInboundFromCoreOnly: an access event a platform enqueued
// straight into asynq with its own source is rejected, not applied; core's
// is applied.
func TestAccessInboundFromCoreOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email)
	h.start()
	owner := h.keyer.CitizenKey(mustCPR(t, annaCPR))
	holders := map[string]string{"mit.dk": "030375-3456", "core": holderCPR}
	for source, holder := range holders {
		raw, _ := json.Marshal(map[string]any{"id": "acc-" + source, "type": "access.granted", "occurred_at": time.Now().UTC().Format(time.RFC3339Nano),
			"source": source, "data": map[string]any{"cpr": annaCPR, "holder": map[string]any{"cpr": holder}, "scope": "read", "notify": true}})
		if _, err := h.client.Enqueue(asynq.NewTask(dispatcher.TypeInbound, raw), asynq.Queue(h.queues.Normal)); err != nil {
			t.Fatal(err)
		}
	}
	h.waitFor("the platform's access event to be archived", func() bool {
		tasks, err := h.insp.ListArchivedTasks(h.queues.Normal)
		return err == nil && len(tasks) == 1
	})
	h.idle()
	tasks, _ := h.insp.ListArchivedTasks(h.queues.Normal)
	if a := tasks[0]; a.Type != dispatcher.TypeRejected || !strings.Contains(a.LastErr, "only core may send access.granted") {
		t.Errorf("archived %s with %q, want postbud:rejected saying only core may send it", a.Type, a.LastErr)
	}
	hs, err := h.store.HoldersOf(context.Background(), owner)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].Holder != h.keyer.CitizenKey(mustCPR(t, holderCPR)) {
		t.Errorf("holders %+v, want core's grant only", hs)
	}
}

// TestAccessHolderDeadNumber: a delivery report saying the holder's mobile
// is dead removes the holder's number, not the owner's.
func TestAccessHolderDeadNumber(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(c *dispatcher.Config, _ *harness) { c.TrackReports = []channels.Name{channels.SMS} },
		channels.SMS)
	setUpHolder(h, true)
	h.handle(accessEvent("acc-1", "access.granted", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), map[string]any{"scope": "read", "notify": true}))
	const msg = "9a1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	h.handle(letter("l-1", msg, annaCPR))
	var id string
	for _, o := range holderTrailEntries(t, h, msg) {
		if o.Channel == channels.SMS && o.Result == dispatcher.ResultSent {
			id = o.DeliveryID
		}
	}
	if id == "" {
		t.Fatal("no SMS to the holder")
	}
	if err := h.d.Report(context.Background(), dispatcher.DeliveryReport{Channel: channels.SMS, DeliveryID: id,
		Status: "UNDELIVERABLE", Final: true, Dead: true, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for cpr, want := range map[string]string{holderCPR: "", annaCPR: "+4520123456"} {
		v, err := h.store.Load(context.Background(), h.keyer.CitizenKey(mustCPR(t, cpr)), msg)
		if err != nil {
			t.Fatal(err)
		}
		if v.Citizen.Mobile != want {
			t.Errorf("%s's mobile after the holder's dead-number report: %q, want %q", cpr, v.Citizen.Mobile, want)
		}
	}
}

func holderTrailEntries(t *testing.T, h *harness, msg string) []dispatcher.Outcome {
	t.Helper()
	trail, err := h.store.Trail(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	var out []dispatcher.Outcome
	for _, o := range trail {
		if o.Holder != "" {
			out = append(out, o)
		}
	}
	return out
}
