package webhooktest_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/signature"
	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/channels/webhook/webhooktest"
	"github.com/google/go-cmp/cmp"
)

var now = time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)

func body() []byte {
	return webhook.Body(webhook.StateChange{MessageID: "m1", Read: true, Version: 2, ChangedAt: now, Platform: "e-boks"})
}

// post sends a raw request to the receiver, signed under key at ts unless
// key is nil, and returns the status.
func post(t *testing.T, r *webhooktest.Receiver, method, contentType string, key []byte, ts time.Time, b []byte) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, r.URL(), bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if key != nil {
		req.Header.Set(signature.HeaderID, "msg_raw")
		req.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set(signature.HeaderSignature, signature.Sign(key, "msg_raw", ts, b))
	}
	resp, err := r.Client().Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestReceiverChecksRequests(t *testing.T) {
	oldKey := []byte("old-key-old-key-old-key-old-key!")
	newKey := []byte("new-key-new-key-new-key-new-key!")
	clock := func() time.Time { return now }
	tests := []struct {
		name        string
		method      string
		contentType string
		key         []byte
		ts          time.Time
		body        []byte
		status      int
		wantErr     error // of the recorded attempt
	}{
		{name: "accepted", key: newKey, status: 204},
		{name: "accepted under the old key of a rotation", key: oldKey, status: 204},
		{name: "content type with charset", contentType: "application/json; charset=utf-8", key: newKey, status: 204},
		{name: "unsigned", status: 401, wantErr: signature.ErrMissingHeaders},
		{name: "wrong key", key: []byte("other-key-other-key-other-key-!!"), status: 401, wantErr: signature.ErrBadSignature},
		{name: "old timestamp", key: newKey, ts: now.Add(-time.Hour), status: 401, wantErr: signature.ErrTimestamp},
		{name: "future timestamp", key: newKey, ts: now.Add(time.Hour), status: 401, wantErr: signature.ErrTimestamp},
		{name: "not JSON", key: newKey, contentType: "text/plain", status: 415},
		{name: "unknown field", key: newKey, body: bytes.Replace(body(), []byte(`"platform"`), []byte(`"cpr":"0101901234","platform"`), 1), status: 400},
		{name: "not an object", key: newKey, body: []byte(`"read"`), status: 400},
		{name: "GET", method: http.MethodGet, key: newKey, status: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := webhooktest.New(t, webhooktest.Options{Secrets: [][]byte{newKey, oldKey}, Now: clock})
			method, ct, ts, b := tt.method, tt.contentType, tt.ts, tt.body
			if method == "" {
				method = http.MethodPost
			}
			if ct == "" {
				ct = "application/json"
			}
			if ts.IsZero() {
				ts = now
			}
			if b == nil {
				b = body()
			}
			if got := post(t, r, method, ct, tt.key, ts, b); got != tt.status {
				t.Fatalf("status = %d, want %d", got, tt.status)
			}
			snap := r.Snapshot()
			if len(snap.Attempts) != 1 || snap.Attempts[0].Status != tt.status {
				t.Fatalf("attempts = %+v, want one with status %d", snap.Attempts, tt.status)
			}
			if tt.wantErr != nil && !errors.Is(snap.Attempts[0].Err, tt.wantErr) {
				t.Errorf("attempt error = %v, want %v", snap.Attempts[0].Err, tt.wantErr)
			}
			accepted := 0
			if tt.status == 204 {
				accepted = 1
			}
			if len(snap.Deliveries) != accepted {
				t.Errorf("accepted %d, want %d", len(snap.Deliveries), accepted)
			}
			rejected := 0
			if tt.status == 401 {
				rejected = 1
			}
			if snap.Rejected != rejected {
				t.Errorf("rejected = %d, want %d", snap.Rejected, rejected)
			}
		})
	}
}

