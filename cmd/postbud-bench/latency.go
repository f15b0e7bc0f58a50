package main

// The priority-lane latency benchmark (docs/design.md, "Capacity"): an
// urgent letter while a bulk release of 1 million letters is draining:
//
//	go run ./cmd/postbud-bench -latency [-bulk 1000000] [-urgent 2000] [-rate 50]
//
// It runs in one child process (so its peak RSS is its own), with the
// wiring of the postbud phase: the real dispatcher on redisstore, sinks
// that accept at once, letters enqueued with package publish, and an
// asynq.Server configured as `postbud serve` configures it by default
// (Queues = dispatcher.Queues.Weights(): urgent 6, normal 3, bulk 1;
// TaskCheckInterval 50ms; Concurrency 50). Citizens are preloaded with an
// email address only (one alert per letter), to keep the citizen registry
// light in Redis; the bulk letters go round-robin to -bulk-citizens
// citizens, the urgent letters to citizens of their own.
//
//  1. idle: U urgent letters at R/s to distinct citizens, nothing else
//     queued. Per letter: the time from just before Publish to the moment
//     the sink got its alert (matched on Alert.MessageID).
//  2. bulk: with the workers stopped, B bulk letters are published as fast
//     as 8 goroutines can (enqueue rate, Redis used_memory of the backlog);
//     then the workers start and, while the bulk lane drains, U urgent
//     letters to other citizens go out at R/s and are measured the same
//     way. The run is valid only if bulk letters were still pending when
//     the last urgent alert arrived.
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
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
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
)

var (
	latencyMode  = flag.Bool("latency", false, "run the priority-lane latency benchmark instead of the throughput one")
	bulkN        = flag.Int("bulk", 1000000, "latency: bulk letters in the backlog")
	urgentN      = flag.Int("urgent", 2000, "latency: urgent letters measured per phase (idle, bulk)")
	urgentRate   = flag.Float64("rate", 50, "latency: urgent letters per second")
	bulkCitizens = flag.Int("bulk-citizens", 20000, "latency: citizens the bulk letters go to, round robin")
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
	Seconds float64 `json:"seconds"` // first send → last alert
	Load    string  `json:"load"`    // /proc/loadavg after the phase
}

