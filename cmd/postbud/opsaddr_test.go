package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

var opsServingRE = regexp.MustCompile(`"msg":"postbud serving".*"ops_http":"(http://[^"]+)"`)

const testSupportKey = "test-support-key-0123456789"

func do(t *testing.T, method, url, key string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestOpsListenerAndAudit: with POSTBUD_OPS_ADDR the ops routes, /metrics
// and the dashboard answer on the ops listener only; named keys have their
// roles; every ops request lands in POSTBUD_AUDIT_FILE with the key's
// name, and none in the logs.
func TestOpsListenerAndAudit(t *testing.T) {
	rt := redistest.New(t)
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	logs := &syncBuffer{}
	d := start(t, testEnv(rt, emailtest.New(t), map[string]string{
		"POSTBUD_OPS_ADDR":   "127.0.0.1:0",
		"POSTBUD_AUDIT_FILE": audit,
		"POSTBUD_OPS_KEYS":   "helpdesk:support:" + testSupportKey,
	}), logs)
	m := opsServingRE.FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no ops listener in the serving line:\n%s", logs)
	}
	ops := m[1]
	trail := "/v1/messages/0b9e2d4c-5a61-4f3b-8d27-9c1e6a4f8b20/trail"
	for _, tc := range []struct {
		name, method, url, key string
		code                   int
	}{
		{"public metrics", "GET", d.base + "/metrics", "", 404},
		{"public dashboard", "GET", d.base + "/monitoring/", testOpsKey, 404},
		{"public trail", "GET", d.base + trail, testOpsKey, 404},
		{"public health", "GET", d.base + "/readyz", "", 200},
		{"ops metrics", "GET", ops + "/metrics", "", 200},
		{"ops health", "GET", ops + "/healthz", "", 200},
		{"ops trail, support", "GET", ops + trail, testSupportKey, 404},
		{"ops trail of a CPR, support", "GET", ops + "/v1/messages/0101901234/trail", testSupportKey, 404},
		{"ops enable, support", "POST", ops + "/v1/ops/platforms/e-boks/enable", testSupportKey, 403},
		{"ops enable, admin", "POST", ops + "/v1/ops/platforms/e-boks/enable", testOpsKey, 200},
		// Not api/queues: on the shared Redis it lists every package's
		// queues, and one removed meanwhile makes it answer 500 (the
		// dashboard's own tests list queues on a Redis of their own).
		{"ops dashboard, support", "GET", ops + "/monitoring/api/redis_info", testSupportKey, 200},
		{"ops dashboard, wrong key", "GET", ops + "/monitoring/", "wrong-key-0123456789", 401},
	} {
		if got := do(t, tc.method, tc.url, tc.key); got != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.code)
		}
	}
	d.stop(t) // the audit file is complete once serve has returned
	raw, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	type line struct {
		Audit  bool   `json:"audit"`
		Key    string `json:"key"`
		Route  string `json:"route"`
		Status int    `json:"status"`
	}
	var got []line
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var a line
		if err := json.Unmarshal([]byte(l), &a); err != nil || !a.Audit {
			t.Fatalf("audit line %q: %v", l, err)
		}
		got = append(got, a)
	}
	want := []line{
		{true, "helpdesk", "GET /v1/messages/{id}/trail", 404},
		{true, "helpdesk", "GET /v1/messages/{id}/trail", 404},
		{true, "helpdesk", "POST /v1/ops/platforms/{platform}/enable", 403},
		{true, "ops", "POST /v1/ops/platforms/{platform}/enable", 200},
		{true, "helpdesk", "/monitoring/", 200},
		{true, "", "/monitoring/", 401},
	}
	// A line is written once its handler returns, which may be after the
	// client has its answer: compare in a fixed order.
	order := func(a, b line) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) }
	slices.SortFunc(got, order)
	slices.SortFunc(want, order)
	if !slices.Equal(got, want) {
		t.Errorf("audit lines:\n%+v\nwant\n%+v\n%s", got, want, raw)
	}
	if strings.Contains(string(raw), "0101901234") || strings.Contains(logs.String(), `"audit":true`) {
		t.Errorf("a CPR in the audit file, or audit lines in the logs:\n%s", raw)
	}
}
