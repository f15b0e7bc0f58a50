package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

const masterName = "chaos"

// redisNode is one redis-server with its own port and directory.
type redisNode struct {
	port int
	proc *Proc
}

func (n *redisNode) addr() string { return "127.0.0.1:" + strconv.Itoa(n.port) }

// Redis is the Redis the replicas use: one server, or a primary and a
// replica watched by three sentinels.
type Redis struct {
	nodes     []*redisNode // nodes[0] starts as primary
	sentinels []*redisNode
}

// startRedis starts a single server, or with sentinel a primary, replicas
// of it (at least one) and three sentinels. fsync is everysec or always.
//
// minReplicas > 0 sets min-replicas-to-write on every node: a primary left
// without that many replicas (a demoted one, before Sentinel reconfigures
// it) refuses writes instead of taking writes the failover discards.
func startRedis(ctx context.Context, procs *Procs, dir, fsync string, sentinel bool, replicas, minReplicas int) (*Redis, error) {
	r := &Redis{}
	n := 1
	if sentinel {
		n = 1 + max(1, replicas)
	}
	for i := range n {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		d := filepath.Join(dir, fmt.Sprintf("redis%d", i))
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		args := []string{"redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", d,
			"--appendonly", "yes", "--appendfsync", fsync, "--save", "", "--protected-mode", "no"}
		if minReplicas > 0 {
			args = append(args, "--min-replicas-to-write", strconv.Itoa(minReplicas), "--min-replicas-max-lag", "10")
		}
		if i > 0 {
			args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(r.nodes[0].port))
		}
		node := &redisNode{port: port, proc: procs.New(fmt.Sprintf("redis%d", i), filepath.Join(d, "log"), nil, args...)}
		if err := node.proc.Start(); err != nil {
			return nil, err
		}
		if err := waitPing(ctx, node.addr()); err != nil {
			return nil, err
		}
		r.nodes = append(r.nodes, node)
	}
	if !sentinel {
		return r, nil
	}
	for i := range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		d := filepath.Join(dir, fmt.Sprintf("sentinel%d", i))
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		conf := filepath.Join(d, "sentinel.conf")
		text := fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nprotected-mode no\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s 2000\n"+
			"sentinel failover-timeout %s 10000\n"+
			"sentinel parallel-syncs %s 1\n", port, d, masterName, r.nodes[0].port, masterName, masterName, masterName)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		node := &redisNode{port: port, proc: procs.New(fmt.Sprintf("sentinel%d", i), filepath.Join(d, "log"), nil,
			"redis-server", conf, "--sentinel")}
		if err := node.proc.Start(); err != nil {
			return nil, err
		}
		if err := waitPing(ctx, node.addr()); err != nil {
			return nil, err
		}
		r.sentinels = append(r.sentinels, node)
	}
	// The sentinels must know the replica and each other before a
	// failover can succeed.
	err := waitFor(ctx, 30*time.Second, "the sentinels to see the replica and each other", func() bool {
		for _, s := range r.sentinels {
			c := redis.NewSentinelClient(&redis.Options{Addr: s.addr()})
			reps, err1 := c.Replicas(ctx, masterName).Result()
			sens, err2 := c.Sentinels(ctx, masterName).Result()
			c.Close()
			if err1 != nil || err2 != nil || len(reps) < n-1 || len(sens) < 2 {
				return false
			}
		}
		return true
	})
	return r, err
}

func waitPing(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	return waitFor(ctx, 15*time.Second, "redis at "+addr, func() bool { return c.Ping(ctx).Err() == nil })
}

// URL is POSTBUD_REDIS_URL for the replicas.
func (r *Redis) URL() string {
	if len(r.sentinels) == 0 {
		return "redis://" + r.nodes[0].addr() + "/0"
	}
	var addrs []string
	for _, s := range r.sentinels {
		addrs = append(addrs, s.addr())
	}
	return "redis-sentinel://" + strings.Join(addrs, ",") + "/0?master=" + masterName
}

// Client is the harness's own client (queue inspection).
func (r *Redis) Client() redis.UniversalClient {
	if len(r.sentinels) == 0 {
		return redis.NewClient(&redis.Options{Addr: r.nodes[0].addr()})
	}
	var addrs []string
	for _, s := range r.sentinels {
		addrs = append(addrs, s.addr())
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: masterName, SentinelAddrs: addrs})
}

// primary is the node the sentinels name as primary (nodes[0] without
// sentinels).
func (r *Redis) primary(ctx context.Context) (*redisNode, error) {
	if len(r.sentinels) == 0 {
		return r.nodes[0], nil
	}
	for _, s := range r.sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.addr()})
		addr, err := c.GetMasterAddrByName(ctx, masterName).Result()
		c.Close()
		if err != nil || len(addr) != 2 {
			continue
		}
		for _, n := range r.nodes {
			if strconv.Itoa(n.port) == addr[1] {
				return n, nil
			}
		}
	}
	return nil, fmt.Errorf("no sentinel names a primary")
}

// restartPrimary kills the (single) server with SIGKILL, keeps it down for
// down, and starts it again on the same port and directory.
func (r *Redis) restartPrimary(ctx context.Context, down time.Duration) error {
	n := r.nodes[0]
	if err := n.proc.Kill9(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	if err := n.proc.Start(); err != nil {
		return err
	}
	return waitPing(ctx, n.addr())
}

// failover kills the primary with SIGKILL, waits until the sentinels
// name another, and after down starts the old one again (it rejoins as a
// replica).
func (r *Redis) failover(ctx context.Context, down time.Duration) error {
	old, err := r.primary(ctx)
	if err != nil {
		return err
	}
	if err := old.proc.Kill9(); err != nil {
		return err
	}
	err = waitFor(ctx, 60*time.Second, "the sentinels to promote the replica", func() bool {
		p, err := r.primary(ctx)
		return err == nil && p != old
	})
	select {
	case <-ctx.Done():
	case <-time.After(down):
	}
	if serr := old.proc.Start(); serr != nil {
		return serr
	}
	if err != nil {
		return err
	}
	return r.waitSynced(ctx)
}

// switchover asks a sentinel for a planned SENTINEL FAILOVER and waits
// until the other node is primary.
func (r *Redis) switchover(ctx context.Context) error {
	old, err := r.primary(ctx)
	if err != nil {
		return err
	}
	c := redis.NewSentinelClient(&redis.Options{Addr: r.sentinels[0].addr()})
	defer c.Close()
	if err := c.Failover(ctx, masterName).Err(); err != nil {
		return fmt.Errorf("SENTINEL FAILOVER: %w", err)
	}
	if err := waitFor(ctx, 60*time.Second, "the planned failover", func() bool {
		p, err := r.primary(ctx)
		return err == nil && p != old
	}); err != nil {
		return err
	}
	return r.waitSynced(ctx)
}

// waitSynced waits until the sentinels see a replica again, so the next
// failover has somewhere to go.
func (r *Redis) waitSynced(ctx context.Context) error {
	return waitFor(ctx, 60*time.Second, "the old primary to rejoin as replica", func() bool {
		c := redis.NewSentinelClient(&redis.Options{Addr: r.sentinels[0].addr()})
		defer c.Close()
		reps, err := c.Replicas(ctx, masterName).Result()
		if err != nil {
			return false
		}
		for _, rep := range reps {
			if rep["flags"] == "slave" && rep["master-link-status"] == "ok" {
				return true
			}
		}
		return false
	})
}
