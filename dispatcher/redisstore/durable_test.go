package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestReplicasWithoutReplica: the test Redis has no replica, so asking
// for one fails within the timeout instead of pretending.
func TestReplicasWithoutReplica(t *testing.T) {
	env := redistest.New(t)
	if env.Embedded {
		t.Skip("WAIT needs a real Redis")
	}
	if n, _ := env.Client.Info(context.Background(), "replication").Result(); containsReplica(n) {
		t.Skip("the test Redis has replicas")
	}
	r := redisstore.NewReplicas(env.Client, env.Prefix, 1, 50*time.Millisecond)
	t.Cleanup(func() { r.Close() })
	err := r.WaitReplicas(context.Background())
	if !errors.Is(err, redisstore.ErrNotReplicated) {
		t.Fatalf("WaitReplicas without a replica = %v, want ErrNotReplicated", err)
	}
	off := redisstore.NewReplicas(env.Client, env.Prefix, 0, 50*time.Millisecond)
	t.Cleanup(func() { off.Close() })
	if err := off.WaitReplicas(context.Background()); err != nil {
		t.Fatalf("WaitReplicas(0 replicas) = %v, want nil", err)
	}
}

func containsReplica(info string) bool {
	var n int
	for _, line := range splitLines(info) {
		if _, err := fmt.Sscanf(line, "connected_slaves:%d", &n); err == nil {
			return n > 0
		}
	}
	return false
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// TestReplicasGroupCommit runs a private primary and replica: a write made
// on another connection (as asynq enqueues) is on the replica once
// WaitReplicas returns, and concurrent waiters share WAITs.
func TestReplicasGroupCommit(t *testing.T) {
	primary, replica := startPair(t)
	ctx := context.Background()
	r := redisstore.NewReplicas(primary, "t", 1, time.Second)
	t.Cleanup(func() { r.Close() })

	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			key := "k" + strconv.Itoa(i)
			if err := primary.Set(ctx, key, "v", 0).Err(); err != nil {
				errs <- err
				return
			}
			if err := r.WaitReplicas(ctx); err != nil {
				errs <- err
				return
			}
			// Read on the replica at once: no polling, it must be there.
			if v, err := replica.Get(ctx, key).Result(); err != nil || v != "v" {
				errs <- fmt.Errorf("%s on the replica after WaitReplicas: %q, %v", key, v, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := r.Rounds(); got >= n {
		t.Errorf("%d waiters took %d WAITs, want fewer (group commit)", n, got)
	}
}

// startPair starts a primary and a replica of it on free loopback ports.
func startPair(t *testing.T) (primary, replica *redis.Client) {
	t.Helper()
	start := func(extra ...string) *redis.Client {
		srv := redistest.StartServer(t, append([]string{"--protected-mode", "no"}, extra...)...)
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
		t.Cleanup(func() { c.Close() })
		return c
	}
	primary = start("--repl-diskless-sync-delay", "0")
	_, port, _ := net.SplitHostPort(primary.Options().Addr)
	replica = start("--replicaof", "127.0.0.1", port)
	waitFor(t, "the replica to sync", func() bool {
		info, _ := replica.Info(context.Background(), "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	return primary, replica
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
