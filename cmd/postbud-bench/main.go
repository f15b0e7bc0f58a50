// Command postbud-bench measures postbud's throughput against raw asynq on
// the same Redis, in one run, and prints the figures README quotes.
//
//	go run ./cmd/postbud-bench -redis redis://127.0.0.1:6379/0 -n 20000
//
// Each phase runs in a child process so its peak RSS is its own:
//   - raw:     no-op asynq tasks, enqueued from 8 goroutines while one
//     asynq.Server processes them;
//   - postbud: message.received events accepted as over HTTP
//     (Dispatcher.Accept) for citizens with an email, a mobile and two app
//     tokens, processed by the real dispatcher with sinks that accept at
//     once (4 alerts per event).
//
// Redis CPU per task/event comes from INFO cpu (used_cpu_user+sys) around
// each phase; memory per citizen and per tracked letter from INFO memory.
// Keys and queues get a unique prefix and are deleted afterwards.
// -ack-replicas N makes every accept and task of the postbud phases wait
// for N Redis replicas (POSTBUD_ACK_REPLICAS); point -redis at a primary
// that has them.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime/pprof"
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
	"github.com/digitalpost/postbud/dispatcher/seal"
)

type result struct {
	Phase       string  `json:"phase"`
	N           int     `json:"n"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"`
	Done        int64   `json:"done,omitempty"` // raw: tasks handled
	Alerts      int64   `json:"alerts,omitempty"`
	MemCitizen  float64 `json:"mem_per_citizen,omitempty"`
	MemLetter   float64 `json:"mem_per_letter,omitempty"`
	MemPending  float64 `json:"mem_per_pending,omitempty"`
	RedisCPUus  float64 `json:"redis_cpu_us"`
	PeakRSSKiB  int64   `json:"peak_rss_kib"`
	CPUus       float64 `json:"cpu_us"`
	Concurrency int     `json:"concurrency"`
	// Accept is how long Dispatcher.Accept took (postbud-http).
	Accept *dist `json:"accept,omitempty"`
}

// ackReplicas is POSTBUD_ACK_REPLICAS for the postbud phases: each accept
// and each task waits until that many replicas have its writes.
var ackReplicas = flag.Int("ack-replicas", 0, "postbud phases: wait for this many Redis replicas after each accept and task (POSTBUD_ACK_REPLICAS)")

// rawLanes is the raw phase's server: postbud's main-server lanes (every
// figure in README before 2026-11-30 evening) or one lane alone.
var rawLanes = flag.String("raw-lanes", "main", "raw phase: \"main\" = the no-op tasks on a server with the main server's lanes and weights (normal 6, bulk 2, urgent 1), as postbud's letters are; \"one\" = a server of one lane, as a bare asynq deployment")

// groupAccepts is POSTBUD_GROUP_ACCEPTS for the postbud-http phase, on
// by default as in postbud; the default run adds a phase without it.
var groupAccepts = flag.Bool("group-accepts", true, "postbud-http phase: letters accepted at once share a task (POSTBUD_GROUP_ACCEPTS)")

// cpuProfile is where a postbud or batch phase writes the CPU profile of
// its timed part (go tool pprof), for finding the process's own cost per
// letter.
var cpuProfile = flag.String("cpuprofile", "", "postbud and batch phases (with -phase): write the timed part's CPU profile to this file (batch: the drain's)")

