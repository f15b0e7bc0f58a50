package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/sms/smstest"
	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/channels/webhook/webhooktest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

var platformSuffix = map[string]string{"borger.dk": "BORGER_DK", "digital-post-app": "DIGITAL_POST_APP",
	"e-boks": "E_BOKS", "mit.dk": "MIT_DK"}

// TestEndToEndReadOnOnePlatform: a letter arrives while the SMS gateway
// fails, so the SMS waits for its retry; the letter is read on e-Boks; the
// SMS never goes out, the other three platforms get one webhook each, and
// the iPhone gets its badge update.
func TestEndToEndReadOnOnePlatform(t *testing.T) {
	rt := redistest.New(t)
	f := newFakes(t)
	recv := map[string]*webhooktest.Receiver{}
	for p, suf := range platformSuffix {
		recv[p] = webhooktest.New(t, webhooktest.Options{})
		f.env["POSTBUD_WEBHOOK_URL_"+suf] = recv[p].URL()
		f.env["POSTBUD_WEBHOOK_SECRET_"+suf] = webhook.FormatSecret(recv[p].Secret())
	}
	f.env["POSTBUD_KEY_E_BOKS"] = testEBoks
	f.env["POSTBUD_RETRY_BASE"] = "2s" // the read arrives before the SMS's retry
	logs := &syncBuffer{}
	getenv := testEnv(rt, f.smtp, f.env)
	d := start(t, getenv, logs)
	for _, ev := range []string{
		wireEvent("c1", "contact.updated", "core", map[string]any{"cpr": "010190-1234", "mobile": "20123456", "confirmed": true}),
		wireEvent("d1", "device.registered", "core", map[string]any{"cpr": "010190-1234", "app": "digital-post-app", "provider": "apns", "token": iosToken}),
		// The letter is read on e-Boks, which may show it with consent.
		wireEvent("cs1", "consent.granted", "core", map[string]any{"cpr": "010190-1234", "platform": "e-boks"}),
		wireEvent("cs2", "consent.granted", "core", map[string]any{"cpr": "010190-1234", "platform": "mit.dk"}),
	} {
		post(t, d.base+"/v1/events", testCoreKey, ev)
	}
	waitIdle(t, rt)

	f.sms.FailNext(1, smstest.Failure{Status: http.StatusServiceUnavailable, Code: "0x0000", Message: "busy"})
	const msgID = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("l1", msgID))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := f.apns.WaitNotifications(ctx, 1); err != nil {
		t.Fatal(err)
	}
	code, body := post(t, d.base+"/v1/events", testEBoks, wireEvent("r1", "message.read", "e-boks", map[string]any{
		"message_id": msgID, "recipient": map[string]any{"cpr": "010190-1234"}, "platform": "e-boks",
		"at": time.Now().UTC().Format(time.RFC3339Nano)}))
	if code != http.StatusAccepted {
		t.Fatalf("message.read: %d %v", code, body)
	}
	waitIdle(t, rt) // includes the SMS's retry task

	if n := len(f.sms.Messages()); n != 0 {
		t.Errorf("%d SMS went out for a letter read before its retry, want 0", n)
	}
	var out strings.Builder
	if err := run(ctx, []string{"trace", "-url", d.base, "-key", testOpsKey, msgID}, getenv, nil, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "sms    skipped   reason=read") {
		t.Errorf("trace lacks the skipped SMS:\n%s", out.String())
	}
	for p, r := range recv {
		want := 1
		if p == "e-boks" {
			want = 0
		}
		got := r.Changes()
		if len(got) != want {
			t.Errorf("%s got %d webhooks, want %d", p, len(got), want)
			continue
		}
		if want == 1 && (!got[0].Read || got[0].MessageID != msgID || got[0].Platform != "e-boks" || got[0].Version != 1) {
			t.Errorf("%s got %+v", p, got[0])
		}
	}
	notes := f.apns.Notifications()
	if len(notes) != 2 {
		t.Fatalf("%d APNs notifications, want the alert and a badge update\n%s", len(notes), logs)
	}
	if b := notes[0].Payload.APS.Badge; b == nil || *b != 1 {
		t.Errorf("the alert's badge = %v, want 1", b)
	}
	silent := notes[1].Payload.APS
	if silent.ContentAvailable != 1 || silent.Alert != nil || silent.Badge == nil || *silent.Badge != 0 {
		t.Errorf("badge update %+v, want content-available, no alert, badge 0", silent)
	}

	// Platforms can ask for the state to reconcile.
	req, _ := http.NewRequest(http.MethodGet, d.base+"/v1/messages/"+msgID+"/state", nil)
	req.Header.Set("Authorization", "Bearer "+testEBoks)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		State    string `json:"state"`
		Version  int    `json:"version"`
		Platform string `json:"platform"`
	}
	if err := jsonDecode(resp, &st); err != nil || st.State != "read" || st.Version != 1 || st.Platform != "e-boks" {
		t.Errorf("state API: %+v %v", st, err)
	}
	d.stop(t)
	assertNoPersonalData(t, logs.String())
}
