package main

import (
	"crypto/tls"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/config"
)

// TestRedisOptions checks that the configuration's Redis description
// becomes the asynq and go-redis options it describes.
func TestRedisOptions(t *testing.T) {
	t.Parallel()
	single := config.Redis{Addr: "redis.example.com:6380", Username: "postbud", Password: "pw", DB: 3, TLS: true}
	sentinel := config.Redis{SentinelMaster: "mymaster", SentinelAddrs: []string{"h1:26379", "h2:26379"},
		SentinelPassword: "spw", Username: "postbud", Password: "pw", DB: 4}
	ignoreTLS := cmpopts.IgnoreUnexported(tls.Config{})

	if diff := cmp.Diff(asynq.RedisConnOpt(asynq.RedisClientOpt{Addr: "redis.example.com:6380", Username: "postbud",
		Password: "pw", DB: 3, TLSConfig: &tls.Config{ServerName: "redis.example.com", MinVersion: tls.VersionTLS12}}),
		redisConnOpt(single), ignoreTLS); diff != "" {
		t.Errorf("asynq options of a single server (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(asynq.RedisConnOpt(asynq.RedisFailoverClientOpt{MasterName: "mymaster",
		SentinelAddrs: []string{"h1:26379", "h2:26379"}, SentinelPassword: "spw", Username: "postbud", Password: "pw", DB: 4}),
		redisConnOpt(sentinel), ignoreTLS); diff != "" {
		t.Errorf("asynq options behind Sentinel (-want +got):\n%s", diff)
	}

	c := newRedisClient(single)
	defer c.Close()
	o := c.(*redis.Client).Options()
	if o.Addr != single.Addr || o.Username != "postbud" || o.Password != "pw" || o.DB != 3 ||
		o.TLSConfig == nil || o.TLSConfig.ServerName != "redis.example.com" {
		t.Errorf("go-redis options of a single server: addr %s user %s db %d tls %v", o.Addr, o.Username, o.DB, o.TLSConfig != nil)
	}
	f := newRedisClient(sentinel)
	defer f.Close()
	if fo := f.(*redis.Client).Options(); fo.DB != 4 || fo.Username != "postbud" || fo.TLSConfig != nil {
		t.Errorf("go-redis options behind Sentinel: user %s db %d tls %v", fo.Username, fo.DB, fo.TLSConfig != nil)
	}
	// Both ride out a failover instead of giving up after go-redis's
	// default of 3 quick retries.
	for _, o := range []*redis.Options{o, f.(*redis.Client).Options()} {
		if o.MaxRetries != redisMaxRetries || o.MaxRetryBackoff != redisMaxRetryBackoff {
			t.Errorf("go-redis retries %d, backoff up to %s; want %d, %s", o.MaxRetries, o.MaxRetryBackoff,
				redisMaxRetries, redisMaxRetryBackoff)
		}
	}
}
