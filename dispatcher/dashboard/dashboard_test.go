package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/dashboard"
	"github.com/digitalpost/postbud/dispatcher/opsauth"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

const (
	opsKey     = "ops-key-for-tests-0123456789"
	supportKey = "support-key-for-tests-0123"
	cpr        = "010101-1234"
	messageID  = "6f1c2b9e-8d4a-4c3b-9f1e-2a7d5c0b8e41"
	citizen    = "k:3d9a7f0c1e2b4a6d8f0e1c3b5a7d9f1e"
)

// inboundPayload is a postbud:inbound payload as a platform enqueues it:
// the wire event, CPR included.
var inboundPayload = `{"id":"ev-1","type":"message.received","occurred_at":"2026-01-02T10:00:00Z","source":"core",` +
	`"data":{"message_id":"` + strings.ToUpper(messageID) + `","recipient":{"cpr":"` + cpr + `"},` +
	`"sender":{"id":"skat","name":"Skattestyrelsen","kind":"public"},"notification":"Din årsopgørelse"}}`

// env is a dashboard on the test's Redis, with one archived
// postbud:inbound task holding a CPR.
type env struct {
	srv    *httptest.Server
	queue  string
	taskID string
	log    *requestLog
	audit  *auditBuffer
}

// auditBuffer collects the guard's audit log.
type auditBuffer struct {
	mu      sync.Mutex
	b       strings.Builder
	changed chan struct{} // closed and replaced on each write
}

func (a *auditBuffer) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.changed != nil {
		close(a.changed)
		a.changed = nil
	}
	return a.b.Write(p)
}

// String returns the log so far.
func (a *auditBuffer) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.b.String()
}

// waitLines waits until the log holds n lines (the guard writes a line
// once the handler returns, which may be after the client has its answer)
// and returns them, decoded.
func (a *auditBuffer) waitLines(t *testing.T, n int) []map[string]any {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		a.mu.Lock()
		text := a.b.String()
		if strings.Count(text, "\n") >= n {
			a.mu.Unlock()
			return decodeLines(t, text)
		}
		if a.changed == nil {
			a.changed = make(chan struct{})
		}
		ch := a.changed
		a.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("the audit log has not %d lines: %s", n, text)
		}
	}
}

