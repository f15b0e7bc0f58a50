package wake

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// While one goroutine's read of the flow key waits on a Redis that does
// not answer (CLIENT PAUSE), another gets the last answer at once instead
// of waiting behind it. On a redis-server of the test's own: the pause
// stops every client for 3 s.
func TestFlowAnswersWithoutWaitingForAReadInProgress(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctl := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { ctl.Close() })
	ctx := context.Background()
	f := NewFlow(rdb, "q", 0)
	ctl.Set(ctx, FlowKey("q"), "1", time.Minute)
	if !f.On(ctx) {
		t.Fatal("not flowing with the flow key set")
	}
	if err := ctl.Do(ctx, "CLIENT", "PAUSE", "3000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	first := make(chan bool)
	go func() { first <- f.On(ctx) }()
	if !redistest.Within(2*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.reading
	}) {
		t.Fatal("the first read never started")
	}
	if !f.On(ctx) {
		t.Error("the second goroutine got not flowing, want the last answer")
	}
	select {
	case <-first:
		t.Fatal("the paused read answered before the second goroutine: the test proved nothing")
	default:
	}
	<-first // when the pause ends (CLIENT UNPAUSE would wait for it too)
}
