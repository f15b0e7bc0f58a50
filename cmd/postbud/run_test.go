package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const (
	testCoreKey = "test-core-platform-key"
	testEBoks   = "test-e-boks-platform-key"
	testOpsKey  = "test-ops-key-0123456789"
	testSealKey = "test-seal-key-0123456789-0123456789"
)

// daemon is one run of `postbud serve` in the test process.
type daemon struct {
	base   string
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
}

func testEnv(rt *redistest.Env, smtp *emailtest.Server, extra map[string]string) func(string) string {
	env := map[string]string{
		"POSTBUD_REDIS_URL":           rt.URL,
		"POSTBUD_HTTP_ADDR":           "127.0.0.1:0",
		"POSTBUD_PSEUDONYM_KEY":       "test-pseudonymisation-key-0123456789",
		"POSTBUD_SEAL_KEY":            testSealKey,
		"POSTBUD_OPS_KEY":             testOpsKey,
		"POSTBUD_KEY_CORE":            testCoreKey,
		"POSTBUD_KEY_E_BOKS":          testEBoks,
		"POSTBUD_KEY_PREFIX":          rt.Prefix,
		"POSTBUD_QUEUE_PREFIX":        rt.QueuePrefix,
		"POSTBUD_TASK_CHECK_INTERVAL": "10ms",
		"POSTBUD_RETRY_BASE":          "100ms",
		"POSTBUD_SHUTDOWN_TIMEOUT":    "1s",
		"POSTBUD_DRAIN_DELAY":         "0",
		"POSTBUD_LOG_LEVEL":           "debug",
		"POSTBUD_SMTP_HOST":           smtp.Host(),
		"POSTBUD_SMTP_PORT":           strconv.Itoa(smtp.Port()),
		"POSTBUD_SMTP_TLS":            "none",
		"POSTBUD_SMTP_FROM":           "besked@digitalpost.dk",
		"POSTBUD_SMTP_TIMEOUT":        "5s",
		// The tests run at any hour: no quiet hours unless a test asks.
		"POSTBUD_QUIET_HOURS_SMS": "off",
		// Letters follow each other fast here: one alert each.
		"POSTBUD_COALESCE_EMAIL": "0", "POSTBUD_COALESCE_SMS": "0", "POSTBUD_COALESCE_PUSH": "0",
	}
	for k, v := range extra {
		env[k] = v
	}
	return func(k string) string { return env[k] }
}

var servingRE = regexp.MustCompile(`"msg":"postbud serving","http":"(http://[^"]+)"`)

