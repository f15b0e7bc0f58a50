package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

const (
	testSelfServiceKey = "test-self-service-public-key"
	testCourtKey       = "test-self-service-court-key"
	testBusinessKey    = "test-self-service-business-key"
)

// TestEndToEndSelfService: through `run`, with three self-service systems
// configured in POSTBUD_SELF_SERVICE_KEYS, an exemption granted by the
// core is answered to each context as the law has it (released from
// self-service only in the public context); a citizen postbud does not
// know gets the not-exempt answer; a self-service key cannot post events
// and a platform key cannot ask; every query is in POSTBUD_AUDIT_FILE
// with its system and answer, and no log line, audit line, Redis key or
// value holds a CPR number.
func TestEndToEndSelfService(t *testing.T) {
	rt := redistest.New(t)
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	logs := &syncBuffer{}
	d := start(t, testEnv(rt, emailtest.New(t), map[string]string{
		"POSTBUD_AUDIT_FILE": audit,
		"POSTBUD_SELF_SERVICE_KEYS": "skat-selvbetjening:public:" + testSelfServiceKey + "\nretternes-portal:court:" +
			testCourtKey + "\nvirk:business:" + testBusinessKey,
	}), logs)

	granted := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	ev, _ := json.Marshal(map[string]any{"id": "exempt-1", "type": "exemption.granted", "source": "core",
		"occurred_at": granted.Format(time.RFC3339Nano), "data": map[string]any{"cpr": "010190-1234"}})
	if code, body := post(t, d.base+"/v1/events", testCoreKey, string(ev)); code != http.StatusAccepted {
		t.Fatalf("exemption.granted: %d %v", code, body)
	}
	waitIdle(t, rt)

	since := granted.Format(time.RFC3339Nano)
	for _, tc := range []struct {
		system, key, cpr string
		want             map[string]any
	}{
		{"public", testSelfServiceKey, "010190-1234", map[string]any{"digital_post_exempt": true, "self_service_exempt": true, "since": since}},
		{"court", testCourtKey, "0101901234", map[string]any{"digital_post_exempt": true, "self_service_exempt": false, "since": since}},
		{"business", testBusinessKey, "010190-1234", map[string]any{"digital_post_exempt": true, "self_service_exempt": false, "since": since}},
		{"public, unknown citizen", testSelfServiceKey, "150805-4321", map[string]any{"digital_post_exempt": false, "self_service_exempt": false, "since": nil}},
		{"court, unknown citizen", testCourtKey, "150805-4321", map[string]any{"digital_post_exempt": false, "self_service_exempt": false, "since": nil}},
	} {
		code, got := post(t, d.base+"/v1/self-service/exemption", tc.key, `{"cpr":"`+tc.cpr+`"}`)
		if code != http.StatusOK || len(got) != 3 || got["digital_post_exempt"] != tc.want["digital_post_exempt"] ||
			got["self_service_exempt"] != tc.want["self_service_exempt"] || got["since"] != tc.want["since"] {
			t.Errorf("%s: %d %v, want 200 %v", tc.system, code, got, tc.want)
		}
	}
	// Attacks: the self-service key posting an event, a platform key and
	// an ops key asking.
	if code, body := post(t, d.base+"/v1/events", testSelfServiceKey, string(ev)); code != http.StatusForbidden {
		t.Errorf("a self-service key posting an event: %d %v, want 403", code, body)
	}
	for _, key := range []string{testCoreKey, testEBoks, testOpsKey} {
		if code, body := post(t, d.base+"/v1/self-service/exemption", key, `{"cpr":"010190-1234"}`); code != http.StatusForbidden {
			t.Errorf("asking with a platform or ops key: %d %v, want 403", code, body)
		}
	}
	if code, body := post(t, d.base+"/v1/self-service/exemption", testSelfServiceKey, `{"cpr":"310290-1234"}`); code != http.StatusBadRequest {
		t.Errorf("a bad CPR: %d %v, want 400", code, body)
	}

	d.stop(t) // the audit file is complete once serve has returned
	raw, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	answered := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var a map[string]any
		if err := json.Unmarshal([]byte(l), &a); err != nil || a["audit"] != true {
			t.Fatalf("audit line %q: %v", l, err)
		}
		if a["role"] == "self-service" && a["status"] == float64(200) {
			answered[a["key"].(string)+" "+a["context"].(string)]++
			if _, ok := a["self_service_exempt"]; !ok {
				t.Errorf("audit line without the answer: %s", l)
			}
		}
	}
	if answered["skat-selvbetjening public"] != 2 || answered["retternes-portal court"] != 2 || answered["virk business"] != 1 {
		t.Errorf("audited answers %v, want 2 public, 2 court, 1 business:\n%s", answered, raw)
	}
	for _, cpr := range []string{"0101901234", "010190-1234", "1508054321", "150805-4321", "3102901234", "310290-1234"} {
		if strings.Contains(string(raw), cpr) || strings.Contains(logs.String(), cpr) {
			t.Errorf("a CPR number in the audit file or the logs")
		}
	}
	keys, err := rt.Client.Keys(t.Context(), rt.Prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no Redis key to scan")
	}
	for _, k := range keys {
		dump, _ := rt.Client.Dump(t.Context(), k).Result()
		for _, cpr := range []string{"0101901234", "010190-1234", "1508054321", "150805-4321"} {
			if strings.Contains(k, cpr) || strings.Contains(dump, cpr) {
				t.Errorf("Redis key %q or its value holds a CPR number", k)
			}
		}
	}
}

// TestDevSelfService: `postbud dev` has a demo self-service system per
// context, whose keys docs/events.md gives; its exempt demo citizen Dorte
// is answered as the contract's examples show, and Anna is not exempt.
func TestDevSelfService(t *testing.T) {
	base := startDev(t, nil)
	md, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	dorte := devCitizens(time.Now())[3]
	if !dorte.Exempt {
		t.Fatalf("the fourth demo citizen, %s, is no longer the exempt one", dorte.Name)
	}
	for _, s := range devSelfServiceKeys {
		if !strings.Contains(string(md), "`"+s.key+"`") {
			t.Errorf("docs/events.md does not give the dev key %s", s.key)
		}
		code, got := post(t, base+"/v1/self-service/exemption", s.key, `{"cpr":"`+dorte.CPR+`"}`)
		since, _ := got["since"].(string)
		if _, err := time.Parse(time.RFC3339Nano, since); code != http.StatusOK || got["digital_post_exempt"] != true ||
			got["self_service_exempt"] != (s.context == "public") || err != nil {
			t.Errorf("%s asking about Dorte: %d %v", s.name, code, got)
		}
		code, got = post(t, base+"/v1/self-service/exemption", s.key, `{"cpr":"010190-1234"}`)
		if code != http.StatusOK || got["digital_post_exempt"] != false || got["self_service_exempt"] != false || got["since"] != nil {
			t.Errorf("%s asking about Anna: %d %v", s.name, code, got)
		}
	}
	if code, _ := post(t, base+"/v1/events", devSelfServiceKeys[0].key, "{}"); code != http.StatusForbidden {
		t.Errorf("the dev self-service key posting an event: %d, want 403", code)
	}
}
