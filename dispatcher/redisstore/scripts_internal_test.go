package redisstore

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// TestLoadScripts: on a fresh Redis, LoadScripts loads every script, so no
// first call meets NOSCRIPT and runs twice.
func TestLoadScripts(t *testing.T) {
	srv := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { c.Close() })
	s := New(c, Options{Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	hashes := make([]string, len(allScripts))
	for i, sc := range allScripts {
		hashes[i] = sc.Hash()
	}
	if err := s.LoadScripts(t.Context()); err != nil {
		t.Fatal(err)
	}
	exists, err := c.ScriptExists(t.Context(), hashes...).Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, ok := range exists {
		if !ok {
			t.Errorf("script %d (%s) not loaded", i, hashes[i])
		}
	}
}