// start runs `postbud serve` until stop or the end of the test.
func start(t *testing.T, getenv func(string) string, logs *syncBuffer) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{cancel: cancel, done: make(chan error, 1), logs: logs}
	from := len(logs.String())
	go func() { d.done <- run(ctx, []string{"serve"}, getenv, nil, io.Discard, logs) }()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if m := servingRE.FindStringSubmatch(logs.String()[from:]); m != nil {
			d.base = m[1]
			return d
		}
		select {
		case err := <-d.done:
			t.Fatalf("postbud serve exited: %v\n%s", err, logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("postbud serve did not start:\n%s", logs)
	return nil
}

func (d *daemon) stop(t *testing.T) {
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("postbud serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("postbud serve did not stop within 20s")
	}
}

func post(t *testing.T, url, key, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func wireEvent(id, typ, source string, data map[string]any) string {
	b, _ := json.Marshal(map[string]any{"id": id, "type": typ, "occurred_at": time.Now().UTC().Format(time.RFC3339Nano),
		"source": source, "data": data})
	return string(b)
}

func letterEvent(id, messageID string) string {
	return wireEvent(id, "message.received", "core", map[string]any{"message_id": messageID,
		"recipient": map[string]any{"cpr": "010190-1234"},
		"sender":    map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"}})
}

// waitIdle waits until the test's queues hold no pending, active, scheduled
// or retry task, read at one instant (redistest's QueuesIdle) on two looks
// in a row: the workers run inside run, where no count of running handlers
// can be had, and the second look catches a handler asynq gave up on (a
// timeout) that enqueued after the first. A Redis error is no evidence of
// idle queues: the look is repeated.
func waitIdle(t *testing.T, rt *redistest.Env) {
	t.Helper()
	qs := []string{rt.QueuePrefix + ".urgent", rt.QueuePrefix + ".normal", rt.QueuePrefix + ".bulk"}
	quiet := 0
	eventually(t, "the queues to drain", 60*time.Second, func() bool {
		if idle, err := rt.QueuesIdle(context.Background(), qs...); err == nil && idle {
			quiet++
		} else {
			quiet = 0
		}
		return quiet >= 2
	})
}

// eventually checks cond on a ticker until it holds, failing the test
// after timeout: for state kept in Redis or another process, which sends
// no event to wait on.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !redistest.Within(timeout, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func waitMessages(t *testing.T, s *emailtest.Server, n int) []emailtest.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs, err := s.WaitMessages(ctx, n)
	if err != nil {
		t.Fatalf("waiting for %d emails: %v (have %d)", n, err, len(s.Messages()))
	}
	return msgs
}

func TestEndToEndLetterToEmail(t *testing.T) {
	rt := redistest.New(t)
	smtp := emailtest.New(t)
	logs := &syncBuffer{}
	getenv := testEnv(rt, smtp, nil)
	d := start(t, getenv, logs)

	// Register Anna's email and mobile.
	code, body := post(t, d.base+"/v1/events", testCoreKey, wireEvent("contact-1", "contact.updated", "core",
		map[string]any{"cpr": "010190-1234", "email": "anna@example.dk", "mobile": "20 12 34 56", "confirmed": true}))
	if code != http.StatusAccepted || body["status"] != "accepted" {
		t.Fatalf("contact.updated: %d %v", code, body)
	}
	waitIdle(t, rt)

	// A letter: exactly one email.
	const msgID = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	if code, body := post(t, d.base+"/v1/events", testCoreKey, letterEvent("letter-1", msgID)); code != http.StatusAccepted || body["status"] != "accepted" {
		t.Fatalf("message.received: %d %v", code, body)
	}
	msgs := waitMessages(t, smtp, 1)
	m := msgs[0]
	if len(m.To) != 1 || m.To[0] != "anna@example.dk" {
		t.Errorf("envelope recipients %v", m.To)
	}
	text, _ := m.Part("text/plain")
	html, _ := m.Part("text/html")
	for _, want := range []string{"Skattestyrelsen", "https://www.borger.dk/digitalpost"} {
		if !strings.Contains(text.Text(), want) || !strings.Contains(html.Text(), want) {
			t.Errorf("email parts do not contain %q", want)
		}
	}
	if m.Subject() != "Ny Digital Post" {
		t.Errorf("subject %q", m.Subject())
	}
	if got := m.Header.Get("Auto-Submitted"); got != "auto-generated" {
		t.Errorf("Auto-Submitted = %q", got)
	}
	if !regexp.MustCompile(`^<[0-9a-f]{32}@digitalpost\.dk>$`).MatchString(m.MessageID()) {
		t.Errorf("Message-ID %q is not <delivery-id@digitalpost.dk>", m.MessageID())
	}

	// The same event again: duplicate, still one email. (A copy that
	// arrives while the first is being processed may be answered
	// "accepted"; it is then a no-op. Once processed, it is "duplicate".)
	waitIdle(t, rt)
	code, body = post(t, d.base+"/v1/events", testCoreKey, letterEvent("letter-1", msgID))
	if code != http.StatusAccepted || body["status"] != "duplicate" {
		t.Errorf("repeated event: %d %v, want 202 duplicate", code, body)
	}
	waitIdle(t, rt)
	if n := len(smtp.Messages()); n != 1 {
		t.Errorf("%d emails after a duplicate event, want 1", n)
	}

	// The ops trail, over HTTP and with `postbud trace`.
	req, _ := http.NewRequest(http.MethodGet, d.base+"/v1/messages/"+msgID+"/trail", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("trail without the ops key: %d, want 401", resp.StatusCode)
	}
	var out bytes.Buffer
	err = run(context.Background(), []string{"trace", "-url", d.base, "-key", testOpsKey, msgID}, getenv, nil, &out, io.Discard)
	if err != nil {
		t.Fatalf("postbud trace: %v", err)
	}
	if !regexp.MustCompile(`email\s+sent\s+provider_id=<[0-9a-f]{32}@digitalpost\.dk>`).MatchString(out.String()) {
		t.Errorf("trace output lacks the sent email:\n%s", out.String())
	}

	// Greylisted (451): retried, then delivered once.
	smtp.Greylist(emailtest.StageRcpt, 1)
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("letter-2", "7f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"))
	waitMessages(t, smtp, 2)
	waitIdle(t, rt)
	if n := len(smtp.Messages()); n != 2 {
		t.Errorf("%d emails after a greylisted letter, want 2", n)
	}

	// Rejected (550 5.1.1): not retried; the address is removed.
	smtp.RejectRecipient()
	const msg3 = "8f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	conns := smtp.Connections()
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("letter-3", msg3))
	waitIdle(t, rt)
	if n := smtp.Connections() - conns; n != 1 {
		t.Errorf("%d SMTP connections for a rejected recipient, want 1 (no retry)", n)
	}
	out.Reset()
	if err := run(context.Background(), []string{"trace", "-url", d.base, "-key", testOpsKey, msg3}, getenv, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "gone") || !strings.Contains(out.String(), "code=550 5.1.1") {
		t.Errorf("trace after 550 lacks gone / code:\n%s", out.String())
	}
	// The next letter finds no email address.
	const msg4 = "9f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("letter-4", msg4))
	waitIdle(t, rt)
	out.Reset()
	_ = run(context.Background(), []string{"trace", "-url", d.base, "-key", testOpsKey, msg4}, getenv, nil, &out, io.Discard)
	if !strings.Contains(out.String(), "reason=no contact") {
		t.Errorf("letter after the address was removed:\n%s", out.String())
	}

	d.stop(t)
	assertNoPersonalData(t, logs.String())
}

func TestEndToEndWorkerStoppedMidwayStillOneEmail(t *testing.T) {
	rt := redistest.New(t)
	smtp := emailtest.New(t)
	logs := &syncBuffer{}
	getenv := testEnv(rt, smtp, nil)
	d := start(t, getenv, logs)
	post(t, d.base+"/v1/events", testCoreKey, wireEvent("contact-1", "contact.updated", "core",
		map[string]any{"cpr": "010190-1234", "email": "anna@example.dk", "confirmed": true}))
	waitIdle(t, rt)

	// The SMTP server hangs after its greeting: the send is in flight when
	// the daemon is told to stop (SIGTERM), past its 1 s shutdown timeout.
	smtp.Stall(emailtest.StallAfterGreeting)
	const msgID = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("letter-1", msgID))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := smtp.WaitStalled(ctx, 1); err != nil {
		t.Fatal(err)
	}
	d.stop(t)
	if n := len(smtp.Messages()); n != 0 {
		t.Fatalf("%d emails before restart, want 0", n)
	}

	// Started again with a healthy server: the letter is delivered once,
	// and the platform's retry of the same event changes nothing.
	smtp.Stall(emailtest.StallNone)
	d2 := start(t, getenv, logs)
	waitMessages(t, smtp, 1)
	waitIdle(t, rt)
	code, body := post(t, d2.base+"/v1/events", testCoreKey, letterEvent("letter-1", msgID))
	if code != http.StatusAccepted || body["status"] != "duplicate" {
		t.Errorf("event resent after restart: %d %v, want duplicate", code, body)
	}
	waitIdle(t, rt)
	if n := len(smtp.Messages()); n != 1 {
		t.Errorf("%d emails, want exactly 1", n)
	}
	d2.stop(t)
	assertNoPersonalData(t, logs.String())
}