// startCPUProfile starts the CPU profile -cpuprofile names, if any; stop
// ends it and closes the file.
func startCPUProfile() (stop func(), err error) {
	if *cpuProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(*cpuProfile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func main() {
	redisURL := flag.String("redis", "redis://127.0.0.1:6379/0", "the Redis to measure on")
	n := flag.Int("n", 20000, "tasks (raw) and events (postbud) per phase")
	citizens := flag.Int("citizens", 2000, "citizens the postbud phase's letters go to")
	conc := flag.Int("concurrency", 50, "asynq Server concurrency in both phases")
	phase := flag.String("phase", "", "internal: run one phase in this process")
	prefix := flag.String("prefix", "", "internal: key and queue prefix")
	flag.Parse()
	for name, v := range map[string]int{"citizens": *citizens, "batch-citizens": *batchCitizensN, "bulk-citizens": *bulkCitizens} {
		if err := checkCitizens(name, v); err != nil {
			fail(err)
		}
	}
	opt, err := redis.ParseURL(*redisURL)
	if err != nil {
		fail(err)
	}
	opt.PoolSize = 64
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		fail(fmt.Errorf("no Redis at %s: %w", *redisURL, err))
	}
	if *phase == "latency-main" { // latency.go
		if err := runLatencyMain(ctx, rdb, *prefix, *conc); err != nil {
			fail(fmt.Errorf("phase latency-main: %w", err))
		}
		return
	}
	if *phase == "latency" { // latency.go
		r, err := runLatency(ctx, rdb, *redisURL, *prefix, *conc)
		if err != nil {
			fail(fmt.Errorf("phase latency: %w", err))
		}
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	if *latencyMode {
		latencyMain(ctx, rdb, *redisURL, *conc)
		return
	}

	if *batchSize > 0 && *phase == "" { // batch.go
		batchMain(ctx, rdb, *redisURL, *n, *conc)
		return
	}
	if *phase != "" {
		var r result
		switch *phase {
		case "batch":
			r, err = runBatch(ctx, rdb, *prefix, *n, *citizens, *conc)
		case "raw":
			r, err = runRaw(ctx, rdb, *prefix, *n, *conc)
		case "postbud", "postbud-http":
			r, err = runPostbud(ctx, rdb, *phase, *prefix, *n, *citizens, *conc)
		default:
			err = fmt.Errorf("unknown phase %q", *phase)
		}
		if err != nil {
			fail(fmt.Errorf("phase %s: %w", *phase, err))
		}
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}

	fmt.Printf("postbud-bench: n=%d citizens=%d concurrency=%d ack-replicas=%d redis=%s (%s)\n", *n, *citizens, *conc,
		*ackReplicas, opt.Addr, redisVersion(ctx, rdb))
	raw := child(ctx, rdb, "raw", *redisURL, *n, *citizens, *conc)
	pb := child(ctx, rdb, "postbud", *redisURL, *n, *citizens, *conc)
	ph := child(ctx, rdb, "postbud-http", *redisURL, *n, *citizens, *conc)
	pu := child(ctx, rdb, "postbud-http", *redisURL, *n, *citizens, *conc, "-group-accepts=false")
	fmt.Printf("\n%-34s %12s %12s %14s\n", "", "raw asynq", "postbud", "postbud (HTTP)")
	fmt.Printf("%-34s %12.0f %12.0f %14.0f\n", "throughput (tasks|events /s)", raw.PerSecond, pb.PerSecond, ph.PerSecond)
	fmt.Printf("%-34s %12.1f %12.1f %14.1f\n", "Redis CPU per task|event (µs)", raw.RedisCPUus, pb.RedisCPUus, ph.RedisCPUus)
	fmt.Printf("%-34s %12.1f %12.1f %14.1f\n", "process CPU per task|event (µs)", raw.CPUus, pb.CPUus, ph.CPUus)
	fmt.Printf("%-34s %12d %12d %14d\n", "peak RSS (MiB)", raw.PeakRSSKiB/1024, pb.PeakRSSKiB/1024, ph.PeakRSSKiB/1024)
	fmt.Printf("%-34s %12s %12d %14d\n", "alerts handed to sinks", "-", pb.Alerts, ph.Alerts)
	fmt.Printf("\npostbud events/s ÷ raw tasks/s     = %.2f   (target ≥ 0.50; HTTP path %.2f)\n", pb.PerSecond/raw.PerSecond, ph.PerSecond/raw.PerSecond)
	fmt.Printf("postbud Redis CPU ÷ raw per task   = %.2f   (target ≤ 1.50; HTTP path %.2f)\n", pb.RedisCPUus/raw.RedisCPUus, ph.RedisCPUus/raw.RedisCPUus)
	fmt.Printf("HTTP path, POSTBUD_GROUP_ACCEPTS=false (a task a letter): events/s ÷ raw = %.2f, Redis CPU ÷ raw = %.2f (%.1f µs), process CPU %.1f µs, %d alerts\n",
		pu.PerSecond/raw.PerSecond, pu.RedisCPUus/raw.RedisCPUus, pu.RedisCPUus, pu.CPUus, pu.Alerts)
	if ph.Accept != nil && pu.Accept != nil {
		fmt.Printf("Accept p50 / p99 (8 goroutines posting at once): %.2f / %.2f ms; a task a letter %.2f / %.2f ms\n",
			ph.Accept.P50, ph.Accept.P99, pu.Accept.P50, pu.Accept.P99)
	}
	fmt.Printf("Redis memory per citizen (email, mobile, 2 tokens) = %.0f B\n", pb.MemCitizen)
	fmt.Printf("Redis memory per tracked letter (state, trail of 4, index) = %.0f B\n", pb.MemLetter)
}

// confirmedContact is a citizen's email and mobile (if not "") as core
// migrates confirmed addresses: alerts go to them at once. The
// fingerprints are what the contact script keeps the confirmation by.
func confirmedContact(keyer *dispatcher.Keyer, key, email, mobile string, at time.Time, mark dispatcher.EventRef) dispatcher.ContactWrite {
	w := dispatcher.ContactWrite{Citizen: key, Contact: &event.ContactData{Email: &email}, At: at, Confirmed: true, Mark: mark,
		EmailFingerprint: keyer.AddressFingerprint(channels.Email, email)}
	if mobile != "" {
		w.Contact.Mobile = &mobile
		w.MobileFingerprint = keyer.AddressFingerprint(channels.SMS, mobile)
	}
	return w
}

// benchSealer is the phases' Sealer: contact data is sealed as in
// production (POSTBUD_SEAL_KEY), under a fixed bench key.
func benchSealer() *seal.Sealer {
	s, err := seal.New(seal.Keys{Current: []byte("bench-seal-key-0123456789-0123456789"),
		Tag: []byte("bench-pseudonymisation-key-0123456789")})
	if err != nil {
		fail(err)
	}
	return s
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "postbud-bench:", err)
	os.Exit(1)
}

func redisVersion(ctx context.Context, rdb *redis.Client) string {
	info, _ := rdb.Info(ctx, "server").Result()
	return "redis " + infoField(info, "redis_version")
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return v
		}
	}
	return ""
}