type latencyResult struct {
	Bulk, Urgent, BulkCitizens, Concurrency int
	Rate                                    float64
	Idle, Busy                              lanePhase
	EnqueueSeconds, EnqueueRate             float64
	BacklogBytes                            int64
	BytesPerTask                            float64
	PayloadBytes                            int
	DrainSeconds, DrainRate                 float64
	DrainRateDuringUrgent                   float64
	PendingAtLastUrgent                     int64 // bulk tasks still in the pending list
	BulkAlerts                              int64 // alerts of bulk letters at the sinks (= Bulk)
	UndeliveredAtLastUrgent                 int64 // bulk letters whose alert had not gone out
	BytesPerLetter                          float64
	RedisCPUPerBulkUs                       float64
	LoadStart, LoadEnd                      string
	PeakRSSKiB                              int64
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// latencyMain is the parent: it checks Redis has room, runs the child and
// prints the figures. Redis is cleaned up whatever happens to the child.
func latencyMain(ctx context.Context, rdb *redis.Client, url string, conc int) {
	B, U, R, K := *bulkN, *urgentN, *urgentRate, *bulkCitizens
	if B < 1 || U < 1 || R <= 0 || K < 1 {
		fail(fmt.Errorf("-bulk, -urgent, -rate and -bulk-citizens must be positive"))
	}
	if 2*U+K > 168000 {
		fail(fmt.Errorf("2×-urgent + -bulk-citizens must be ≤ 168000 (distinct test CPR numbers)"))
	}
	info, _ := rdb.Info(ctx, "memory").Result()
	used, _ := strconv.ParseInt(infoField(info, "used_memory"), 10, 64)
	rss, _ := strconv.ParseInt(infoField(info, "used_memory_rss"), 10, 64)
	maxmem, _ := strconv.ParseInt(infoField(info, "maxmemory"), 10, 64)
	sysmem, _ := strconv.ParseInt(infoField(info, "total_system_memory"), 10, 64)
	need := int64(B)*(estBytesPerTask+estBytesPerLetter) + int64(2*U+K)*300
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
	fmt.Printf("postbud-bench -latency: bulk=%d urgent=%d rate=%.0f/s bulk-citizens=%d concurrency=%d redis=%s (%s)\n",
		B, U, R, K, conc, rdb.Options().Addr, redisVersion(ctx, rdb))
	fmt.Printf("Redis memory: the run needs ≈ %s (≈ %d B per pending bulk task + ≈ %d B per delivered letter's state); room %s (%s)\n",
		gb(need), estBytesPerTask, estBytesPerLetter, gb(room), what)
	if need > room*9/10 {
		fail(fmt.Errorf("not enough Redis memory for -bulk %d: needs ≈ %s, room %s (%s); use a smaller -bulk or raise maxmemory",
			B, gb(need), gb(room), what))
	}

	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "benchlat" + hex.EncodeToString(b[:])
	cmd := exec.Command(os.Args[0], "-phase", "latency", "-prefix", prefix, "-redis", url,
		"-concurrency", strconv.Itoa(conc), "-bulk", strconv.Itoa(B), "-urgent", strconv.Itoa(U),
		"-rate", strconv.FormatFloat(R, 'f', -1, 64), "-bulk-citizens", strconv.Itoa(K))
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

func printLatency(r latencyResult) {
	fmt.Printf("\nbulk backlog: %d letters published in %.1fs = %.0f/s (8 goroutines); Redis used_memory +%s = %.0f B per pending task (payload %d B)\n",
		r.Bulk, r.EnqueueSeconds, r.EnqueueRate, gb(r.BacklogBytes), r.BytesPerTask, r.PayloadBytes)
	fmt.Printf("bulk drain: %d letters in %.1fs = %.0f letters/s overall, %.0f/s while the urgent letters went out; Redis CPU %.0f µs per bulk letter\n",
		r.Bulk, r.DrainSeconds, r.DrainRate, r.DrainRateDuringUrgent, r.RedisCPUPerBulkUs)
	fmt.Printf("delivered letter state: ≈ %.0f B of Redis per email-only letter (kept for the letter TTL)\n", r.BytesPerLetter)
	fmt.Printf("when the last urgent alert arrived: %d bulk tasks still pending (%d bulk letters not yet alerted)\n",
		r.PendingAtLastUrgent, r.UndeliveredAtLastUrgent)
	fmt.Printf("peak RSS of the child: %d MiB; load average %s at start, %s at end (2 shared cores)\n",
		r.PeakRSSKiB/1024, r.LoadStart, r.LoadEnd)

	fmt.Printf("\nurgent letters, publish → alert at the sink (ms), %d at %.0f/s per phase:\n", r.Urgent, r.Rate)
	fmt.Printf("  %-34s %6s %8s %8s %8s %8s %8s\n", "", "n", "missing", "p50", "p95", "p99", "max")
	row := func(name string, d dist) {
		fmt.Printf("  %-34s %6d %8d %8.1f %8.1f %8.1f %8.1f\n", name, d.N, d.Missing, d.P50, d.P95, d.P99, d.Max)
	}
	for _, p := range []struct {
		name string
		ph   lanePhase
	}{{"idle", r.Idle}, {"while bulk drains", r.Busy}} {
		row(p.name, p.ph.Total)
		row("  of which Publish call", p.ph.Publish)
		row("  publish → handler start (queue)", p.ph.Wait)
		row("  handler start → sink", p.ph.Handle)
	}
	ratio := r.Busy.Total.P99 / r.Idle.Total.P99
	fmt.Printf("\np99 while bulk drains ÷ idle p99 = %.2f  (p50 ratio %.2f)\n", ratio, r.Busy.Total.P50/r.Idle.Total.P50)
	if r.Busy.Total.Missing > 0 || r.Idle.Total.Missing > 0 {
		fmt.Printf("WARNING: %d idle and %d busy urgent alerts never arrived within the wait\n", r.Idle.Total.Missing, r.Busy.Total.Missing)
	}
	if r.BulkAlerts != int64(r.Bulk) {
		fmt.Printf("WARNING: %d bulk letters drained but %d bulk alerts reached the sinks\n", r.Bulk, r.BulkAlerts)
	}
	if r.PendingAtLastUrgent <= 0 {
		fmt.Printf("INVALID RUN: the bulk lane had drained before the last urgent alert arrived; the urgent letters did not all compete with bulk. "+
			"Use a larger -bulk (≥ %d at this drain rate), or fewer -urgent / a higher -rate.\n",
			int(math.Ceil(r.DrainRate*r.Busy.Seconds*1.5/1000))*1000)
	} else {
		fmt.Println("valid: every urgent letter was sent and alerted while bulk letters were still queued.")
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
}

func (p *latencyProbe) now() int64 { return int64(time.Since(p.base)) + 1 } // never 0

// wrap returns a Sender that stamps the measured letters' alerts.
func (p *latencyProbe) wrap(s channels.Sender) channels.Sender {
	return channels.SenderFunc(func(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
		rc, err := s.Send(ctx, to, a)
		if i, ok := p.index[a.MessageID]; ok {
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

// runLatency is the child.
func runLatency(ctx context.Context, rdb *redis.Client, prefix string, conc int) {
	B, U, R, K := *bulkN, *urgentN, *urgentRate, *bulkCitizens
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "  "+format+"\n", a...) }
	res := latencyResult{Bulk: B, Urgent: U, Rate: R, BulkCitizens: K, Concurrency: conc, LoadStart: loadavg()}

	queues := dispatcher.DefaultQueues(prefix)
	sealer := benchSealer()
	store := redisstore.New(rdb, redisstore.Options{Prefix: prefix, Sealer: sealer})
	defer store.Close()
	pub := publish.NewFromRedisClient(rdb, prefix)
	keyer, err := dispatcher.NewKeyer([]byte("bench-pseudonymisation-key-0123456789"))
	if err != nil {
		fail(err)
	}
	client := asynq.NewClientFromRedisClient(rdb)

	// Measured letters: slots [0,U) idle, [U,2U) while bulk drains, to
	// citizens [0,U) and [U,2U); bulk letters to citizens [2U, 2U+K).
	p := &latencyProbe{base: time.Now(), index: make(map[string]int, 2*U)}
	p.sent, p.published = make([]atomic.Int64, 2*U), make([]atomic.Int64, 2*U)
	p.started, p.recvd = make([]atomic.Int64, 2*U), make([]atomic.Int64, 2*U)
	urgentID := func(i int) string { return fmt.Sprintf("%08x-0001-4000-8000-%012x", i, i) }
	for i := range 2 * U {
		p.index[urgentID(i)] = i
	}
	senders := map[channels.Name]channels.Sender{}
	for _, ch := range []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM} {
		senders[ch] = p.wrap(sink.New(ch, 0))
	}
	d, err := dispatcher.New(dispatcher.Config{Store: store, Keyer: keyer, Sealer: sealer, Enqueuer: client, Queues: queues,
		Senders: senders, MailboxURL: "https://www.borger.dk/digitalpost", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fail(err)
	}
	startWorkers := func() *asynq.Server {
		srv := newServer(rdb, queues, conc, d) // Weights() 6/3/1, TaskCheckInterval 50ms, as serve
		mux := asynq.NewServeMux()
		mux.Use(p.middleware(queues.Urgent))
		d.Register(mux)
		if err := srv.Start(mux); err != nil {
			fail(err)
		}
		return srv
	}

	now := time.Now().UTC()
	citizens := 2*U + K
	t := time.Now()
	enqueue(citizens, func(i int) error {
		email := fmt.Sprintf("citizen%d@example.dk", i)
		key := keyer.CitizenKey(event.CPR(latCPR(i)))
		_, err := store.UpdateContact(ctx, dispatcher.ContactWrite{Citizen: key, Contact: &event.ContactData{Email: &email},
			At: now, Confirmed: true, Mark: dispatcher.EventRef{Citizen: key, ID: fmt.Sprintf("lc%d", i)}})
		return err
	})
	logf("preloaded %d citizens with an email only in %.1fs", citizens, time.Since(t).Seconds())

	// sendUrgent publishes slots [from, from+U) at R/s, open loop: each send
	// starts on schedule in its own goroutine, so a slow Publish does not
	// delay the next letter. It returns when all alerts arrived or 60 s
	// after the last send.
	sendUrgent := func(from int) time.Time {
		start := time.Now()
		for k := range U {
			i := from + k
			time.Sleep(time.Until(start.Add(time.Duration(float64(k) * float64(time.Second) / R))))
			go func() {
				b := letterJSON(fmt.Sprintf("lat-urgent-%d", i), urgentID(i), latCPR(i), "Politiet", "urgent", time.Now().UTC())
				p.sent[i].Store(p.now())
				if _, err := pub.Publish(ctx, b); err != nil {
					fail(err)
				}
				p.published[i].Store(p.now())
			}()
		}
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if p.got.Load() >= int64(from+U) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		return start
	}
	phase := func(from int, start time.Time) lanePhase {
		var total, pubd, wait, handle []time.Duration
		var last int64
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
				last = max(last, rc)
				if st != 0 {
					handle = append(handle, time.Duration(rc-st))
				}
			}
		}
		return lanePhase{Total: mkDist(total, U), Publish: mkDist(pubd, U), Wait: mkDist(wait, U), Handle: mkDist(handle, U),
			Seconds: (time.Duration(last) - start.Sub(p.base)).Seconds(), Load: loadavg()}
	}

	// 1. idle.
	srv := startWorkers()
	time.Sleep(time.Second) // let the fetch loop settle into its idle polling
	logf("idle: sending %d urgent letters at %.0f/s …", U, R)
	start := sendUrgent(0)
	res.Idle = phase(0, start)
	logf("idle: p50 %.1f ms, p99 %.1f ms, max %.1f ms (load %s)", res.Idle.Total.P50, res.Idle.Total.P99, res.Idle.Total.Max, res.Idle.Load)
	srv.Shutdown()

	// 2. bulk backlog, workers stopped.
	res.PayloadBytes = len(letterJSON("lat-bulk-1000000", urgentID(1000000), latCPR(2*U), "Skattestyrelsen", "bulk", now))
	mem0 := redisMem(ctx, rdb)
	logf("bulk: publishing %d bulk letters from 8 goroutines …", B)
	t = time.Now()
	enqueue(B, func(i int) error {
		b := letterJSON("lat-bulk-"+strconv.Itoa(i), fmt.Sprintf("%08x-0002-4000-8000-%012x", i, i), latCPR(2*U+i%K),
			"Skattestyrelsen", "bulk", now)
		_, err := pub.Publish(ctx, b)
		return err
	})
	res.EnqueueSeconds = time.Since(t).Seconds()
	res.EnqueueRate = float64(B) / res.EnqueueSeconds
	mem1 := redisMem(ctx, rdb)
	res.BacklogBytes = mem1 - mem0
	res.BytesPerTask = float64(res.BacklogBytes) / float64(B)
	logf("bulk: %d published in %.1fs = %.0f/s; used_memory +%s = %.0f B per pending task",
		B, res.EnqueueSeconds, res.EnqueueRate, gb(res.BacklogBytes), res.BytesPerTask)

	// 3. drain with urgent letters on top.
	pendingKey := "asynq:{" + queues.Bulk + "}:pending"
	cpu0 := redisCPU(ctx, rdb)
	t = time.Now()
	srv = startWorkers()
	stopProgress := make(chan struct{})
	go func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-tick.C:
				logf("  … %.0fs: %d/%d bulk alerted, %d/%d urgent measured, load %s", time.Since(t).Seconds(),
					p.bulkDone.Load(), B, p.got.Load()-int64(U), U, loadavg())
			}
		}
	}()
	time.Sleep(time.Second) // let the drain reach its pace before measuring
	bulk0 := p.bulkDone.Load()
	logf("bulk: draining; sending %d urgent letters at %.0f/s to other citizens …", U, R)
	start = sendUrgent(U)
	bulk1 := p.bulkDone.Load()
	res.PendingAtLastUrgent, _ = rdb.LLen(ctx, pendingKey).Result()
	res.UndeliveredAtLastUrgent = int64(B) - bulk1
	res.DrainRateDuringUrgent = float64(bulk1-bulk0) / time.Since(start).Seconds()
	res.Busy = phase(U, start)
	logf("bulk: urgent p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d bulk tasks still pending (load %s)",
		res.Busy.Total.P50, res.Busy.Total.P99, res.Busy.Total.Max, res.PendingAtLastUrgent, res.Busy.Load)
	// Drained when the bulk lane's pending and active lists are empty (the
	// last Records have then landed, for the CPU and memory figures).
	activeKey := "asynq:{" + queues.Bulk + "}:active"
	last, lastAt := int64(-1), time.Now()
	for {
		n, err := rdb.LLen(ctx, pendingKey).Result()
		a, err2 := rdb.LLen(ctx, activeKey).Result()
		if err == nil && err2 == nil && n+a == 0 {
			break
		}
		if n != last {
			last, lastAt = n, time.Now()
		} else if time.Since(lastAt) > time.Minute {
			srv.Shutdown()
			fail(fmt.Errorf("bulk drain stalled: %d pending, %d active, %d of %d alerted", n, a, p.bulkDone.Load(), B))
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.DrainSeconds = time.Since(t).Seconds()
	res.DrainRate = float64(B) / res.DrainSeconds
	res.BulkAlerts = p.bulkDone.Load()
	close(stopProgress)
	res.RedisCPUPerBulkUs = (redisCPU(ctx, rdb) - cpu0) * 1e6 / float64(B+U)
	srv.Shutdown()
	mem2 := redisMem(ctx, rdb)
	res.BytesPerLetter = float64(mem2-mem0) / float64(B+U)
	logf("bulk: drained %d in %.1fs = %.0f/s", B, res.DrainSeconds, res.DrainRate)
	res.LoadEnd = loadavg()
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

func mkDist(ds []time.Duration, want int) dist {
	d := dist{N: len(ds), Missing: want - len(ds)}
	if len(ds) == 0 {
		return d
	}
	slices.Sort(ds)
	q := func(f float64) float64 {
		i := int(math.Ceil(f*float64(len(ds)))) - 1
		return float64(ds[max(i, 0)]) / 1e6
	}
	d.P50, d.P95, d.P99, d.Max = q(0.50), q(0.95), q(0.99), float64(ds[len(ds)-1])/1e6
	return d
}

// latCPR is a distinct CPR number for i < 168000 of a citizen born in the
// 1900s (seventh digit 0–3), so no letter meets the under-15 rule.
func latCPR(i int) string {
	return fmt.Sprintf("%02d%02d%02d%04d", i%28+1, (i/28)%12+1, (i/336)%100, i%4000)
}
