package dispatcher_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// The consent rule (issue 9, part 1): e-Boks and mit.dk are told of a
// letter from a public sender only while the citizen consents.

const (
	msgPublic  = "c0000001-0000-4000-8000-000000000001"
	msgPrivate = "c0000002-0000-4000-8000-000000000002"
)

func letterFrom(id, messageID, cpr, kind string) string {
	return wire(id, "message.received", map[string]any{"message_id": messageID, "recipient": map[string]any{"cpr": cpr},
		"sender": map[string]any{"id": "s-" + kind, "name": "Afsender " + kind, "kind": kind}})
}

func readOn(id, typ, messageID, cpr, platform string, at time.Time) string {
	return wire(id, typ, map[string]any{"message_id": messageID, "recipient": map[string]any{"cpr": cpr},
		"platform": platform, "at": at.UTC().Format(time.RFC3339Nano)})
}

func consentEvent(id, typ, cpr, platform string, at time.Time) string {
	return wireAt(id, typ, at.UTC().Format(time.RFC3339Nano), map[string]any{"cpr": cpr, "platform": platform})
}

// registerApps gives the citizen an email and a push token in each of the
// three apps.
func registerApps(h *harness, cpr string) {
	h.handle(wire("c-"+cpr, "contact.updated", map[string]any{"cpr": cpr, "email": "anna@example.dk", "confirmed": true}))
	for _, d := range []struct{ app, provider, token string }{
		{"digital-post-app", "apns", "a1b2c3d4e5f6a7b8"}, {"e-boks", "fcm", "fcm-token-eboks"}, {"mit.dk", "fcm", "fcm-token-mitdk"},
	} {
		h.handle(wire("d-"+d.app+cpr, "device.registered", map[string]any{"cpr": cpr, "app": d.app, "provider": d.provider, "token": d.token}))
	}
}

func apps(alerts []sentAlert) []string {
	var out []string
	for _, a := range alerts {
		out = append(out, a.To.App)
	}
	slices.Sort(out)
	return out
}

func trailHas(t *testing.T, h *harness, messageID string, match func(dispatcher.Outcome) bool) bool {
	t.Helper()
	trail, err := h.store.Trail(context.Background(), messageID)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(trail, match)
}

// A public letter alerts through the apps of borger.dk's Digital Post app
// and of the platforms with consent only; a private letter through all.
func TestConsentAlertsThroughApps(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email, channels.APNs, channels.FCM)
	registerApps(h, annaCPR)
	h.handle(consentEvent("cs-1", "consent.granted", annaCPR, "mit.dk", time.Now()))

	h.handle(letterFrom("l-pub", msgPublic, annaCPR, "public"))
	if got := apps(h.channels[channels.FCM].alerts()); !slices.Equal(got, []string{"mit.dk"}) {
		t.Errorf("fcm alerts of a public letter through %v, want mit.dk only (no e-Boks consent)", got)
	}
	if n := len(h.channels[channels.APNs].alerts()) + len(h.channels[channels.Email].alerts()); n != 2 {
		t.Errorf("%d email and Digital Post app alerts, want 2 (they need no consent)", n)
	}
	if !trailHas(t, h, msgPublic, func(o dispatcher.Outcome) bool {
		return o.Result == dispatcher.ResultSkipped && o.Reason == "no consent (e-boks)" && o.App == "e-boks"
	}) {
		t.Error(`the trail does not say "skipped: no consent (e-boks)" for the e-Boks app`)
	}

	h.handle(letterFrom("l-priv", msgPrivate, annaCPR, "private"))
	if got := apps(h.channels[channels.FCM].alerts()); !slices.Equal(got, []string{"e-boks", "mit.dk", "mit.dk"}) {
		t.Errorf("fcm alerts after a private letter through %v, want e-boks too (private senders need no consent)", got)
	}
}

