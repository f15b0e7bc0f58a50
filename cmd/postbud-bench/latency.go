package main

// The urgent-lane latency benchmark (docs/design.md, "Capacity"): urgent
// letters idle, while a bulk release drains, and while the bulk lane's
// provider hangs, against raw asynq at the same poll interval:
//
//	go run ./cmd/postbud-bench -latency -redis redis://127.0.0.1:6390/0
//	  [-bulk 200000] [-urgent 1000] [-rate 50] [-hang 30s] [-urgent-wake 250ms] [-shared] [-drain-all] [-force]
//
// It refuses a Redis that holds any key (the run's keys get a prefix of
// their own and are deleted afterwards; a key already there is someone
// else's, and would spoil the Redis CPU figures) unless -force. It runs in
// one child process (so its peak RSS is its own), wired as `postbud
// serve`: the real dispatcher on redisstore, sinks that accept at once,
// letters enqueued with package publish, and two asynq servers configured
// as cmd/postbud/workers.go configures them by default: the urgent lane
// alone (-urgent-concurrency 20, -urgent-poll 8ms, waiting up to
// -urgent-wake 250ms for the wake-up token an urgent enqueue pushes:
// package dispatcher/wake) and the main server,
// every lane weighted normal 6, bulk 2, urgent 1 (-concurrency 50, -poll 200ms). -shared runs
// the main server alone, the layout before the urgent lane had a server of
// its own. Citizens are preloaded with an email address only (one alert
// per letter); the bulk letters go round-robin to -bulk-citizens citizens,
// the urgent letters to citizens of their own.
//
//  0. raw: -urgent no-op tasks at -rate/s into a queue of their own, worked
//     by a bare asynq server with the urgent server's poll interval and
//     concurrency: enqueue → handler start, the floor postbud's urgent lane
//     stands on.
//  1. idle Redis CPU: used_cpu_user+used_cpu_sys of Redis INFO over
//     -idle-seconds, first with no server running, then with the replica's
//     servers started and nothing queued: the Redis CPU one idle replica's
//     polling costs.
//  2. idle: -urgent urgent letters at -rate/s, nothing else queued. Per
//     letter: the time from just before Publish to the moment the sink got
//     its alert (matched on Alert.MessageID).
//  3. hang: the bulk provider hangs for -hang before it accepts; bulk
//     letters fill every bulk worker slot and more wait behind them, and
//     -urgent urgent letters go out at -rate/s. Then the hung sends are let
//     go and that backlog drains.
//  4. drain: with the workers stopped, -bulk bulk letters are published as
//     fast as 8 goroutines can; then the workers start and, while the bulk
//     lane drains, -urgent urgent letters go out at -rate/s. The run is
//     valid only if bulk letters were still pending when the last urgent
//     alert arrived. The rest of the backlog is deleted, not drained,
//     unless -drain-all (then also the drain rate, Redis CPU per bulk
//     letter and Redis memory per delivered letter). With -split-nice N
//     the main server runs in a process of its own at nice N for this
//     phase (runLatencyMain), the urgent server alone in this one: the
//     layout of POSTBUD_WORKERS=urgent and =main replicas, the main ones
//     on CPU of lower priority.
//
// Each latency is also split in two: publish → handler start (waiting in
// the queue, from an asynq middleware) and handler start → sink.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/sink"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/publish"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/wake"
)

var (
	latencyMode  = flag.Bool("latency", false, "run the urgent-lane latency benchmark instead of the throughput one")
	bulkN        = flag.Int("bulk", 200000, "latency: bulk letters in the backlog of the drain phase")
	urgentN      = flag.Int("urgent", 1000, "latency: urgent letters (and raw tasks) measured per phase")
	urgentRate   = flag.Float64("rate", 50, "latency: urgent letters (and raw tasks) per second")
	bulkCitizens = flag.Int("bulk-citizens", 20000, "latency: citizens the bulk letters go to, round robin")
	urgentConc   = flag.Int("urgent-concurrency", 20, "latency: urgent server concurrency (POSTBUD_URGENT_CONCURRENCY)")
	urgentPoll   = flag.Duration("urgent-poll", 8*time.Millisecond, "latency: urgent server poll interval (POSTBUD_URGENT_TASK_CHECK_INTERVAL), also the raw baseline's")
	urgentWake   = flag.Duration("urgent-wake", 250*time.Millisecond, "latency: the idle urgent server's wait for a wake-up token (POSTBUD_URGENT_WAKE_WAIT; 0: off, polling alone)")
	bulkPoll     = flag.Duration("poll", 200*time.Millisecond, "latency: main server poll interval (POSTBUD_TASK_CHECK_INTERVAL)")
	hangFor      = flag.Duration("hang", 30*time.Second, "latency: how long the bulk provider hangs per send in the hang phase")
	idleSeconds  = flag.Float64("idle-seconds", 10, "latency: seconds of each idle Redis CPU measurement")
	sharedServer = flag.Bool("shared", false, "latency: no urgent server, the main server alone (every lane, 6/3/1, -poll), as before the urgent lane had a server of its own")
	drainBatch   = flag.Bool("drain-batch", false, "latency: publish the drain phase's bulk letters 500 at a time with PublishBatch (batch tasks of 200, as a release arrives through the batch endpoint) instead of one task each")
	drainAll     = flag.Bool("drain-all", false, "latency: after the drain phase's urgent letters, wait for the whole bulk backlog (drain rate, Redis CPU and memory per letter)")
	force        = flag.Bool("force", false, "-latency, -batch: run even if Redis holds keys this run did not create")
	yieldRate    = flag.Int("yield-rate", dispatcher.DefaultYieldRate, "latency and batch: letters a second batch tasks process, all together (a pace in Redis), while the urgent lane's tasks flow (POSTBUD_BATCH_YIELD_RATE; 0: off)")
	splitNice    = flag.Int("split-nice", -1, "latency, drain phase: the main server runs in a process of its own at this nice value (0–19: POSTBUD_WORKERS=main replicas on CPU of lower priority), the urgent server alone in the measuring process; -1: both servers in one process, as POSTBUD_WORKERS=all")
)

// Estimates for the memory check, measured on Redis 7.0 (default
// hash-max-listpack-value 64): a pending publish task ≈ 890 B with its
// ≈ 300 B wire event; a delivered email-only letter keeps ≈ 1.6 KB (its
// hash, trail, unread entry and message index) for the letter TTL.
const (
	estBytesPerTask   = 950
	estBytesPerLetter = 1700
)