func TestReceiverFailures(t *testing.T) {
	r := webhooktest.New(t, webhooktest.Options{})
	key := r.Secret()
	send := func() int {
		t.Helper()
		return post(t, r, http.MethodPost, "application/json", key, time.Now(), body())
	}

	r.FailNext(2, webhooktest.Failure{Status: 429, RetryAfter: "3"})
	r.FailNext(1, webhooktest.Failure{Status: 500})
	var got []int
	for range 4 {
		got = append(got, send())
	}
	r.SetGone(true)
	got = append(got, send())
	r.SetGone(false)
	r.SetDown(true)
	got = append(got, send(), send())
	r.SetDown(false)
	got = append(got, send())
	if diff := cmp.Diff([]int{429, 429, 500, 204, 410, 503, 503, 204}, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if n := len(r.Deliveries()); n != 2 {
		t.Errorf("accepted %d, want 2", n)
	}
}

func TestReceiverRetryAfterHeader(t *testing.T) {
	r := webhooktest.New(t, webhooktest.Options{})
	r.FailNext(1, webhooktest.Failure{Status: 429, RetryAfter: "11"})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, r.URL(), strings.NewReader("{}"))
	resp, err := r.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "11" {
		t.Errorf("got %d Retry-After %q, want 429 and 11", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestReceiverDrop(t *testing.T) {
	r := webhooktest.New(t, webhooktest.Options{})
	r.FailNext(1, webhooktest.Failure{Drop: true})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, r.URL(), strings.NewReader("{}"))
	resp, err := r.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("dropped request answered %d, want a network error", resp.StatusCode)
	}
	if got := r.Attempts(); len(got) != 1 || got[0].Status != 0 {
		t.Errorf("attempts = %+v, want one with status 0", got)
	}
}

func TestReceiverDelay(t *testing.T) {
	r := webhooktest.New(t, webhooktest.Options{})
	const d = 30 * time.Millisecond
	r.SetDelay(d)
	start := time.Now()
	if got := post(t, r, http.MethodPost, "application/json", r.Secret(), time.Now(), body()); got != 204 {
		t.Fatalf("status = %d, want 204", got)
	}
	if el := time.Since(start); el < d {
		t.Errorf("answered after %v, want at least %v", el, d)
	}
}

// A stalled request is held until Release; WaitRequests sees it arrive.
func TestReceiverStall(t *testing.T) {
	r := webhooktest.New(t, webhooktest.Options{})
	r.Stall()
	status := make(chan int, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, r.URL(), bytes.NewReader(body()))
		req.Header.Set("Content-Type", "application/json")
		ts := time.Now()
		req.Header.Set(signature.HeaderID, "msg_stall")
		req.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set(signature.HeaderSignature, signature.Sign(r.Secret(), "msg_stall", ts, body()))
		resp, err := r.Client().Do(req)
		if err != nil {
			status <- -1
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := r.WaitRequests(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if n := len(r.Attempts()); n != 0 {
		t.Fatalf("stalled request was answered (%d attempts)", n)
	}
	r.Release()
	if got := <-status; got != 204 {
		t.Errorf("status after Release = %d, want 204", got)
	}
	ds, err := r.WaitDeliveries(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ds[0].ID != "msg_stall" {
		t.Errorf("delivery id = %q, want msg_stall", ds[0].ID)
	}
}

// A request still stalled when the test ends does not hold up Cleanup.
func TestReceiverCleanupWithStalledRequest(t *testing.T) {
	done := make(chan error, 1)
	t.Run("inner", func(t *testing.T) {
		r := webhooktest.New(t, webhooktest.Options{})
		r.Stall()
		go func() {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, r.URL(), strings.NewReader("{}"))
			resp, err := r.Client().Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := r.WaitRequests(ctx, 1); err != nil {
			t.Fatal(err)
		}
	})
	// Cleanup closed the server: the held request ended one way or another.
	select {
	case err := <-done:
		if err == nil {
			t.Error("the stalled request was answered when the test ended, want a dropped connection")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled request outlived its receiver")
	}
}

func TestWaitForHonoursContext(t *testing.T) {
	r := webhooktest.New(t, webhooktest.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := r.WaitDeliveries(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitDeliveries = %v, want context.Canceled", err)
	}
}
