package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestMain runs the command itself when the refusal tests start this test
// binary as postbud-bench (runMainEnv set); otherwise the tests.
func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMainEnv is the test binary's own switch, not configuration.
const runMainEnv = "BENCH_TEST_RUN_MAIN"

// benchRedis is a redis-server of the test's own (the phases read INFO
// figures of the whole server and the refusals want it empty).
func benchRedis(t *testing.T) (*redistest.Server, *redis.Client) {
	t.Helper()
	srv := redistest.StartServer(t)
	opt, err := redis.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	opt.PoolSize = 64
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return srv, rdb
}

// setFlag sets a flag of the command for the test and restores it after.
func setFlag(t *testing.T, name, value string) {
	t.Helper()
	old := flag.Lookup(name).Value.String()
	if err := flag.Set(name, value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = flag.Set(name, old) })
}

// assertDrained: the phase left no task of its lanes behind, pending,
// active, scheduled, in retry or archived (a letter refused or failed).
func assertDrained(t *testing.T, ctx context.Context, rdb *redis.Client, prefix string) {
	t.Helper()
	queues := dispatcher.DefaultQueues(prefix)
	if n, err := queued(ctx, rdb, queues); err != nil || n != 0 {
		t.Errorf("%d tasks still queued (%v)", n, err)
	}
	for _, q := range []string{queues.Urgent, queues.Normal, queues.Bulk} {
		if n, err := rdb.ZCard(ctx, "asynq:{"+q+"}:archived").Result(); err != nil || n != 0 {
			t.Errorf("%s: %d tasks archived (%v)", q, n, err)
		}
	}
}

// TestPhasesDeliver runs each throughput phase in process at a tiny size
// on a Redis of its own: every task is handled and every letter hands its
// alerts to the sinks (4 per letter: email, SMS, two app tokens; 1 for
// -batch-alerts 1), none skipped, none twice. A phase whose letters do not
// reach the sinks (citizens not confirmed, say) fails at once instead of
// measuring nothing.
func TestPhasesDeliver(t *testing.T) {
	_, rdb := benchRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n, citizens, conc = 40, 7, 4

	for _, lanes := range []string{"main", "one"} {
		t.Run("raw-"+lanes, func(t *testing.T) {
			setFlag(t, "raw-lanes", lanes)
			prefix := "raw" + lanes
			r, err := runRaw(ctx, rdb, prefix, n, conc)
			if err != nil {
				t.Fatal(err)
			}
			if r.Done != n {
				t.Errorf("%d no-op tasks handled, want %d", r.Done, n)
			}
			assertDrained(t, ctx, rdb, prefix)
		})
	}
	t.Run("raw-lanes-unknown", func(t *testing.T) {
		setFlag(t, "raw-lanes", "two")
		if _, err := runRaw(ctx, rdb, "rawbad", n, conc); err == nil || !strings.Contains(err.Error(), "-raw-lanes") {
			t.Errorf("runRaw with -raw-lanes two: %v, want an error naming -raw-lanes", err)
		}
	})
	for _, phase := range []string{"postbud", "postbud-http", "postbud-http-ungrouped"} {
		t.Run(phase, func(t *testing.T) {
			run := phase
			if p, ok := strings.CutSuffix(phase, "-ungrouped"); ok {
				setFlag(t, "group-accepts", "false")
				run = p
			}
			r, err := runPostbud(ctx, rdb, run, phase, n, citizens, conc)
			if err != nil {
				t.Fatal(err)
			}
			if r.Alerts != 4*n {
				t.Errorf("%d alerts handed to the sinks, want %d (%d letters × 4)", r.Alerts, 4*n, n)
			}
			if strings.HasPrefix(phase, "postbud-http") && (r.Accept == nil || r.Accept.N != n || r.Accept.P99 <= 0) {
				t.Errorf("accept times %+v, want %d measured", r.Accept, n)
			}
			assertDrained(t, ctx, rdb, phase)
		})
	}
	for _, alerts := range []int{4, 1} {
		t.Run("batch-alerts-"+strconv.Itoa(alerts), func(t *testing.T) {
			setFlag(t, "batch", "8") // several batch tasks of one request
			setFlag(t, "batch-alerts", strconv.Itoa(alerts))
			prefix := "batch" + strconv.Itoa(alerts)
			r, err := runBatch(ctx, rdb, prefix, n, citizens, conc)
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(alerts * n); r.Alerts != want {
				t.Errorf("%d alerts handed to the sinks, want %d (%d letters × %d)", r.Alerts, want, n, alerts)
			}
			assertDrained(t, ctx, rdb, prefix)
		})
	}
}

