package dispatcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// wireFrom is wire with another source than core.
func wireFrom(source, id, typ string, data map[string]any) string {
	b, _ := json.Marshal(map[string]any{"id": id, "type": typ, "occurred_at": time.Now().UTC().Format(time.RFC3339Nano),
		"source": source, "data": data})
	return string(b)
}

// codes returns the confirmation codes a channel accepted, oldest first.
func codes(s *scripted) []string {
	var out []string
	for _, a := range s.accepted() {
		if a.Alert.Code != "" {
			out = append(out, a.Alert.Code)
		}
	}
	return out
}

// letterAlerts returns the letter alerts (not codes) a channel accepted.
func letterAlerts(s *scripted) []sentAlert {
	var out []sentAlert
	for _, a := range s.accepted() {
		if a.Alert.Code == "" && !a.Alert.Silent {
			out = append(out, a)
		}
	}
	return out
}

func mustCPR(t *testing.T, s string) event.CPR {
	t.Helper()
	c, err := event.ParseCPR(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestConfirmationStates is the table of the rule: each confirmation state
// of an email and a mobile, and whether a letter alerts it or the trail
// says it was skipped as not confirmed.
func TestConfirmationStates(t *testing.T) {
	t.Parallel()
	addr := map[channels.Name]string{channels.Email: "email", channels.SMS: "mobile"}
	value := map[channels.Name][2]string{channels.Email: {"anna@example.dk", "anna@other.dk"},
		channels.SMS: {"20123456", "20654321"}}
	type step func(h *harness, ch channels.Name)
	contact := func(source string, v int, confirmed bool) step {
		return func(h *harness, ch channels.Name) {
			data := map[string]any{"cpr": annaCPR, addr[ch]: value[ch][v]}
			if confirmed {
				data["confirmed"] = true
			}
			h.accept(wireFrom(source, fmt.Sprintf("c-%d-%v-%d", v, confirmed, time.Now().UnixNano()), "contact.updated", data))
			h.idle()
		}
	}
	withCode := func(h *harness, ch channels.Name) {
		cs := codes(h.channels[ch])
		if len(cs) == 0 {
			h.t.Fatal("no code was sent")
		}
		a, _, err := h.d.ConfirmAddress(context.Background(), mustCPR(h.t, annaCPR), ch, cs[len(cs)-1])
		if err != nil || a != dispatcher.AnswerConfirmed {
			h.t.Fatalf("ConfirmAddress = %v, %v; want confirmed", a, err)
		}
	}
	gone := func(h *harness, ch channels.Name) {
		// The provider says the address is gone: the letter's send removes it.
		h.channels[ch].failNext(channels.Fail(channels.Gone, "550", fmt.Errorf("no such user")))
		h.accept(letter("gone", "00000000-0000-4000-8000-0000000000aa", annaCPR))
		h.idle()
	}
	tests := []struct {
		name  string
		steps []step
		alert bool
		codes int // confirmation codes sent
	}{
		{"registered by a platform", []step{contact("borger.dk", 0, false)}, false, 1},
		{"migrated as confirmed by core", []step{contact("core", 0, true)}, true, 0},
		{"confirmed with the code", []step{contact("borger.dk", 0, false), withCode}, true, 1},
		{"the same address again after confirming", []step{contact("core", 0, true), contact("e-boks", 0, false)}, true, 0},
		{"changed after confirming", []step{contact("core", 0, true), contact("e-boks", 1, false)}, false, 1},
		{"gone after confirming, registered again", []step{contact("core", 0, true), gone, contact("borger.dk", 0, false)}, false, 1},
	}
	for _, ch := range []channels.Name{channels.Email, channels.SMS} {
		for _, tc := range tests {
			t.Run(string(ch)+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				h := newHarness(t, ch)
				h.start()
				for _, s := range tc.steps {
					s(h, ch)
				}
				before := len(letterAlerts(h.channels[ch]))
				const msg = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
				h.accept(letter("l1", msg, annaCPR))
				h.idle()
				got := len(letterAlerts(h.channels[ch])) - before
				skipped := hasEntry(h.trail(msg), ch, dispatcher.ResultSkipped, dispatcher.NotConfirmed(ch))
				if tc.alert && (got != 1 || skipped) {
					t.Errorf("%d alerts, skipped as not confirmed %v; want one alert", got, skipped)
				}
				if !tc.alert && (got != 0 || !skipped) {
					t.Errorf("%d alerts, skipped as not confirmed %v; want none and the trail saying %q", got, skipped,
						dispatcher.NotConfirmed(ch))
				}
				if n := len(codes(h.channels[ch])); n != tc.codes {
					t.Errorf("%d codes sent, want %d", n, tc.codes)
				}
			})
		}
	}
}

// TestConfirmationCode follows one code: its task's payload, the text it
// goes out in, a wrong code then the right one, and nothing of it or of
// the citizen in the logs or in Redis.
func TestConfirmationCode(t *testing.T) {
	t.Parallel()
	logs := &syncBuf{}
	h := newHarnessWith(t, func(c *dispatcher.Config, _ *harness) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}, channels.Email, channels.SMS)
	ctx := context.Background()

	// Handled without workers, the event leaves one code task per
	// address: the citizen and the channel, never the address.
	h.handle(wireFrom("borger.dk", "c1", "contact.updated", map[string]any{"cpr": annaCPR, "email": "anna@example.dk",
		"mobile": "20123456"}))
	pending, err := h.insp.ListPendingTasks(h.queues.Urgent)
	if err != nil {
		t.Fatal(err)
	}
	var payloads []string
	for _, task := range pending {
		if task.Type == dispatcher.TypeConfirm {
			payloads = append(payloads, string(task.Payload))
		}
	}
	if len(payloads) != 2 {
		t.Fatalf("%d code tasks, want one per address (2)", len(payloads))
	}
	for _, p := range payloads {
		for _, pd := range []string{"0101901234", "010190-1234", "anna@", "20123456", "4520123456"} {
			if strings.Contains(p, pd) {
				t.Errorf("a code task's payload holds %q: %s", pd, p)
			}
		}
	}

	h.start()
	h.idle()
	email := h.channels[channels.Email]
	cs := codes(email)
	if len(cs) != 1 || len(codes(h.channels[channels.SMS])) != 1 {
		t.Fatalf("codes sent: email %v, sms %v; want one each", cs, codes(h.channels[channels.SMS]))
	}
	code := cs[0]
	if !regexp.MustCompile(`^[0-9]{6}$`).MatchString(code) {
		t.Errorf("code %q is not 6 digits", code)
	}
	sent := email.accepted()[0]
	if sent.To.Value != "anna@example.dk" {
		t.Errorf("code sent to %q", sent.To.Value)
	}
	text := channels.Title(sent.Alert) + " " + channels.Headline(sent.Alert) + " " + channels.ReadAt(sent.Alert)
	if !strings.Contains(text, code) || !strings.Contains(text, "https://www.borger.dk/digitalpost") {
		t.Errorf("the code's text lacks the code or the mailbox URL: %s", text)
	}
	if strings.Contains(text, "anna") || strings.Contains(text, "0101") {
		t.Errorf("the code's text holds personal data: %s", text)
	}

	wrong := fmt.Sprintf("%06d", (mustAtoi(t, code)+1)%1_000_000)
	cpr := mustCPR(t, annaCPR)
	if a, left, err := h.d.ConfirmAddress(ctx, cpr, channels.Email, wrong); err != nil || a != dispatcher.AnswerWrong || left != dispatcher.CodeAttempts-1 {
		t.Errorf("a wrong code: %v, %d left, %v; want wrong, %d left", a, left, err, dispatcher.CodeAttempts-1)
	}
	if smsCode := codes(h.channels[channels.SMS])[0]; smsCode != code {
		if a, _, err := h.d.ConfirmAddress(ctx, cpr, channels.SMS, code); err != nil || a != dispatcher.AnswerWrong {
			t.Errorf("the email's code for the mobile: %v, %v; want wrong", a, err)
		}
	}
	if a, _, err := h.d.ConfirmAddress(ctx, cpr, channels.Email, code); err != nil || a != dispatcher.AnswerConfirmed {
		t.Fatalf("the right code: %v, %v; want confirmed", a, err)
	}
	const msg = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	h.accept(letter("l1", msg, annaCPR))
	h.idle()
	if n := len(letterAlerts(email)); n != 1 {
		t.Errorf("%d email alerts after confirming, want 1", n)
	}
	if !hasEntry(h.trail(msg), channels.SMS, dispatcher.ResultSkipped, "sms not confirmed") {
		t.Errorf("the unconfirmed mobile's trail: %+v", h.trail(msg))
	}

	// Nothing of the code or the citizen in the logs, in Redis's keys or
	// values, or in a task.
	all := logs.String()
	if !strings.Contains(all, "confirmation code sent") {
		t.Fatalf("the logs do not look captured:\n%s", all)
	}
	secrets := []string{"0101901234", "010190-1234", "anna@example.dk", "20123456"}
	secrets = append(secrets, append(codes(h.channels[channels.SMS]), code)...)
	for _, s := range secrets {
		if tokenRE(s).MatchString(all) {
			t.Errorf("the logs hold %q", s)
		}
	}
	contents, err := h.env.Contents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var codeKeys int
	for k, v := range contents {
		if strings.Contains(k, ":cc:") || strings.Contains(k, ":cr:") {
			codeKeys++
		}
		for _, s := range secrets {
			re := tokenRE(s)
			if re.MatchString(k) {
				t.Errorf("key %q holds %q", k, s)
			}
			// The citizen's hash keeps the addresses (it must); nothing
			// else does, and nothing keeps a code or the CPR.
			address := s == "anna@example.dk" || s == "20123456"
			if re.MatchString(v) && !(strings.HasSuffix(k, ":c") && address) {
				t.Errorf("value of %q holds %q", k, s)
			}
		}
	}
	if codeKeys == 0 {
		t.Error("no confirmation code keys were scanned")
	}
}

