package redistest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Leaks returns where any of secrets shows in clear in the test's Redis:
// in the name or the value of a key of the test's prefix or of its asynq
// queues (task payloads included). Values are read by type (not DUMP,
// whose RDB form may compress a string), each element whole.
func (e *Env) Leaks(t testing.TB, secrets ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	for _, pat := range []string{e.Prefix + ":*", "asynq:{" + e.QueuePrefix + ".*"} {
		iter := e.Client.Scan(ctx, 0, pat, 1000).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			values := []string{}
			switch typ, _ := e.Client.Type(ctx, k).Result(); typ {
			case "string":
				v, _ := e.Client.Get(ctx, k).Result()
				values = append(values, v)
			case "hash":
				m, _ := e.Client.HGetAll(ctx, k).Result()
				for f, v := range m {
					values = append(values, f, v)
				}
			case "list":
				l, _ := e.Client.LRange(ctx, k, 0, -1).Result()
				values = append(values, l...)
			case "set":
				l, _ := e.Client.SMembers(ctx, k).Result()
				values = append(values, l...)
			case "zset":
				l, _ := e.Client.ZRange(ctx, k, 0, -1).Result()
				values = append(values, l...)
			case "stream":
				msgs, _ := e.Client.XRange(ctx, k, "-", "+").Result()
				for _, m := range msgs {
					values = append(values, fmt.Sprint(m.Values))
				}
			}
			for _, s := range secrets {
				if strings.Contains(k, s) {
					out = append(out, fmt.Sprintf("key %q holds %q", k, s))
				}
				for _, v := range values {
					if strings.Contains(v, s) {
						out = append(out, fmt.Sprintf("a value of %q holds %q", k, s))
						break
					}
				}
			}
		}
		if err := iter.Err(); err != nil {
			t.Fatalf("scan %s: %v", pat, err)
		}
	}
	return out
}
