package main

import (
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/config"
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