// tokenRE matches s standing alone: not inside a longer run of digits (a
// time in milliseconds holds many six-digit runs).
func tokenRE(s string) *regexp.Regexp {
	return regexp.MustCompile(`(^|[^0-9])` + regexp.QuoteMeta(s) + `($|[^0-9])`)
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestConfirmationGuessing is the attack: guessing codes. After
// CodeAttempts wrong codes even the right one is refused, and the address
// stays unconfirmed.
func TestConfirmationGuessing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email)
	h.start()
	h.accept(wireFrom("mit.dk", "c1", "contact.updated", map[string]any{"cpr": annaCPR, "email": "anna@example.dk"}))
	h.idle()
	cs := codes(h.channels[channels.Email])
	if len(cs) != 1 {
		t.Fatalf("%d codes, want 1", len(cs))
	}
	cpr := mustCPR(t, annaCPR)
	n := 0
	for guess := 0; n < dispatcher.CodeAttempts; guess++ {
		g := fmt.Sprintf("%06d", guess)
		if g == cs[0] {
			continue
		}
		n++
		if a, _, err := h.d.ConfirmAddress(context.Background(), cpr, channels.Email, g); err != nil || a != dispatcher.AnswerWrong {
			t.Fatalf("guess %d: %v, %v; want wrong", n, a, err)
		}
	}
	if a, _, err := h.d.ConfirmAddress(context.Background(), cpr, channels.Email, cs[0]); err != nil || a != dispatcher.AnswerTooMany {
		t.Errorf("the right code at attempt %d: %v, %v; want too many attempts", dispatcher.CodeAttempts+1, a, err)
	}
	const msg = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	h.accept(letter("l1", msg, annaCPR))
	h.idle()
	if n := len(letterAlerts(h.channels[channels.Email])); n != 0 {
		t.Errorf("%d alerts to an address confirmed by guessing", n)
	}
}

