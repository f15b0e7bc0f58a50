// Command postbud-chaos is a fault-injection harness. It starts real
// processes on loopback — postbud replicas, redis-server (alone, or a
// primary, a replica and three sentinels) — and hosts the SMTP and SMS
// fakes itself; it drives letters through the HTTP API while it kills
// workers, restarts Redis, fails it over or makes the providers fail, and
// then counts per delivery (letter × channel) what was lost, duplicated or
// left stuck. It prints one table and exits 1 when a target is missed
// (unless -report-only).
//
//	go run ./cmd/postbud-chaos -scenario small
//	go run ./cmd/postbud-chaos -scenario kill9 -n 2000 -report-only
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

type options struct {
	scenario   string
	letters    int
	replicas   int
	answer     time.Duration
	rate       float64
	every      time.Duration
	burst      time.Duration
	fsync      string
	drain      time.Duration
	batch      int
	senders    int
	reportOnly bool
	keep       bool
	postbud    string
	verbose    bool
	// ackReplicas is POSTBUD_ACK_REPLICAS of the postbud replicas.
	ackReplicas int
	// redisReplicas is the replicas of the primary in sentinel scenarios.
	redisReplicas int
	// minReplicas is Redis's min-replicas-to-write (sentinel scenarios).
	minReplicas int
	target      Target
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	fs := flag.NewFlagSet("postbud-chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.scenario, "scenario", "small", "scenario: "+strings.Join(names, ", "))
	fs.IntVar(&o.letters, "n", 0, "letters to drive (0: the scenario's default; at most 16000)")
	fs.IntVar(&o.replicas, "replicas", 3, "postbud replicas")
	fs.DurationVar(&o.answer, "answer", 250*time.Millisecond, "how long the providers take to answer a send")
	fs.Float64Var(&o.rate, "rate", 50, "letters per second driven")
	fs.DurationVar(&o.every, "every", 5*time.Second, "kill9/sigterm: one replica every this long")
	fs.DurationVar(&o.burst, "burst", 30*time.Second, "provider-*: how long the providers fail")
	fs.StringVar(&o.fsync, "fsync", "everysec", "redis appendfsync: everysec or always")
	fs.DurationVar(&o.drain, "drain", 3*time.Minute, "how long to wait for the queues to drain after the last letter")
	fs.IntVar(&o.batch, "batch", 0, "send letters in batches of this many through /v1/events/batch (0: one by one)")
	fs.IntVar(&o.senders, "senders", 8, "concurrent HTTP senders")
	fs.BoolVar(&o.reportOnly, "report-only", false, "print the table, exit 0 even when a target is missed")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (logs, Redis files) and print where it is")
	fs.StringVar(&o.postbud, "postbud", "", "a built postbud binary (default: go build ./cmd/postbud)")
	fs.BoolVar(&o.verbose, "v", false, "progress on stderr")
	fs.IntVar(&o.redisReplicas, "redis-replicas", 1, "sentinel scenarios: Redis replicas of the primary (deploy/kubernetes runs 2)")
	fs.IntVar(&o.minReplicas, "min-replicas", 0, "sentinel scenarios: Redis min-replicas-to-write (a primary cut off from its replicas refuses writes)")
	fs.IntVar(&o.ackReplicas, "ack-replicas", 0, "POSTBUD_ACK_REPLICAS of the postbud replicas: answer 202 only once that many Redis replicas have the event (sentinel scenarios run one replica)")
	fs.IntVar(&o.target.MaxLost, "max-lost", 0, "target: lost deliveries (-1: no limit)")
	fs.IntVar(&o.target.MaxStuck, "max-stuck", 0, "target: tasks left at the deadline")
	fs.IntVar(&o.target.MaxAckLost, "max-ack-lost", 0, "target: 202-answered letters with no alert and no trail")
	fs.Float64Var(&o.target.MaxDupSMSPercent, "max-dup-sms-pct", 0.01, "target: duplicated SMS, % of SMS")
	fs.IntVar(&o.target.MaxDupVisibleEmail, "max-dup-visible-email", 0, "target: emails duplicated with another Message-ID")
	fs.IntVar(&o.target.MaxDupRaw, "max-dup-raw", -1, "target: raw copies on all channels (sigterm: 0 whatever this says)")
	fs.IntVar(&o.target.MaxDupUnmarked, "max-dup-unmarked", 0, "target: deliveries accepted more than once whose trail marks no re-send")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	sc, ok := scenarios[o.scenario]
	switch {
	case !ok:
		fmt.Fprintf(stderr, "postbud-chaos: unknown -scenario %q (want %s)\n", o.scenario, strings.Join(names, ", "))
		return 2
	case o.fsync != "everysec" && o.fsync != "always":
		fmt.Fprintln(stderr, "postbud-chaos: -fsync must be everysec or always")
		return 2
	case o.letters < 0 || o.letters > 16000 || o.replicas < 1 || o.replicas > 8 || o.rate <= 0 || o.batch < 0 ||
		o.batch > 500 || o.senders < 1 || o.every <= 0:
		fmt.Fprintln(stderr, "postbud-chaos: -n 0..16000, -replicas 1..8, -rate > 0, -batch 0..500, -senders ≥ 1, -every > 0")
		return 2
	}
	if o.letters == 0 {
		o.letters = sc.Letters
	}
	target := o.target
	if sc.Target != nil {
		target = sc.Target(target)
	}
	start := time.Now()
	row, err := runScenario(ctx, sc, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "postbud-chaos:", err)
		return 1
	}
	row.Misses = target.Misses(row.Counts)
	PrintTable(stdout, []Row{row})
	fmt.Fprintf(stdout, "wall time %s\n", time.Since(start).Round(time.Second))
	if len(row.Misses) > 0 && !o.reportOnly {
		return 1
	}
	return 0
}
