package main

import (
	"context"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestServeRefusesEvictingRedis runs a redis-server of its own with
// maxmemory-policy allkeys-lru: serve refuses to start, and starts with the
// explicit override.
func TestServeRefusesEvictingRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed: the self-check needs a Redis of its own to configure")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--maxmemory-policy", "allkeys-lru")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	defer rdb.Close()
	eventually(t, "redis-server to answer", 10*time.Second, func() bool { return rdb.Ping(ctx).Err() == nil })
	rt := &redistest.Env{URL: "redis://127.0.0.1:" + strconv.Itoa(port) + "/0", Prefix: "sc", QueuePrefix: "scq"}
	smtp := emailtest.New(t)
	err = run(context.Background(), []string{"serve"}, testEnv(rt, smtp, nil), nil, io.Discard, io.Discard)
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
