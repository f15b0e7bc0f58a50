package main

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/config"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestStartFence: without Sentinel there is no fence; with it, the fence
// serve gives the store follows the configured sentinels, and closes and
// opens again around a real planned failover (a primary, a replica and a
// sentinel of the test's own).
func TestStartFence(t *testing.T) {
	ctx := context.Background()
	if f, stop := startFence(ctx, config.Redis{Addr: "127.0.0.1:6379"}, slog.New(slog.DiscardHandler)); f != nil {
		stop()
		t.Fatal("a fence without Sentinel")
	}
	if testing.Short() {
		t.Skip("a real failover takes a few seconds")
	}
	primary := redistest.StartServer(t, "--protected-mode", "no")
	_, port, _ := net.SplitHostPort(primary.Addr)
	replica := redistest.StartServer(t, "--protected-mode", "no", "--replicaof", "127.0.0.1", port)
	sen := redistest.StartSentinel(t, "m", primary.Addr, 1)
	sc := redis.NewSentinelClient(&redis.Options{Addr: sen.Addr})
	t.Cleanup(func() { sc.Close() })
	eventually(t, "the sentinel to see the replica", 15*time.Second, func() bool {
		reps, err := sc.Replicas(ctx, "m").Result()
		return err == nil && len(reps) == 1 && reps[0]["master-link-status"] == "ok"
	})

	f, stop := startFence(ctx, config.Redis{SentinelMaster: "m", SentinelAddrs: []string{sen.Addr}}, slog.New(slog.DiscardHandler))
	t.Cleanup(stop)
	if f == nil {
		t.Fatal("no fence with Sentinel")
	}
	plain := redis.NewClient(&redis.Options{Addr: sen.Addr})
	t.Cleanup(func() { plain.Close() })
	eventually(t, "the fence to subscribe", 15*time.Second, func() bool {
		list, err := plain.ClientList(ctx).Result()
		return err == nil && strings.Contains(list, "psub=1")
	})
	before := f.Token()
	if err := sc.Failover(ctx, "m").Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	eventually(t, "the fence to close", 15*time.Second, func() bool { return f.Broken(before) })
	if err := f.Wait(wctx); err != nil {
		t.Fatalf("the fence did not open after the failover: %v", err)
	}
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	t.Cleanup(func() { rc.Close() })
	if role, _ := rc.Do(ctx, "ROLE").Slice(); len(role) == 0 || role[0] != "master" {
		t.Fatalf("the fence opened, but the replica's ROLE is %v", role)
	}
}
