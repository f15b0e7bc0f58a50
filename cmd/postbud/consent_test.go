package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/channels/webhook/webhooktest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

const testMitDK = "test-mit-dk-platform-key"

// TestEndToEndConsent (issue 9, part 1) through run against the protocol
// fakes: a citizen who gave mit.dk consent to show public post but not
// e-Boks. mit.dk may not change e-Boks's consent (403); a public letter
// alerts through the Digital Post app but not the e-Boks app; a read on
// borger.dk sends webhooks to the app and mit.dk, none to e-Boks; e-Boks
// may not report the letter read (422) nor ask its state (403); the trail
// says why; no CPR in the logs or in Redis.
func TestEndToEndConsent(t *testing.T) {
	rt := redistest.New(t)
	f := newFakes(t)
	recv := map[string]*webhooktest.Receiver{}
	for p, suf := range platformSuffix {
		recv[p] = webhooktest.New(t, webhooktest.Options{})
		f.env["POSTBUD_WEBHOOK_URL_"+suf] = recv[p].URL()
		f.env["POSTBUD_WEBHOOK_SECRET_"+suf] = webhook.FormatSecret(recv[p].Secret())
	}
	f.env["POSTBUD_KEY_MIT_DK"] = testMitDK
	logs := &syncBuffer{}
	getenv := testEnv(rt, f.smtp, f.env)
	d := start(t, getenv, logs)
	const cpr = "010190-1234"
	for _, ev := range []string{
		wireEvent("c1", "contact.updated", "core", map[string]any{"cpr": cpr, "email": "anna@example.dk", "confirmed": true}),
		wireEvent("d1", "device.registered", "core", map[string]any{"cpr": cpr, "app": "digital-post-app", "provider": "apns", "token": iosToken}),
		wireEvent("d2", "device.registered", "core", map[string]any{"cpr": cpr, "app": "e-boks", "provider": "fcm", "token": "fcm-token-anna-0001"}),
	} {
		if code, body := post(t, d.base+"/v1/events", testCoreKey, ev); code != http.StatusAccepted {
			t.Fatalf("%d %v", code, body)
		}
	}
	// mit.dk gives its own consent: accepted.
	if code, body := post(t, d.base+"/v1/events", testMitDK, wireEvent("cs1", "consent.granted", "mit.dk",
		map[string]any{"cpr": cpr, "platform": "mit.dk"})); code != http.StatusAccepted {
		t.Fatalf("mit.dk's own consent: %d %v", code, body)
	}
	// The attack: mit.dk grants e-Boks's consent, alone and in a batch.
	code, body := post(t, d.base+"/v1/events", testMitDK, wireEvent("cs2", "consent.granted", "mit.dk",
		map[string]any{"cpr": cpr, "platform": "e-boks"}))
	if code != http.StatusForbidden || !strings.Contains(problemFields(body), "data.platform") {
		t.Errorf("mit.dk changing e-Boks's consent: %d %v, want 403 naming data.platform", code, body)
	}
	code, body = post(t, d.base+"/v1/events/batch", testMitDK, `{"events":[`+wireEvent("cs3", "consent.revoked", "mit.dk",
		map[string]any{"cpr": cpr, "platform": "e-boks"})+`]}`)
	if res, _ := body["results"].([]any); code != http.StatusAccepted || len(res) != 1 || res[0].(map[string]any)["status"] != "forbidden" {
		t.Errorf("mit.dk changing e-Boks's consent in a batch: %d %v, want the event forbidden", code, body)
	}
	waitIdle(t, rt)

	const msgID = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("l1", msgID))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := f.apns.WaitNotifications(ctx, 1); err != nil {
		t.Fatal(err)
	}
	waitMessages(t, f.smtp, 1)
	waitIdle(t, rt)
	if n := len(f.fcm.Messages()); n != 0 {
		t.Errorf("%d alerts through the e-Boks app without consent, want 0", n)
	}

	code, body = post(t, d.base+"/v1/events", testCoreKey, wireEvent("r1", "message.read", "core", map[string]any{
		"message_id": msgID, "recipient": map[string]any{"cpr": cpr}, "platform": "borger.dk",
		"at": time.Now().UTC().Format(time.RFC3339Nano)}))
	if code != http.StatusAccepted {
		t.Fatalf("message.read on borger.dk: %d %v", code, body)
	}
	waitIdle(t, rt)
	for p, want := range map[string]int{"digital-post-app": 1, "mit.dk": 1, "e-boks": 0, "borger.dk": 0} {
		if got := len(recv[p].Changes()); got != want {
			t.Errorf("%s got %d webhooks, want %d", p, got, want)
		}
	}
	if n := len(f.fcm.Messages()); n != 0 {
		t.Errorf("%d pushes (badge) through the e-Boks app without consent, want 0", n)
	}

	// e-Boks cannot have shown the letter: its unread is refused, and it
	// may not ask for the letter's state; mit.dk may.
	code, body = post(t, d.base+"/v1/events", testEBoks, wireEvent("u1", "message.unread", "e-boks", map[string]any{
		"message_id": msgID, "recipient": map[string]any{"cpr": cpr}, "platform": "e-boks",
		"at": time.Now().UTC().Format(time.RFC3339Nano)}))
	if code != http.StatusUnprocessableEntity || body["title"] != "no consent" ||
		!strings.Contains(body["detail"].(string), "cannot have shown") {
		t.Errorf("message.unread from e-boks without consent: %d %v, want 422 no consent saying why", code, body)
	}
	for key, want := range map[string]int{testEBoks: http.StatusForbidden, testMitDK: http.StatusOK} {
		req, _ := http.NewRequest(http.MethodGet, d.base+"/v1/messages/"+msgID+"/state", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("state API with the %s key: %d, want %d", strings.Split(key, "-platform")[0], resp.StatusCode, want)
		}
	}

	var out strings.Builder
	if err := run(ctx, []string{"trace", "-url", d.base, "-key", testOpsKey, msgID}, getenv, nil, &out, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "reason=no consent (e-boks)"); n < 2 {
		t.Errorf("trace says %d times no consent (e-boks), want the e-Boks app's alert and its webhook:\n%s", n, out.String())
	}
	d.stop(t)
	assertNoPersonalData(t, logs.String())
	assertNoCPRInRedis(t, rt, "0101901234", "010190-1234")
}

// problemFields returns the field names of a problem document's errors.
func problemFields(body map[string]any) string {
	var names []string
	errs, _ := body["errors"].([]any)
	for _, e := range errs {
		if m, ok := e.(map[string]any); ok {
			names = append(names, m["field"].(string))
		}
	}
	return strings.Join(names, ",")
}

// assertNoCPRInRedis fails if a key or value of the test's Redis holds one
// of the CPR forms.
func assertNoCPRInRedis(t *testing.T, rt *redistest.Env, forms ...string) {
	t.Helper()
	ctx := context.Background()
	keys, err := rt.Client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	scanned := 0
	for _, k := range keys {
		if !strings.HasPrefix(k, rt.Prefix) && !strings.Contains(k, rt.QueuePrefix) {
			continue
		}
		scanned++
		dump, _ := rt.Client.Dump(ctx, k).Result()
		for _, c := range forms {
			if strings.Contains(k, c) || strings.Contains(dump, c) {
				t.Errorf("Redis key %q or its value holds the CPR", k)
			}
		}
	}
	if scanned == 0 {
		t.Error("no key of the test was found in Redis")
	}
}
