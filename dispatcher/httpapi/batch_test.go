package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// roundTrips counts the requests a go-redis client sends to Redis: one per
// command, one per pipeline.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { r.n.Add(1); return next(ctx, cmd) }
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { r.n.Add(1); return next(ctx, cmds) }
}

func batchBody(n int, priority func(i int) string) string {
	evs := make([]map[string]any, n)
	for i := range evs {
		data := map[string]any{"message_id": fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i),
			"recipient": map[string]any{"cpr": fmt.Sprintf("%02d%02d90%04d", i%28+1, i/28%12+1, i)},
			"sender":    map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"}}
		if p := priority(i); p != "" {
			data["priority"] = p
		}
		evs[i] = map[string]any{"id": fmt.Sprintf("rt-%d", i), "type": "message.received",
			"occurred_at": time.Now().UTC().Format(time.RFC3339Nano), "source": "core", "data": data}
	}
	b, _ := json.Marshal(map[string]any{"events": evs})
	return string(b)
}

// TestBatchIngestRoundTrips: a batch of 500 letters costs a bounded number
// of Redis round trips (one read of the processed marks, one enqueue per
// letters task), not one or two per event; every event gets its own
// answer, and the same batch again is all duplicates.
func TestBatchIngestRoundTrips(t *testing.T) {
	env := redistest.New(t)
	opt, err := redis.ParseURL(env.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	// Warm up: the connection pool and asynq's scripts.
	api := newAPI(t, rdb, env.Prefix)
	post := func(body string) (int, []map[string]any) {
		req := httptest.NewRequest(http.MethodPost, "/v1/events/batch", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer core-key-0123456789")
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		var out struct{ Results []map[string]any }
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		return rec.Code, out.Results
	}
	if code, _ := post(batchBody(2, func(int) string { return "bulk" })); code != http.StatusAccepted {
		t.Fatalf("warm-up batch: %d", code)
	}
	var rt roundTrips
	rdb.AddHook(&rt)
	body := batchBody(500, func(i int) string {
		if i%100 == 7 {
			return "urgent" // 5 urgent letters: a task each
		}
		return "bulk"
	})
	code, results := post(body)
	if code != http.StatusAccepted || len(results) != 500 {
		t.Fatalf("batch of 500: %d with %d results, want 202 with 500", code, len(results))
	}
	for i, r := range results {
		if r["status"] != "accepted" || r["id"] != fmt.Sprintf("rt-%d", i) {
			t.Fatalf("result %d = %v, want accepted with its id", i, r)
		}
	}
	// 1 SeenAll + 5 urgent tasks + 3 letters tasks of ≤ 200; a little
	// slack for asynq's own bookkeeping.
	t.Logf("a batch of 500 letters: %d round trips", rt.n.Load())
	if n := rt.n.Load(); n > 12 {
		t.Errorf("a batch of 500 letters cost %d Redis round trips, want ≤ 12", n)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	q := dispatcher.DefaultQueues(env.Prefix)
	if info, err := insp.GetQueueInfo(q.Bulk); err != nil || info.Pending != 1+3 {
		t.Errorf("bulk lane: %+v, %v; want the warm-up's and 3 pending letters tasks", info, err)
	}
	rt.n.Store(0)
	code, results = post(body)
	if code != http.StatusAccepted {
		t.Fatalf("repeated batch: %d", code)
	}
	for i, r := range results {
		if r["status"] != "duplicate" {
			t.Fatalf("repeated batch, result %d = %v, want duplicate", i, r)
		}
	}
	if n := rt.n.Load(); n > 12 {
		t.Errorf("the repeated batch cost %d Redis round trips, want ≤ 12", n)
	}
}