func TestEndToEndRefusals(t *testing.T) {
	rt := redistest.New(t)
	smtp := emailtest.New(t)
	d := start(t, testEnv(rt, smtp, nil), &syncBuffer{})
	url := d.base + "/v1/events"
	ok := wireEvent("e1", "contact.updated", "core", map[string]any{"cpr": "010190-1234", "email": "a@b.dk"})

	tests := []struct {
		name, key, body string
		want            int
		field           string
	}{
		{"no key", "", ok, http.StatusUnauthorized, ""},
		{"unknown key", "not-a-key-at-all", ok, http.StatusUnauthorized, ""},
		{"other platform's source", testEBoks, ok, http.StatusForbidden, "source"},
		{"bad cpr", testCoreKey, wireEvent("e2", "contact.updated", "core", map[string]any{"cpr": "320190-1234", "email": "a@b.dk"}), http.StatusBadRequest, "data.cpr"},
		{"unknown field", testCoreKey, wireEvent("e3", "contact.updated", "core", map[string]any{"cpr": "010190-1234", "fax": "1"}), http.StatusBadRequest, "data.fax"},
		{"too large", testCoreKey, strings.Repeat(" ", 70<<10) + ok, http.StatusRequestEntityTooLarge, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, url, tc.key, tc.body)
			if code != tc.want {
				t.Fatalf("status %d, want %d: %v", code, tc.want, body)
			}
			if tc.field != "" {
				errs, _ := body["errors"].([]any)
				found := false
				for _, e := range errs {
					if m, _ := e.(map[string]any); m["field"] == tc.field {
						found = true
					}
				}
				if !found {
					t.Errorf("problem does not name %s: %v", tc.field, body)
				}
			}
		})
	}
	// A batch: each event stands alone.
	batch := fmt.Sprintf(`{"events":[%s,%s]}`, ok, wireEvent("e4", "contact.updated", "core", map[string]any{"cpr": "x"}))
	code, body := post(t, d.base+"/v1/events/batch", testCoreKey, batch)
	res, _ := body["results"].([]any)
	if code != http.StatusAccepted || len(res) != 2 {
		t.Fatalf("batch: %d %v", code, body)
	}
	if s := res[0].(map[string]any)["status"]; s != "accepted" {
		t.Errorf("batch[0] = %v", s)
	}
	if s := res[1].(map[string]any)["status"]; s != "invalid" {
		t.Errorf("batch[1] = %v", s)
	}
}

// personalData are the test's CPR number and the contact data the tests
// register, as sent and as stored.
var personalData = []string{"0101901234", "010190-1234", "anna@example.dk", "anna@", "20123456", "20 12 34 56",
	iosToken, "fcm-token-anna-0001"}

// assertNoPersonalData fails if the logs hold the test's CPR number, email
// address, phone number or push tokens in clear.
func assertNoPersonalData(t *testing.T, logs string) {
	t.Helper()
	if !strings.Contains(logs, "alert sent") {
		t.Fatalf("the logs do not look captured:\n%s", logs)
	}
	for _, pd := range personalData {
		if strings.Contains(logs, pd) {
			t.Errorf("logs contain %q", pd)
		}
	}
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
