package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestServeRefusesEvictingRedis runs a redis-server of its own with
// maxmemory-policy allkeys-lru: serve refuses to start, and starts with the
// explicit override.
func TestServeRefusesEvictingRedis(t *testing.T) {
	srv := redistest.StartServer(t, "--maxmemory-policy", "allkeys-lru")
	rt := &redistest.Env{URL: srv.URL, Prefix: "sc", QueuePrefix: "scq"}
	smtp := emailtest.New(t)
	err := run(context.Background(), []string{"serve"}, testEnv(rt, smtp, nil), nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `maxmemory-policy is "allkeys-lru"`) || !strings.Contains(err.Error(), "POSTBUD_ALLOW_EVICTION") {
		t.Fatalf("serve on an evicting Redis: %v, want the self-check's refusal naming the override", err)
	}
	logs := &syncBuffer{}
	d := start(t, testEnv(rt, smtp, map[string]string{"POSTBUD_ALLOW_EVICTION": "true"}), logs)
	d.stop(t)
	if !strings.Contains(logs.String(), "Redis may evict keys") {
		t.Error("the override is not logged")
	}
}
