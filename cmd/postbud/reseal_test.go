package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

const (
	oldSealKey = "old-seal-key-0123456789-0123456789"
	newSealKey = "new-seal-key-0123456789-0123456789"
)

// TestEndToEndSealKeyRotation rotates the seal key as README describes:
// contact data sealed under the old key still alerts on every channel once
// the new key is current and the old one previous; `postbud reseal` seals
// everything again (going on from a saved cursor), and refuses to call the
// rotation done while a queued event task still holds data sealed under
// the old key; after the old key is removed, everything still alerts.
func TestEndToEndSealKeyRotation(t *testing.T) {
	rt := redistest.New(t)
	f := newFakes(t)
	logs := &syncBuffer{}
	env := func(cur, prev string) func(string) string {
		extra := map[string]string{"POSTBUD_SEAL_KEY": cur, "POSTBUD_SEAL_KEY_PREVIOUS": prev}
		for k, v := range f.env {
			extra[k] = v
		}
		return testEnv(rt, f.smtp, extra)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alerts := 0
	letter := func(d *daemon, id, msg string) {
		t.Helper()
		if code, body := post(t, d.base+"/v1/events", testCoreKey, letterEvent(id, msg)); code != http.StatusAccepted {
			t.Fatalf("%s: %d %v", id, code, body)
		}
		alerts++
		if _, err := f.smtp.WaitMessages(ctx, alerts); err != nil {
			t.Fatalf("%s: email: %v", id, err)
		}
		if _, err := f.sms.WaitMessages(ctx, alerts); err != nil {
			t.Fatalf("%s: sms: %v", id, err)
		}
		if _, err := f.apns.WaitNotifications(ctx, alerts); err != nil {
			t.Fatalf("%s: apns: %v", id, err)
		}
		if _, err := f.fcm.WaitMessages(ctx, alerts); err != nil {
			t.Fatalf("%s: fcm: %v", id, err)
		}
		waitIdle(t, rt)
	}

	// 1. The old key: Anna registers on every channel, a letter alerts.
	d := start(t, env(oldSealKey, ""), logs)
	for _, ev := range []string{
		wireEvent("c1", "contact.updated", "core", map[string]any{"cpr": "010190-1234", "email": "anna@example.dk", "mobile": "20123456", "confirmed": true}),
		wireEvent("d1", "device.registered", "core", map[string]any{"cpr": "010190-1234", "app": "digital-post-app", "provider": "apns", "token": iosToken}),
		wireEvent("d2", "device.registered", "core", map[string]any{"cpr": "010190-1234", "app": "e-boks", "provider": "fcm", "token": "fcm-token-anna-0001"}),
		// The e-Boks app alerts of a public letter only with consent.
		wireEvent("cs1", "consent.granted", "core", map[string]any{"cpr": "010190-1234", "platform": "e-boks"}),
	} {
		if code, body := post(t, d.base+"/v1/events", testCoreKey, ev); code != http.StatusAccepted {
			t.Fatalf("%d %v", code, body)
		}
	}
	waitIdle(t, rt)
	letter(d, "l1", "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b")
	d.stop(t)

	// A contact event still queued under the old key (the daemon is
	// stopped): reseal must not call the rotation done while it waits.
	old, err := seal.New(seal.Keys{Current: []byte(oldSealKey), Tag: []byte("test-pseudonymisation-key-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	keyer, _ := dispatcher.NewKeyer([]byte("test-pseudonymisation-key-0123456789"))
	anna := keyer.CitizenKey(event.CPR("0101901234"))
	addr := old.Seal(anna, "ev.addr", "Vestergade 12, 1456 København K")
	payload, _ := json.Marshal(event.Event{ID: "hqueued", Type: event.ContactUpdated, OccurredAt: time.Now(), Source: event.Core,
		CitizenKey: anna, Sealed: true, Contact: &event.ContactData{Address: &addr}})
	client := asynq.NewClientFromRedisClient(rt.Client)
	defer client.Close()
	if _, err := client.Enqueue(asynq.NewTask(dispatcher.TypeEvent, payload), asynq.Queue(rt.QueuePrefix+".normal")); err != nil {
		t.Fatal(err)
	}

	// 2. The new key, the old one previous.
	rotating := env(newSealKey, oldSealKey)
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"reseal"}, rotating, nil, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "1 queued event tasks hold contact data sealed under another key") {
		t.Fatalf("reseal with a queued task under the old key: %v\n%s", err, out.String())
	}
	d = start(t, rotating, logs) // works the queued task with the previous key
	waitIdle(t, rt)
	letter(d, "l2", "7f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b")
	d.stop(t)

	// A partial run saved its cursor: the command goes on from it.
	both, _ := seal.New(seal.Keys{Current: []byte(newSealKey), Previous: []byte(oldSealKey), Tag: []byte("test-pseudonymisation-key-0123456789")})
	st := redisstore.New(rt.Client, redisstore.Options{Prefix: rt.Prefix, Sealer: both})
	defer st.Close()
	if p, err := st.Reseal(ctx, 0, 1); err != nil {
		t.Fatal(err)
	} else if !p.Done {
		out.Reset()
		if err := run(ctx, []string{"reseal", "-count", "1000"}, rotating, nil, &out, &errOut); err != nil {
			t.Fatalf("reseal: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "going on from cursor") {
			t.Errorf("reseal did not go on from the saved cursor:\n%s", out.String())
		}
	}
	out.Reset()
	if err := run(ctx, []string{"reseal", "-restart"}, rotating, nil, &out, &errOut); err != nil {
		t.Fatalf("reseal: %v\n%s", err, out.String())
	}
	for _, want := range []string{"from the start", "every citizen done", "0 that do not open",
		"no queued task holds contact data sealed under another key", "POSTBUD_SEAL_KEY_PREVIOUS can be removed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("reseal output lacks %q:\n%s", want, out.String())
		}
	}
	// Every sealed value of the registry is under the new key now.
	n := 0
	for _, k := range rt.Client.Keys(ctx, rt.Prefix+":{*}:c").Val() {
		for f, v := range rt.Client.HGetAll(ctx, k).Val() {
			if strings.HasPrefix(f, "dev:") {
				v = strings.SplitN(v, "|", 4)[3]
			}
			if id, ok := seal.KeyIDOf(v); ok {
				n++
				if id != both.KeyID() {
					t.Errorf("%s %s is sealed under key %s after reseal, want %s", k, f, id, both.KeyID())
				}
			}
		}
	}
	if n != 5 { // email, mobile, the address of the queued event, two tokens
		t.Errorf("%d sealed values in the registry, want 5", n)
	}

	// 3. The old key removed: everything still alerts.
	d = start(t, env(newSealKey, ""), logs)
	letter(d, "l3", "8f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b")
	d.stop(t)
	assertNoPersonalData(t, logs.String())
	for _, l := range rt.Leaks(t, append(personalData, "Vestergade")...) {
		t.Errorf("Redis: %s", l)
	}
}