func decodeLines(t *testing.T, text string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("audit line is not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

// testGuard knows opsKey as admin "ops" and supportKey as support
// "helpdesk", and audits to w.
func testGuard(t *testing.T, w *auditBuffer) *opsauth.Guard {
	t.Helper()
	var aw io.Writer
	if w != nil {
		aw = w
	}
	g, err := opsauth.New([]opsauth.Key{
		{Name: "ops", Role: opsauth.Admin, SHA256: opsauth.HashKey(opsKey)},
		{Name: "helpdesk", Role: opsauth.Support, SHA256: opsauth.HashKey(supportKey)},
	}, aw)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// requestLog records the path and status of every request the test
// server answered.
type requestLog struct {
	mu   sync.Mutex
	seen []seen
}

type seen struct {
	path string
	code int
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		l.mu.Lock()
		l.seen = append(l.seen, seen{r.URL.Path, rec.code})
		l.mu.Unlock()
	})
}

// take returns the requests recorded so far and forgets them.
func (l *requestLog) take() []seen {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.seen
	l.seen = nil
	return out
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// listingRedis returns the test's Redis and the client a dashboard that
// lists queues must use: the dashboard lists every queue in asynq's one
// set of queue names, and on the shared Redis another package's test
// removes its queues while the list is read ("queue does not exist"), so
// on a real Redis such a test has a redis-server of its own.
func listingRedis(t *testing.T) (*redistest.Env, *redis.Client) {
	t.Helper()
	r := redistest.New(t)
	if !redistest.Real() {
		return r, r.Client
	}
	srv := redistest.StartServer(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rc.Close() })
	return r, rc
}

func newEnv(t *testing.T, writable bool) *env {
	t.Helper()
	r, rc := listingRedis(t)
	queue := r.QueuePrefix + ".normal"
	client := asynq.NewClientFromRedisClient(rc)
	info, err := client.EnqueueContext(context.Background(), asynq.NewTask(dispatcher.TypeInbound, []byte(inboundPayload)),
		asynq.Queue(queue), asynq.TaskID("ev:test-"+r.QueuePrefix))
	if err != nil {
		t.Fatal(err)
	}
	if err := asynq.NewInspectorFromRedisClient(rc).ArchiveTask(queue, info.ID); err != nil {
		t.Fatal(err)
	}
	audit := &auditBuffer{}
	h, err := dashboard.New(dashboard.Config{RedisClient: rc, Guard: testGuard(t, audit), Writable: writable})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(dashboard.DefaultRootPath, h)
	log := &requestLog{}
	srv := httptest.NewServer(log.wrap(mux))
	t.Cleanup(srv.Close)
	return &env{srv: srv, queue: queue, taskID: info.ID, log: log, audit: audit}
}

type auth int

const (
	noAuth auth = iota
	basicAuth
	bearerAuth
	wrongBasic
	wrongBearer
	emptyBasic
	supportBasic
)

func (e *env) do(t *testing.T, method, path string, a auth, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	switch a {
	case basicAuth:
		req.SetBasicAuth("ops", opsKey)
	case bearerAuth:
		req.Header.Set("Authorization", "Bearer "+opsKey)
	case wrongBasic:
		req.SetBasicAuth(opsKey, "not-the-key")
	case wrongBearer:
		req.Header.Set("Authorization", "Bearer "+opsKey+"x")
	case emptyBasic:
		req.SetBasicAuth("ops", "")
	case supportBasic:
		req.SetBasicAuth("anyone", supportKey)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, false)
	paths := []string{
		"/monitoring/",
		"/monitoring/queues/" + e.queue + "?status=archived",
		"/monitoring/static/js/main.5adda2da.chunk.js",
		"/monitoring/favicon.ico",
		"/monitoring/api/queues",
		"/monitoring/api/queues/" + e.queue + "/archived_tasks",
		"/monitoring/api/redis_info",
	}
	for _, p := range paths {
		for _, a := range []auth{noAuth, wrongBasic, wrongBearer, emptyBasic} {
			code, hdr, body := e.do(t, http.MethodGet, p, a, nil)
			if code != http.StatusUnauthorized {
				t.Errorf("GET %s with auth %d: %d, want 401", p, a, code)
			}
			if got := hdr.Get("WWW-Authenticate"); got != `Basic realm="postbud"` {
				t.Errorf("GET %s: WWW-Authenticate %q", p, got)
			}
			if strings.Contains(body, e.queue) || strings.Contains(body, "<script") {
				t.Errorf("GET %s without credentials leaks the dashboard: %.200s", p, body)
			}
		}
		for _, a := range []auth{basicAuth, bearerAuth} {
			code, hdr, body := e.do(t, http.MethodGet, p, a, nil)
			if code != http.StatusOK {
				t.Errorf("GET %s with auth %d: %d, want 200: %.200s", p, a, code, body)
			}
			if hdr.Get("Cache-Control") != "no-store" || hdr.Get("X-Frame-Options") != "DENY" {
				t.Errorf("GET %s: missing security headers: %v", p, hdr)
			}
		}
	}
	// The UI knows its root path and that it is read-only.
	_, _, body := e.do(t, http.MethodGet, "/monitoring/", basicAuth, nil)
	if !strings.Contains(body, `FLAG_ROOT_PATH="\/monitoring"`) || !strings.Contains(body, `FLAG_READ_ONLY="true"`) {
		t.Errorf("index page does not carry the root path and read-only flag: %.600s", body)
	}
}

func TestArchivedTaskPayloadIsRedacted(t *testing.T) {
	e := newEnv(t, false)
	for _, p := range []string{
		"/monitoring/api/queues/" + e.queue + "/archived_tasks",
		"/monitoring/api/queues/" + e.queue + "/tasks/" + e.taskID,
	} {
		code, _, body := e.do(t, http.MethodGet, p, bearerAuth, nil)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
		if !strings.Contains(body, messageID) || !strings.Contains(body, dispatcher.TypeInbound) {
			t.Errorf("GET %s lacks the task type or message id: %s", p, body)
		}
		for _, secret := range []string{cpr, "0101011234", "Skattestyrelsen", "årsopgørelse", "recipient"} {
			if strings.Contains(body, secret) {
				t.Errorf("GET %s shows %q: %s", p, secret, body)
			}
		}
	}
}

func TestReadOnly(t *testing.T) {
	e := newEnv(t, false)
	q := "/monitoring/api/queues/" + e.queue
	writes := []struct{ method, path string }{
		{http.MethodPost, q + "/archived_tasks/" + e.taskID + ":run"},
		{http.MethodDelete, q + "/archived_tasks/" + e.taskID},
		{http.MethodDelete, q + "/archived_tasks:delete_all"},
		{http.MethodPost, q + "/archived_tasks:run_all"},
		{http.MethodPost, q + ":pause"},
		{http.MethodDelete, q},
		{http.MethodPut, q},
		{http.MethodPatch, "/monitoring/"},
		{http.MethodOptions, q},
		{http.MethodPost, "/monitoring/api/no-such-endpoint"},
	}
	for _, w := range writes {
		code, _, body := e.do(t, w.method, w.path, basicAuth, nil)
		if code != http.StatusForbidden {
			t.Errorf("%s %s: %d, want 403: %s", w.method, w.path, code, body)
		}
		// Without credentials it stays 401: nothing is revealed.
		if code, _, _ := e.do(t, w.method, w.path, noAuth, nil); code != http.StatusUnauthorized {
			t.Errorf("%s %s without credentials: %d, want 401", w.method, w.path, code)
		}
	}
	// The archived task is still there.
	code, _, body := e.do(t, http.MethodGet, q+"/tasks/"+e.taskID, bearerAuth, nil)
	if code != http.StatusOK || !strings.Contains(body, `"state":"archived"`) {
		t.Errorf("archived task after refused writes: %d %s", code, body)
	}
	if code, _, _ := e.do(t, http.MethodHead, "/monitoring/api/queues", bearerAuth, nil); code == http.StatusForbidden || code == http.StatusUnauthorized {
		t.Errorf("HEAD refused: %d", code)
	}
}

func TestWritable(t *testing.T) {
	e := newEnv(t, true)
	q := "/monitoring/api/queues/" + e.queue
	// A cross-site request (a forged form riding on the browser's Basic
	// credentials) is refused.
	code, _, body := e.do(t, http.MethodPost, q+"/archived_tasks/"+e.taskID+":run", basicAuth,
		map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
	if code != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403: %s", code, body)
	}
	// Without credentials: 401.
	if code, _, _ := e.do(t, http.MethodPost, q+"/archived_tasks/"+e.taskID+":run", noAuth, nil); code != http.StatusUnauthorized {
		t.Errorf("POST without credentials: %d, want 401", code)
	}
	// Same-origin, authenticated: the archived task is run (made pending).
	code, _, body = e.do(t, http.MethodPost, q+"/archived_tasks/"+e.taskID+":run", basicAuth,
		map[string]string{"Sec-Fetch-Site": "same-origin"})
	if code/100 != 2 {
		t.Fatalf("same-origin POST: %d %s", code, body)
	}
	code, _, body = e.do(t, http.MethodGet, q+"/tasks/"+e.taskID, bearerAuth, nil)
	if code != http.StatusOK || !strings.Contains(body, `"state":"pending"`) {
		t.Errorf("task after run: %d %s", code, body)
	}
	_, _, body = e.do(t, http.MethodGet, "/monitoring/", basicAuth, nil)
	if !strings.Contains(body, `FLAG_READ_ONLY="false"`) {
		t.Errorf("index page of a writable dashboard: %.600s", body)
	}
}

func TestNew(t *testing.T) {
	r := redistest.New(t)
	key := testGuard(t, nil)
	for _, tc := range []struct {
		name string
		cfg  dashboard.Config
		want string // in the error; "" for none
	}{
		{"ok", dashboard.Config{RedisClient: r.Client, Guard: key}, ""},
		{"other root", dashboard.Config{RedisClient: r.Client, Guard: key, RootPath: "/ops/asynq"}, ""},
		{"no key", dashboard.Config{RedisClient: r.Client}, "Guard is required"},
		{"no redis", dashboard.Config{Guard: key}, "RedisClient is required"},
		{"relative root", dashboard.Config{RedisClient: r.Client, Guard: key, RootPath: "monitoring/"}, "RootPath"},
		{"pattern root", dashboard.Config{RedisClient: r.Client, Guard: key, RootPath: "/{x}/"}, "RootPath"},
		{"bad realm", dashboard.Config{RedisClient: r.Client, Guard: key, Realm: `a"b`}, "Realm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := dashboard.New(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("New: %v, want an error about %s", err, tc.want)
			case tc.want != "" && h != nil:
				t.Fatal("New returned a handler with its error")
			}
		})
	}
	// Both errors at once.
	_, err := dashboard.New(dashboard.Config{})
	if err == nil || !strings.Contains(err.Error(), "Guard") || !strings.Contains(err.Error(), "RedisClient") {
		t.Errorf("New(zero): %v", err)
	}
}

