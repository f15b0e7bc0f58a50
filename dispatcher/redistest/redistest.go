// Package redistest gives each test its own corner of a real Redis: the
// server at POSTBUD_TEST_REDIS_URL (default redis://127.0.0.1:6379/0), with
// a key prefix and asynq queue names no other test uses, cleaned up after.
//
// The Redis itself is shared: CI runs every package's tests at once on it.
// What a test reads Redis-wide (asynq's server or queue lists, INFO
// commandstats, DBSIZE, KEYS *) holds other tests' entries too: filter it
// by the test's prefixes, or take a redis-server of the test's own
// (StartServer).
//
// When that Redis does not answer, tests run on an embedded miniredis and
// say so once — unless POSTBUD_TEST_REQUIRE_REDIS=1 (as in CI), when a
// missing Redis fails the test.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Env is one test's Redis.
type Env struct {
	// Client is connected to the test's Redis.
	Client *redis.Client
	// URL is the Redis URL, for configuration under test.
	URL string
	// Prefix is the test's key prefix (POSTBUD_KEY_PREFIX).
	Prefix string
	// QueuePrefix is the test's asynq queue prefix (POSTBUD_QUEUE_PREFIX).
	QueuePrefix string
	// Embedded is true when the test runs on miniredis.
	Embedded bool
	// Mini is the embedded server, when Embedded.
	Mini *miniredis.Miniredis
}

var (
	once     sync.Once
	realOK   bool
	realURL  string
	checkErr error
)

func probe() {
	realURL = os.Getenv("POSTBUD_TEST_REDIS_URL")
	if realURL == "" {
		realURL = "redis://127.0.0.1:6379/0"
	}
	opt, err := redis.ParseURL(realURL)
	if err != nil {
		checkErr = err
		return
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	checkErr = c.Ping(ctx).Err()
	realOK = checkErr == nil
	if !realOK && os.Getenv("POSTBUD_TEST_REQUIRE_REDIS") != "1" {
		fmt.Fprintf(os.Stderr, "redistest: no Redis at %s (%v): running tests on the embedded miniredis\n", realURL, checkErr)
	}
}

// Real reports whether tests run on a real Redis server.
func Real() bool {
	once.Do(probe)
	return realOK
}

func random() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// New returns the test's Redis.
func New(t testing.TB) *Env {
	t.Helper()
	once.Do(probe)
	id := random()
	e := &Env{Prefix: "t" + id, QueuePrefix: "tq" + id}
	if realOK {
		opt, _ := redis.ParseURL(realURL)
		opt.PoolSize = 64
		e.Client = redis.NewClient(opt)
		e.URL = realURL
	} else {
		if os.Getenv("POSTBUD_TEST_REQUIRE_REDIS") == "1" {
			t.Fatalf("POSTBUD_TEST_REQUIRE_REDIS=1 but Redis at %s does not answer: %v", realURL, checkErr)
		}
		e.Embedded = true
		e.Mini = miniredis.NewMiniRedis()
		e.Mini.ClockTTL(true)
		if err := e.Mini.Start(); err != nil {
			t.Fatal(err)
		}
		e.Client = redis.NewClient(&redis.Options{Addr: e.Mini.Addr()})
		e.URL = "redis://" + e.Mini.Addr()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if !e.Embedded {
			for _, pat := range []string{e.Prefix + ":*", "asynq:{" + e.QueuePrefix + ".*"} {
				iter := e.Client.Scan(ctx, 0, pat, 1000).Iterator()
				var keys []string
				for iter.Next(ctx) {
					keys = append(keys, iter.Val())
				}
				for len(keys) > 0 {
					n := min(len(keys), 500)
					e.Client.Unlink(ctx, keys[:n]...)
					keys = keys[n:]
				}
			}
			for _, q := range []string{"urgent", "normal", "bulk"} {
				e.Client.SRem(ctx, "asynq:queues", e.QueuePrefix+"."+q)
			}
		}
		e.Client.Close()
		if e.Mini != nil {
			e.Mini.Close()
		}
	})
	return e
}

// Contents returns every key of the test (its prefix and its queues) with
// what it holds as text: a string's value; a hash's, list's, set's or
// sorted set's members (fields and values, members and scores), a
// stream's entries, one per line. Privacy scans read it (Leaks): unlike
// DUMP, whose RDB form may compress a string, it shows every value as it
// is, and integers in their decimal form.
func (e *Env) Contents(ctx context.Context) (map[string]string, error) {
	keys, err := e.Client.Keys(ctx, "*").Result()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, k := range keys {
		if !strings.HasPrefix(k, e.Prefix) && !strings.Contains(k, e.QueuePrefix) {
			continue
		}
		var vals []string
		switch typ, _ := e.Client.Type(ctx, k).Result(); typ {
		case "string":
			v, _ := e.Client.Get(ctx, k).Result()
			vals = []string{v}
		case "hash":
			for f, v := range e.Client.HGetAll(ctx, k).Val() {
				vals = append(vals, f, v)
			}
		case "list":
			vals = e.Client.LRange(ctx, k, 0, -1).Val()
		case "set":
			vals = e.Client.SMembers(ctx, k).Val()
		case "zset":
			for _, z := range e.Client.ZRangeWithScores(ctx, k, 0, -1).Val() {
				vals = append(vals, fmt.Sprint(z.Member), strconv.FormatFloat(z.Score, 'f', -1, 64))
			}
		case "stream":
			for _, m := range e.Client.XRange(ctx, k, "-", "+").Val() {
				vals = append(vals, fmt.Sprint(m.Values))
			}
		default: // gone meanwhile
			continue
		}
		out[k] = strings.Join(vals, "\n")
	}
	return out, nil
}