func redisCPU(ctx context.Context, rdb *redis.Client) float64 {
	info, _ := rdb.Info(ctx, "cpu").Result()
	u, _ := strconv.ParseFloat(infoField(info, "used_cpu_user"), 64)
	s, _ := strconv.ParseFloat(infoField(info, "used_cpu_sys"), 64)
	return u + s
}

// procCPU is this process's CPU time (user + system) so far, in seconds:
// the phase's own work (asynq, the dispatcher, sealing), measured around
// the timed part only.
func procCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func redisMem(ctx context.Context, rdb *redis.Client) int64 {
	info, _ := rdb.Info(ctx, "memory").Result()
	v, _ := strconv.ParseInt(infoField(info, "used_memory"), 10, 64)
	return v
}

// child runs one phase in a child process, measuring Redis CPU around it.
// extra flags go after the forwarded ones (a flag given twice takes the
// last value).
func child(ctx context.Context, rdb *redis.Client, phase, url string, n, citizens, conc int, extra ...string) result {
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "bench" + hex.EncodeToString(b[:])
	defer cleanup(ctx, rdb, prefix)
	cmd := exec.Command(os.Args[0], "-phase", phase, "-prefix", prefix, "-redis", url, "-n", strconv.Itoa(n),
		"-citizens", strconv.Itoa(citizens), "-concurrency", strconv.Itoa(conc), "-ack-replicas", strconv.Itoa(*ackReplicas),
		"-raw-lanes", *rawLanes, "-group-accepts="+strconv.FormatBool(*groupAccepts))
	cmd.Args = append(append(cmd.Args, batchFlags()...), extra...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		fail(fmt.Errorf("phase %s: %w", phase, err))
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		fail(fmt.Errorf("phase %s: %w: %s", phase, err, out))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.PeakRSSKiB = ru.Maxrss
	}
	name := phase
	if len(extra) > 0 {
		name += " " + strings.Join(extra, " ")
	}
	fmt.Printf("  %-8s %7d in %6.2fs = %8.0f/s, Redis CPU %6.1f µs each\n", name, r.N, r.Seconds, r.PerSecond, r.RedisCPUus)
	return r
}

func cleanup(ctx context.Context, rdb *redis.Client, prefix string) {
	for _, pat := range []string{prefix + ":*", "asynq:{" + prefix + ".*"} {
		iter := rdb.Scan(ctx, 0, pat, 2000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
			if len(keys) == 1000 {
				rdb.Unlink(ctx, keys...)
				keys = keys[:0]
			}
		}
		if len(keys) > 0 {
			rdb.Unlink(ctx, keys...)
		}
	}
	for _, q := range []string{"urgent", "normal", "bulk"} {
		rdb.SRem(ctx, "asynq:queues", prefix+"."+q)
	}
}

