package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// codeIn returns the confirmation code of a code email.
func codeIn(t *testing.T, m emailtest.Message) string {
	t.Helper()
	if m.Subject() != "Din kode til Digital Post" {
		t.Fatalf("subject %q, want the code's", m.Subject())
	}
	text, _ := m.Part("text/plain")
	c := regexp.MustCompile(`\b([0-9]{6})\b`).FindStringSubmatch(text.Text())
	if c == nil {
		t.Fatalf("no code in %q", text.Text())
	}
	return c[1]
}

// standalone matches s not inside a longer run of digits.
func standalone(s string) *regexp.Regexp {
	return regexp.MustCompile(`(^|[^0-9])` + regexp.QuoteMeta(s) + `($|[^0-9])`)
}

// TestEndToEndConfirmEmail runs the confirmation through `postbud serve`
// and the SMTP fake: a new email gets a code and no alert; a wrong code,
// then the right one, confirms it; the next letter alerts it. A platform
// cannot mark an address confirmed itself; resends stop at three codes an
// hour; neither the CPR nor a code shows in the logs or in Redis.
func TestEndToEndConfirmEmail(t *testing.T) {
	rt := redistest.New(t)
	smtp := emailtest.New(t)
	logs := &syncBuffer{}
	getenv := testEnv(rt, smtp, nil)
	d := start(t, getenv, logs)
	const cpr = "010190-1234"

	// Only core may say an address was confirmed before.
	code, body := post(t, d.base+"/v1/events", testEBoks, wireEvent("c0", "contact.updated", "e-boks",
		map[string]any{"cpr": cpr, "email": "anna@example.dk", "confirmed": true}))
	if errs, _ := body["errors"].([]any); code != http.StatusBadRequest || len(errs) != 1 || errs[0].(map[string]any)["field"] != "data.confirmed" {
		t.Errorf("e-boks sending confirmed: %d %v; want 400 naming data.confirmed", code, body)
	}

	// e-Boks registers Anna's email: a code goes to it, nothing else.
	if code, body := post(t, d.base+"/v1/events", testEBoks, wireEvent("c1", "contact.updated", "e-boks",
		map[string]any{"cpr": cpr, "email": "anna@example.dk"})); code != http.StatusAccepted {
		t.Fatalf("contact.updated: %d %v", code, body)
	}
	m := waitMessages(t, smtp, 1)[0]
	if len(m.To) != 1 || m.To[0] != "anna@example.dk" {
		t.Errorf("the code went to %v", m.To)
	}
	first := codeIn(t, m)
	text, _ := m.Part("text/plain")
	if !strings.Contains(text.Text(), "https://www.borger.dk/digitalpost") {
		t.Errorf("the code's email lacks the mailbox URL:\n%s", text.Text())
	}

	// A letter now is not alerted: the trail says why.
	const msg1 = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("letter-1", msg1))
	waitIdle(t, rt)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"trace", "-url", d.base, "-key", testOpsKey, msg1}, getenv, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "reason=email not confirmed") {
		t.Errorf("the trail of a letter before confirmation:\n%s", out.String())
	}
	if n := len(smtp.Messages()); n != 1 {
		t.Errorf("%d emails, want only the code", n)
	}

	confirm := func(c string) (int, map[string]any) {
		return post(t, d.base+"/v1/contacts/confirm", testEBoks, `{"cpr":"`+cpr+`","channel":"email","code":"`+c+`"}`)
	}
	wrong := "000000"
	if first == wrong {
		wrong = "000001"
	}
	if code, body := confirm(wrong); code != http.StatusBadRequest || body["title"] != "wrong code" {
		t.Errorf("a wrong code: %d %v", code, body)
	}
	if code, body := confirm(first); code != http.StatusOK || body["status"] != "confirmed" {
		t.Fatalf("the right code: %d %v", code, body)
	}

	// The next letter alerts the confirmed email.
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("letter-2", "7f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"))
	alert := waitMessages(t, smtp, 2)[1]
	if alert.Subject() != "Ny Digital Post" || alert.To[0] != "anna@example.dk" {
		t.Errorf("the letter's email: %q to %v", alert.Subject(), alert.To)
	}

	// A changed address starts over; with its contact's code, it gets
	// three codes in the hour and the fourth request is refused at once.
	post(t, d.base+"/v1/events", testEBoks, wireEvent("c2", "contact.updated", "e-boks",
		map[string]any{"cpr": cpr, "email": "anna@example.net"}))
	codes := []string{first, codeIn(t, waitMessages(t, smtp, 3)[2])}
	for i := 0; i < 2; i++ {
		code, body := post(t, d.base+"/v1/contacts/resend", testEBoks, `{"cpr":"`+cpr+`","channel":"email"}`)
		if code != http.StatusAccepted {
			t.Fatalf("resend %d: %d %v", i+1, code, body)
		}
		codes = append(codes, codeIn(t, waitMessages(t, smtp, 4+i)[3+i]))
	}
	if code, body := post(t, d.base+"/v1/contacts/resend", testEBoks, `{"cpr":"`+cpr+`","channel":"email"}`); code != http.StatusTooManyRequests {
		t.Errorf("the fourth code in an hour: %d %v; want 429", code, body)
	}
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("letter-3", "8f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"))
	waitIdle(t, rt)
	if n := len(smtp.Messages()); n != 5 {
		t.Errorf("%d emails, want 5 (no alert to the changed, unconfirmed address)", n)
	}

	d.stop(t)
	all := logs.String()
	assertNoPersonalData(t, all)
	for _, c := range codes {
		if standalone(c).MatchString(all) {
			t.Errorf("the logs hold the code %s", c)
		}
	}
	contents, err := rt.Contents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var codeKeys int
	for k, v := range contents {
		if strings.Contains(k, ":cc:") || strings.Contains(k, ":cr:") {
			codeKeys++
		}
		for _, s := range append([]string{"0101901234", cpr}, codes...) {
			if standalone(s).MatchString(k) || standalone(s).MatchString(v) {
				t.Errorf("key %q or its value holds %q", k, s)
			}
		}
	}
	if codeKeys == 0 {
		t.Error("the scan found no confirmation keys")
	}
}
