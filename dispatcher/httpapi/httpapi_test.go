package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/httpapi"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

func newAPI(t *testing.T, rdb redis.UniversalClient, prefix string) *httpapi.API {
	t.Helper()
	return newAPIConfig(t, rdb, prefix, nil)
}

// newAPIConfig is newAPI with the configuration changed by edit.
func newAPIConfig(t *testing.T, rdb redis.UniversalClient, prefix string, edit func(*httpapi.Config)) *httpapi.API {
	t.Helper()
	store := redisstore.New(rdb, redisstore.Options{Prefix: prefix})
	t.Cleanup(func() { store.Close() })
	keyer, err := dispatcher.NewKeyer([]byte("test-pseudonymisation-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(rdb)
	d, err := dispatcher.New(dispatcher.Config{Store: store, Keyer: keyer, Enqueuer: client,
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