func TestOtherRootPath(t *testing.T) {
	_, rc := listingRedis(t)
	h, err := dashboard.New(dashboard.Config{RedisClient: rc, Guard: testGuard(t, nil),
		RootPath: "/ops/asynq", Realm: "postbud-ops"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		auth bool
		code int
	}{
		{"/ops/asynq/api/queues", true, http.StatusOK},
		{"/ops/asynq/", true, http.StatusOK},
		{"/ops/asynq/api/queues", false, http.StatusUnauthorized},
		{"/ops/asynqx/api/queues", true, http.StatusNotFound},
		{"/monitoring/api/queues", true, http.StatusNotFound},
	} {
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		if tc.auth {
			req.SetBasicAuth("anyone", opsKey)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code {
			t.Errorf("GET %s (auth %v): %d, want %d", tc.path, tc.auth, rec.Code, tc.code)
		}
		if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") != `Basic realm="postbud-ops"` {
			t.Errorf("realm: %q", rec.Header().Get("WWW-Authenticate"))
		}
	}
}

func TestFormatPayload(t *testing.T) {
	upper := strings.ToUpper(messageID)
	for _, tc := range []struct {
		name, typ, payload, want string
	}{
		{"delivery", dispatcher.TypeDelivery,
			`{"c":"` + citizen + `","m":"` + messageID + `","d":"dl-1","ch":"email","x":1767000000}`,
			`{"type":"postbud:delivery","message_id":"` + messageID + `"}`},
		{"sync", dispatcher.TypeSync, `{"c":"` + citizen + `","m":"` + upper + `","p":"e-boks"}`,
			`{"type":"postbud:sync","message_id":"` + messageID + `"}`},
		{"badge", dispatcher.TypeBadge, `{"c":"` + citizen + `","m":"` + messageID + `"}`,
			`{"type":"postbud:badge","message_id":"` + messageID + `"}`},
		{"event letter", dispatcher.TypeEvent,
			`{"id":"e1","type":"message.received","source":"core","c":"` + citizen + `","b":"2001-01-01",` +
				`"message":{"message_id":"` + messageID + `","sender_name":"Skattestyrelsen","notification":"Hej Jane"}}`,
			`{"type":"postbud:event","message_id":"` + messageID + `"}`},
		{"event read", dispatcher.TypeEvent,
			`{"id":"e2","type":"message.read","c":"` + citizen + `","read":{"message_id":"` + messageID + `","platform":"mit.dk"}}`,
			`{"type":"postbud:event","message_id":"` + messageID + `"}`},
		{"event contact", dispatcher.TypeEvent,
			`{"id":"e3","type":"contact.updated","c":"` + citizen + `","contact":{"email":"jane@example.dk","mobile":"+4512345678"}}`,
			`{"type":"postbud:event"}`},
		{"inbound with CPR", dispatcher.TypeInbound, inboundPayload,
			`{"type":"postbud:inbound","message_id":"` + messageID + `"}`},
		{"inbound contact", dispatcher.TypeInbound,
			`{"id":"e4","type":"contact.updated","data":{"cpr":"` + cpr + `","email":"jane@example.dk"}}`,
			`{"type":"postbud:inbound"}`},
		{"inbound with a CPR as message id", dispatcher.TypeInbound,
			`{"data":{"message_id":"` + cpr + `","recipient":{"cpr":"` + cpr + `"}}}`,
			`{"type":"postbud:inbound"}`},
		{"message id not a string", dispatcher.TypeDelivery, `{"m":12345678901}`, `{"type":"postbud:delivery"}`},
		{"message id an object", dispatcher.TypeDelivery, `{"m":{"cpr":"` + cpr + `"}}`, `{"type":"postbud:delivery"}`},
		{"data not an object", dispatcher.TypeInbound, `{"data":"` + cpr + `"}`, dashboard.Hidden},
		{"unparseable", dispatcher.TypeDelivery, `{"m":"` + messageID + `",` + cpr, dashboard.Hidden},
		{"not JSON", dispatcher.TypeBadge, cpr, dashboard.Hidden},
		{"empty", dispatcher.TypeSync, ``, dashboard.Hidden},
		{"binary", dispatcher.TypeEvent, "\xff\x00\x01", dashboard.Hidden},
		{"foreign type", "email:send", `{"to":"jane@example.dk","m":"` + messageID + `"}`, dashboard.Hidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := dashboard.FormatPayload(tc.typ, []byte(tc.payload))
			if got != tc.want {
				t.Errorf("FormatPayload(%s, %s)\n got %s\nwant %s", tc.typ, tc.payload, got, tc.want)
			}
			for _, secret := range []string{cpr, "0101011234", citizen, "jane@example.dk", "4512345678", "Skattestyrelsen", "Hej"} {
				if strings.Contains(got, secret) {
					t.Errorf("FormatPayload shows %q: %s", secret, got)
				}
			}
			if got != dashboard.Hidden && !json.Valid([]byte(got)) {
				t.Errorf("FormatPayload = %s: not JSON", got)
			}
		})
	}
}