// A retry of an alert through an app whose consent was revoked after the
// letter arrived is dropped.
func TestConsentRevokedDropsPendingAlert(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.FCM)
	registerApps(h, annaCPR)
	h.handle(consentEvent("cs-1", "consent.granted", annaCPR, "e-boks", time.Now().Add(-time.Minute)))
	h.channels[channels.FCM].failNext(channels.Fail(channels.Transient, "http 503", errors.New("fcm down")))
	h.handle(letterFrom("l-pub", msgPublic, annaCPR, "public")) // e-boks fails (first), its retry is queued
	h.handle(consentEvent("cs-2", "consent.revoked", annaCPR, "e-boks", time.Now()))
	h.start()
	h.idle()
	for _, a := range h.channels[channels.FCM].alerts() {
		if a.To.App == "e-boks" {
			t.Errorf("an alert went through the e-Boks app after its consent was revoked")
		}
	}
	if !trailHas(t, h, msgPublic, func(o dispatcher.Outcome) bool {
		return o.Result == dispatcher.ResultSkipped && o.Reason == "no consent (e-boks)"
	}) {
		t.Error(`the dropped retry is not in the trail as "skipped: no consent (e-boks)"`)
	}
}

// A read on borger.dk: webhooks go to the platforms with consent (and those
// that need none), the badge through their apps; a webhook pending to
// e-Boks when its consent is revoked is dropped when its task runs.
func TestConsentWebhooksAndRevocationDropsPending(t *testing.T) {
	t.Parallel()
	recv, syncer := newPlatforms(t)
	h := newHarnessSync(t, syncer, channels.APNs, channels.FCM)
	registerApps(h, annaCPR)
	h.handle(consentEvent("cs-1", "consent.granted", annaCPR, "e-boks", time.Now().Add(-time.Minute)))
	h.handle(consentEvent("cs-2", "consent.granted", annaCPR, "mit.dk", time.Now().Add(-time.Minute)))
	h.handle(letterFrom("l-pub", msgPublic, annaCPR, "public"))
	// No workers yet: the read's webhooks are pending when e-Boks loses
	// its consent.
	h.handle(readOn("r-1", "message.read", msgPublic, annaCPR, "borger.dk", time.Now()))
	h.handle(consentEvent("cs-3", "consent.revoked", annaCPR, "e-boks", time.Now()))
	h.start()
	h.idle()
	if n := len(recv[event.EBoks].Changes()); n != 0 {
		t.Errorf("e-boks got %d webhooks after its consent was revoked, want 0", n)
	}
	for _, p := range []event.Platform{event.DigitalPostApp, event.MitDK} {
		if n := len(recv[p].Changes()); n != 1 {
			t.Errorf("%s got %d webhooks, want 1", p, n)
		}
	}
	if !trailHas(t, h, msgPublic, func(o dispatcher.Outcome) bool {
		return o.Channel == dispatcher.TrailWebhook && o.App == "e-boks" && o.Result == dispatcher.ResultSkipped &&
			o.Reason == "no consent (e-boks)"
	}) {
		t.Error(`the trail does not say the e-Boks webhook was skipped: no consent (e-boks)`)
	}
	// The badge (silent push) went through the apps with consent only.
	for _, a := range h.channels[channels.FCM].accepted() {
		if a.Alert.Silent && a.To.App == "e-boks" {
			t.Error("a badge update about a public letter went through the e-Boks app without consent")
		}
	}
	if !slices.ContainsFunc(h.channels[channels.FCM].accepted(), func(a sentAlert) bool { return a.Alert.Silent && a.To.App == "mit.dk" }) {
		t.Error("no badge update through the mit.dk app, which has consent")
	}
}