type dist struct {
	N       int     `json:"n"`
	Missing int     `json:"missing"`
	P50     float64 `json:"p50_ms"`
	P95     float64 `json:"p95_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

type lanePhase struct {
	Total   dist    `json:"total"`
	Publish dist    `json:"publish"` // the Publish call itself
	Wait    dist    `json:"wait"`    // publish start → handler start
	Handle  dist    `json:"handle"`  // handler start → sink
	Later   dist    `json:"later"`   // Total of the letters sent after the phase's first second
	Seconds float64 `json:"seconds"` // first send → last alert
	Load    string  `json:"load"`    // /proc/loadavg after the phase

	// Sample is Total's latencies (ms, sorted), for the intervals of the
	// targets' p99 ratios (ratioInterval).
	Sample []float64 `json:"sample_ms"`
}

type latencyResult struct {
	Bulk, Urgent, BulkCitizens, Concurrency, UrgentConcurrency int
	Rate                                                       float64
	UrgentPollMs, PollMs, HangSeconds, UrgentWakeMs            float64
	Shared                                                     bool
	SplitNice                                                  int  // -split-nice (-1: one process)
	Raw                                                        dist // raw asynq enqueue → handler start
	RedisAlonePct, RedisIdlePct                                float64
	Idle, Hang, Busy                                           lanePhase
	HangBulkStarted, HangBulkDone                              int64 // bulk sends begun / finished in the hang phase
	HangSlotsHeld                                              int64 // bulk sends hanging when the last urgent alert arrived
	EnqueueSeconds, EnqueueRate                                float64
	BacklogBytes                                               int64
	BytesPerTask                                               float64
	PayloadBytes                                               int
	BulkTasks                                                  int64 // tasks the backlog's letters were published in
	DrainSeconds, DrainRate                                    float64
	DrainRateDuringUrgent                                      float64
	PendingAtLastUrgent                                        int64 // bulk tasks still in the pending list
	BulkAlerts                                                 int64 // alerts of drain-phase bulk letters at the sinks (= Bulk)
	UndeliveredAtLastUrgent                                    int64 // bulk letters whose alert had not gone out
	BytesPerLetter                                             float64
	RedisCPUPerBulkUs                                          float64
	LoadStart, LoadEnd                                         string
	PeakRSSKiB                                                 int64
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// refuseForeignKeys returns an error if Redis's current database holds
// any key, unless force: the run's keys get a prefix of their own and are
// deleted afterwards, so a key already there is someone else's (and its
// clients would spoil the Redis CPU figures).
func refuseForeignKeys(ctx context.Context, rdb *redis.Client, force bool) error {
	n, err := rdb.DBSize(ctx).Result()
	if err != nil {
		return fmt.Errorf("DBSIZE: %w", err)
	}
	if n == 0 || force {
		return nil
	}
	keys, _, _ := rdb.Scan(ctx, 0, "*", 100).Result()
	return fmt.Errorf("the Redis at %s (db %d) holds %d keys this run did not create (e.g. %s): the benchmark writes "+
		"hundreds of thousands of keys and measures Redis's CPU, so it wants a Redis of its own, e.g. "+
		"`redis-server --port 6390 --save '' --appendonly no` and -redis redis://127.0.0.1:6390/0; -force runs anyway "+
		"(its own keys are still deleted afterwards, the others left alone)",
		rdb.Options().Addr, rdb.Options().DB, n, strings.Join(keys[:min(len(keys), 5)], ", "))
}

// latencyMain is the parent: it checks Redis is empty and has room, runs
// the child and prints the figures. Redis is cleaned up whatever happens to
// the child.
func latencyMain(ctx context.Context, rdb *redis.Client, url string, conc int) {
	B, U, R, K := *bulkN, *urgentN, *urgentRate, *bulkCitizens
	if B < 1 || U < 1 || R <= 0 || K < 1 || *urgentConc < 1 || *urgentPoll <= 0 || *bulkPoll <= 0 || *hangFor <= 0 || *idleSeconds <= 0 {
		fail(fmt.Errorf("-bulk, -urgent, -rate, -bulk-citizens, -urgent-concurrency, -urgent-poll, -poll, -hang and -idle-seconds must be positive"))
	}
	if 3*U+K > maxCitizens {
		fail(fmt.Errorf("3×-urgent + -bulk-citizens must be ≤ %d (the benchmark's distinct adult CPR numbers)", maxCitizens))
	}
	if err := refuseForeignKeys(ctx, rdb, *force); err != nil {
		fail(err)
	}
	info, _ := rdb.Info(ctx, "memory").Result()
	used, _ := strconv.ParseInt(infoField(info, "used_memory"), 10, 64)
	rss, _ := strconv.ParseInt(infoField(info, "used_memory_rss"), 10, 64)
	maxmem, _ := strconv.ParseInt(infoField(info, "maxmemory"), 10, 64)
	sysmem, _ := strconv.ParseInt(infoField(info, "total_system_memory"), 10, 64)
	hangBacklog := hangLetters(conc, U, R)
	need := int64(B+hangBacklog)*(estBytesPerTask+estBytesPerLetter) + int64(3*U+K)*300
	var room int64
	var what string
	if maxmem > 0 {
		room, what = maxmem-used, fmt.Sprintf("maxmemory %s − used_memory %s", gb(maxmem), gb(used))
	} else {
		room, what = sysmem-rss, fmt.Sprintf("no maxmemory; host memory %s − Redis RSS %s", gb(sysmem), gb(rss))
		if avail := memAvailable(); avail > 0 && isLoopback(rdb.Options().Addr) && avail < room {
			room, what = avail, fmt.Sprintf("no maxmemory; MemAvailable %s on this host", gb(avail))
		}
	}
	layout := fmt.Sprintf("urgent server (urgent lane): concurrency %d, poll %v, wake-up wait %v; main server (every lane, normal 6 · bulk 2 · urgent 1): concurrency %d, poll %v",
		*urgentConc, *urgentPoll, *urgentWake, conc, *bulkPoll)
	if *sharedServer {
		layout = fmt.Sprintf("-shared: the main server alone (every lane, 6/3/1), concurrency %d, poll %v", conc, *bulkPoll)
	} else if *splitNice >= 0 {
		layout += fmt.Sprintf("; drain phase: the main server in a process of its own at nice %d (-split-nice)", *splitNice)
	}
	drain := "one task a letter (Publish)"
	if *drainBatch {
		drain = "batch tasks (PublishBatch, 500 a call)"
	}
	fmt.Printf("postbud-bench -latency: bulk=%d urgent=%d rate=%.0f/s bulk-citizens=%d hang=%v drain=%s redis=%s (%s)\n  %s\n",
		B, U, R, K, *hangFor, drain, rdb.Options().Addr, redisVersion(ctx, rdb), layout)
	fmt.Printf("Redis memory: the run needs ≈ %s (≈ %d B per pending bulk task + ≈ %d B per delivered letter's state); room %s (%s)\n",
		gb(need), estBytesPerTask, estBytesPerLetter, gb(room), what)
	if need > room*9/10 {
		fail(fmt.Errorf("not enough Redis memory for -bulk %d: needs ≈ %s, room %s (%s); use a smaller -bulk or raise maxmemory",
			B, gb(need), gb(room), what))
	}

	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "benchlat" + hex.EncodeToString(b[:])
	cmd := exec.Command(os.Args[0], latencyChildArgs("latency", url, prefix, conc)...)
	cmd.Stderr = os.Stderr
	// A Ctrl-C reaches the child too (same process group); wait for it and
	// clean up rather than leave a million keys behind.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	out, err := cmd.Output()
	signal.Stop(sig)
	fmt.Printf("cleaning up Redis keys %s:* and asynq:{%s.*} …\n", prefix, prefix)
	t := time.Now()
	cleanup(ctx, rdb, prefix)
	rdb.SRem(ctx, "asynq:queues", prefix+".raw")
	fmt.Printf("  cleaned up in %.1fs\n", time.Since(t).Seconds())
	if err != nil {
		fail(fmt.Errorf("latency phase: %w", err))
	}
	var r latencyResult
	if err := json.Unmarshal(out, &r); err != nil {
		fail(fmt.Errorf("latency phase: %w: %s", err, out))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.PeakRSSKiB = ru.Maxrss
	}
	printLatency(r)
}

// hangLetters is the bulk backlog of the hang phase: enough that every
// bulk slot hangs for the whole phase (U letters at R/s), with a slot's
// worth to spare.
func hangLetters(conc, U int, R float64) int {
	rounds := int(math.Ceil(float64(U)/R/hangFor.Seconds())) + 2
	return conc * rounds
}

func printLatency(r latencyResult) {
	fmt.Printf("\nidle Redis CPU over %.0fs: %.2f %% of a core with no postbud running, %.2f %% with one idle replica's servers polling "+
		"(+%.2f %%: target ≤ 2 %%)\n", *idleSeconds, r.RedisAlonePct, r.RedisIdlePct, r.RedisIdlePct-r.RedisAlonePct)
	fmt.Printf("hang phase: the bulk provider hung %.0fs per send; %d bulk sends began, %d finished; %d bulk slots of %d hanging when the last urgent alert arrived\n",
		r.HangSeconds, r.HangBulkStarted, r.HangBulkDone, r.HangSlotsHeld, r.Concurrency)
	fmt.Printf("bulk backlog: %d letters in %d tasks published in %.1fs = %.0f/s (8 goroutines); Redis used_memory +%s = %.0f B per pending letter (payload %d B)\n",
		r.Bulk, r.BulkTasks, r.EnqueueSeconds, r.EnqueueRate, gb(r.BacklogBytes), r.BytesPerTask, r.PayloadBytes)
	fmt.Printf("bulk drain: %.0f letters/s while the urgent letters went out\n", r.DrainRateDuringUrgent)
	if r.DrainSeconds > 0 { // -drain-all
		fmt.Printf("bulk drain: %d letters in %.1fs = %.0f letters/s overall; Redis CPU %.0f µs per bulk letter\n",
			r.Bulk, r.DrainSeconds, r.DrainRate, r.RedisCPUPerBulkUs)
		fmt.Printf("delivered letter state: ≈ %.0f B of Redis per email-only letter (kept for the letter TTL)\n", r.BytesPerLetter)
	}
	fmt.Printf("when the last urgent alert of the drain phase arrived: %d bulk tasks still pending (%d bulk letters not yet alerted)\n",
		r.PendingAtLastUrgent, r.UndeliveredAtLastUrgent)
	fmt.Printf("peak RSS of the child (postbud's servers, the dispatcher and the load generator): %d MiB; load average %s at start, %s at end\n",
		r.PeakRSSKiB/1024, r.LoadStart, r.LoadEnd)

	fmt.Printf("\nurgent letters, publish → alert at the sink (ms), %d at %.0f/s per phase, urgent server's wake-up wait %.0f ms (0: off); raw asynq enqueue → handler start at the same poll interval (%.0f ms):\n",
		r.Urgent, r.Rate, r.UrgentWakeMs, r.UrgentPollMs)
	fmt.Printf("  %-34s %6s %8s %8s %8s %8s %8s\n", "", "n", "missing", "p50", "p95", "p99", "max")
	row := func(name string, d dist) {
		fmt.Printf("  %-34s %6d %8d %8.1f %8.1f %8.1f %8.1f\n", name, d.N, d.Missing, d.P50, d.P95, d.P99, d.Max)
	}
	row("raw asynq (baseline)", r.Raw)
	for _, p := range []struct {
		name string
		ph   lanePhase
	}{{"idle", r.Idle}, {"while the bulk provider hangs", r.Hang}, {"while bulk drains", r.Busy}} {
		row(p.name, p.ph.Total)
		row("  of which Publish call", p.ph.Publish)
		row("  publish → handler start (queue)", p.ph.Wait)
		row("  handler start → sink", p.ph.Handle)
		row("  sent after the phase's first second", p.ph.Later)
	}
	verdict := func(ok bool) string {
		if ok {
			return "meets"
		}
		return "MISSES"
	}
	idle := r.Idle.Total.P99
	fmt.Printf("\nidle p99 = %.1f ms (target ≤ 20 ms: %s); raw asynq p99 = %.1f ms; idle p99 ÷ raw p99 = %.2f\n",
		idle, verdict(idle <= 20), r.Raw.P99, idle/r.Raw.P99)
	// The verdicts are the point ratios', as the targets are set; the
	// interval says whether the run could tell the ratio from the bound.
	within := func(ph lanePhase, bound float64) string {
		lo, hi := ratioInterval(ph.Sample, r.Idle.Sample, 0.99, bootstrapRounds)
		if math.IsNaN(lo) {
			return ""
		}
		s := fmt.Sprintf("; 95 %% bootstrap interval %.2f–%.2f", lo, hi)
		if lo <= bound && bound <= hi {
			s += ", which holds the bound: within this run's noise"
		}
		return s
	}
	fmt.Printf("p99 while bulk drains ÷ idle p99 = %.2f (target ≤ 1: %s%s)\n", r.Busy.Total.P99/idle, verdict(r.Busy.Total.P99 <= idle), within(r.Busy, 1))
	fmt.Printf("p99 while the bulk provider hangs ÷ idle p99 = %.2f (target ≤ 2: %s%s)\n", r.Hang.Total.P99/idle, verdict(r.Hang.Total.P99 <= 2*idle), within(r.Hang, 2))
	fmt.Printf("idle Redis CPU of one replica's polling = %.2f %% of a core (target ≤ 2 %%: %s)\n",
		r.RedisIdlePct-r.RedisAlonePct, verdict(r.RedisIdlePct-r.RedisAlonePct <= 2))
	fmt.Printf("peak RSS = %d MiB (target < 100 MiB: %s)\n", r.PeakRSSKiB/1024, verdict(r.PeakRSSKiB < 100*1024))
	for _, p := range []struct {
		name string
		ph   lanePhase
	}{{"idle", r.Idle}, {"hang", r.Hang}, {"drain", r.Busy}} {
		if p.ph.Total.Missing > 0 {
			fmt.Printf("WARNING: %d urgent alerts of the %s phase never arrived within the wait\n", p.ph.Total.Missing, p.name)
		}
	}
	if r.DrainSeconds > 0 && r.BulkAlerts != int64(r.Bulk) {
		fmt.Printf("WARNING: %d bulk letters drained but %d bulk alerts reached the sinks\n", r.Bulk, r.BulkAlerts)
	}
	if r.HangSlotsHeld < int64(r.Concurrency) && !r.Shared {
		fmt.Printf("INVALID HANG PHASE: only %d of %d bulk slots hung until the last urgent alert\n", r.HangSlotsHeld, r.Concurrency)
	}
	if r.PendingAtLastUrgent <= 0 {
		fmt.Printf("INVALID RUN: the bulk lane had drained before the last urgent alert arrived; the urgent letters did not all compete with bulk. "+
			"Use a larger -bulk (≥ %d at this drain rate), or fewer -urgent / a higher -rate.\n",
			int(math.Ceil(r.DrainRateDuringUrgent*r.Busy.Seconds*1.5/1000))*1000)
	} else {
		fmt.Println("valid: every hang-phase urgent letter went out while every bulk slot hung, every drain-phase one while bulk letters were still queued.")
	}
}

func gb(b int64) string {
	switch {
	case b >= 1<<30 || b <= -1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	default:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
}

func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func isLoopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// latencyProbe records, per measured urgent letter, when it was published,
// when its handler started and when its alert reached the sink, as
// nanoseconds since base (monotonic). The index map is built before the
// workers start and only read after.
type latencyProbe struct {
	base                            time.Time
	index                           map[string]int // message id → slot
	sent, published, started, recvd []atomic.Int64
	got                             atomic.Int64 // measured alerts received
	bulkDone                        atomic.Int64 // other alerts received
	// While hang is open, every other send hangs for hangFor (or until
	// hang is closed), then accepts.
	hangMu               sync.Mutex
	hang                 chan struct{}
	hanging, hangStarted atomic.Int64
	hangDone             atomic.Int64
}

func (p *latencyProbe) now() int64 { return int64(time.Since(p.base)) + 1 } // never 0

// startHang makes the bulk provider hang; the returned func lets the hung
// sends go and stops hanging (a second call does nothing).
func (p *latencyProbe) startHang() (release func()) {
	ch := make(chan struct{})
	p.hangMu.Lock()
	p.hang = ch
	p.hangMu.Unlock()
	return sync.OnceFunc(func() {
		p.hangMu.Lock()
		p.hang = nil
		p.hangMu.Unlock()
		close(ch)
	})
}

// wrap returns a Sender that stamps the measured letters' alerts, and
// hangs the others while a hang is on.
func (p *latencyProbe) wrap(s channels.Sender) channels.Sender {
	return channels.SenderFunc(func(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
		i, measured := p.index[a.MessageID]
		if !measured {
			p.hangMu.Lock()
			ch := p.hang
			p.hangMu.Unlock()
			if ch != nil {
				p.hangStarted.Add(1)
				p.hanging.Add(1)
				t := time.NewTimer(*hangFor)
				select {
				case <-t.C:
				case <-ch:
				case <-ctx.Done():
				}
				t.Stop()
				p.hanging.Add(-1)
				p.hangDone.Add(1)
			}
		}
		rc, err := s.Send(ctx, to, a)
		if measured {
			if p.recvd[i].CompareAndSwap(0, p.now()) {
				p.got.Add(1)
			}
		} else {
			p.bulkDone.Add(1)
		}
		return rc, err
	})
}

// middleware stamps the handler start of measured (urgent-lane) letters.
func (p *latencyProbe) middleware(urgentQueue string) asynq.MiddlewareFunc {
	return func(h asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			if q, _ := asynq.GetQueueName(ctx); q == urgentQueue {
				var ev struct {
					Data struct {
						MessageID string `json:"message_id"`
					} `json:"data"`
				}
				if json.Unmarshal(t.Payload(), &ev) == nil {
					if i, ok := p.index[ev.Data.MessageID]; ok {
						p.started[i].CompareAndSwap(0, p.now())
					}
				}
			}
			return h.ProcessTask(ctx, t)
		})
	}
}

func letterJSON(id, messageID, cpr, sender, priority string, at time.Time) []byte {
	return fmt.Appendf(nil, `{"id":%q,"type":"message.received","occurred_at":%q,"source":"core",`+
		`"data":{"message_id":%q,"recipient":{"cpr":%q},"sender":{"id":%q,"name":%q,"kind":"public"},"priority":%q}}`,
		id, at.Format(time.RFC3339Nano), messageID, cpr, strings.ToLower(sender), sender, priority)
}

// workerConfig is an asynq.Config as cmd/postbud/workers.go makes one for
// each of its servers (the bench cannot import package main): concurrency,
// queues and poll interval given, retries and delayed tasks as serve has
// them by default (POSTBUD_RETRY_BASE 5s: delayed tasks checked each
// second).
func workerConfig(conc int, queues map[string]int, poll time.Duration, d *dispatcher.Dispatcher) asynq.Config {
	cfg := asynq.Config{Concurrency: conc, Queues: queues, TaskCheckInterval: poll, LogLevel: asynq.ErrorLevel,
		DelayedTaskCheckInterval: time.Second, IsFailure: dispatcher.IsFailure, ShutdownTimeout: 25 * time.Second}
	if d != nil {
		cfg.RetryDelayFunc = d.RetryDelay
	}
	return cfg
}

// replica is one postbud replica's worker servers.
type replica []*asynq.Server

func (r replica) shutdown() {
	for _, s := range r {
		s.Stop()
	}
	var wg sync.WaitGroup
	for _, s := range r {
		wg.Go(s.Shutdown)
	}
	wg.Wait()
}

// runLatency is the child. Its workers are shut down when it returns.
func runLatency(ctx context.Context, rdb *redis.Client, url, prefix string, conc int) (latencyResult, error) {
	B, U, R, K := *bulkN, *urgentN, *urgentRate, *bulkCitizens
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "  "+format+"\n", a...) }
	res := latencyResult{Bulk: B, Urgent: U, Rate: R, BulkCitizens: K, Concurrency: conc, UrgentConcurrency: *urgentConc,
		UrgentPollMs: float64(*urgentPoll) / 1e6, PollMs: float64(*bulkPoll) / 1e6, HangSeconds: hangFor.Seconds(),
		UrgentWakeMs: float64(*urgentWake) / 1e6, SplitNice: *splitNice,
		Shared: *sharedServer, LoadStart: loadavg()}

	queues := dispatcher.DefaultQueues(prefix)
	sealer := benchSealer()
	store := redisstore.New(rdb, redisstore.Options{Prefix: prefix, Sealer: sealer})
	defer store.Close()
	// Ungrouped: the drain phase's bulk letters published one at a time
	// are a task each, as in the runs README quotes (the worst case for
	// the urgent lane: most tasks; -drain-batch publishes them in batches).
	pub := publish.NewFromRedisClient(rdb, prefix, publish.Ungrouped())
	keyer := benchKeyer()
	client := asynq.NewClientFromRedisClient(rdb)
	// As cmd/postbud wires them: the dispatcher's own urgent enqueues (and
	// publish's) push wake-up tokens and mark the urgent lane flowing, the
	// urgent server waits for the tokens.
	var enqueuer dispatcher.Enqueuer = asynq.NewClientFromRedisClient(wake.NewClient(rdb, *urgentWake, queues.Urgent))
	urgentRDB := redis.UniversalClient(rdb)
	if *urgentWake > 0 && !*sharedServer {
		urgentRDB = wake.NewClient(rdb, *urgentWake, queues.Urgent)
	}

	// Measured letters: slots [0,U) idle, [U,2U) hang, [2U,3U) while bulk
	// drains, to citizens of the same numbers; bulk letters to citizens
	// [3U, 3U+K).
	const phases = 3
	p := &latencyProbe{base: time.Now(), index: make(map[string]int, phases*U)}
	p.sent, p.published = make([]atomic.Int64, phases*U), make([]atomic.Int64, phases*U)
	p.started, p.recvd = make([]atomic.Int64, phases*U), make([]atomic.Int64, phases*U)
	urgentID := func(i int) string { return fmt.Sprintf("%08x-0001-4000-8000-%012x", i, i) }
	for i := range phases * U {
		p.index[urgentID(i)] = i
	}
	senders := map[channels.Name]channels.Sender{}
	for _, ch := range []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM} {
		senders[ch] = p.wrap(sink.New(ch, 0))
	}
	flowing, pace := benchYield(rdb, prefix, queues)
	d, err := dispatcher.New(dispatcher.Config{Store: store, Keyer: keyer, Sealer: sealer, Enqueuer: enqueuer, Queues: queues,
		Senders: senders, MailboxURL: "https://www.borger.dk/digitalpost", Logger: slog.New(slog.DiscardHandler),
		BatchInflight: *batchInflight, UrgentFlowing: flowing, YieldPace: pace})
	if err != nil {
		return latencyResult{}, err
	}
	// sendErr keeps the first error of a send made on a goroutine of its
	// own.
	var sendErr errSlot
	// startWorkers starts the replica's servers; urgentOnly the urgent
	// server alone (-split-nice: the main server runs in another process).
	startWorkers := func(urgentOnly bool) (replica, error) {
		mux := asynq.NewServeMux()
		mux.Use(p.middleware(queues.Urgent))
		d.Register(mux)
		var r replica
		switch {
		case *sharedServer:
			r = replica{asynq.NewServerFromRedisClient(rdb, workerConfig(conc, beforeWeights(queues), *bulkPoll, d))}
		case urgentOnly:
			r = replica{asynq.NewServerFromRedisClient(urgentRDB, workerConfig(*urgentConc, queues.UrgentWeights(), *urgentPoll, d))}
		default:
			r = replica{
				asynq.NewServerFromRedisClient(urgentRDB, workerConfig(*urgentConc, queues.UrgentWeights(), *urgentPoll, d)),
				asynq.NewServerFromRedisClient(rdb, workerConfig(conc, queues.Weights(), *bulkPoll, d)),
			}
		}
		for i, s := range r {
			if err := s.Start(mux); err != nil {
				r[:i].shutdown()
				return nil, err
			}
		}
		return r, nil
	}

	now := time.Now().UTC()
	citizens := phases*U + K
	t := time.Now()
	if err := enqueue(citizens, func(i int) error {
		email := fmt.Sprintf("citizen%d@example.dk", i)
		key := keyer.CitizenKey(event.CPR(cprOf(i)))
		_, err := store.UpdateContact(ctx, confirmedContact(keyer, key, email, "", now,
			dispatcher.EventRef{Citizen: key, ID: fmt.Sprintf("lc%d", i)}))
		return err
	}); err != nil {
		return latencyResult{}, err
	}
	logf("preloaded %d citizens with an email only in %.1fs", citizens, time.Since(t).Seconds())

	// at runs send(k) for k in [0,U) at R/s, open loop: each starts on
	// schedule in its own goroutine, so a slow call does not delay the
	// next.
	at := func(send func(k int)) time.Time {
		start := time.Now()
		for k := range U {
			time.Sleep(time.Until(start.Add(time.Duration(float64(k) * float64(time.Second) / R))))
			go send(k)
		}
		return start
	}

	// 0. raw asynq: enqueue → handler start, one queue, the urgent
	// server's poll interval and concurrency.
	{
		rawQueue := prefix + ".raw"
		enq := make([]atomic.Int64, U)
		var got atomic.Int64
		stamps := make([]time.Duration, 0, U)
		var mu sync.Mutex
		srv := asynq.NewServerFromRedisClient(rdb, workerConfig(*urgentConc, map[string]int{rawQueue: 1}, *urgentPoll, nil))
		mux := asynq.NewServeMux()
		mux.HandleFunc("noop", func(_ context.Context, t *asynq.Task) error {
			k, _ := strconv.Atoi(string(t.Payload()))
			d := time.Duration(p.now() - enq[k].Load())
			mu.Lock()
			stamps = append(stamps, d)
			mu.Unlock()
			got.Add(1)
			return nil
		})
		if err := srv.Start(mux); err != nil {
			return latencyResult{}, err
		}
		time.Sleep(time.Second) // let the fetch loop settle into its idle polling
		logf("raw: enqueueing %d no-op tasks at %.0f/s …", U, R)
		at(func(k int) {
			enq[k].Store(p.now())
			if _, err := client.EnqueueContext(ctx, asynq.NewTask("noop", []byte(strconv.Itoa(k))), asynq.Queue(rawQueue)); err != nil {
				sendErr.set(err)
			}
		})
		deadline := time.Now().Add(60 * time.Second)
		for got.Load() < int64(U) && time.Now().Before(deadline) && ctx.Err() == nil && sendErr.get() == nil {
			time.Sleep(time.Millisecond)
		}
		srv.Shutdown()
		if err := sendErr.get(); err != nil {
			return latencyResult{}, fmt.Errorf("raw: %w", err)
		}
		mu.Lock()
		res.Raw = mkDist(stamps, U)
		mu.Unlock()
		logf("raw: p50 %.1f ms, p99 %.1f ms", res.Raw.P50, res.Raw.P99)
	}

	// 1. idle Redis CPU: Redis alone, then with the replica's servers.
	idleCPU := func() float64 {
		c0, t0 := redisCPU(ctx, rdb), time.Now()
		time.Sleep(time.Duration(*idleSeconds * float64(time.Second)))
		return (redisCPU(ctx, rdb) - c0) / time.Since(t0).Seconds() * 100
	}
	res.RedisAlonePct = idleCPU()
	srv, err := startWorkers(false)
	if err != nil {
		return latencyResult{}, err
	}
	// Every return from here on shuts down the workers running then.
	defer func() { srv.shutdown() }()
	time.Sleep(time.Second) // past the servers' start-up writes
	res.RedisIdlePct = idleCPU()
	logf("idle Redis CPU: %.2f %% of a core alone, %.2f %% with the replica's servers idle", res.RedisAlonePct, res.RedisIdlePct)

	// sendUrgent publishes slots [from, from+U) at R/s. It returns when all
	// alerts arrived or 60 s after the last send; with an error if a
	// Publish failed, or if every task was handled with alerts missing
	// (they will not come: the phase would measure nothing).
	sendUrgent := func(from int) (time.Time, error) {
		start := at(func(k int) {
			i := from + k
			b := letterJSON(fmt.Sprintf("lat-urgent-%d", i), urgentID(i), cprOf(i), "Politiet", "urgent", time.Now().UTC())
			p.sent[i].Store(p.now())
			if _, err := pub.Publish(ctx, b); err != nil {
				sendErr.set(err)
				return
			}
			p.published[i].Store(p.now())
		})
		deadline := time.Now().Add(60 * time.Second)
		lastCheck := time.Now()
		for time.Now().Before(deadline) && ctx.Err() == nil && sendErr.get() == nil {
			if p.got.Load() >= int64(from+U) {
				break
			}
			// At most every 100 ms, not to load the Redis measured.
			if time.Since(lastCheck) > 100*time.Millisecond {
				lastCheck = time.Now()
				published := true
				for i := from; i < from+U && published; i++ {
					published = p.published[i].Load() != 0
				}
				if n, err := queued(ctx, rdb, queues); published && err == nil && n == 0 {
					// Every letter's task handled: the count read now is final.
					got := 0
					for i := from; i < from+U; i++ {
						got += min(int(p.recvd[i].Load()), 1)
					}
					if got < U {
						return start, fmt.Errorf("every task handled but %d of %d urgent alerts at the sinks", got, U)
					}
					break
				}
			}
			time.Sleep(time.Millisecond)
		}
		return start, sendErr.get()
	}
	phase := func(from int, start time.Time) lanePhase {
		var total, pubd, wait, handle, later []time.Duration
		var last int64
		first := min(U, int(*urgentRate)) // letters sent in the phase's first second
		for i := from; i < from+U; i++ {
			s, pb, st, rc := p.sent[i].Load(), p.published[i].Load(), p.started[i].Load(), p.recvd[i].Load()
			if pb != 0 {
				pubd = append(pubd, time.Duration(pb-s))
			}
			if st != 0 {
				wait = append(wait, time.Duration(st-s))
			}
			if rc != 0 {
				total = append(total, time.Duration(rc-s))
				if i-from >= first {
					later = append(later, time.Duration(rc-s))
				}
				last = max(last, rc)
				if st != 0 {
					handle = append(handle, time.Duration(rc-st))
				}
			}
		}
		ph := lanePhase{Total: mkDist(total, U), Publish: mkDist(pubd, U), Wait: mkDist(wait, U), Handle: mkDist(handle, U), Later: mkDist(later, U-first),
			Seconds: (time.Duration(last) - start.Sub(p.base)).Seconds(), Load: loadavg()}
		for _, d := range total { // sorted by mkDist
			ph.Sample = append(ph.Sample, float64(d)/1e6)
		}
		return ph
	}
	// The hang phase's letters and the drain's have message ids of their
	// own (0003, 0002; the urgent ones 0001).
	bulkLetter := func(tag string, i int) []byte {
		kind := map[string]int{"bulk": 2, "hang": 3}[tag]
		return letterJSON("lat-"+tag+"-"+strconv.Itoa(i), fmt.Sprintf("%08x-%04d-4000-8000-%012x", i, kind, i),
			cprOf(phases*U+i%K), "Skattestyrelsen", "bulk", now)
	}

	// 2. idle.
	logf("idle: sending %d urgent letters at %.0f/s …", U, R)
	start, err := sendUrgent(0)
	if err != nil {
		return latencyResult{}, fmt.Errorf("idle: %w", err)
	}
	res.Idle = phase(0, start)
	logf("idle: p50 %.1f ms, p99 %.1f ms, max %.1f ms (load %s)", res.Idle.Total.P50, res.Idle.Total.P99, res.Idle.Total.Max, res.Idle.Load)

	// 3. hang: every bulk slot hangs, more bulk letters wait.
	release := p.startHang()
	defer release() // an error return lets hung sends go before the workers shut down
	hb := hangLetters(conc, U, R)
	logf("hang: publishing %d bulk letters to a provider that hangs %v per send …", hb, *hangFor)
	if err := enqueue(hb, func(i int) error { _, err := pub.Publish(ctx, bulkLetter("hang", i)); return err }); err != nil {
		return latencyResult{}, err
	}
	// Every bulk slot hangs, unless the letters were handled without a
	// send (then the queues empty and the phase would measure nothing).
	var idle bool
	if err := waitUntil(ctx, func() bool {
		if p.hanging.Load() >= int64(conc) {
			return true
		}
		n, err := queued(ctx, rdb, queues)
		idle = err == nil && n == 0
		return idle
	}); err != nil {
		return latencyResult{}, fmt.Errorf("hang: waiting for %d bulk sends to hang, %d so far: %w", conc, p.hanging.Load(), err)
	}
	if idle {
		return latencyResult{}, fmt.Errorf("hang: every bulk letter handled but only %d of %d bulk sends hung", p.hanging.Load(), conc)
	}
	logf("hang: all %d bulk slots hang; sending %d urgent letters at %.0f/s …", conc, U, R)
	if start, err = sendUrgent(U); err != nil {
		return latencyResult{}, fmt.Errorf("hang: %w", err)
	}
	res.HangSlotsHeld = p.hanging.Load()
	res.Hang = phase(U, start)
	res.HangBulkStarted, res.HangBulkDone = p.hangStarted.Load(), p.hangDone.Load()
	logf("hang: p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d bulk sends hanging (load %s)", res.Hang.Total.P50, res.Hang.Total.P99,
		res.Hang.Total.Max, res.HangSlotsHeld, res.Hang.Load)
	release()
	pendingKey := "asynq:{" + queues.Bulk + "}:pending"
	activeKey := "asynq:{" + queues.Bulk + "}:active"
	drained := func() bool {
		n, err := rdb.LLen(ctx, pendingKey).Result()
		a, err2 := rdb.LLen(ctx, activeKey).Result()
		return err == nil && err2 == nil && n+a == 0
	}
	if err := waitUntil(ctx, drained); err != nil {
		return latencyResult{}, fmt.Errorf("hang: waiting for the bulk lane to drain: %w", err)
	}
	srv.shutdown()

	// 4. bulk backlog, workers stopped.
	res.PayloadBytes = len(bulkLetter("bulk", 1000000))
	mem0 := redisMem(ctx, rdb)
	t = time.Now()
	if *drainBatch {
		// As a release arrives: PublishBatch packs the letters of one call
		// into batch tasks of dispatcher.DefaultBatchSize.
		const perCall = 500
		logf("bulk: publishing %d bulk letters, %d a PublishBatch call, from 8 goroutines …", B, perCall)
		err = enqueue((B+perCall-1)/perCall, func(j int) error {
			raws := make([][]byte, 0, perCall)
			for i := j * perCall; i < min(B, (j+1)*perCall); i++ {
				raws = append(raws, bulkLetter("bulk", i))
			}
			for _, r := range pub.PublishBatch(ctx, raws) {
				if r.Err != nil || r.Duplicate {
					return fmt.Errorf("bulk letter not enqueued (duplicate %v): %w", r.Duplicate, r.Err)
				}
			}
			return nil
		})
	} else {
		logf("bulk: publishing %d bulk letters from 8 goroutines …", B)
		err = enqueue(B, func(i int) error { _, err := pub.Publish(ctx, bulkLetter("bulk", i)); return err })
	}
	if err != nil {
		return latencyResult{}, err
	}
	res.EnqueueSeconds = time.Since(t).Seconds()
	res.EnqueueRate = float64(B) / res.EnqueueSeconds
	res.BulkTasks, _ = rdb.LLen(ctx, pendingKey).Result()
	mem1 := redisMem(ctx, rdb)
	res.BacklogBytes = mem1 - mem0
	res.BytesPerTask = float64(res.BacklogBytes) / float64(B)
	logf("bulk: %d published in %.1fs = %.0f/s; used_memory +%s = %.0f B per pending letter",
		B, res.EnqueueSeconds, res.EnqueueRate, gb(res.BacklogBytes), res.BytesPerTask)

	// 5. drain with urgent letters on top. With -split-nice the main
	// server runs in a child process, which counts its bulk alerts in
	// Redis (bulkDoneKey).
	split := *splitNice >= 0 && !*sharedServer
	bulkDone := func() int64 {
		n := p.bulkDone.Load()
		if split {
			m, _ := rdb.Get(ctx, bulkDoneKey(prefix)).Int64()
			n += m
		}
		return n
	}
	bulkBase := bulkDone()
	cpu0 := redisCPU(ctx, rdb)
	t = time.Now()
	if srv, err = startWorkers(split); err != nil {
		return latencyResult{}, err
	}
	stop := srv.shutdown
	if split {
		stopMain, err := startMainProcess(url, prefix, conc)
		if err != nil {
			return latencyResult{}, err
		}
		defer stopMain() // an error return
		stop = func() {
			srv.shutdown()
			if err := stopMain(); err != nil {
				sendErr.set(fmt.Errorf("the main server's process: %w", err))
			}
		}
	}
	stopProgress := make(chan struct{})
	defer close(stopProgress)
	go func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-tick.C:
				logf("  … %.0fs: %d/%d bulk alerted, %d/%d urgent measured, load %s", time.Since(t).Seconds(),
					bulkDone()-bulkBase, B, p.got.Load()-int64(2*U), U, loadavg())
			}
		}
	}()
	time.Sleep(time.Second) // let the drain reach its pace before measuring
	bulk0 := bulkDone()
	logf("bulk: draining; sending %d urgent letters at %.0f/s to other citizens …", U, R)
	if start, err = sendUrgent(2 * U); err != nil {
		return latencyResult{}, fmt.Errorf("drain: %w", err)
	}
	bulk1 := bulkDone()
	res.PendingAtLastUrgent, _ = rdb.LLen(ctx, pendingKey).Result()
	res.UndeliveredAtLastUrgent = int64(B) - (bulk1 - bulkBase)
	res.DrainRateDuringUrgent = float64(bulk1-bulk0) / time.Since(start).Seconds()
	res.Busy = phase(2*U, start)
	logf("bulk: urgent p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d bulk tasks still pending (load %s)",
		res.Busy.Total.P50, res.Busy.Total.P99, res.Busy.Total.Max, res.PendingAtLastUrgent, res.Busy.Load)
	if !*drainAll {
		stop()
		res.LoadEnd = loadavg()
		return res, sendErr.get()
	}
	// Drained when the bulk lane's pending and active lists are empty (the
	// last Records have then landed, for the CPU and memory figures).
	last, lastAt := int64(-1), time.Now()
	for !drained() {
		n, _ := rdb.LLen(ctx, pendingKey).Result()
		if n != last {
			last, lastAt = n, time.Now()
		} else if time.Since(lastAt) > time.Minute || ctx.Err() != nil {
			return latencyResult{}, fmt.Errorf("bulk drain stalled: %d pending, %d of %d alerted", n, bulkDone()-bulkBase, B)
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.DrainSeconds = time.Since(t).Seconds()
	res.DrainRate = float64(B) / res.DrainSeconds
	res.RedisCPUPerBulkUs = (redisCPU(ctx, rdb) - cpu0) * 1e6 / float64(B+U)
	stop()
	res.BulkAlerts = bulkDone() - bulkBase
	mem2 := redisMem(ctx, rdb)
	res.BytesPerLetter = float64(mem2-mem0) / float64(B+U)
	logf("bulk: drained %d in %.1fs = %.0f/s", B, res.DrainSeconds, res.DrainRate)
	res.LoadEnd = loadavg()
	return res, sendErr.get()
}

func mkDist(ds []time.Duration, want int) dist {
	d := dist{N: len(ds), Missing: want - len(ds)}
	if len(ds) == 0 {
		return d
	}
	slices.Sort(ds)
	q := func(f float64) float64 { return float64(ds[quantileIndex(len(ds), f)]) / 1e6 }
	d.P50, d.P95, d.P99, d.Max = q(0.50), q(0.95), q(0.99), float64(ds[len(ds)-1])/1e6
	return d
}

// beforeWeights are the main server's weights from before the urgent lane
// had a server of its own (-shared): urgent first, 6/3/1.
func beforeWeights(q dispatcher.Queues) map[string]int {
	return map[string]int{q.Urgent: 6, q.Normal: 3, q.Bulk: 1}
}

// bulkDoneKey is where a -split-nice main server's process counts the
// bulk alerts it sent.
func bulkDoneKey(prefix string) string { return prefix + ":bench:bulkdone" }

// latencyChildArgs are a latency child process's arguments: its phase,
// the Redis, prefix and concurrency, and every other flag set.
func latencyChildArgs(phase, url, prefix string, conc int) []string {
	args := []string{"-phase", phase, "-prefix", prefix, "-redis", url, "-concurrency", strconv.Itoa(conc)}
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "phase", "prefix", "redis", "concurrency", "latency", "force":
		default:
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	return args
}

// startMainProcess starts the drain phase's main server in a process of
// its own at -split-nice (runLatencyMain); stop ends it (closing its
// stdin) and waits for it.
func startMainProcess(url, prefix string, conc int) (stop func() error, err error) {
	cmd := exec.Command(os.Args[0], latencyChildArgs("latency-main", url, prefix, conc)...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return sync.OnceValue(func() error {
		in.Close()
		return cmd.Wait()
	}), nil
}

// runLatencyMain is the -split-nice drain phase's main server: a process
// of its own at nice -split-nice, normal 6 · bulk 2 as POSTBUD_WORKERS=main,
// sinks that accept at once, its bulk alerts counted in Redis every 100 ms.
// It stops when its stdin closes.
func runLatencyMain(ctx context.Context, rdb *redis.Client, prefix string, conc int) error {
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, *splitNice); err != nil {
		return fmt.Errorf("nice %d: %w", *splitNice, err)
	}
	queues := dispatcher.DefaultQueues(prefix)
	sealer := benchSealer()
	store := redisstore.New(rdb, redisstore.Options{Prefix: prefix, Sealer: sealer})
	defer store.Close()
	keyer := benchKeyer()
	var enqueuer dispatcher.Enqueuer = asynq.NewClientFromRedisClient(wake.NewClient(rdb, *urgentWake, queues.Urgent))
	var sent atomic.Int64
	senders := map[channels.Name]channels.Sender{}
	for _, ch := range []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM} {
		s := sink.New(ch, 0)
		senders[ch] = channels.SenderFunc(func(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
			rc, err := s.Send(ctx, to, a)
			sent.Add(1)
			return rc, err
		})
	}
	flowing, pace := benchYield(rdb, prefix, queues)
	d, err := dispatcher.New(dispatcher.Config{Store: store, Keyer: keyer, Sealer: sealer, Enqueuer: enqueuer, Queues: queues,
		Senders: senders, MailboxURL: "https://www.borger.dk/digitalpost", Logger: slog.New(slog.DiscardHandler),
		BatchInflight: *batchInflight, UrgentFlowing: flowing, YieldPace: pace})
	if err != nil {
		return err
	}
	mux := asynq.NewServeMux()
	d.Register(mux)
	srv := asynq.NewServerFromRedisClient(rdb, workerConfig(conc, queues.MainOnlyWeights(), *bulkPoll, d))
	if err := srv.Start(mux); err != nil {
		return err
	}
	var counted int64
	flush := func() error {
		n := sent.Load()
		if n == counted {
			return nil
		}
		if err := rdb.IncrBy(ctx, bulkDoneKey(prefix), n-counted).Err(); err != nil {
			return err
		}
		counted = n
		return nil
	}
	closed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(closed)
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := flush(); err != nil {
				srv.Shutdown()
				return err
			}
		case <-closed:
			srv.Shutdown()
			return flush()
		}
	}
}

// benchYield is Config.UrgentFlowing and YieldPace as cmd/postbud wires
// them (yielding): the urgent lane's wake.Flow, read at most every wake.FlowRead,
// and -yield-rate letters a second shared in Redis; no flow with
// -yield-rate 0.
func benchYield(rdb redis.UniversalClient, prefix string, queues dispatcher.Queues) (func(context.Context) bool, dispatcher.Pacer) {
	if *yieldRate <= 0 {
		return nil, nil
	}
	return wake.NewFlow(rdb, queues.Urgent, wake.FlowRead).On, redisstore.NewPacer(rdb, prefix, *yieldRate, dispatcher.YieldTurn)
}
