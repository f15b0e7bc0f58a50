package smstest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/digitalpost/postbud/channels/sms/smstest"
)

func post(t *testing.T, g *smstest.Gateway, user, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.URL()+"/rest/mtsms", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, out
}

const good = `{"sender":"DigitalPost","message":"Hej","recipients":[{"msisdn":4512345678}],"userref":"d1","max_parts":1}`

func TestProtocol(t *testing.T) {
	tests := []struct {
		name   string
		user   string
		body   string
		status int
		code   string
	}{
		{name: "accepted", user: smstest.DefaultToken, body: good, status: 200},
		{name: "wrong token", user: "nope", body: good, status: 401, code: "0x0223"},
		{name: "unknown field", user: smstest.DefaultToken, body: strings.Replace(good, `"userref"`, `"usrref"`, 1), status: 422},
		{name: "msisdn as string", user: smstest.DefaultToken, body: strings.Replace(good, `4512345678`, `"4512345678"`, 1), status: 422},
		{name: "trailing data", user: smstest.DefaultToken, body: good + `{}`, status: 422},
		{name: "no message", user: smstest.DefaultToken, body: strings.Replace(good, `"message":"Hej",`, ``, 1), status: 400, code: "0x0222"},
		{name: "no recipients", user: smstest.DefaultToken, body: strings.Replace(good, `[{"msisdn":4512345678}]`, `[]`, 1), status: 400, code: "0x0222"},
		{name: "bad encoding", user: smstest.DefaultToken, body: strings.Replace(good, `"max_parts":1`, `"max_parts":1,"encoding":"UTF16"`, 1), status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := smstest.New(t, smstest.Options{})
			status, _, out := post(t, g, tt.user, tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d (%v)", status, tt.status, out)
			}
			if tt.code != "" && out["code"] != tt.code {
				t.Errorf("code %v, want %s", out["code"], tt.code)
			}
			wantMsgs := 0
			if tt.status == 200 {
				wantMsgs = 1
				if ids, ok := out["ids"].([]any); !ok || len(ids) != 1 {
					t.Errorf("answer %v has no ids", out)
				}
			}
			if n := len(g.Messages()); n != wantMsgs {
				t.Errorf("recorded %d messages, want %d", n, wantMsgs)
			}
		})
	}
}

func TestRecordsAndFailures(t *testing.T) {
	g := smstest.New(t, smstest.Options{Token: "tok"})
	g.FailNext(2, smstest.Failure{Status: 429, Message: "slow down", RetryAfter: "7"})
	for range 2 {
		status, h, _ := post(t, g, "tok", good)
		if status != 429 || h.Get("Retry-After") != "7" {
			t.Fatalf("status %d Retry-After %q, want 429 and 7", status, h.Get("Retry-After"))
		}
	}
	for range 2 {
		if status, _, _ := post(t, g, "tok", good); status != 200 {
			t.Fatalf("status %d after the failures", status)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msgs, err := g.WaitMessages(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	type fields struct {
		ID                int64
		Sender, Message   string
		MSISDNs           []uint64
		UserRef, Encoding string
		MaxParts          int
	}
	var got []fields
	for _, m := range msgs {
		got = append(got, fields{m.ID, m.Sender, m.Message, m.MSISDNs, m.UserRef, m.Encoding, m.MaxParts})
		if string(m.Raw) != good {
			t.Errorf("raw body %q, want %q", m.Raw, good)
		}
	}
	want := []fields{
		{1000001, "DigitalPost", "Hej", []uint64{4512345678}, "d1", "", 1},
		{1000002, "DigitalPost", "Hej", []uint64{4512345678}, "d1", "", 1},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("messages (-want +got):\n%s", d)
	}
	if g.Requests() != 4 {
		t.Errorf("Requests = %d, want 4", g.Requests())
	}

	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	if _, err := g.WaitMessages(short, 3); err == nil {
		t.Error("WaitMessages for a message never sent returned")
	}
}