// A read or unread from a platform without consent about a public letter
// is refused: at Accept when the letter is known, in the worker for an
// event that came another way. Private letters and unknown ones pass.
func TestConsentReadFromPlatformWithoutConsent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	h.handle(letterFrom("l-pub", msgPublic, annaCPR, "public"))
	h.handle(letterFrom("l-priv", msgPrivate, annaCPR, "private"))
	accept := func(raw string) error {
		ev, err := event.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.d.Accept(ctx, ev)
		return err
	}
	now := time.Now()
	if err := accept(readOn("r-1", "message.read", msgPublic, annaCPR, "e-boks", now)); !errors.Is(err, dispatcher.ErrNoConsent) {
		t.Errorf("Accept(read of a public letter from e-boks without consent) = %v, want ErrNoConsent", err)
	}
	if err := accept(readOn("r-2", "message.unread", msgPublic, annaCPR, "mit.dk", now)); !errors.Is(err, dispatcher.ErrNoConsent) {
		t.Errorf("Accept(unread of a public letter from mit.dk without consent) = %v, want ErrNoConsent", err)
	}
	// e-Boks passing its read off as borger.dk's.
	disguised := strings.Replace(readOn("r-2b", "message.read", msgPublic, annaCPR, "borger.dk", now), `"source":"core"`, `"source":"e-boks"`, 1)
	if err := accept(disguised); !errors.Is(err, dispatcher.ErrNoConsent) {
		t.Errorf("Accept(read with source e-boks, platform borger.dk, without consent) = %v, want ErrNoConsent", err)
	}
	for _, ok := range []string{
		readOn("r-3", "message.read", msgPrivate, annaCPR, "e-boks", now),                             // private sender
		readOn("r-4", "message.read", msgPublic, annaCPR, "borger.dk", now),                           // needs no consent
		readOn("r-5", "message.read", "c0000009-0000-4000-8000-000000000009", annaCPR, "e-boks", now), // not known yet
	} {
		if err := accept(ok); err != nil {
			t.Errorf("Accept: %v, want accepted", err)
		}
	}

	// The worker: a read from e-Boks that did not pass Accept.
	const msg = "c0000003-0000-4000-8000-000000000003"
	h.handle(letterFrom("l-3", msg, annaCPR, "public"))
	h.handle(readOn("r-6", "message.read", msg, annaCPR, "e-boks", now))
	st, err := h.store.State(ctx, h.keyer.CitizenKey(mustCPR(t, annaCPR)), msg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Read {
		t.Error("a read from e-boks without consent was applied by the worker")
	}
	if !trailHas(t, h, msg, func(o dispatcher.Outcome) bool {
		return o.Result == dispatcher.ResultSkipped && o.Reason == "message.read from e-boks refused: no consent (e-boks)"
	}) {
		t.Error("the refused read is not in the trail")
	}
	// With consent it applies.
	h.handle(consentEvent("cs-1", "consent.granted", annaCPR, "e-boks", now))
	h.handle(readOn("r-7", "message.read", msg, annaCPR, "e-boks", now.Add(time.Second)))
	if err := accept(readOn("r-8", "message.unread", msgPublic, annaCPR, "e-boks", now)); err != nil {
		t.Errorf("Accept after consent.granted: %v", err)
	}
	if st, _ := h.store.State(ctx, h.keyer.CitizenKey(mustCPR(t, annaCPR)), msg); !st.Read {
		t.Error("a read from e-boks with consent was not applied")
	}
	// The state API: e-Boks may reconcile now; mit.dk (no consent) may not.
	if _, err := h.d.StateFor(ctx, msg, event.EBoks); err != nil {
		t.Errorf("StateFor(e-boks) after consent: %v", err)
	}
	if _, err := h.d.StateFor(ctx, msg, event.MitDK); !errors.Is(err, dispatcher.ErrNoConsent) {
		t.Errorf("StateFor(mit.dk) without consent = %v, want ErrNoConsent", err)
	}
	if _, err := h.d.StateFor(ctx, msgPrivate, event.MitDK); err != nil {
		t.Errorf("StateFor(mit.dk) of a private letter: %v", err)
	}
}

// The reply_by reminder does not go through an app without consent.
func TestConsentReminder(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.FCM)
	registerApps(h, annaCPR)
	h.handle(consentEvent("cs-1", "consent.granted", annaCPR, "mit.dk", time.Now()))
	h.handle(wire("l-1", "message.received", map[string]any{"message_id": msgPublic, "recipient": map[string]any{"cpr": annaCPR},
		"sender":   map[string]any{"id": "s", "name": "Skattestyrelsen", "kind": "public"},
		"reply_by": time.Now().Add(72*time.Hour + 300*time.Millisecond).UTC().Format(time.RFC3339Nano)}))
	h.start()
	h.waitFor("the reminder", func() bool {
		return trailHas(t, h, msgPublic, func(o dispatcher.Outcome) bool { return o.Reason == "reminder: no consent (e-boks)" })
	})
	h.idle()
	var reminders []string
	for _, a := range h.channels[channels.FCM].alerts() {
		reminders = append(reminders, a.To.App)
	}
	if !slices.Equal(reminders, []string{"mit.dk", "mit.dk"}) {
		t.Errorf("alert and reminder through %v, want through mit.dk only", reminders)
	}
}