func newServer(rdb *redis.Client, queues dispatcher.Queues, conc int, d *dispatcher.Dispatcher) *asynq.Server {
	cfg := asynq.Config{Concurrency: conc, Queues: queues.Weights(), LogLevel: asynq.ErrorLevel,
		TaskCheckInterval: 50 * time.Millisecond, IsFailure: dispatcher.IsFailure}
	if d != nil {
		cfg.RetryDelayFunc = d.RetryDelay
	}
	return asynq.NewServerFromRedisClient(rdb, cfg)
}

// enqueue runs f(i) for i in [0,n) on 8 goroutines. The first error
// stops it (the calls under way finish) and is returned.
func enqueue(n int, f func(i int) error) error {
	var next atomic.Int64
	var first errSlot
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for first.get() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				first.set(f(i))
			}
		})
	}
	wg.Wait()
	return first.get()
}

// errSlot keeps the first error set, for goroutines that cannot return
// one.
type errSlot struct {
	mu  sync.Mutex
	err error
}

func (e *errSlot) set(err error) {
	e.mu.Lock()
	if e.err == nil {
		e.err = err
	}
	e.mu.Unlock()
}

func (e *errSlot) get() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// waitUntil polls cond until it holds, or ctx ends (the tests give the
// phases a deadline; the command waits as long as it takes).
func waitUntil(ctx context.Context, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// queued is how many tasks the lanes of queues hold, pending, active,
// scheduled or waiting to be retried: 0 once every task was handled (or
// archived).
func queued(ctx context.Context, rdb *redis.Client, queues dispatcher.Queues) (int64, error) {
	pipe := rdb.Pipeline()
	var cmds []*redis.IntCmd
	for _, q := range []string{queues.Urgent, queues.Normal, queues.Bulk} {
		k := "asynq:{" + q + "}:"
		cmds = append(cmds, pipe.LLen(ctx, k+"pending"), pipe.LLen(ctx, k+"active"), pipe.ZCard(ctx, k+"scheduled"),
			pipe.ZCard(ctx, k+"retry"))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// waitAlerts waits until the sinks got want alerts. Once the queues are
// empty with fewer, it fails at once: the letters were handled but their
// alerts skipped (citizens not confirmed, say), and the phase would
// measure nothing.
func waitAlerts(ctx context.Context, rdb *redis.Client, queues dispatcher.Queues, alerts func() int64, want int64) error {
	var err error
	// The queues are read only once the count stands still for a moment:
	// reading them every poll would add Redis work to the phase measured.
	last, since := int64(-1), time.Now()
	werr := waitUntil(ctx, func() bool {
		got := alerts()
		if got >= want {
			return true
		}
		if got != last {
			last, since = got, time.Now()
			return false
		}
		if time.Since(since) < 250*time.Millisecond {
			return false
		}
		n, qerr := queued(ctx, rdb, queues)
		if qerr != nil || n > 0 {
			return false
		}
		// Every task was handled, so every send happened: a count read
		// now is final.
		if got := alerts(); got < want {
			err = fmt.Errorf("every task handled but %d of %d alerts at the sinks", got, want)
		}
		return true
	})
	if werr != nil {
		return fmt.Errorf("waiting for %d alerts, %d so far: %w", want, alerts(), werr)
	}
	return err
}

func runRaw(ctx context.Context, rdb *redis.Client, prefix string, n, conc int) (result, error) {
	queues := dispatcher.DefaultQueues(prefix)
	client := asynq.NewClientFromRedisClient(rdb)
	var done atomic.Int64
	var srv *asynq.Server
	switch *rawLanes {
	case "main":
		srv = newServer(rdb, queues, conc, nil)
	case "one":
		srv = asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: conc, Queues: map[string]int{queues.Normal: 1},
			LogLevel: asynq.ErrorLevel, TaskCheckInterval: 50 * time.Millisecond})
	default:
		return result{}, fmt.Errorf("-raw-lanes %q: want main or one", *rawLanes)
	}
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(context.Context, *asynq.Task) error { done.Add(1); return nil })
	if err := srv.Start(mux); err != nil {
		return result{}, err
	}
	defer srv.Shutdown()
	payload := make([]byte, 128)
	cpu0, pcpu0 := redisCPU(ctx, rdb), procCPU()
	start := time.Now()
	if err := enqueue(n, func(int) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask("noop", payload), asynq.Queue(queues.Normal))
		return err
	}); err != nil {
		return result{}, err
	}
	if err := waitUntil(ctx, func() bool { return done.Load() >= int64(n) }); err != nil {
		return result{}, fmt.Errorf("waiting for %d tasks, %d done: %w", n, done.Load(), err)
	}
	took := time.Since(start)
	cpu, pcpu := redisCPU(ctx, rdb)-cpu0, procCPU()-pcpu0
	return result{Phase: "raw", N: n, Seconds: took.Seconds(), PerSecond: float64(n) / took.Seconds(), Done: done.Load(),
		RedisCPUus: cpu * 1e6 / float64(n), CPUus: pcpu * 1e6 / float64(n), Concurrency: conc}, nil
}

