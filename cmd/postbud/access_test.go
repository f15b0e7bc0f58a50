package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestEndToEndAccessHolder: through `run`, an access holder with notify
// gets the owner's letter alerted on the holder's own email and push, in
// the holder's language and without the owner; the holder's read reads
// the letter and shows in the trail; after the revoke the holder gets
// nothing.
func TestEndToEndAccessHolder(t *testing.T) {
	rt := redistest.New(t)
	f := newFakes(t)
	logs := &syncBuffer{}
	getenv := testEnv(rt, f.smtp, f.env)
	d := start(t, getenv, logs)
	const owner, holder = "010190-1234", "020285-2345"
	for _, ev := range []string{
		wireEvent("c1", "contact.updated", "core", map[string]any{"cpr": owner, "email": "anna@example.dk", "confirmed": true}),
		wireEvent("c2", "contact.updated", "core", map[string]any{"cpr": holder, "email": "holder@example.dk", "language": "en", "confirmed": true}),
		wireEvent("d1", "device.registered", "core", map[string]any{"cpr": holder, "app": "digital-post-app", "provider": "apns", "token": iosToken}),
		wireEvent("d2", "device.registered", "core", map[string]any{"cpr": holder, "app": "e-boks", "provider": "fcm", "token": "fcm-token-holder-0001"}),
		// e-Boks may show the owner's public post: the holder reads there.
		wireEvent("cs1", "consent.granted", "core", map[string]any{"cpr": owner, "platform": "e-boks"}),
		// ... and the holder's: the holder's e-Boks app alerts of a public letter.
		wireEvent("cs2", "consent.granted", "core", map[string]any{"cpr": holder, "platform": "e-boks"}),
	} {
		if code, body := post(t, d.base+"/v1/events", testCoreKey, ev); code != http.StatusAccepted {
			t.Fatalf("%d %v", code, body)
		}
	}
	grant := wireEvent("a1", "access.granted", "e-boks", map[string]any{"cpr": owner, "holder": map[string]any{"cpr": holder},
		"scope": "read", "notify": true})
	if code, _ := post(t, d.base+"/v1/events", testEBoks, grant); code != http.StatusForbidden {
		t.Errorf("access.granted from e-boks: %d, want 403", code)
	}
	grant = strings.Replace(grant, `"source":"e-boks"`, `"source":"core"`, 1)
	if code, body := post(t, d.base+"/v1/events", testCoreKey, grant); code != http.StatusAccepted {
		t.Fatalf("access.granted from core: %d %v", code, body)
	}
	waitIdle(t, rt)

	const msg1 = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("l1", msg1))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := f.smtp.WaitMessages(ctx, 2); err != nil {
		t.Fatal("email:", err)
	}
	if _, err := f.apns.WaitNotifications(ctx, 1); err != nil {
		t.Fatal("apns:", err)
	}
	if _, err := f.fcm.WaitMessages(ctx, 1); err != nil {
		t.Fatal("fcm:", err)
	}
	waitIdle(t, rt)
	const text = "There is new Digital Post from Skattestyrelsen for someone you have access to."
	byTo := map[string]string{}
	for _, m := range f.smtp.Messages() {
		p, _ := m.Part("text/plain")
		byTo[strings.Join(m.To, ",")] = m.Subject() + "\n" + p.Text()
	}
	if got := byTo["holder@example.dk"]; !strings.Contains(got, text) {
		t.Errorf("the holder's email lacks the holder text:\n%s", got)
	}
	if got := byTo["anna@example.dk"]; strings.Contains(got, "access") || !strings.Contains(got, "Skattestyrelsen") {
		t.Errorf("the owner's own email:\n%s", got)
	}
	pushes := []string{string(f.apns.Notifications()[0].Body), f.fcm.Messages()[0].Body + f.fcm.Messages()[0].AndroidBody}
	for i, p := range pushes {
		if !strings.Contains(p, "someone you have access to") {
			t.Errorf("push %d to the holder lacks the holder text: %s", i, p)
		}
	}
	for _, s := range append(pushes, byTo["holder@example.dk"]) {
		for _, pd := range []string{"anna", "0101901234", owner} {
			if strings.Contains(s, pd) {
				t.Errorf("an alert to the holder reveals the owner (%q): %s", pd, s)
			}
		}
	}

	// The holder reads on e-boks: the letter is read, the trail says by whom.
	read := wireEvent("r1", "message.read", "e-boks", map[string]any{"message_id": msg1, "recipient": map[string]any{"cpr": owner},
		"platform": "e-boks", "at": time.Now().UTC().Format(time.RFC3339Nano), "reader": map[string]any{"cpr": holder}})
	if code, body := post(t, d.base+"/v1/events", testEBoks, read); code != http.StatusAccepted {
		t.Fatalf("message.read: %d %v", code, body)
	}
	waitIdle(t, rt)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"trace", "-url", d.base, "-key", testOpsKey, msg1}, getenv, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"read by access holder on e-boks", "holder="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("trace lacks %q:\n%s", want, out.String())
		}
	}

	// Revoked: the next letter alerts the owner only.
	post(t, d.base+"/v1/events", testCoreKey, wireEvent("a2", "access.revoked", "core", map[string]any{"cpr": owner,
		"holder": map[string]any{"cpr": holder}}))
	waitIdle(t, rt)
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("l2", "7f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"))
	if _, err := f.smtp.WaitMessages(ctx, 3); err != nil {
		t.Fatal("email:", err)
	}
	waitIdle(t, rt)
	if got := [3]int{len(f.smtp.Messages()), len(f.apns.Notifications()), len(f.fcm.Messages())}; got != [3]int{3, 1, 1} {
		t.Errorf("alerts (email, apns, fcm) after the revoke = %v, want 3, 1, 1", got)
	}
	if to := f.smtp.Messages()[2].To; len(to) != 1 || to[0] != "anna@example.dk" {
		t.Errorf("the letter after the revoke went to %v", to)
	}
	d.stop(t)
	assertNoPersonalData(t, logs.String())
	for _, pd := range []string{"0202852345", holder, "holder@example.dk", "fcm-token-holder-0001"} {
		if strings.Contains(logs.String(), pd) {
			t.Errorf("logs contain %q", pd)
		}
	}
}
