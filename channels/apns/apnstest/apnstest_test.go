package apnstest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/apns/apnstest"
	"github.com/google/go-cmp/cmp"
)

const token = "00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff"

// TestRefusals checks what the fake refuses before it records anything, with
// a plain net/http client (the adapter's tests drive it through apns2).
func TestRefusals(t *testing.T) {
	f := apnstest.New(t, apnstest.Options{})
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: f.TLSConfig(), ForceAttemptHTTP2: true}}
	tests := []struct {
		name       string
		method     string
		path       string
		header     map[string]string
		body       string
		wantStatus int
		wantReason string
	}{
		{"no authorization", "POST", "/3/device/" + token,
			map[string]string{"apns-topic": apnstest.DefaultTopics()[0], "apns-push-type": "alert"}, `{"aps":{}}`,
			403, "MissingProviderToken"},
		{"garbage bearer", "POST", "/3/device/" + token,
			map[string]string{"authorization": "bearer a.b.c", "apns-topic": apnstest.DefaultTopics()[0]}, `{"aps":{}}`,
			403, "InvalidProviderToken"},
		{"wrong path", "POST", "/3/devices/" + token, nil, `{}`, 404, "BadPath"},
		{"GET", "GET", "/3/device/" + token, nil, ``, 405, "MethodNotAllowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(context.Background(), tt.method, f.URL()+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := h2.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct{ Reason string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if resp.StatusCode != tt.wantStatus || body.Reason != tt.wantReason || resp.ProtoMajor != 2 {
				t.Errorf("got %s %d %q, want HTTP/2 %d %q", resp.Proto, resp.StatusCode, body.Reason, tt.wantStatus, tt.wantReason)
			}
		})
	}
	if n := len(f.Notifications()); n != 0 {
		t.Errorf("fake recorded %d notifications, want 0", n)
	}
}

func TestWaitNotificationsHonoursContext(t *testing.T) {
	f := apnstest.New(t, apnstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got, err := f.WaitNotifications(ctx, 1)
	if !errors.Is(err, context.DeadlineExceeded) || got != nil {
		t.Errorf("WaitNotifications = %v, %v; want nil, deadline exceeded", got, err)
	}
}

func TestFailuresWaitForAuthorisedRequests(t *testing.T) {
	f := apnstest.New(t, apnstest.Options{})
	f.FailNext(1, apnstest.Failure{Status: 502, Body: "<html>bad gateway</html>"})
	// The failure queue is only reached by authorised requests, so a
	// refused request leaves it armed.
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: f.TLSConfig(), ForceAttemptHTTP2: true}}
	resp, err := h2.Post(f.URL()+"/3/device/"+token, "application/json", strings.NewReader(`{"aps":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if diff := cmp.Diff(`{"reason":"MissingProviderToken"}`+"\n", string(b)); diff != "" || resp.StatusCode != 403 {
		t.Errorf("unauthorised request: status %d, body diff (-want +got):\n%s", resp.StatusCode, diff)
	}
}
