package main

import (
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

// newRedisClient returns the go-redis client postbud's store, queue and
// dashboard share.
func newRedisClient(r config.Redis) redis.UniversalClient {
	if r.Sentinel() {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: r.SentinelMaster, SentinelAddrs: r.SentinelAddrs,
			SentinelPassword: r.SentinelPassword, Username: r.Username, Password: r.Password, DB: r.DB,
			TLSConfig: r.TLSConfig()})
	}
	return redis.NewClient(&redis.Options{Addr: r.Addr, Username: r.Username, Password: r.Password, DB: r.DB,
		TLSConfig: r.TLSConfig()})
}
