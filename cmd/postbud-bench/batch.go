package main

// The batched bulk benchmark (issue 11, part 4): a bulk release through the
// batch endpoint's path against raw asynq, in one run on the same Redis:
//
//	go run ./cmd/postbud-bench -batch 200 [-letters 100000] [-n 20000] -redis redis://127.0.0.1:6399/0
//
// Phases, each in a child process of its own (its peak RSS its own):
//   - raw: no-op asynq tasks, as the throughput benchmark runs them;
//   - postbud-http: single letters through Dispatcher.Accept (the
//     non-batch path), as the throughput benchmark runs them;
//   - batch: -letters bulk letters posted to POST /v1/events/batch (the
//     real httpapi handler, in process, 500 events per request from 8
//     goroutines) with POSTBUD_BATCH_SIZE = -batch, the workers stopped;
//     Redis used_memory is read (bytes per pending letter); then the
//     workers start and drain them to sinks that accept at once. Letters/s
//     counts ingest and drain (one after the other, so the figure is
//     conservative); Redis CPU from INFO cpu over both.
//
// Citizens get an email, a mobile and two app tokens, as in the throughput
// benchmark (4 alerts per letter); -batch-alerts 1 gives them an email
// only. The benchmark refuses a Redis that holds keys it did not create
// (it measures INFO figures of the whole server), unless -force.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/sink"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/httpapi"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
)

var (
	batchSize      = flag.Int("batch", 0, "run the batched bulk benchmark with this many letters per batch task (POSTBUD_BATCH_SIZE)")
	batchLetters   = flag.Int("letters", 100000, "batch: bulk letters through the batch endpoint")
	batchAlerts    = flag.Int("batch-alerts", 4, "batch: alerts per letter, 4 (email, mobile, two app tokens) or 1 (email)")
	batchCitizensN = flag.Int("batch-citizens", 2000, "batch: citizens the bulk letters go to, round robin")
	batchInflight  = flag.Int("batch-inflight", 0, "batch and latency: most letters of batch tasks processed at once (POSTBUD_BATCH_INFLIGHT; 0: the default)")
	batchHeapProf  = flag.String("batch-heapprofile", "", "batch: write the drain's heap profile, taken at its highest live heap, to this file")
)

