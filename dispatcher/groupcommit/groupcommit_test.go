package groupcommit_test

import (
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

// A call alone commits at once; the calls made during a commit are the
// next group, in order, each answered with its own result; a commit that
// answers fewer items than it got leaves the rest failed.
func TestGroupsTheCallsMadeDuringACommit(t *testing.T) {
	var g groupcommit.Group[int, string]
	release := make(chan struct{})
	var mu sync.Mutex
	var groups [][]int
	commit := func(items []int) []string {
		mu.Lock()
		groups = append(groups, slices.Clone(items))
		mu.Unlock()
		if items[0] == 0 {
			<-release
		}
		out := make([]string, 0, len(items))
		for _, it := range items {
			if it == 4 { // the commit answers up to the item before 4
				break
			}
			out = append(out, fmt.Sprint("r", it))
		}
		return out
	}
	got := make([]string, 6)
	var wg sync.WaitGroup
	wg.Go(func() { got[0] = g.Do(0, commit, "failed") })
	waitFor(t, "the first commit", func() bool { mu.Lock(); defer mu.Unlock(); return len(groups) == 1 })
	for i := 1; i <= 5; i++ {
		wg.Go(func() { got[i] = g.Do(i, commit, "failed") })
		waitFor(t, "the calls to wait", func() bool { return g.Waiting() == i })
	}
	close(release)
	wg.Wait()
	if want := [][]int{{0}, {1, 2, 3, 4, 5}}; fmt.Sprint(groups) != fmt.Sprint(want) {
		t.Errorf("groups %v, want %v", groups, want)
	}
	if want := []string{"r0", "r1", "r2", "r3", "failed", "failed"}; !slices.Equal(got, want) {
		t.Errorf("results %v, want %v", got, want)
	}
	// Idle again: the next call commits alone at once.
	if r := g.Do(9, commit, "failed"); r != "r9" || g.Waiting() != 0 {
		t.Errorf("a call after the groups: %q, %d waiting", r, g.Waiting())
	}
}

// A commit that panics answers its group's other calls failed, hands the
// next group on, and the panic goes on in the leading call.
func TestAPanickingCommitHandsOn(t *testing.T) {
	var g groupcommit.Group[int, string]
	release, leading := make(chan struct{}), make(chan struct{})
	commit := func(items []int) []string {
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
	do := func(i int) (out res) {
		defer func() { out.panicked = recover() != nil }()
		return res{r: g.Do(i, commit, "failed")}
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
	if want := []res{{"r0", false}, {"", true}, {"failed", false}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("results %v, want %v", got, want)
	}
	done := make(chan string)
	go func() { done <- g.Do(7, commit, "failed") }()
	select {
	case r := <-done:
		if r != "r7" {
			t.Errorf("a call after the panic: %q, want r7", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a call after the panic was never answered: the hand-over was lost")
	}
}