// TestConfirmationResend: a resend replaces the code; with the contact's
// code, CodesPerHour codes go out in an hour and the next resend is
// refused at once; a confirmed address gets none.
func TestConfirmationResend(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email, channels.SMS)
	h.start()
	ctx := context.Background()
	cpr := mustCPR(t, annaCPR)
	if a, err := h.d.ResendCode(ctx, cpr, channels.Email); err != nil || a != dispatcher.ResendNoAddress {
		t.Errorf("a resend with no address: %v, %v", a, err)
	}
	h.accept(wireFrom("borger.dk", "c1", "contact.updated", map[string]any{"cpr": annaCPR, "email": "anna@example.dk"}))
	h.idle()
	for i := 1; i < dispatcher.CodesPerHour; i++ {
		if a, err := h.d.ResendCode(ctx, cpr, channels.Email); err != nil || a != dispatcher.ResendQueued {
			t.Fatalf("resend %d: %v, %v; want queued", i, a, err)
		}
		h.idle()
	}
	if a, err := h.d.ResendCode(ctx, cpr, channels.Email); err != nil || a != dispatcher.ResendLimited {
		t.Errorf("resend %d: %v, %v; want limited", dispatcher.CodesPerHour, a, err)
	}
	h.idle()
	cs := codes(h.channels[channels.Email])
	if len(cs) != dispatcher.CodesPerHour {
		t.Fatalf("%d codes sent, want %d", len(cs), dispatcher.CodesPerHour)
	}
	// Only the newest code is valid.
	if cs[0] != cs[len(cs)-1] {
		if a, _, _ := h.d.ConfirmAddress(ctx, cpr, channels.Email, cs[0]); a != dispatcher.AnswerWrong {
			t.Errorf("the first code after resends: %v, want wrong", a)
		}
	}
	if a, _, err := h.d.ConfirmAddress(ctx, cpr, channels.Email, cs[len(cs)-1]); err != nil || a != dispatcher.AnswerConfirmed {
		t.Fatalf("the newest code: %v, %v; want confirmed", a, err)
	}
	if a, err := h.d.ResendCode(ctx, cpr, channels.Email); err != nil || a != dispatcher.ResendConfirmed {
		t.Errorf("a resend for a confirmed address: %v, %v", a, err)
	}
}

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestConfirmationEventOnce: a contact.updated handled again after it was
// processed sends no second code.
func TestConfirmationEventOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email)
	h.start()
	ev := wireFrom("borger.dk", "c1", "contact.updated", map[string]any{"cpr": annaCPR, "email": "anna@example.dk"})
	h.handle(ev)
	h.idle()
	h.handle(ev) // a redelivery of the processed event
	h.idle()
	if n := len(codes(h.channels[channels.Email])); n != 1 {
		t.Errorf("%d codes for one event handled twice, want 1", n)
	}
}

// TestConfirmedMigrationQueuesNothing: core's migration of confirmed
// addresses queues no code task (a migration of every citizen would
// otherwise queue one per address, for nothing).
func TestConfirmedMigrationQueuesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email, channels.SMS)
	h.handle(wire("c1", "contact.updated", map[string]any{"cpr": annaCPR, "email": "anna@example.dk", "mobile": "20123456",
		"confirmed": true}))
	pending, _ := h.insp.ListPendingTasks(h.queues.Urgent)
	if len(pending) != 0 {
		t.Errorf("%d tasks queued by a confirmed migration, want none", len(pending))
	}
}