// batchMain runs the raw, single-letter and batch phases and prints the
// ratios the targets are stated in.
func batchMain(ctx context.Context, rdb *redis.Client, url string, n, conc int) {
	if err := refuseForeignKeys(ctx, rdb, *force); err != nil {
		fail(err)
	}
	fmt.Printf("postbud-bench -batch %d: letters=%d alerts/letter=%d citizens=%d raw n=%d concurrency=%d redis=%s (%s)\n",
		*batchSize, *batchLetters, *batchAlerts, *batchCitizensN, n, conc, rdb.Options().Addr, redisVersion(ctx, rdb))
	// The raw baseline runs first and last and the ratios take the mean of
	// the two: on a shared machine the baseline drifts within a run, and
	// both raw figures are printed so the drift shows. It runs twice over:
	// on the main server's lanes (-raw-lanes, "main" by default: the
	// baseline the targets were set against) and on a server of one lane,
	// which spends no dequeue call on an empty lane, as a bare asynq
	// deployment does; the ratios against both are printed.
	raw1 := child(ctx, rdb, "raw", url, n, *batchCitizensN, conc)
	one1 := child(ctx, rdb, "raw", url, n, *batchCitizensN, conc, "-raw-lanes", "one")
	single := child(ctx, rdb, "postbud-http", url, n, *batchCitizensN, conc)
	bulk := child(ctx, rdb, "batch", url, *batchLetters, *batchCitizensN, conc)
	one2 := child(ctx, rdb, "raw", url, n, *batchCitizensN, conc, "-raw-lanes", "one")
	raw2 := child(ctx, rdb, "raw", url, n, *batchCitizensN, conc)
	mean := func(a, b result) result {
		return result{PerSecond: (a.PerSecond + b.PerSecond) / 2, RedisCPUus: (a.RedisCPUus + b.RedisCPUus) / 2,
			CPUus: (a.CPUus + b.CPUus) / 2, PeakRSSKiB: max(a.PeakRSSKiB, b.PeakRSSKiB)}
	}
	raw, one := mean(raw1, raw2), mean(one1, one2)
	fmt.Printf("\n%-40s %12s %12s %14s %14s\n", "", "raw asynq", "raw, 1 lane", "single (HTTP)", "batch")
	fmt.Printf("%-40s %12.0f %12.0f %14.0f %14.0f\n", "throughput (tasks|letters /s)", raw.PerSecond, one.PerSecond, single.PerSecond, bulk.PerSecond)
	fmt.Printf("%-40s %12.1f %12.1f %14.1f %14.1f\n", "Redis CPU per task|letter (µs)", raw.RedisCPUus, one.RedisCPUus, single.RedisCPUus, bulk.RedisCPUus)
	// The process's own CPU (the phase's child: enqueue and workers for
	// raw asynq; ingest, dispatcher and sinks for postbud): on a machine
	// whose cores Redis shares, what bounds the rate beside Redis.
	fmt.Printf("%-40s %12.1f %12.1f %14.1f %14.1f\n", "process CPU per task|letter (µs)", raw.CPUus, one.CPUus, single.CPUus, bulk.CPUus)
	fmt.Printf("%-40s %12d %12d %14d %14d\n", "peak RSS (MiB)", raw.PeakRSSKiB/1024, one.PeakRSSKiB/1024, single.PeakRSSKiB/1024, bulk.PeakRSSKiB/1024)
	fmt.Printf("(each raw figure is the mean of its first and last phase: on the main server's lanes %.0f and %.0f tasks/s, %.1f and %.1f µs; on one lane %.0f and %.0f tasks/s, %.1f and %.1f µs)\n",
		raw1.PerSecond, raw2.PerSecond, raw1.RedisCPUus, raw2.RedisCPUus, one1.PerSecond, one2.PerSecond, one1.RedisCPUus, one2.RedisCPUus)
	fmt.Printf("\n%-38s   %-31s %s\n", "", "÷ raw asynq, main lanes", "÷ raw asynq, one lane")
	ratio := func(name string, v, base, oneBase float64, target string, ok func(float64) bool) {
		verdict := func(r float64) string {
			if ok(r) {
				return "meets"
			}
			return "misses"
		}
		fmt.Printf("%-38s = %-31s %s\n", name, fmt.Sprintf("%.3f (%s: %s)", v/base, target, verdict(v/base)),
			fmt.Sprintf("%.3f (%s)", v/oneBase, verdict(v/oneBase)))
	}
	ratio("bulk letters/s ÷ raw tasks/s", bulk.PerSecond, raw.PerSecond, one.PerSecond, "target ≥ 2.0", func(r float64) bool { return r >= 2 })
	ratio("bulk Redis CPU per letter ÷ raw task", bulk.RedisCPUus, raw.RedisCPUus, one.RedisCPUus, "target ≤ 0.4", func(r float64) bool { return r <= 0.4 })
	ratio("single letters/s ÷ raw tasks/s", single.PerSecond, raw.PerSecond, one.PerSecond, "target ≥ 0.5", func(r float64) bool { return r >= 0.5 })
	ratio("single Redis CPU ÷ raw per task", single.RedisCPUus, raw.RedisCPUus, one.RedisCPUus, "target ≤ 1.5", func(r float64) bool { return r <= 1.5 })
	fmt.Printf("%-38s = %.0f B (target ≤ 300)\n", "Redis bytes per pending bulk letter", bulk.MemPending)
	fmt.Printf("%-38s = %d MiB (target < 100)\n", "peak RSS, batch phase", bulk.PeakRSSKiB/1024)
	if bulk.Alerts != int64(*batchAlerts)*int64(*batchLetters) {
		fail(fmt.Errorf("batch phase: %d alerts, want %d", bulk.Alerts, *batchAlerts**batchLetters))
	}
}

