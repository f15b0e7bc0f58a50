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
// leaves none for another within a tenth of a second, and a wait past
// its context's deadline is refused at once, not slept through.
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
	later, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	if err := b.WaitN(later, 25); !errors.Is(err, context.DeadlineExceeded) || later.Err() != nil {
		t.Errorf("25 letters ≈ 25 s away with 10 s left: %v (context: %v), want refused at once, before the deadline", err, later.Err())
	}
	other := redisstore.NewPacer(rt.Client, rt.Prefix+"x", 1, 25)
	if err := other.WaitN(ctx, 25); err != nil {
		t.Errorf("a pace of another prefix: %v, want its own burst at once", err)
	}
}

// A Pacer's letters past the burst wait their time and then go: at 100
// letters a second, the second part of 25 waits about a quarter of a
// second (at least 0.2 s: the time of 20 of its letters), then WaitN
// returns without an error.
func TestPacerLetsWaitingLettersGoInTheirTime(t *testing.T) {
	t.Parallel()
	rt := redistest.New(t)
	ctx := context.Background()
	p := redisstore.NewPacer(rt.Client, rt.Prefix, 100, 25)
	if err := p.WaitN(ctx, 25); err != nil {
		t.Fatalf("the first burst: %v", err)
	}
	start := time.Now()
	if err := p.WaitN(ctx, 25); err != nil {
		t.Fatalf("the second part: %v, want it to go after its wait", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("the second part went after %v, want its letters' time (≈ 250 ms) first", took)
	}
}
