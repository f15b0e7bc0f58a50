package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/channels/sms/smstest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// TestCLIEmitFailedSendPrintsNoMessageID: when the send fails (nothing
// listens, or postbud answers 503), emit exits non-zero and prints neither
// a message id nor a trace hint; when it is accepted, it prints both.
func TestCLIEmitFailedSendPrintsNoMessageID(t *testing.T) {
	bin := binary(t)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"title":"unavailable","status":503}`))
	}))
	defer down.Close()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"id":"x","status":"accepted"}`))
	}))
	defer up.Close()
	for name, url := range map[string]string{"nothing listens": "http://" + freeAddr(t), "503": down.URL} {
		code, out, errOut := postbud(t, bin, map[string]string{"POSTBUD_URL": url, "POSTBUD_EMIT_KEY": testCoreKey},
			"emit", "-letter", "010190-1234")
		if code == 0 {
			t.Errorf("%s: exit 0, want non-zero\n%s%s", name, out, errOut)
		}
		if all := out + errOut; uuidRE.MatchString(all) || strings.Contains(all, "trace") {
			t.Errorf("%s: a failed emit prints a message id or a trace hint:\n%s", name, all)
		}
	}
	code, out, errOut := postbud(t, bin, map[string]string{"POSTBUD_URL": up.URL, "POSTBUD_EMIT_KEY": testCoreKey},
		"emit", "-letter", "010190-1234")
	if all := out + errOut; code != 0 || !uuidRE.MatchString(all) || !strings.Contains(all, "postbud trace ") {
		t.Errorf("accepted: exit %d, want 0 with the message id and the trace hint:\n%s", code, all)
	}
}

// TestCLIConfigCheckFCMEndpointWithoutV1: POSTBUD_FCM_ENDPOINT without
// the API version makes the fcm line fail with the reason, exit 1; with
// /v1 it is ok.
func TestCLIConfigCheckFCMEndpointWithoutV1(t *testing.T) {
	bin := binary(t)
	rt := redistest.New(t)
	f := newFakes(t)
	env := map[string]string{
		"POSTBUD_REDIS_URL":     rt.URL,
		"POSTBUD_PSEUDONYM_KEY": "test-pseudonymisation-key-0123456789",
		"POSTBUD_SEAL_KEY":      testSealKey,
		"POSTBUD_OPS_KEY":       testOpsKey,
		"POSTBUD_KEY_CORE":      testCoreKey,
	}
	for _, k := range []string{"POSTBUD_FCM_ENDPOINT", "POSTBUD_FCM_PROJECT_E_BOKS", "POSTBUD_FCM_CREDENTIALS_E_BOKS_FILE"} {
		env[k] = f.env[k]
	}
	env["POSTBUD_FCM_ENDPOINT"] = strings.TrimSuffix(f.fcm.Endpoint(), "/v1")
	code, out, errOut := postbud(t, bin, env, "config", "check")
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	line := regexp.MustCompile(`(?m)^fcm +(.*)$`).FindStringSubmatch(out)
	if line == nil || !strings.HasPrefix(line[1], "FAILED: ") || !strings.Contains(line[1], "/v1") {
		t.Errorf("the fcm line does not fail saying the endpoint lacks /v1:\n%s%s", out, errOut)
	}
	env["POSTBUD_FCM_ENDPOINT"] = f.fcm.Endpoint()
	if code, out, errOut := postbud(t, bin, env, "config", "check"); code != 0 || !regexp.MustCompile(`(?m)^fcm +ok$`).MatchString(out) {
		t.Errorf("with /v1: exit %d, want 0 and fcm ok\n%s%s", code, out, errOut)
	}
}

// TestReadyzVerboseListsChannels: /readyz?verbose of a running serve lists
// every configured channel; email, whose server offers no STARTTLS while
// TLS is mandatory, is down with its last error kind, SMS is up; readiness
// stays 200.
func TestReadyzVerboseListsChannels(t *testing.T) {
	rt := redistest.New(t)
	smtp := emailtest.New(t)
	gw := smstest.New(t, smstest.Options{})
	var logs syncBuffer
	d := start(t, testEnv(rt, smtp, map[string]string{"POSTBUD_SMTP_TLS": "mandatory",
		"POSTBUD_SMS_TOKEN": gw.Token(), "POSTBUD_SMS_URL": gw.URL()}), &logs)
	resp, err := http.Get(d.base + "/readyz?verbose")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Status   string
		Channels []struct {
			Channel       string `json:"channel"`
			Up            bool   `json:"up"`
			LastErrorKind string `json:"last_error_kind"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || got.Status != "ready" {
		t.Errorf("readyz: %d %q, want 200 ready (a broken provider does not take the ingest down)", resp.StatusCode, got.Status)
	}
	seen := map[string]bool{}
	for _, c := range got.Channels {
		seen[c.Channel] = true
		switch c.Channel {
		case "email":
			if c.Up || c.LastErrorKind == "" {
				t.Errorf("email: up %v, last error kind %q; want down with its error kind", c.Up, c.LastErrorKind)
			}
		case "sms":
			if !c.Up || c.LastErrorKind != "" {
				t.Errorf("sms: up %v, last error kind %q; want up", c.Up, c.LastErrorKind)
			}
		}
	}
	if !seen["email"] || !seen["sms"] {
		t.Errorf("readyz?verbose lists %v, want email and sms", got.Channels)
	}
}
