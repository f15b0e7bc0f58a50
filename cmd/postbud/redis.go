package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/config"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
)

// redisConnOpt turns the configuration's Redis description into asynq's
// connection options (package publish takes them).
func redisConnOpt(r config.Redis) asynq.RedisConnOpt {
	if r.Sentinel() {
		return asynq.RedisFailoverClientOpt{MasterName: r.SentinelMaster, SentinelAddrs: r.SentinelAddrs,
			SentinelPassword: r.SentinelPassword, Username: r.Username, Password: r.Password, DB: r.DB,
			TLSConfig: r.TLSConfig()}
	}
	return asynq.RedisClientOpt{Addr: r.Addr, Username: r.Username, Password: r.Password, DB: r.DB,
		TLSConfig: r.TLSConfig()}
}

// Riding out a failover. go-redis retries a command that met READONLY (a
// demoted primary), NOREPLICAS, LOADING or a dropped connection; it drops
// a connection that answered READONLY, and the failover client asks
// Sentinel for the primary on every new connection (and closes its pool
// on +switch-master). Its default of 3 retries at most 512 ms apart gives
// up within a fraction of a second, while a failover takes Sentinel's
// down-after plus an election: a delivery whose outcome then fails to
// record is sent again by the task's retry. These retry for about 5-10 s.
const (
	redisMaxRetries      = 15
	redisMaxRetryBackoff = time.Second
)

// newRedisClient returns the go-redis client postbud's store, queue and
// dashboard share.
func newRedisClient(r config.Redis) redis.UniversalClient {
	if r.Sentinel() {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: r.SentinelMaster, SentinelAddrs: r.SentinelAddrs,
			SentinelPassword: r.SentinelPassword, Username: r.Username, Password: r.Password, DB: r.DB,
			TLSConfig: r.TLSConfig(), MaxRetries: redisMaxRetries, MaxRetryBackoff: redisMaxRetryBackoff})
	}
	return redis.NewClient(&redis.Options{Addr: r.Addr, Username: r.Username, Password: r.Password, DB: r.DB,
		TLSConfig: r.TLSConfig(), MaxRetries: redisMaxRetries, MaxRetryBackoff: redisMaxRetryBackoff})
}

// startFence watches the sentinels for failovers (redisstore.Fence) until
// ctx ends; without Sentinel there is no fence (nil: always open). stop
// waits for the watchers.
func startFence(ctx context.Context, r config.Redis, log *slog.Logger) (f *redisstore.Fence, stop func()) {
	if !r.Sentinel() {
		return nil, func() {}
	}
	f = redisstore.NewFence(redisstore.FenceOptions{Master: r.SentinelMaster, Sentinels: len(r.SentinelAddrs),
		Logger: log.With("component", "fence")})
	var clients []*redis.SentinelClient
	for _, addr := range r.SentinelAddrs {
		clients = append(clients, redis.NewSentinelClient(&redis.Options{Addr: addr, Password: r.SentinelPassword,
			TLSConfig: r.TLSConfig(), MaxRetries: -1}))
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Watch(wctx, clients, r.SentinelAddrs)
	}()
	return f, func() {
		cancel()
		<-done
		for _, c := range clients {
			c.Close()
		}
	}
}
