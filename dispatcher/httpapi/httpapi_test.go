package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/httpapi"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

func newAPI(t *testing.T, rdb redis.UniversalClient, prefix string) *httpapi.API {
	t.Helper()
	return newAPIConfig(t, rdb, prefix, nil)
}

// newAPIConfig is newAPI with the configuration changed by edit.
func newAPIConfig(t *testing.T, rdb redis.UniversalClient, prefix string, edit func(*httpapi.Config)) *httpapi.API {
	t.Helper()
	sealer := seal.Ephemeral()
	store := redisstore.New(rdb, redisstore.Options{Prefix: prefix, Sealer: sealer})
	t.Cleanup(func() { store.Close() })
	keyer, err := dispatcher.NewKeyer([]byte("test-pseudonymisation-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(rdb)
	d, err := dispatcher.New(dispatcher.Config{Store: store, Keyer: keyer, Sealer: sealer, Enqueuer: client,
		Queues: dispatcher.DefaultQueues(prefix), MailboxURL: "https://www.borger.dk/digitalpost"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := httpapi.Config{Dispatcher: d, Platforms: []httpapi.Platform{
		{Name: event.Core, KeySHA256: httpapi.HashKey("core-key-0123456789")}}}
	if edit != nil {
		edit(&cfg)
	}
	return httpapi.New(cfg)
}

func get(t *testing.T, h http.Handler, path string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code
}

func TestHealthAndDraining(t *testing.T) {
	env := redistest.New(t)
	api := newAPI(t, env.Client, env.Prefix)
	if c := get(t, api, "/healthz"); c != http.StatusOK {
		t.Errorf("/healthz %d", c)
	}
	if c := get(t, api, "/readyz"); c != http.StatusOK {
		t.Errorf("/readyz %d, want 200", c)
	}
	api.Drain()
	if c := get(t, api, "/readyz"); c != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining %d, want 503", c)
	}
	if c := get(t, api, "/healthz"); c != http.StatusOK {
		t.Errorf("/healthz while draining %d, want 200 (the process is up)", c)
	}
}

func TestRedisDownAnswers503(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	api := newAPI(t, rdb, "down")
	if c := get(t, api, "/readyz"); c != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down %d, want 503", c)
	}
	body := `{"id":"e1","type":"contact.updated","occurred_at":"2026-11-23T10:00:00Z","source":"core",` +
		`"data":{"cpr":"010190-1234","email":"a@b.dk"}}`
	req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer core-key-0123456789")
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("POST with Redis down: %d Retry-After=%q, want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if strings.Contains(rec.Body.String(), "0101901234") || strings.Contains(rec.Body.String(), "127.0.0.1:1") {
		t.Errorf("the 503 body leaks: %s", rec.Body.String())
	}
}

// TestPlatformRateLimit: a platform over its rate is answered 429 with
// Retry-After; another platform's budget is its own.
func TestPlatformRateLimit(t *testing.T) {
	env := redistest.New(t)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) // the bucket does not refill
	api := newAPIConfig(t, env.Client, env.Prefix, func(c *httpapi.Config) {
		c.Now = func() time.Time { return now }
		c.Platforms = []httpapi.Platform{
			{Name: event.Core, KeySHA256: httpapi.HashKey("core-key-0123456789"), Rate: 1},
			{Name: event.EBoks, KeySHA256: httpapi.HashKey("eboks-key-0123456789"), Rate: 1}}
	})
	// The burst is one full batch: 500 events (unparsable ones are
	// answered per event, but they count).
	full := `{"events":[{}` + strings.Repeat(`,{}`, httpapi.MaxBatchEvents-1) + `]}`
	post := func(key, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		return rec
	}
	if rec := post("core-key-0123456789", "/v1/events/batch", full); rec.Code != http.StatusAccepted {
		t.Fatalf("core's first batch: %d, want 202", rec.Code)
	}
	rec := post("core-key-0123456789", "/v1/events", `{}`)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("core over its rate: %d Retry-After=%q, want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if rec := post("eboks-key-0123456789", "/v1/events/batch", full); rec.Code != http.StatusAccepted {
		t.Errorf("e-boks while core is limited: %d, want 202 (its own budget)", rec.Code)
	}
}

// TestNotReplicatedAnswers503: an accepted event that did not reach the
// required replicas is not promised: 503 with Retry-After, and the retry is
// recognised as a duplicate.
func TestNotReplicatedAnswers503(t *testing.T) {
	env := redistest.New(t)
	if env.Embedded {
		t.Skip("WAIT needs a real Redis")
	}
	// The test Redis has no replica: one is never reached.
	replicas := redisstore.NewReplicas(env.Client, env.Prefix, 1, 20*time.Millisecond)
	t.Cleanup(func() { replicas.Close() })
	api := newAPIConfig(t, env.Client, env.Prefix, func(c *httpapi.Config) { c.WaitReplicas = replicas.WaitReplicas })
	body := `{"id":"e1","type":"contact.updated","occurred_at":"2026-11-23T10:00:00Z","source":"core",` +
		`"data":{"cpr":"010190-1234","email":"a@b.dk"}}`
	for _, path := range []string{"/v1/events", "/v1/events/batch"} {
		b := body
		if path == "/v1/events/batch" {
			b = `{"events":[` + body + `]}`
		}
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(b))
		req.Header.Set("Authorization", "Bearer core-key-0123456789")
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s without the replica: %d Retry-After=%q, want 503 with Retry-After", path, rec.Code, rec.Header().Get("Retry-After"))
		}
	}
}
