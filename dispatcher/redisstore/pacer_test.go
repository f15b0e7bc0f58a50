package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// A Pacer's rate is shared by every replica: what one takes, another on
// the same Redis waits for. At one letter a second, a burst taken by one
// leaves none for another within a tenth of a second; a request larger
// than the burst is refused, not waited for.
func TestPacerRateIsSharedByReplicas(t *testing.T) {
	t.Parallel()
	rt := redistest.New(t)
	ctx := context.Background()
	a := redisstore.NewPacer(rt.Client, rt.Prefix, 1, 25)
	b := redisstore.NewPacer(rt.Client, rt.Prefix, 1, 25)

	if err := a.WaitN(ctx, 25); err != nil {
		t.Fatalf("the first burst: %v", err)
	}
	soon, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := b.WaitN(soon, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("another replica right after the burst: %v, want to wait past its context's end", err)
	}
	bounded, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	if err := b.WaitN(bounded, 26); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("26 letters at once with a burst of 25: %v, want refused at once (GCRA never allows them)", err)
	}
	other := redisstore.NewPacer(rt.Client, rt.Prefix+"x", 1, 25)
	if err := other.WaitN(ctx, 25); err != nil {
		t.Errorf("a pace of another prefix: %v, want its own burst at once", err)
	}
}
