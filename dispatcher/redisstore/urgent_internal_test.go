package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// TestUrgentCallsDoNotWaitForTheBatcher: while the batcher is busy with
// other calls (here: held inside a flush), a call of the urgent lane
// (dispatcher.WithUrgent) still runs; any other waits its turn.
func TestUrgentCallsDoNotWaitForTheBatcher(t *testing.T) {
	t.Parallel()
	env := redistest.New(t)
	sealer, err := seal.New(seal.Keys{Current: []byte("test-seal-key-0123456789-0123456789"),
		Tag: []byte("test-pseudonymisation-key-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	s := New(env.Client, Options{Prefix: env.Prefix, Sealer: sealer})
	defer s.Close()
	ctx := context.Background()
	ping := func(p redis.Pipeliner) []redis.Cmder { return []redis.Cmder{p.Ping(ctx)} }

	entered, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		_, err := s.run(ctx, 1, func(p redis.Pipeliner) []redis.Cmder {
			close(entered)
			<-release
			return ping(p)
		})
		held <- err
	}()
	<-entered // the batcher is inside that call's flush until release

	bctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := s.run(bctx, 1, ping); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a bulk call while the batcher is held: %v, want it to wait (context.DeadlineExceeded)", err)
	}
	uctx, cancel := context.WithTimeout(dispatcher.WithUrgent(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.run(uctx, 1, ping); err != nil {
		t.Errorf("an urgent call while the batcher is held: %v, want it run at once", err)
	}
	close(release)
	if err := <-held; err != nil {
		t.Errorf("the held call: %v", err)
	}
}
