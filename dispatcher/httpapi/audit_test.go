package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/digitalpost/postbud/dispatcher/httpapi"
	"github.com/digitalpost/postbud/dispatcher/opsauth"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

const (
	adminKey   = "admin-key-for-tests-0123"
	supportKey = "support-key-for-tests-0123"
	coreKey    = "core-key-0123456789"
	testCPR    = "0101901234"
	letterID   = "6f1c2b9e-8d4a-4c3b-9f1e-2a7d5c0b8e41"
)

// lockedBuffer is an audit log a test can read while handlers write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// take returns the lines written since the last take, decoded.
func (l *lockedBuffer) take(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		if strings.Contains(line, testCPR) || strings.Contains(line, "010190-1234") {
			t.Errorf("an audit line holds the CPR: %s", line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line is not one JSON object: %q", line)
		}
		out = append(out, m)
	}
	l.b.Reset()
	return out
}

func auditedAPI(t *testing.T, separate bool) (*httpapi.API, *lockedBuffer) {
	t.Helper()
	env := redistest.New(t)
	audit := &lockedBuffer{}
	g, err := opsauth.New([]opsauth.Key{
		{Name: "anna", Role: opsauth.Admin, SHA256: opsauth.HashKey(adminKey)},
		{Name: "bo", Role: opsauth.Support, SHA256: opsauth.HashKey(supportKey)},
	}, audit)
	if err != nil {
		t.Fatal(err)
	}
	api := newAPIConfig(t, env.Client, env.Prefix, func(c *httpapi.Config) {
		c.Guard = g
		c.SeparateOps = separate
	})
	return api, audit
}

func call(h http.Handler, method, path, key, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestAuditEveryOpsEndpoint: each ops endpoint, with each kind of key, is
// answered as its role allows and leaves exactly one audit line with the
// key's name, the route pattern and the status answered; refused
// authentications (no key, a wrong key, a support key on an admin route,
// a wrong platform key) are audited too; no line holds the CPR typed where
// a message id belongs.
func TestAuditEveryOpsEndpoint(t *testing.T) {
	api, audit := auditedAPI(t, false)
	trail := "/v1/messages/" + letterID + "/trail"
	state := "/v1/messages/" + letterID + "/state"
	enable := "/v1/ops/platforms/e-boks/enable"
	for _, tc := range []struct {
		name, method, path, key string
		code                    int
		who, route              string
		values                  map[string]string // path values the line must carry
	}{
		{"trail, support", "GET", trail, supportKey, 404, "bo", "GET /v1/messages/{id}/trail", map[string]string{"id": letterID}},
		{"trail, admin", "GET", trail, adminKey, 404, "anna", "GET /v1/messages/{id}/trail", nil},
		{"trail, no key", "GET", trail, "", 401, "", "GET /v1/messages/{id}/trail", nil},
		{"trail, wrong key", "GET", trail, adminKey + "x", 401, "", "GET /v1/messages/{id}/trail", nil},
		{"trail, platform key", "GET", trail, coreKey, 401, "", "GET /v1/messages/{id}/trail", nil},
		{"trail of a CPR", "GET", "/v1/messages/" + testCPR + "/trail", supportKey, 404, "bo", "GET /v1/messages/{id}/trail",
			map[string]string{"id": opsauth.Withheld}},
		{"state, support", "GET", state, supportKey, 404, "bo", "GET /v1/messages/{id}/state", nil},
		{"state, wrong key", "GET", state, "nope-nope-nope-nope", 401, "", "GET /v1/messages/{id}/state", nil},
		{"enable, support", "POST", enable, supportKey, 403, "bo", "POST /v1/ops/platforms/{platform}/enable",
			map[string]string{"platform": "e-boks"}},
		{"enable, admin", "POST", enable, adminKey, 200, "anna", "POST /v1/ops/platforms/{platform}/enable", nil},
		{"enable, no key", "POST", enable, "", 401, "", "POST /v1/ops/platforms/{platform}/enable", nil},
		{"event, wrong platform key", "POST", "/v1/events", "wrong-core-key-0123", 401, "", "POST /v1/events", nil},
		{"batch, no key", "POST", "/v1/events/batch", "", 401, "", "POST /v1/events/batch", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := call(api, tc.method, tc.path, tc.key, "{}")
			if rec.Code != tc.code {
				t.Fatalf("%s %s: %d, want %d: %s", tc.method, tc.path, rec.Code, tc.code, rec.Body)
			}
			lines := audit.take(t)
			if len(lines) != 1 {
				t.Fatalf("%d audit lines, want 1: %v", len(lines), lines)
			}
			l := lines[0]
			if l["audit"] != true || l["key"] != tc.who || l["route"] != tc.route || l["status"] != float64(tc.code) ||
				l["method"] != tc.method || l["time"] == nil {
				t.Errorf("audit line %v, want key %q route %q status %d", l, tc.who, tc.route, tc.code)
			}
			for k, v := range tc.values {
				if l[k] != v {
					t.Errorf("audit line %s = %v, want %q", k, l[k], v)
				}
			}
		})
	}
	// A platform reading state with its own key is not an ops request.
	if rec := call(api, "GET", state, coreKey, ""); rec.Code != http.StatusNotFound {
		t.Errorf("state with the platform key: %d", rec.Code)
	}
	if lines := audit.take(t); len(lines) != 0 {
		t.Errorf("a platform's own request was audited: %v", lines)
	}
}

// TestSeparateOps: with the ops routes on their own handler, the public
// one has none of them and does not take ops keys, and health answers on
// both.
func TestSeparateOps(t *testing.T) {
	api, audit := auditedAPI(t, true)
	ops := api.OpsHandler()
	trail := "/v1/messages/" + letterID + "/trail"
	state := "/v1/messages/" + letterID + "/state"
	for _, tc := range []struct {
		name   string
		h      http.Handler
		method string
		path   string
		key    string
		code   int
	}{
		{"public trail", api, "GET", trail, adminKey, 404},
		{"public enable", api, "POST", "/v1/ops/platforms/e-boks/enable", adminKey, 404},
		{"public state, ops key", api, "GET", state, adminKey, 401},
		{"public state, platform key", api, "GET", state, coreKey, 404},
		{"ops trail", ops, "GET", trail, supportKey, 404},
		{"ops enable", ops, "POST", "/v1/ops/platforms/e-boks/enable", adminKey, 200},
		{"ops state", ops, "GET", state, supportKey, 404},
		{"ops state, platform key", ops, "GET", state, coreKey, 401},
		{"ops events", ops, "POST", "/v1/events", coreKey, 404},
		{"ops healthz", ops, "GET", "/healthz", "", 200},
		{"public healthz", api, "GET", "/healthz", "", 200},
	} {
		if rec := call(tc.h, tc.method, tc.path, tc.key, "{}"); rec.Code != tc.code {
			t.Errorf("%s: %d, want %d: %s", tc.name, rec.Code, tc.code, rec.Body)
		}
	}
	// The trail on the public handler is unrouted: nothing to audit. The
	// ops key on the public state route is refused and audited.
	var refused int
	for _, l := range audit.take(t) {
		if l["status"] == float64(401) {
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("%d refusals audited, want 2 (ops key on public state, platform key on ops state)", refused)
	}
}
