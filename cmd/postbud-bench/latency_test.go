package main

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestRefuseForeignKeys: the latency benchmark runs on an empty Redis, or
// with -force; a key it did not create stops it.
func TestRefuseForeignKeys(t *testing.T) {
	srv := redistest.StartServer(t)
	opt, err := redis.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	if err := refuseForeignKeys(ctx, rdb, false); err != nil {
		t.Fatalf("empty Redis refused: %v", err)
	}
	if err := rdb.Set(ctx, "pb:someone-else", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err = refuseForeignKeys(ctx, rdb, false)
	if err == nil || !strings.Contains(err.Error(), "1 keys this run did not create") || !strings.Contains(err.Error(), "-force") {
		t.Fatalf("a Redis with a foreign key: %v, want a refusal naming -force", err)
	}
	if err := refuseForeignKeys(ctx, rdb, true); err != nil {
		t.Fatalf("-force refused: %v", err)
	}
}
