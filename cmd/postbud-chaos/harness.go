package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Secrets of the harness's own deployment; they never leave loopback.
const (
	coreKey     = "chaos-core-platform-key"
	opsKey      = "chaos-ops-key-0123456789"
	pseudonym   = "chaos-pseudonymisation-key-0123456789"
	sealKey     = "chaos-seal-key-0123456789-0123456789"
	queuePrefix = "chaos"
	shutdown    = 10 * time.Second
)

// Harness is one scenario run: the processes, the fakes and the log of
// what was sent and received.
type Harness struct {
	opts     options
	dir      string
	procs    *Procs
	redis    *Redis
	rdb      redis.UniversalClient
	fakes    *Fakes
	replicas []*replica
	next     atomic.Int64 // round robin over replicas
	faultRR  atomic.Int64 // the replica the next fault hits
	log      io.Writer
	client   *http.Client

	mu   sync.Mutex
	acks []time.Time
	// seen are the times the fakes' messages were first seen, by index
	// in their Messages().
	emailSeen, smsSeen []time.Time
}

type replica struct {
	proc *Proc
	base string
}

func (h *Harness) logf(format string, args ...any) {
	if h.opts.verbose {
		fmt.Fprintf(h.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

// citizen i: a CPR number made of a valid date (born 1950–1999) and i,
// an email and a mobile that name i. Only the harness knows the mapping.
func cpr(i int) string {
	return fmt.Sprintf("%02d%02d%02d-%04d", 1+i%28, 1+(i/28)%12, 50+(i/336)%50, 1000+i%9000)
}
func emailOf(i int) string  { return fmt.Sprintf("c%d@example.dk", i) }
func mobileOf(i int) uint64 { return 26000000 + uint64(i) } // 26xxxxxx: an assigned Danish mobile range
func msgID(i int) string {
	return fmt.Sprintf("c4a05000-0000-4000-8000-%012d", i)
}

func runScenario(ctx context.Context, sc Scenario, o options, stderr io.Writer) (row Row, err error) {
	dir, err := os.MkdirTemp("", "postbud-chaos-")
	if err != nil {
		return row, err
	}
	h := &Harness{opts: o, dir: dir, procs: &Procs{}, log: stderr,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}}
	defer func() {
		h.procs.Cleanup()
		if h.fakes != nil {
			h.fakes.Close()
		}
		if h.rdb != nil {
			h.rdb.Close()
		}
		if o.keep {
			fmt.Fprintln(stderr, "postbud-chaos: kept", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	bin := o.postbud
	if bin == "" {
		bin = filepath.Join(dir, "postbud")
		h.logf("building postbud")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/digitalpost/postbud/cmd/postbud")
		if out, err := cmd.CombinedOutput(); err != nil {
			return row, fmt.Errorf("go build ./cmd/postbud: %v\n%s", err, out)
		}
	}
	h.logf("starting redis (sentinel=%v)", sc.Sentinel)
	if h.redis, err = startRedis(ctx, h.procs, dir, o.fsync, sc.Sentinel, o.redisReplicas, o.minReplicas); err != nil {
		return row, err
	}
	h.rdb = h.redis.Client()
	if h.fakes, err = startFakes(o.answer); err != nil {
		return row, err
	}
	if err := h.startReplicas(ctx, bin); err != nil {
		return row, err
	}

	// Citizens first, and let their contacts settle: a letter that
	// arrives before its citizen's contact is, rightly, sent nowhere.
	h.logf("registering %d citizens", o.letters)
	if err := h.registerCitizens(ctx); err != nil {
		return row, err
	}
	if err := waitFor(ctx, 2*time.Minute, "the contacts to be processed", func() bool { return h.busy(ctx) == 0 }); err != nil {
		return row, err
	}

	letters := make([]Letter, o.letters)
	drive := time.Duration(float64(o.letters) / o.rate * float64(time.Second))
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	var faults int
	var faultErr error
	fdone := make(chan struct{})
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	go h.sample(sctx)
	h.logf("driving %d letters over %s", o.letters, drive)
	from := time.Now()
	go func() {
		defer close(fdone)
		faults, faultErr = sc.Faults(fctx, h, drive)
	}()
	h.drive(ctx, letters)
	// The outage window ends with the drive, not with a fault still
	// settling after it.
	to := time.Now()
	<-fdone
	for _, l := range letters {
		if l.Acked && l.AckedAt.After(to) {
			to = l.AckedAt
		}
	}
	if faultErr != nil {
		return row, faultErr
	}
	h.logf("drained? waiting up to %s", o.drain)
	stuck := h.waitDrained(ctx, letters)
	if ctx.Err() != nil {
		return row, ctx.Err()
	}
	scancel()

	rec := Record{Letters: letters, Trailed: map[int]bool{}, Marked: map[int]map[string]bool{}, Stuck: stuck, Faults: faults, From: from, To: to,
		Retries: h.retries(ctx)}
	h.mu.Lock()
	rec.Acks = append(rec.Acks, h.acks...)
	emailSeen, smsSeen := append([]time.Time(nil), h.emailSeen...), append([]time.Time(nil), h.smsSeen...)
	h.mu.Unlock()
	rec.Deliveries = h.deliveries(emailSeen, smsSeen)
	got := map[int]bool{}
	type key struct {
		letter  int
		channel string
	}
	copies := map[key]int{}
	for _, d := range rec.Deliveries {
		got[d.Letter] = true
		copies[key{d.Letter, d.Channel}]++
	}
	// One trail per letter with a duplicate on some channel: which of its
	// channels mark a re-send.
	for k, n := range copies {
		if _, done := rec.Marked[k.letter]; n > 1 && !done && k.letter >= 0 && k.letter < len(letters) {
			rec.Marked[k.letter] = h.marked(ctx, letters[k.letter].MessageID)
		}
	}
	for i, l := range letters {
		if l.Acked && !got[i] && h.hasTrail(ctx, l.MessageID) {
			rec.Trailed[i] = true
		}
	}
	return Row{Scenario: sc.Name, Counts: Count(rec, []string{chEmail, chSMS})}, nil
}

func (h *Harness) env(port int) []string {
	e := map[string]string{
		"PATH":                      os.Getenv("PATH"),
		"POSTBUD_REDIS_URL":         h.redis.URL(),
		"POSTBUD_HTTP_ADDR":         "127.0.0.1:" + strconv.Itoa(port),
		"POSTBUD_PSEUDONYM_KEY":     pseudonym,
		"POSTBUD_SEAL_KEY":          sealKey,
		"POSTBUD_OPS_KEY":           opsKey,
		"POSTBUD_KEY_CORE":          coreKey,
		"POSTBUD_PLATFORM_RATE":     "0",
		"POSTBUD_KEY_PREFIX":        "chaos",
		"POSTBUD_QUEUE_PREFIX":      queuePrefix,
		"POSTBUD_CONCURRENCY":       "20",
		"POSTBUD_RETRY_BASE":        "1s",
		"POSTBUD_SHUTDOWN_TIMEOUT":  shutdown.String(),
		"POSTBUD_DRAIN_DELAY":       "0",
		"POSTBUD_LOG_LEVEL":         "warn",
		"POSTBUD_SMTP_HOST":         "127.0.0.1",
		"POSTBUD_SMTP_PORT":         strconv.Itoa(h.fakes.SMTPPort()),
		"POSTBUD_SMTP_TLS":          "none",
		"POSTBUD_SMTP_FROM":         "besked@digitalpost.dk",
		"POSTBUD_SMTP_TIMEOUT":      "5s",
		"POSTBUD_SMS_TOKEN":         h.fakes.SMS.Token(),
		"POSTBUD_SMS_URL":           h.fakes.SMSURL(),
		"POSTBUD_SMS_TIMEOUT":       "5s",
		"POSTBUD_SMS_CALLBACK_URL":  h.fakes.ReportURL(),
		"POSTBUD_SMS_REPORT_SECRET": string(h.fakes.SMS.Secret()),
		"POSTBUD_QUIET_HOURS_SMS":   "off",
		"POSTBUD_COALESCE_EMAIL":    "0",
		"POSTBUD_COALESCE_SMS":      "0",
		"POSTBUD_COALESCE_PUSH":     "0",
		"POSTBUD_ACK_REPLICAS":      strconv.Itoa(h.opts.ackReplicas),
	}
	out := make([]string, 0, len(e))
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

func (h *Harness) startReplicas(ctx context.Context, bin string) error {
	var bases []string
	for i := range h.opts.replicas {
		port, err := freePort()
		if err != nil {
			return err
		}
		r := &replica{base: "http://127.0.0.1:" + strconv.Itoa(port),
			proc: h.procs.New(fmt.Sprintf("postbud%d", i), filepath.Join(h.dir, fmt.Sprintf("postbud%d.log", i)),
				h.env(port), bin, "serve")}
		if err := r.proc.Start(); err != nil {
			return err
		}
		h.replicas = append(h.replicas, r)
		bases = append(bases, r.base)
	}
	h.fakes.SetReplicas(bases)
	for _, r := range h.replicas {
		if err := h.waitHealthy(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func (h *Harness) waitHealthy(ctx context.Context, r *replica) error {
	return waitFor(ctx, 30*time.Second, r.proc.Name+" to serve", func() bool {
		if !r.proc.Running() {
			return false
		}
		resp, err := h.client.Get(r.base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// kill9 kills the next replica with SIGKILL and starts it again at once.
func (h *Harness) kill9(ctx context.Context) error {
	r := h.replicas[int(h.faultRR.Add(1)-1)%len(h.replicas)]
	h.logf("kill -9 %s", r.proc.Name)
	if err := r.proc.Kill9(); err != nil {
		return err
	}
	if err := r.proc.Start(); err != nil {
		return err
	}
	return h.waitHealthy(ctx, r)
}

// sigterm stops the next replica with SIGTERM, waits for it and starts it
// again: a rolling restart.
func (h *Harness) sigterm(ctx context.Context) error {
	r := h.replicas[int(h.faultRR.Add(1)-1)%len(h.replicas)]
	h.logf("SIGTERM %s", r.proc.Name)
	if err := r.proc.Term(shutdown + 10*time.Second); err != nil {
		return err
	}
	if err := r.proc.Start(); err != nil {
		return err
	}
	return h.waitHealthy(ctx, r)
}

func event(id, typ string, data map[string]any) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"id": id, "type": typ, "occurred_at": time.Now().UTC().Format(time.RFC3339Nano),
		"source": "core", "data": data})
	return b
}

func (h *Harness) registerCitizens(ctx context.Context) error {
	const per = 250
	for lo := 0; lo < h.opts.letters; lo += per {
		var evs []json.RawMessage
		for i := lo; i < min(lo+per, h.opts.letters); i++ {
			evs = append(evs, event(fmt.Sprintf("contact-%d", i), "contact.updated", map[string]any{
				"cpr": cpr(i), "email": emailOf(i), "mobile": strconv.FormatUint(mobileOf(i), 10),
				// Addresses confirmed before (core's migration): the chaos run is about letters.
				"confirmed": true}))
		}
		ok, err := h.post(ctx, evs, time.Now().Add(time.Minute))
		if err != nil {
			return err
		}
		for i, a := range ok {
			if !a {
				return fmt.Errorf("contact.updated %d was not accepted", lo+i)
			}
		}
	}
	return nil
}

// post sends events (one, or a batch) to the replicas in turn until one
// answers 202 or the deadline passes, and reports which were accepted.
func (h *Harness) post(ctx context.Context, evs []json.RawMessage, deadline time.Time) ([]bool, error) {
	path, body := "/v1/events", []byte(evs[0])
	if len(evs) > 1 || h.opts.batch > 0 {
		path = "/v1/events/batch"
		body, _ = json.Marshal(map[string]any{"events": evs})
	}
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		r := h.replicas[int(h.next.Add(1)-1)%len(h.replicas)]
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.base+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+coreKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := h.client.Do(req)
		if err != nil {
			last = err.Error()
			pause(ctx, 100*time.Millisecond)
			continue
		}
		var out struct {
			Status  string `json:"status"`
			Results []struct {
				Status string `json:"status"`
			} `json:"results"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			last = resp.Status
			pause(ctx, 100*time.Millisecond)
			continue
		}
		now := time.Now()
		h.mu.Lock()
		h.acks = append(h.acks, now)
		h.mu.Unlock()
		ok := make([]bool, len(evs))
		if path == "/v1/events" {
			ok[0] = out.Status == "accepted" || out.Status == "duplicate"
			return ok, nil
		}
		for i, res := range out.Results {
			if i < len(ok) {
				ok[i] = res.Status == "accepted" || res.Status == "duplicate"
			}
		}
		return ok, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return make([]bool, len(evs)), fmt.Errorf("no replica answered 202 before the deadline (last: %s)", last)
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// drive sends the letters at -rate through -senders workers. A letter is
// retried, on any replica, until it is answered 202 or a minute after the
// drive was due to end: a platform retries too.
func (h *Harness) drive(ctx context.Context, letters []Letter) {
	per := max(1, h.opts.batch)
	type job struct{ lo, hi int }
	jobs := make(chan job)
	drive := time.Duration(float64(len(letters)) / h.opts.rate * float64(time.Second))
	deadline := time.Now().Add(drive + time.Minute)
	var wg sync.WaitGroup
	for range h.opts.senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				var evs []json.RawMessage
				for i := j.lo; i < j.hi; i++ {
					letters[i].MessageID = msgID(i)
					evs = append(evs, event(fmt.Sprintf("letter-%d", i), "message.received", map[string]any{
						"message_id": msgID(i), "recipient": map[string]any{"cpr": cpr(i)},
						"sender": map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"}}))
				}
				ok, err := h.post(ctx, evs, deadline)
				if err != nil {
					h.logf("letters %d..%d: %v", j.lo, j.hi-1, err)
				}
				now := time.Now()
				for k, a := range ok {
					if a {
						letters[j.lo+k].Acked, letters[j.lo+k].AckedAt = true, now
					}
				}
			}
		}()
	}
	start := time.Now()
	for lo := 0; lo < len(letters); lo += per {
		due := start.Add(time.Duration(float64(lo) / h.opts.rate * float64(time.Second)))
		pause(ctx, time.Until(due))
		if ctx.Err() != nil {
			break
		}
		jobs <- job{lo, min(lo+per, len(letters))}
	}
	close(jobs)
	wg.Wait()
	for i := range letters {
		letters[i].MessageID = msgID(i)
	}
}

// busy is the tasks active, pending, scheduled or retrying (-1 when Redis
// cannot tell).
func (h *Harness) busy(ctx context.Context) int {
	insp := asynq.NewInspectorFromRedisClient(h.rdb)
	n := 0
	for _, q := range []string{".urgent", ".normal", ".bulk"} {
		info, err := insp.GetQueueInfo(queuePrefix + q)
		if err != nil {
			if strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "not found") {
				continue
			}
			return -1
		}
		n += info.Pending + info.Active + info.Scheduled + info.Retry
	}
	return n
}

// retries is asynq's failed-task total over the queues: the retries
// spent (IsFailure false, as for a throttled delivery, spends none).
func (h *Harness) retries(ctx context.Context) int {
	insp := asynq.NewInspectorFromRedisClient(h.rdb)
	n := 0
	for _, q := range []string{".urgent", ".normal", ".bulk"} {
		if info, err := insp.GetQueueInfo(queuePrefix + q); err == nil {
			n += info.FailedTotal
		}
	}
	return n
}

// sample notes when each accepted message was first seen, and sends the
// SMS delivery reports.
func (h *Harness) sample(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	reported := map[int64]bool{}
	lastReport := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ne, ns := len(h.fakes.SMTP.Messages()), len(h.fakes.SMS.Messages())
		now := time.Now()
		h.mu.Lock()
		for len(h.emailSeen) < ne {
			h.emailSeen = append(h.emailSeen, now)
		}
		for len(h.smsSeen) < ns {
			h.smsSeen = append(h.smsSeen, now)
		}
		h.mu.Unlock()
		if now.Sub(lastReport) > time.Second {
			lastReport = now
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			h.fakes.sendReports(rctx, reported)
			cancel()
		}
	}
}

// waitDrained waits until no task is left and every acknowledged letter
// has its alerts, or until nothing has moved for a while with an empty
// queue, or until -drain; it returns the tasks still left.
func (h *Harness) waitDrained(ctx context.Context, letters []Letter) int {
	want := 0
	for _, l := range letters {
		if l.Acked {
			want += 2
		}
	}
	deadline := time.Now().Add(h.opts.drain)
	lastCount, lastMove := -1, time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n := h.busy(ctx)
		have := len(h.fakes.SMTP.Messages()) + len(h.fakes.SMS.Messages())
		if have != lastCount {
			lastCount, lastMove = have, time.Now()
		}
		if n == 0 && (have >= want && time.Since(lastMove) > 2*time.Second || time.Since(lastMove) > 10*time.Second) {
			return 0
		}
		pause(ctx, 500*time.Millisecond)
	}
	return max(0, h.busy(ctx))
}

// deliveries attributes the fakes' messages to letters by recipient.
func (h *Harness) deliveries(emailSeen, smsSeen []time.Time) []Delivery {
	var out []Delivery
	at := func(seen []time.Time, i int) time.Time {
		if i < len(seen) {
			return seen[i]
		}
		return time.Now()
	}
	for i, m := range h.fakes.SMTP.Messages() {
		if len(m.To) != 1 {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(m.To[0], "c%d@example.dk", &n); err != nil {
			continue
		}
		out = append(out, Delivery{Letter: n, Channel: chEmail, ProviderKey: m.MessageID(), At: at(emailSeen, i)})
	}
	for i, m := range h.fakes.SMS.Messages() {
		for _, msisdn := range m.MSISDNs {
			n := int(msisdn - 4526000000)
			out = append(out, Delivery{Letter: n, Channel: chSMS, ProviderKey: strconv.FormatInt(m.ID, 10), At: at(smsSeen, i)})
		}
	}
	return out
}

// trailEntry is the part of a trail entry the harness reads.
type trailEntry struct {
	Channel string `json:"channel"`
	Reason  string `json:"reason"`
}

// trail fetches the letter's trail from the first replica that answers;
// ok is false when none has one.
func (h *Harness) trail(ctx context.Context, id string) (entries []trailEntry, ok bool) {
	for _, r := range h.replicas {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/v1/messages/"+id+"/trail", nil)
		req.Header.Set("Authorization", "Bearer "+opsKey)
		resp, err := h.client.Do(req)
		if err != nil {
			continue
		}
		var out struct {
			Trail []trailEntry `json:"trail"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK && err == nil:
			return out.Trail, true
		case resp.StatusCode == http.StatusNotFound:
			return nil, false
		}
	}
	return nil, false
}

// hasTrail reports whether some replica has a trail entry for the letter.
func (h *Harness) hasTrail(ctx context.Context, id string) bool {
	t, _ := h.trail(ctx, id)
	return len(t) > 0
}

// marked reports the channels on which the letter's trail marks a re-send
// after an interrupted attempt.
func (h *Harness) marked(ctx context.Context, id string) map[string]bool {
	t, _ := h.trail(ctx, id)
	out := map[string]bool{}
	for _, e := range t {
		if strings.Contains(e.Reason, dispatcher.ReasonResent) {
			out[e.Channel] = true
		}
	}
	return out
}