// A coalesced alert does not go through an app whose consent was revoked
// while the letter was held.
func TestConsentCoalesced(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(c *dispatcher.Config, _ *harness) {
		c.Coalesce = map[channels.Name]time.Duration{channels.FCM: 500 * time.Millisecond}
	}, channels.FCM)
	registerApps(h, annaCPR)
	h.handle(consentEvent("cs-1", "consent.granted", annaCPR, "e-boks", time.Now().Add(-time.Minute)))
	h.handle(letterFrom("l-1", msgPublic, annaCPR, "public")) // alerts at once, opens the window
	const held = "c0000004-0000-4000-8000-000000000004"
	h.handle(letterFrom("l-2", held, annaCPR, "public")) // held
	h.handle(consentEvent("cs-2", "consent.revoked", annaCPR, "e-boks", time.Now()))
	h.start()
	h.waitFor("the flush", func() bool {
		return trailHas(t, h, held, func(o dispatcher.Outcome) bool { return o.Reason == "no consent (e-boks)" })
	})
	h.idle()
	if n := len(h.channels[channels.FCM].alerts()); n != 1 {
		t.Errorf("%d alerts through the e-Boks app, want 1 (the first letter, before the revocation)", n)
	}
}

// An event enqueued straight into asynq that changes another platform's
// consent is rejected, not applied.
func TestConsentOfAnotherPlatformInboundRejected(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	raw := `{"id":"cs-x","type":"consent.granted","occurred_at":"2026-11-30T10:00:00Z","source":"e-boks",` +
		`"data":{"cpr":"` + annaCPR + `","platform":"mit.dk"}}`
	if _, err := h.client.Enqueue(asynq.NewTask(dispatcher.TypeInbound, []byte(raw)), asynq.Queue(h.queues.Normal)); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitFor("the inbound event to be archived as rejected", func() bool {
		tasks, err := h.insp.ListArchivedTasks(h.queues.Normal)
		return err == nil && len(tasks) == 1
	})
	tasks, _ := h.insp.ListArchivedTasks(h.queues.Normal)
	if a := tasks[0]; a.Type != dispatcher.TypeRejected || !strings.Contains(a.LastErr, "only its own consent") ||
		strings.Contains(string(a.Payload), "010190") {
		t.Errorf("archived %s with error %q, payload %s; want postbud:rejected naming the consent rule, no CPR", a.Type, a.LastErr, a.Payload)
	}
	v, err := h.store.Load(context.Background(), h.keyer.CitizenKey(mustCPR(t, annaCPR)), msgPublic)
	if err != nil {
		t.Fatal(err)
	}
	if v.Citizen.Consented(event.MitDK) {
		t.Error("e-boks gave the citizen's consent to mit.dk through asynq")
	}
}

// TestBatchSinglesAsAccept: the events a batch does not batch (reads,
// registry events) pass the checks Accept makes: a read from a platform
// without consent to show a stored public letter is refused, and a
// registry event's contact data is sealed in its queued task.
func TestBatchSinglesAsAccept(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	h.handle(letterFrom("l-pub", msgPublic, annaCPR, "public"))
	now := time.Now()
	var evs []*event.Event
	for _, raw := range []string{
		readOn("r-1", "message.read", msgPublic, annaCPR, "e-boks", now),
		readOn("r-2", "message.read", msgPublic, annaCPR, "borger.dk", now),
		wire("c-1", "contact.updated", map[string]any{"cpr": annaCPR, "email": "sealed.in.batch@example.dk"}),
	} {
		ev, err := event.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	res := h.d.AcceptBatch(ctx, evs)
	if !errors.Is(res[0].Err, dispatcher.ErrNoConsent) {
		t.Errorf("batch read of a public letter from e-boks without consent: %+v, want ErrNoConsent", res[0])
	}
	for i := 1; i < len(res); i++ {
		if res[i].Err != nil || res[i].Duplicate {
			t.Errorf("batch event %d: %+v, want accepted", i, res[i])
		}
	}
	for _, l := range h.env.Leaks(t, "sealed.in.batch@example.dk") {
		t.Errorf("a batch's registry event in clear: %s", l)
	}
}