// TestLatencyPhaseDelivers runs the latency benchmark's child in process
// at a tiny size: every urgent letter of the idle, hang and drain phases
// and every raw task is measured (none missing), every bulk slot hung in
// the hang phase, and the whole bulk backlog reached the sinks.
func TestLatencyPhaseDelivers(t *testing.T) {
	srv, rdb := benchRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const conc, urgent, bulk = 2, 4, 30
	for name, v := range map[string]string{"bulk": "30", "urgent": "4", "rate": "400", "bulk-citizens": "6",
		"urgent-concurrency": "2", "poll": "20ms", "hang": "1m", "idle-seconds": "0.01", "drain-all": "true"} {
		setFlag(t, name, v)
	}
	// The drain's backlog as one task a letter, and as batch tasks
	// (-drain-batch: 30 letters in one PublishBatch call, one task); and
	// with the drain's main server in a process of its own (-split-nice:
	// this test binary, run as postbud-bench).
	t.Setenv(runMainEnv, "1")
	for _, mode := range []struct {
		batch, nice string
		tasks       int64
	}{{"false", "-1", bulk}, {"true", "-1", 1}, {"true", "10", 1}} {
		t.Run("drain-batch="+mode.batch+",split-nice="+mode.nice, func(t *testing.T) {
			setFlag(t, "drain-batch", mode.batch)
			setFlag(t, "split-nice", mode.nice)
			prefix := "lat" + mode.batch + strings.TrimPrefix(mode.nice, "-")
			r, err := runLatency(ctx, rdb, srv.URL, prefix, conc)
			if err != nil {
				t.Fatal(err)
			}
			if r.BulkTasks != mode.tasks {
				t.Errorf("the drain's %d bulk letters were published in %d tasks, want %d", bulk, r.BulkTasks, mode.tasks)
			}
			checkLatency(t, ctx, rdb, r, prefix, conc, urgent, bulk)
		})
	}
}

// checkLatency checks one latency run of TestLatencyPhaseDelivers.
func checkLatency(t *testing.T, ctx context.Context, rdb *redis.Client, r latencyResult, prefix string, conc int64, urgent int, bulk int64) {
	t.Helper()
	if r.Raw.N != urgent || r.Raw.Missing != 0 {
		t.Errorf("raw: %d tasks measured, %d missing; want %d, 0", r.Raw.N, r.Raw.Missing, urgent)
	}
	for name, ph := range map[string]lanePhase{"idle": r.Idle, "hang": r.Hang, "drain": r.Busy} {
		if ph.Total.N != urgent || ph.Total.Missing != 0 {
			t.Errorf("%s: %d urgent alerts measured, %d missing; want %d, 0", name, ph.Total.N, ph.Total.Missing, urgent)
		}
		// The letters the verdicts' intervals redraw (ratioInterval).
		if len(ph.Sample) != ph.Total.N || !slices.IsSorted(ph.Sample) || ph.Total.N > 0 && ph.Sample[len(ph.Sample)-1] != ph.Total.Max {
			t.Errorf("%s: %d sample latencies (sorted: %v), want the phase's %d, sorted, the last its max", name, len(ph.Sample), slices.IsSorted(ph.Sample), ph.Total.N)
		}
	}
	if r.HangSlotsHeld != conc {
		t.Errorf("hang: %d bulk slots hung when the last urgent alert arrived, want all %d", r.HangSlotsHeld, conc)
	}
	if r.BulkAlerts != bulk {
		t.Errorf("drain: %d bulk alerts at the sinks, want %d", r.BulkAlerts, bulk)
	}
	assertDrained(t, ctx, rdb, prefix)
}

// TestCommandRefusesForeignKeys: postbud-bench -batch and -latency, run as a
// user runs them, exit with an error naming -force when the Redis holds a
// key they did not create, and write nothing to it.
func TestCommandRefusesForeignKeys(t *testing.T) {
	srv, rdb := benchRedis(t)
	ctx := context.Background()
	if err := rdb.Set(ctx, "pb:someone-else", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, mode := range [][]string{{"-batch", "8", "-letters", "10", "-n", "10"}, {"-latency", "-bulk", "10", "-urgent", "2"}} {
		cmd := exec.Command(os.Args[0], append([]string{"-redis", srv.URL}, mode...)...)
		cmd.Env = append(os.Environ(), runMainEnv+"=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("postbud-bench %s on a Redis with a foreign key: %v, want exit status 1\n%s%s", mode[0], err, out, stderr.String())
		}
		if !strings.Contains(stderr.String(), "1 keys this run did not create") || !strings.Contains(stderr.String(), "-force") {
			t.Errorf("postbud-bench %s: stderr %q, want the refusal naming -force", mode[0], stderr.String())
		}
		if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 1 {
			t.Errorf("postbud-bench %s: the Redis holds %d keys after the refusal (%v), want the foreign one only", mode[0], n, err)
		}
	}
}