// runBatch is the batch phase, in its child process.
func runBatch(ctx context.Context, rdb *redis.Client, prefix string, n, citizens, conc int) (result, error) {
	queues := dispatcher.DefaultQueues(prefix)
	sealer := benchSealer()
	store := redisstore.New(rdb, redisstore.Options{Prefix: prefix, Sealer: sealer})
	defer store.Close()
	keyer := benchKeyer()
	client := asynq.NewClientFromRedisClient(rdb)
	senders := map[channels.Name]channels.Sender{}
	var sinks []*sink.Sink
	for _, ch := range []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM} {
		s := sink.New(ch, 0)
		senders[ch] = s
		sinks = append(sinks, s)
	}
	flowing, pace := benchYield(rdb, prefix, queues)
	d, err := dispatcher.New(dispatcher.Config{Store: store, Keyer: keyer, Sealer: sealer, Enqueuer: client, Queues: queues,
		Senders: senders, MailboxURL: "https://www.borger.dk/digitalpost", Logger: slog.New(slog.DiscardHandler),
		BatchSize: *batchSize, BatchInflight: *batchInflight, UrgentFlowing: flowing, YieldPace: pace})
	if err != nil {
		return result{}, err
	}
	now := time.Now().UTC()
	for i := range citizens {
		key := keyer.CitizenKey(event.CPR(cprOf(i)))
		email, mobile := fmt.Sprintf("citizen%d@example.dk", i), fmt.Sprintf("+4520%06d", i)
		if *batchAlerts != 4 {
			mobile = ""
		}
		if _, err := store.UpdateContact(ctx, confirmedContact(keyer, key, email, mobile, now, dispatcher.EventRef{})); err != nil {
			return result{}, err
		}
		for j, p := range []string{"apns", "fcm"} {
			if *batchAlerts != 4 {
				break
			}
			tok := fmt.Sprintf("%064x", i*2+j)
			if _, err := store.SetDevice(ctx, dispatcher.DeviceWrite{Citizen: key, Device: dispatcher.Device{App: "digital-post-app",
				Provider: p, Token: tok, Environment: "production", RegisteredAt: now}}); err != nil {
				return result{}, err
			}
		}
	}
	const platformKey = "bench-core-key-0123456789"
	api := httpapi.New(httpapi.Config{Dispatcher: d, Platforms: []httpapi.Platform{
		{Name: event.Core, KeySHA256: httpapi.HashKey(platformKey)}}})
	// The request bodies are made as they are sent, so the phase's RSS
	// is postbud's, not a backlog of bodies.
	body := func(from, to int) []byte {
		var b bytes.Buffer
		b.WriteString(`{"events":[`)
		for i := from; i < to; i++ {
			if i > from {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"id":"bulk-%d","type":"message.received","occurred_at":%q,"source":"core","data":`+
				`{"message_id":"%08x-0000-4000-8000-%012x","priority":"bulk","recipient":{"cpr":"%s"},`+
				`"sender":{"id":"skat","name":"Skattestyrelsen","kind":"public"}}}`,
				i, now.Format(time.RFC3339Nano), i, i, cprOf(i%citizens))
		}
		b.WriteString(`]}`)
		return b.Bytes()
	}
	per := httpapi.MaxBatchEvents
	requests := (n + per - 1) / per
	mem0 := redisMem(ctx, rdb)
	cpu0, pcpu0 := redisCPU(ctx, rdb), procCPU()
	start := time.Now()
	var accepted atomic.Int64
	if err := enqueue(requests, func(r int) error {
		from, to := r*per, min((r+1)*per, n)
		req := httptest.NewRequest(http.MethodPost, "/v1/events/batch", bytes.NewReader(body(from, to)))
		req.Header.Set("Authorization", "Bearer "+platformKey)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			return fmt.Errorf("batch %d: %d %s", r, rec.Code, rec.Body.String())
		}
		var out struct{ Results []httpapi.Result }
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			return err
		}
		for _, res := range out.Results {
			if res.Status != "accepted" {
				return fmt.Errorf("batch %d: an event answered %s", r, res.Status)
			}
		}
		accepted.Add(int64(len(out.Results)))
		return nil
	}); err != nil {
		return result{}, err
	}
	ingest := time.Since(start)
	// The accept's own CPU a letter: this process's (the bodies' making
	// and answers' reading included) and Redis's.
	acceptCPU, acceptRedis := (procCPU()-pcpu0)*1e6/float64(n), (redisCPU(ctx, rdb)-cpu0)*1e6/float64(n)
	memPending := float64(redisMem(ctx, rdb)-mem0) / float64(n)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	info, err := insp.GetQueueInfo(queues.Bulk)
	if err != nil {
		return result{}, err
	}
	fmt.Fprintf(os.Stderr, "  (batch: %d letters accepted in %.2fs = %.0f/s, process CPU %.1f µs and Redis CPU %.1f µs a letter, %d tasks pending, %.0f B of Redis per pending letter)\n",
		accepted.Load(), ingest.Seconds(), float64(n)/ingest.Seconds(), acceptCPU, acceptRedis, info.Pending, memPending)

	mw := watchMemory(*batchHeapProf)
	srv := newServer(rdb, queues, conc, d)
	mux := asynq.NewServeMux()
	d.Register(mux)
	var taskTime, tasks atomic.Int64
	var firstStart, lastEnd, active, maxActive atomic.Int64
	mux.Use(func(h asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			t0 := time.Now()
			firstStart.CompareAndSwap(0, t0.UnixNano())
			if a := active.Add(1); a > maxActive.Load() {
				maxActive.Store(a)
			}
			defer active.Add(-1)
			err := h.ProcessTask(ctx, t)
			lastEnd.Store(time.Now().UnixNano())
			taskTime.Add(int64(time.Since(t0)))
			tasks.Add(1)
			return err
		})
	})
	stopProfile, err := startCPUProfile()
	if err != nil {
		return result{}, err
	}
	defer stopProfile()
	if err := srv.Start(mux); err != nil {
		return result{}, err
	}
	defer srv.Shutdown()
	srvStart := time.Now()
	defer func() {
		fmt.Fprintf(os.Stderr, "  (batch: %d tasks (at most %d at once), %.1f ms each on average; first started %.0f ms, last ended %.0f ms after the server started)\n",
			tasks.Load(), maxActive.Load(), float64(taskTime.Load())/float64(max(tasks.Load(), 1))/1e6, float64(firstStart.Load()-srvStart.UnixNano())/1e6,
			float64(lastEnd.Load()-srvStart.UnixNano())/1e6)
	}()
	alerts := func() int64 {
		var t int64
		for _, s := range sinks {
			t += s.Count()
		}
		return t
	}
	if err := waitAlerts(ctx, rdb, queues, alerts, int64(*batchAlerts)*int64(n)); err != nil {
		return result{}, err
	}
	if err := waitUntil(ctx, func() bool {
		info, err := insp.GetQueueInfo(queues.Bulk)
		return err == nil && info.Pending+info.Active == 0
	}); err != nil {
		return result{}, err
	}
	took := time.Since(start)
	cpu, pcpu := redisCPU(ctx, rdb)-cpu0, procCPU()-pcpu0
	srv.Shutdown()
	fmt.Fprintf(os.Stderr, "  (batch, drain: %s)\n", mw.report())
	calls, trips := store.BatchStats()
	fmt.Fprintf(os.Stderr, "  (batch: drained in %.2fs; %d store calls in %d Redis round trips)\n", (took - ingest).Seconds(), calls, trips)
	return result{Phase: "batch", N: n, Seconds: took.Seconds(), PerSecond: float64(n) / took.Seconds(), Alerts: alerts(),
		MemPending: memPending, RedisCPUus: cpu * 1e6 / float64(n), CPUus: pcpu * 1e6 / float64(n), Concurrency: conc}, nil
}

// batchFlags are the flags a batch child needs from its parent.
func batchFlags() []string {
	return []string{"-batch", strconv.Itoa(*batchSize), "-batch-alerts", strconv.Itoa(*batchAlerts), "-batch-inflight", strconv.Itoa(*batchInflight), "-batch-heapprofile", *batchHeapProf}
}