// cprOf is a distinct CPR number for each i < maxCitizens: a valid date
// (day 01–28, month 01–12, year 00–99) and a serial 0000–3999, whose
// seventh digit (0–3) puts the birth in the 1900s, so no letter meets the
// under-15 rule (a serial of 4000 or more would make some citizens
// children, whom public senders' letters never reach digitally).
func cprOf(i int) string {
	return fmt.Sprintf("%02d%02d%02d%04d", i%28+1, (i/28)%12+1, (i/336)%100, i%4000)
}

// maxCitizens is how many distinct citizens cprOf makes: the date repeats
// every 28 × 12 × 100 = 33 600 and the serial every 4 000, together every
// 168 000.
const maxCitizens = 168000

// checkCitizens refuses a citizen count cprOf cannot make distinct adults
// for, naming the flag.
func checkCitizens(flagName string, n int) error {
	if n < 1 || n > maxCitizens {
		return fmt.Errorf("-%s %d: want 1–%d (the benchmark's distinct adult CPR numbers)", flagName, n, maxCitizens)
	}
	return nil
}

// benchKeyer is the phases' Keyer, under the same fixed bench key.
func benchKeyer() *dispatcher.Keyer {
	k, err := dispatcher.NewKeyer([]byte("bench-pseudonymisation-key-0123456789"))
	if err != nil {
		fail(err)
	}
	return k
}

