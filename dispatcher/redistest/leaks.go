package redistest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// Leaks returns where any of secrets shows in clear in the test's Redis:
// in the name or the value of a key of the test's prefix or of its asynq
// queues (task payloads included), as Contents reads them.
func (e *Env) Leaks(t testing.TB, secrets ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	contents, err := e.Contents(ctx)
	if err != nil {
		t.Fatalf("read the test's Redis: %v", err)
	}
	var out []string
	for k, v := range contents {
		for _, s := range secrets {
			if strings.Contains(k, s) {
				out = append(out, fmt.Sprintf("key %q holds %q", k, s))
			}
			if strings.Contains(v, s) {
				out = append(out, fmt.Sprintf("a value of %q holds %q", k, s))
			}
		}
	}
	sort.Strings(out)
	return out
}
