package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/channels/signature"
	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestSignedInboundEvents: a platform configured to sign its events is
// refused without a valid Standard Webhooks signature, with a stale
// timestamp, and on a replayed webhook-id.
func TestSignedInboundEvents(t *testing.T) {
	rt := redistest.New(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	d := start(t, testEnv(rt, emailtest.New(t), map[string]string{
		"POSTBUD_INBOUND_SECRET_E_BOKS": webhook.FormatSecret(key)}), &syncBuffer{})
	body := []byte(wireEvent("r1", "message.read", "e-boks", map[string]any{"message_id": "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
		"recipient": map[string]any{"cpr": "010190-1234"}, "platform": "e-boks", "at": time.Now().UTC().Format(time.RFC3339Nano)}))
	send := func(id string, ts time.Time, secret []byte) int {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, d.base+"/v1/events", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testEBoks)
		if secret != nil {
			req.Header.Set(signature.HeaderID, id)
			req.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
			req.Header.Set(signature.HeaderSignature, signature.Sign(secret, id, ts, body))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	wrong := make([]byte, 32)
	for _, c := range []struct {
		name   string
		id     string
		ts     time.Time
		secret []byte
		want   int
	}{
		{"unsigned", "", time.Time{}, nil, http.StatusUnauthorized},
		{"wrong secret", "msg_1", time.Now(), wrong, http.StatusUnauthorized},
		{"ten minutes old", "msg_2", time.Now().Add(-10 * time.Minute), key, http.StatusUnauthorized},
		{"signed", "msg_3", time.Now(), key, http.StatusAccepted},
		{"replayed", "msg_3", time.Now(), key, http.StatusUnauthorized},
	} {
		if got := send(c.id, c.ts, c.secret); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	// The core platform signs nothing and needs nothing.
	if code, _ := post(t, d.base+"/v1/events", testCoreKey, wireEvent("c1", "contact.updated", "core",
		map[string]any{"cpr": "010190-1234", "email": "a@b.dk"})); code != http.StatusAccepted {
		t.Errorf("unsigned core event: %d, want 202", code)
	}
}

// TestReadEventResentIsDuplicate: a message.read resent after processing
// answers duplicate (its mark is in the letter's record).
func TestReadEventResentIsDuplicate(t *testing.T) {
	rt := redistest.New(t)
	d := start(t, testEnv(rt, emailtest.New(t), nil), &syncBuffer{})
	ev := wireEvent("r1", "message.read", "core", map[string]any{"message_id": "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
		"recipient": map[string]any{"cpr": "010190-1234"}, "platform": "e-boks", "at": time.Now().UTC().Format(time.RFC3339Nano)})
	if _, body := post(t, d.base+"/v1/events", testCoreKey, ev); body["status"] != "accepted" {
		t.Fatalf("first: %v", body)
	}
	waitIdle(t, rt)
	if _, body := post(t, d.base+"/v1/events", testCoreKey, ev); body["status"] != "duplicate" {
		t.Errorf("resent after processing: %v, want duplicate", body)
	}
}