// runPostbud measures letters end to end. Phase "postbud" enqueues them as
// a platform does with package publish (TypeInbound, straight into asynq);
// "postbud-http" as the HTTP API does (Dispatcher.Accept: the event-mark
// check, then the pseudonymised task).
func runPostbud(ctx context.Context, rdb *redis.Client, phase, prefix string, n, citizens, conc int) (result, error) {
	queues := dispatcher.DefaultQueues(prefix)
	sealer := benchSealer()
	store := redisstore.New(rdb, redisstore.Options{Prefix: prefix, Sealer: sealer})
	defer store.Close()
	pub := publish.NewFromRedisClient(rdb, prefix)
	keyer := benchKeyer()
	client := asynq.NewClientFromRedisClient(rdb)
	senders := map[channels.Name]channels.Sender{}
	sinks := []*sink.Sink{}
	for _, ch := range []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM} {
		s := sink.New(ch, 0)
		senders[ch] = s
		sinks = append(sinks, s)
	}
	d, err := dispatcher.New(dispatcher.Config{Store: store, Keyer: keyer, Sealer: sealer, Enqueuer: client, Queues: queues,
		Senders: senders, MailboxURL: "https://www.borger.dk/digitalpost", Logger: slog.New(slog.DiscardHandler),
		GroupAccepts: *groupAccepts})
	if err != nil {
		return result{}, err
	}
	now := time.Now().UTC()
	mem0 := redisMem(ctx, rdb)
	for i := range citizens {
		key := keyer.CitizenKey(event.CPR(cprOf(i)))
		email, mobile := fmt.Sprintf("citizen%d@example.dk", i), fmt.Sprintf("+4520%06d", i)
		if _, err := store.UpdateContact(ctx, confirmedContact(keyer, key, email, mobile, now,
			dispatcher.EventRef{Citizen: key, ID: fmt.Sprintf("c%d", i)})); err != nil {
			return result{}, err
		}
		for j, p := range []string{"apns", "fcm"} {
			tok := fmt.Sprintf("%064x", i*2+j)
			if _, err := store.SetDevice(ctx, dispatcher.DeviceWrite{Citizen: key, Device: dispatcher.Device{App: "digital-post-app",
				Provider: p, Token: tok, Environment: "production", RegisteredAt: now},
				Mark: dispatcher.EventRef{Citizen: key, ID: fmt.Sprintf("d%d-%d", i, j)}}); err != nil {
				return result{}, err
			}
		}
	}
	// The registration events' marks are part of the registry's cost only
	// until they expire; measure the citizens without them.
	marks, _ := rdb.Keys(ctx, prefix+":*:e:*").Result()
	var markMem int64
	for _, k := range marks {
		m, _ := rdb.MemoryUsage(ctx, k).Result()
		markMem += m
	}
	memCitizen := float64(redisMem(ctx, rdb)-mem0-markMem) / float64(citizens)

	replicas := redisstore.NewReplicas(rdb, prefix, *ackReplicas, time.Second)
	defer replicas.Close()
	srv := newServer(rdb, queues, conc, d)
	mux := asynq.NewServeMux()
	d.Register(mux)
	if *ackReplicas > 0 {
		mux.Use(func(h asynq.Handler) asynq.Handler {
			return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
				if err := h.ProcessTask(ctx, t); err != nil {
					return err
				}
				return replicas.WaitReplicas(ctx)
			})
		})
	}
	if err := srv.Start(mux); err != nil {
		return result{}, err
	}
	defer srv.Shutdown()
	events := make([]*event.Event, n)
	raws := make([][]byte, n)
	for i := range n {
		b, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("bench-%d", i), "type": "message.received",
			"occurred_at": now.Format(time.RFC3339Nano), "source": "core",
			"data": map[string]any{"message_id": fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i),
				"recipient": map[string]any{"cpr": cprOf(i % citizens)},
				"sender":    map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"}}})
		ev, err := event.Parse(b)
		if err != nil {
			return result{}, err
		}
		events[i], raws[i] = ev, b
	}
	mem1 := redisMem(ctx, rdb)
	stopProfile, err := startCPUProfile()
	if err != nil {
		return result{}, err
	}
	defer stopProfile()
	accepts := make([]time.Duration, n)
	cpu0, pcpu0 := redisCPU(ctx, rdb), procCPU()
	start := time.Now()
	if err := enqueue(n, func(i int) error {
		if phase == "postbud-http" {
			t0 := time.Now()
			if _, err := d.Accept(ctx, events[i]); err != nil {
				return err
			}
			accepts[i] = time.Since(t0)
			return replicas.WaitReplicas(ctx)
		}
		_, err := pub.Publish(ctx, raws[i])
		return err
	}); err != nil {
		return result{}, err
	}
	alerts := func() int64 {
		var t int64
		for _, s := range sinks {
			t += s.Count()
		}
		return t
	}
	if err := waitAlerts(ctx, rdb, queues, alerts, int64(4*n)); err != nil {
		return result{}, err
	}
	// The last Record may follow the last send by a round trip: wait for
	// the queue to drain so its Redis work is counted.
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if err := waitUntil(ctx, func() bool {
		info, err := insp.GetQueueInfo(queues.Normal)
		return err == nil && info.Pending+info.Active == 0
	}); err != nil {
		return result{}, err
	}
	took := time.Since(start)
	cpu, pcpu := redisCPU(ctx, rdb)-cpu0, procCPU()-pcpu0
	srv.Shutdown()
	calls, trips := store.BatchStats()
	fmt.Fprintf(os.Stderr, "  (%s: %d store calls in %d Redis round trips)\n", phase, calls, trips)
	if *ackReplicas > 0 {
		fmt.Fprintf(os.Stderr, "  (%s: %d WAITs for the replicas, %.2f per event)\n", phase, replicas.Rounds(),
			float64(replicas.Rounds())/float64(n))
	}
	// Includes the event's processed mark (kept a week): what a tracked
	// letter costs in its first week; after, the mark's ~90 B are gone.
	memLetter := float64(redisMem(ctx, rdb)-mem1) / float64(n)
	r := result{Phase: phase, N: n, Seconds: took.Seconds(), PerSecond: float64(n) / took.Seconds(),
		Alerts: alerts(), MemCitizen: memCitizen, MemLetter: memLetter, RedisCPUus: cpu * 1e6 / float64(n),
		CPUus: pcpu * 1e6 / float64(n), Concurrency: conc}
	if phase == "postbud-http" {
		a := mkDist(accepts, n)
		r.Accept = &a
	}
	return r, nil
}
