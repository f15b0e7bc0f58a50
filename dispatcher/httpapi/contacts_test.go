package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/httpapi"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// codeBox is an email channel that keeps the codes it was given.
type codeBox struct {
	mu    sync.Mutex
	codes []string
}

func (b *codeBox) Send(_ context.Context, _ channels.Address, a channels.Alert) (channels.Receipt, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.Code != "" {
		b.codes = append(b.codes, a.Code)
	}
	return channels.Receipt{ProviderID: "x"}, nil
}

func (b *codeBox) last(t *testing.T) string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.codes) == 0 {
		t.Fatal("no code was sent")
	}
	return b.codes[len(b.codes)-1]
}

// problemOf decodes a problem document's title and the fields it names.
func problemOf(t *testing.T, body []byte) (string, []string) {
	t.Helper()
	var p struct {
		Title  string
		Errors []event.FieldError
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("not a problem document: %s", body)
	}
	var fields []string
	for _, e := range p.Errors {
		fields = append(fields, e.Field)
	}
	return p.Title, fields
}

// TestContactsConfirmAndResend runs the two routes against a real
// dispatcher: each answer, the attempts limit, the checks of the body.
func TestContactsConfirmAndResend(t *testing.T) {
	env := redistest.New(t)
	sealer := seal.Ephemeral()
	store := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix, Sealer: sealer})
	t.Cleanup(func() { store.Close() })
	keyer, err := dispatcher.NewKeyer([]byte("test-pseudonymisation-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	box := &codeBox{}
	queues := dispatcher.DefaultQueues(env.QueuePrefix)
	d, err := dispatcher.New(dispatcher.Config{Store: store, Keyer: keyer, Sealer: sealer, Enqueuer: asynq.NewClientFromRedisClient(env.Client),
		Queues: queues, MailboxURL: "https://www.borger.dk/digitalpost", Senders: map[channels.Name]channels.Sender{channels.Email: box}})
	if err != nil {
		t.Fatal(err)
	}
	const key = "borger-key-0123456789"
	api := httpapi.New(httpapi.Config{Dispatcher: d, Platforms: []httpapi.Platform{{Name: event.BorgerDK, KeySHA256: httpapi.HashKey(key)}}})
	mux := asynq.NewServeMux()
	d.Register(mux)
	inspector := asynq.NewInspectorFromRedisClient(env.Client)

	ev := fmt.Sprintf(`{"id":"c1","type":"contact.updated","occurred_at":%q,"source":"borger.dk","data":{"cpr":"311265-2345","email":"carol@example.dk"}}`,
		time.Now().UTC().Format(time.RFC3339Nano))
	if rec := call(api, "POST", "/v1/events", key, ev); rec.Code != http.StatusAccepted {
		t.Fatalf("contact.updated: %d %s", rec.Code, rec.Body)
	}
	work(t, inspector, mux, queues)
	code := box.last(t)
	wrong := fmt.Sprintf("%06d", (int(code[5]-'0')+1)%10)
	confirm := func(c string) (int, string, []string) {
		rec := call(api, "POST", "/v1/contacts/confirm", key, `{"cpr":"311265-2345","channel":"email","code":"`+c+`"}`)
		if rec.Code == http.StatusOK {
			return rec.Code, "", nil
		}
		title, fields := problemOf(t, rec.Body.Bytes())
		return rec.Code, title, fields
	}
	for i := range dispatcher.CodeAttempts {
		if st, title, fields := confirm(wrong); st != http.StatusBadRequest || title != "wrong code" || len(fields) != 1 || fields[0] != "code" {
			t.Fatalf("wrong code %d: %d %q %v; want 400 wrong code naming code", i+1, st, title, fields)
		}
	}
	if st, title, _ := confirm(code); st != http.StatusTooManyRequests || title != "too many attempts" {
		t.Errorf("the right code after %d wrong: %d %q; want 429 too many attempts", dispatcher.CodeAttempts, st, title)
	}

	resend := func(body string) (int, string, []string) {
		rec := call(api, "POST", "/v1/contacts/resend", key, body)
		if rec.Code == http.StatusAccepted {
			return rec.Code, "", nil
		}
		title, fields := problemOf(t, rec.Body.Bytes())
		return rec.Code, title, fields
	}
	if st, _, _ := resend(`{"cpr":"311265-2345","channel":"email"}`); st != http.StatusAccepted {
		t.Fatalf("resend: %d, want 202", st)
	}
	work(t, inspector, mux, queues)
	if st, _, _ := confirm(box.last(t)); st != http.StatusOK {
		t.Errorf("the resent code: %d, want 200", st)
	}
	if st, _, _ := confirm(box.last(t)); st != http.StatusGone {
		t.Errorf("the used code again: %d, want 410", st)
	}
	if st, _, _ := resend(`{"cpr":"311265-2345","channel":"email"}`); st != http.StatusConflict {
		t.Errorf("resend for a confirmed address: %d, want 409", st)
	}
	if st, _, _ := resend(`{"cpr":"311265-2345","channel":"sms"}`); st != http.StatusNotFound {
		t.Errorf("resend with no mobile: %d, want 404", st)
	}

	for _, tc := range []struct {
		path, body string
		fields     []string
	}{
		{"/v1/contacts/confirm", `{"cpr":"320190-1234","channel":"fax","code":"12a456"}`, []string{"cpr", "channel", "code"}},
		{"/v1/contacts/confirm", `{"cpr":"311265-2345","channel":"email"}`, []string{"code"}},
		{"/v1/contacts/confirm", `{"cpr":"311265-2345","channel":"email","code":"123456","email":"x"}`, []string{""}},
		{"/v1/contacts/resend", `{"channel":"sms","code":"123456"}`, []string{"cpr", "code"}},
	} {
		rec := call(api, "POST", tc.path, key, tc.body)
		title, fields := problemOf(t, rec.Body.Bytes())
		if rec.Code != http.StatusBadRequest || title != "invalid request" || fmt.Sprint(fields) != fmt.Sprint(tc.fields) {
			t.Errorf("%s %s: %d %q %v; want 400 naming %v", tc.path, tc.body, rec.Code, title, fields, tc.fields)
		}
	}
	for _, path := range []string{"/v1/contacts/confirm", "/v1/contacts/resend"} {
		if rec := call(api, "POST", path, "", `{"cpr":"311265-2345","channel":"email","code":"123456"}`); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s without a key: %d, want 401", path, rec.Code)
		}
	}
}