func TestFormatResult(t *testing.T) {
	if got := dashboard.FormatResult(dispatcher.TypeDelivery, nil); got != "" {
		t.Errorf("no result: %q", got)
	}
	if got := dashboard.FormatResult(dispatcher.TypeDelivery, []byte(`{"to":"jane@example.dk"}`)); got != dashboard.Hidden {
		t.Errorf("result: %q, want %q", got, dashboard.Hidden)
	}
}

// TestRolesAndAudit: a support key reads the dashboard but cannot write,
// even to a writable one; an admin key can. Every request, refused or
// not, is in the audit log with the key's name and the status answered.
func TestRolesAndAudit(t *testing.T) {
	e := newEnv(t, true)
	run := "/monitoring/api/queues/" + e.queue + "/archived_tasks/" + e.taskID + ":run"
	steps := []struct {
		method, path string
		a            auth
		code         int
		key          string
	}{
		{http.MethodGet, "/monitoring/api/queues", supportBasic, http.StatusOK, "helpdesk"},
		{http.MethodPost, run, supportBasic, http.StatusForbidden, "helpdesk"},
		{http.MethodGet, "/monitoring/api/queues", wrongBasic, http.StatusUnauthorized, ""},
		{http.MethodPost, run, basicAuth, http.StatusNoContent, "ops"},
	}
	for i, s := range steps {
		code, _, body := e.do(t, s.method, s.path, s.a, nil)
		if code != s.code {
			t.Fatalf("%s %s: %d, want %d: %.200s", s.method, s.path, code, s.code, body)
		}
		lines := e.audit.waitLines(t, i+1)
		if len(lines) != i+1 {
			t.Fatalf("after %d requests, %d audit lines", i+1, len(lines))
		}
		got := lines[i]
		if got["audit"] != true || got["key"] != s.key || got["status"] != float64(s.code) ||
			got["method"] != s.method || got["route"] != dashboard.DefaultRootPath {
			t.Errorf("%s %s: audit line %v, want key %q status %d", s.method, s.path, got, s.key, s.code)
		}
	}
	all := e.audit.String()
	if strings.Contains(all, cpr) || strings.Contains(all, strings.ReplaceAll(cpr, "-", "")) || strings.Contains(all, e.taskID) {
		t.Errorf("the audit log holds more than the route: %s", all)
	}
}
