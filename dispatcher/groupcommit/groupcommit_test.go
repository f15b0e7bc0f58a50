package groupcommit_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/digitalpost/postbud/dispatcher/groupcommit"
)

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func failed(err error) string { return "failed: " + err.Error() }

// A call alone commits at once; the calls made during a commit are the
// next group, in order, each answered with its own result; a commit that
// answers fewer items than it got leaves the rest failed, the lead too
// when it answers none.
func TestGroupsTheCallsMadeDuringACommit(t *testing.T) {
	var g groupcommit.Group[int, string]
	release := make(chan struct{})
	var mu sync.Mutex
	var groups [][]int
	commit := func(_ context.Context, items []int) []string {
		mu.Lock()
		groups = append(groups, slices.Clone(items))
		mu.Unlock()
		if items[0] == 0 {
			<-release
		}
		out := make([]string, 0, len(items))
		for _, it := range items {
			if it == 4 || it == 8 { // the commit answers up to the item before
				break
			}
			out = append(out, fmt.Sprint("r", it))
		}
		return out
	}
	ctx := context.Background()
	got := make([]string, 6)
	var wg sync.WaitGroup
	wg.Go(func() { got[0] = g.Do(ctx, 0, commit, failed) })
	waitFor(t, "the first commit", func() bool { mu.Lock(); defer mu.Unlock(); return len(groups) == 1 })
	for i := 1; i <= 5; i++ {
		wg.Go(func() { got[i] = g.Do(ctx, i, commit, failed) })
		waitFor(t, "the calls to wait", func() bool { return g.Waiting() == i })
	}
	close(release)
	wg.Wait()
	if want := [][]int{{0}, {1, 2, 3, 4, 5}}; fmt.Sprint(groups) != fmt.Sprint(want) {
		t.Errorf("groups %v, want %v", groups, want)
	}
	noAnswer := "failed: groupcommit: the group's commit gave no answer for this call"
	if want := []string{"r0", "r1", "r2", "r3", noAnswer, noAnswer}; !slices.Equal(got, want) {
		t.Errorf("results %q, want %q", got, want)
	}
	// Idle again: the next call commits alone at once; one the commit
	// does not answer fails.
	if r := g.Do(ctx, 9, commit, failed); r != "r9" || g.Waiting() != 0 {
		t.Errorf("a call after the groups: %q, %d waiting", r, g.Waiting())
	}
	if r := g.Do(ctx, 8, commit, failed); r != noAnswer {
		t.Errorf("a lone call the commit did not answer: %q, want %q", r, noAnswer)
	}
}

// A waiting call whose context ends leaves its group: it is answered with
// its context's error and its item is not committed; the others are. The
// commit runs under a context of its own: bounded by Timeout, and not
// ended by its leading caller's.
func TestAWaitingCallLeavesOnItsContext(t *testing.T) {
	g := groupcommit.Group[int, string]{Timeout: time.Minute}
	release := make(chan struct{})
	var mu sync.Mutex
	var groups [][]int
	var commitErr error
	var deadline time.Time
	commit := func(ctx context.Context, items []int) []string {
		mu.Lock()
		groups = append(groups, slices.Clone(items))
		mu.Unlock()
		if items[0] == 0 {
			<-release
			commitErr = ctx.Err()
			deadline, _ = ctx.Deadline()
		}
		out := make([]string, len(items))
		for i, it := range items {
			out[i] = fmt.Sprint("r", it)
		}
		return out
	}
	leadCtx, cancelLead := context.WithCancel(context.Background())
	got := make([]string, 4)
	var wg sync.WaitGroup
	wg.Go(func() { got[0] = g.Do(leadCtx, 0, commit, failed) })
	waitFor(t, "the first commit", func() bool { mu.Lock(); defer mu.Unlock(); return len(groups) == 1 })
	leaving, leave := context.WithCancel(context.Background())
	for i := 1; i <= 3; i++ {
		ctx := context.Background()
		if i == 2 {
			ctx = leaving
		}
		wg.Go(func() { got[i] = g.Do(ctx, i, commit, failed) })
		waitFor(t, "the calls to wait", func() bool { return g.Waiting() == i })
	}
	leave()
	waitFor(t, "the call to leave", func() bool { return g.Waiting() == 2 })
	cancelLead() // the leading caller gives up: its commit goes on
	close(release)
	wg.Wait()
	if want := [][]int{{0}, {1, 3}}; fmt.Sprint(groups) != fmt.Sprint(want) {
		t.Errorf("groups %v, want %v: the call that left is not committed", groups, want)
	}
	if want := []string{"r0", "r1", "failed: " + context.Canceled.Error(), "r3"}; !slices.Equal(got, want) {
		t.Errorf("results %q, want %q", got, want)
	}
	if commitErr != nil {
		t.Errorf("the commit's context ended with its leading caller's: %v", commitErr)
	}
	if d := time.Until(deadline); deadline.IsZero() || d > time.Minute {
		t.Errorf("the commit's context has deadline %v, want within the Timeout (1m)", deadline)
	}
}

// A commit that panics answers its group's other calls failed, hands the
// next group on, and the panic goes on in the leading call.
func TestAPanickingCommitHandsOn(t *testing.T) {
	var g groupcommit.Group[int, string]
	release, leading := make(chan struct{}), make(chan struct{})
	commit := func(_ context.Context, items []int) []string {
		if items[0] == 0 {
			close(leading)
			<-release
			return []string{"r0"}
		}
		if items[0] == 1 {
			panic("commit bug")
		}
		return []string{fmt.Sprint("r", items[0])}
	}
	type res struct {
		r        string
		panicked bool
	}
	ctx := context.Background()
	do := func(i int) (out res) {
		defer func() { out.panicked = recover() != nil }()
		return res{r: g.Do(ctx, i, commit, failed)}
	}
	got := make([]res, 3)
	var wg sync.WaitGroup
	wg.Go(func() { got[0] = do(0) })
	<-leading
	for i := 1; i <= 2; i++ {
		wg.Go(func() { got[i] = do(i) })
		waitFor(t, "the calls to wait", func() bool { return g.Waiting() == i })
	}
	close(release)
	wg.Wait()
	if want := []res{{"r0", false}, {"", true}, {"failed: groupcommit: the group's commit failed (panic)", false}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("results %v, want %v", got, want)
	}
	done := make(chan string)
	go func() { done <- g.Do(ctx, 7, commit, failed) }()
	select {
	case r := <-done:
		if r != "r7" {
			t.Errorf("a call after the panic: %q, want r7", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a call after the panic was never answered: the hand-over was lost")
	}
}
