package metrics_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/metrics"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// scrape GETs the handler over HTTP and returns the body and its samples,
// keyed by the series as printed (`name{l1="v1",l2="v2"}`).
func scrape(t *testing.T, g prometheus.Gatherer) (string, map[string]float64) {
	t.Helper()
	srv := httptest.NewServer(metrics.Handler(g))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want the text format", ct)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return string(b), samples
}

func TestObserver(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	var obs dispatcher.Observer = m

	obs.Delivered(channels.Email, dispatcher.ResultSent, "", 120*time.Millisecond)
	obs.Delivered(channels.Email, dispatcher.ResultSent, "", 30*time.Millisecond)
	obs.Delivered(channels.SMS, dispatcher.ResultRetrying, channels.Throttled.String(), 2*time.Second)
	obs.Delivered(channels.APNs, dispatcher.ResultGone, channels.Gone.String(), 5*time.Millisecond)
	obs.EventToAlert(channels.Email, 1500*time.Millisecond)
	obs.EventToAlert(channels.Email, 2*time.Hour) // beyond the last bucket
	obs.AddressRemoved(channels.APNs)
	obs.Webhook(event.EBoks, "sent", 40*time.Millisecond, 20*time.Millisecond)
	obs.Webhook(event.MitDK, channels.Transient.String(), 3*time.Hour, 10*time.Second)
	m.Event(string(event.MessageReceived), metrics.StatusAccepted)
	m.EventN(string(event.MessageRead), metrics.StatusDuplicate, 3)
	m.EventN(string(event.MessageRead), metrics.StatusDuplicate, 0)
	m.PaperJob(metrics.PaperExempt)
	m.PaperJob(metrics.PaperUnder15)

	// Personal data or unknown values passed by mistake end up as "other".
	const cpr, addr, token = "0101011234", "jane@example.dk", "a1b2c3d4e5f60718"
	obs.Delivered(channels.Name(addr), cpr, "kind(9)", time.Millisecond)
	obs.Delivered(channels.Email, dispatcher.ResultFailed, token, time.Millisecond)
	obs.EventToAlert(channels.Name("+4512345678"), time.Second)
	obs.AddressRemoved(channels.Name(token))
	obs.Webhook(event.Platform(addr), cpr, time.Second, time.Second)
	m.Event(cpr, addr)
	m.Event("", metrics.StatusInvalid)
	m.PaperJob(addr)

	body, got := scrape(t, reg)
	for _, s := range []string{cpr, addr, token, "4512345678", "kind(9)"} {
		if strings.Contains(body, s) {
			t.Errorf("the scrape carries %q:\n%s", s, body)
		}
	}
	want := map[string]float64{
		`postbud_alerts_total{channel="email",kind="none",result="sent"}`:        2,
		`postbud_alerts_total{channel="sms",kind="throttled",result="retrying"}`: 1,
		`postbud_alerts_total{channel="apns",kind="gone",result="gone"}`:         1,
		`postbud_alerts_total{channel="other",kind="other",result="other"}`:      1,
		`postbud_alerts_total{channel="email",kind="other",result="failed"}`:     1,
		`postbud_send_duration_seconds_count{channel="email"}`:                   3,
		`postbud_send_duration_seconds_sum{channel="email"}`:                     0.151,
		`postbud_send_duration_seconds_bucket{channel="email",le="0.05"}`:        2,
		`postbud_send_duration_seconds_bucket{channel="email",le="0.25"}`:        3,
		`postbud_send_duration_seconds_bucket{channel="sms",le="1"}`:             0,
		`postbud_send_duration_seconds_bucket{channel="sms",le="2.5"}`:           1,
		`postbud_event_to_alert_seconds_count{channel="email"}`:                  2,
		`postbud_event_to_alert_seconds_bucket{channel="email",le="0.01"}`:       0,
		`postbud_event_to_alert_seconds_bucket{channel="email",le="2.5"}`:        1,
		`postbud_event_to_alert_seconds_bucket{channel="email",le="3600"}`:       1,
		`postbud_event_to_alert_seconds_bucket{channel="email",le="+Inf"}`:       2,
		`postbud_event_to_alert_seconds_count{channel="other"}`:                  1,
		`postbud_addresses_removed_total{channel="apns"}`:                        1,
		`postbud_addresses_removed_total{channel="email"}`:                       0,
		`postbud_addresses_removed_total{channel="other"}`:                       1,
		`postbud_webhooks_total{platform="e-boks",result="sent"}`:                1,
		`postbud_webhooks_total{platform="mit.dk",result="transient"}`:           1,
		`postbud_webhooks_total{platform="other",result="other"}`:                1,
		`postbud_webhook_lag_seconds_bucket{platform="e-boks",le="0.05"}`:        1,
		`postbud_webhook_lag_seconds_bucket{platform="mit.dk",le="3600"}`:        0,
		`postbud_webhook_lag_seconds_bucket{platform="mit.dk",le="14400"}`:       1,
		`postbud_webhook_send_seconds_sum{platform="mit.dk"}`:                    10,
		`postbud_webhook_send_seconds_count{platform="e-boks"}`:                  1,
		`postbud_events_total{status="accepted",type="message.received"}`:        1,
		`postbud_events_total{status="duplicate",type="message.read"}`:           3,
		`postbud_events_total{status="forbidden",type="exemption.granted"}`:      0,
		`postbud_events_total{status="other",type="other"}`:                      1,
		`postbud_events_total{status="invalid",type="other"}`:                    1,
		`postbud_paper_jobs_total{reason="exempt"}`:                              1,
		`postbud_paper_jobs_total{reason="under 15"}`:                            1,
		`postbud_paper_jobs_total{reason="forward"}`:                             0,
		`postbud_paper_jobs_total{reason="other"}`:                               1,
		`postbud_send_duration_seconds_bucket{channel="other",le="+Inf"}`:        1,
		`postbud_webhook_send_seconds_bucket{platform="e-boks",le="0.025"}`:      1,
		`postbud_webhook_lag_seconds_bucket{platform="other",le="+Inf"}`:         1,
	}
	for series, w := range want {
		g, ok := got[series]
		if !ok {
			t.Errorf("missing series %s", series)
			continue
		}
		if diff := g - w; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("%s = %v, want %v", series, g, w)
		}
	}
	// Every label value of postbud's series comes from a fixed set.
	allowed := map[string][]string{
		"channel":  {"email", "sms", "apns", "fcm", "paper", "other"},
		"platform": {"core", "borger.dk", "digital-post-app", "e-boks", "mit.dk", "other"},
		"result": {"sent", "skipped", "failed", "retrying", "gone", "paper", "report",
			"transient", "permanent", "throttled", "misconfigured", "other"},
		"kind":   {"none", "transient", "gone", "permanent", "throttled", "misconfigured", "other"},
		"status": {"accepted", "duplicate", "invalid", "forbidden", "unavailable", "refused", "other"},
		"reason": {"exempt", "under 15", "forward", "other"},
		"type": {"message.received", "message.read", "message.unread", "contact.updated",
			"device.registered", "device.unregistered", "exemption.granted", "exemption.revoked",
			"consent.granted", "consent.revoked", "access.granted", "access.updated", "access.revoked", "other"},
	}
	labelRE := regexp.MustCompile(`(\w+)="([^"]*)"`)
	for series := range got {
		if !strings.HasPrefix(series, "postbud_") {
			continue
		}
		for _, l := range labelRE.FindAllStringSubmatch(series, -1) {
			if l[1] == "le" {
				continue
			}
			if !slices.Contains(allowed[l[1]], l[2]) {
				t.Errorf("series %s: label %s=%q is outside its fixed set", series, l[1], l[2])
			}
		}
	}
}

func TestNilRegisterer(t *testing.T) {
	m := metrics.New(nil)
	m.Delivered(channels.Email, dispatcher.ResultSent, "", time.Millisecond)
	m.Event("message.received", metrics.StatusAccepted)
	// A second Metrics on another registry is independent.
	reg := prometheus.NewRegistry()
	metrics.New(reg)
	_, got := scrape(t, reg)
	if _, ok := got[`postbud_alerts_total{channel="email",kind="none",result="sent"}`]; ok {
		t.Error("a Metrics without registry leaked into another registry")
	}
}

func TestConcurrentUse(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	const n, each = 8, 200
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for range each {
				m.Delivered(channels.FCM, dispatcher.ResultSent, "", time.Millisecond)
				m.EventToAlert(channels.FCM, time.Second)
				m.Webhook(event.BorgerDK, "sent", time.Second, time.Millisecond)
				m.Event("message.read", metrics.StatusAccepted)
			}
		})
	}
	wg.Wait()
	_, got := scrape(t, reg)
	for _, series := range []string{
		`postbud_alerts_total{channel="fcm",kind="none",result="sent"}`,
		`postbud_event_to_alert_seconds_count{channel="fcm"}`,
		`postbud_webhooks_total{platform="borger.dk",result="sent"}`,
		`postbud_events_total{status="accepted",type="message.read"}`,
	} {
		if got[series] != n*each {
			t.Errorf("%s = %v, want %d", series, got[series], n*each)
		}
	}
}

func TestQueueCollector(t *testing.T) {
	env := redistest.New(t)
	queue := env.QueuePrefix + ".normal"
	client := asynq.NewClientFromRedisClient(env.Client)
	ctx := context.Background()
	for i := range 3 {
		task := asynq.NewTask(dispatcher.TypeDelivery, []byte(`{"m":"msg-`+strconv.Itoa(i)+`"}`))
		if _, err := client.EnqueueContext(ctx, task, asynq.Queue(queue)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.EnqueueContext(ctx, asynq.NewTask(dispatcher.TypeSync, []byte(`{"m":"later"}`)),
		asynq.Queue(queue), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	arch, err := client.EnqueueContext(ctx, asynq.NewTask(dispatcher.TypeBadge, []byte(`{"m":"x"}`)), asynq.Queue(queue))
	if err != nil {
		t.Fatal(err)
	}
	if err := asynq.NewInspectorFromRedisClient(env.Client).ArchiveTask(queue, arch.ID); err != nil {
		t.Fatal(err)
	}

	reg := metrics.NewRegistry()
	metrics.New(reg)
	reg.MustRegister(metrics.NewQueueCollector(env.Client, dispatcher.DefaultQueues(env.QueuePrefix)))
	body, got := scrape(t, reg)

	q := `queue="` + queue + `"`
	want := map[string]float64{
		`asynq_queue_size{` + q + `}`:                             5,
		`asynq_tasks_enqueued_total{` + q + `,state="pending"}`:   3,
		`asynq_tasks_enqueued_total{` + q + `,state="scheduled"}`: 1,
		`asynq_tasks_enqueued_total{` + q + `,state="archived"}`:  1,
		`asynq_tasks_enqueued_total{` + q + `,state="active"}`:    0,
		`asynq_tasks_enqueued_total{` + q + `,state="retry"}`:     0,
		`asynq_tasks_processed_total{` + q + `}`:                  0,
		`asynq_tasks_failed_total{` + q + `}`:                     0,
		`asynq_queue_paused_total{` + q + `}`:                     0,
	}
	for series, w := range want {
		if g, ok := got[series]; !ok {
			t.Errorf("missing series %s in\n%s", series, body)
		} else if g != w {
			t.Errorf("%s = %v, want %v", series, g, w)
		}
	}
	if lat, ok := got[`asynq_queue_latency_seconds{`+q+`}`]; !ok || lat < 0 {
		t.Errorf("asynq_queue_latency_seconds = %v (present %v), want ≥ 0", lat, ok)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "postbud_events_total"} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("NewRegistry's scrape lacks %s", name)
		}
	}
	// The collector borrows the client: it is still usable.
	if err := env.Client.Ping(ctx).Err(); err != nil {
		t.Errorf("the Redis client was closed: %v", err)
	}
}

func TestWorkers(t *testing.T) {
	reg := prometheus.NewRegistry()
	w := metrics.NewWorkers(reg)
	w.Slots(metrics.ServerUrgent, 20)
	w.Slots(metrics.ServerMain, 50)
	doneU := w.Start(metrics.ServerUrgent)
	doneM1, doneM2 := w.Start(metrics.ServerMain), w.Start(metrics.ServerMain)
	// A server name outside the set is recorded as "other", never as
	// itself.
	doneX := w.Start("citizen@example.dk")
	_, got := scrape(t, reg)
	for series, want := range map[string]float64{
		`postbud_workers{server="urgent"}`:      20,
		`postbud_workers{server="main"}`:        50,
		`postbud_workers_busy{server="urgent"}`: 1,
		`postbud_workers_busy{server="main"}`:   2,
		`postbud_workers_busy{server="other"}`:  1,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	for s := range got {
		if strings.Contains(s, "example.dk") {
			t.Errorf("series %s carries the unknown label value", s)
		}
	}
	doneU()
	doneM1()
	doneM2()
	doneX()
	_, got = scrape(t, reg)
	if got[`postbud_workers_busy{server="urgent"}`] != 0 || got[`postbud_workers_busy{server="main"}`] != 0 {
		t.Errorf("busy after every task ended: %v", got)
	}
	if v, ok := got[`postbud_batch_yielding`]; !ok || v != 0 {
		t.Errorf("postbud_batch_yielding = %v (exported: %v) before any yield, want 0", v, ok)
	}
	w.Yielding(true)
	if _, got = scrape(t, reg); got[`postbud_batch_yielding`] != 1 {
		t.Errorf("postbud_batch_yielding = %v while yielding, want 1", got[`postbud_batch_yielding`])
	}
	w.Yielding(false)
	if _, got = scrape(t, reg); got[`postbud_batch_yielding`] != 0 {
		t.Errorf("postbud_batch_yielding = %v once no longer yielding, want 0", got[`postbud_batch_yielding`])
	}
}

// TestQueueCollectorWhileOtherQueuesComeAndGo scrapes while queues of
// others (other tests on the shared Redis, another asynq application)
// are created and removed: postbud's own queue is in every scrape. The
// collector of github.com/hibiken/asynq/x/metrics listed every queue of
// the Redis and dropped the whole scrape when one vanished between its
// listing and its read (NOT_FOUND in the logs of cmd/postbud's tests).
func TestQueueCollectorWhileOtherQueuesComeAndGo(t *testing.T) {
	env := redistest.New(t)
	queue := env.QueuePrefix + ".normal"
	ctx := context.Background()
	if _, err := asynq.NewClientFromRedisClient(env.Client).EnqueueContext(ctx,
		asynq.NewTask(dispatcher.TypeDelivery, []byte(`{}`)), asynq.Queue(queue)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewQueueCollector(env.Client, dispatcher.DefaultQueues(env.QueuePrefix)))
	// Others' queues: listed in asynq:queues, then removed as a test's
	// cleanup removes its own.
	others := make([]string, 20)
	for i := range others {
		others[i] = env.QueuePrefix + "-other" + strconv.Itoa(i) + ".normal"
	}
	stop := make(chan struct{})
	churned := make(chan struct{})
	go func() {
		defer close(churned)
		for {
			for _, q := range others {
				select {
				case <-stop:
					return
				default:
				}
				env.Client.SAdd(ctx, "asynq:queues", q)
				env.Client.SRem(ctx, "asynq:queues", q)
			}
		}
	}()
	defer func() {
		close(stop)
		<-churned
		for _, q := range others {
			env.Client.SRem(ctx, "asynq:queues", q)
		}
	}()
	series := `asynq_queue_size{queue="` + queue + `"}`
	for i := range 50 {
		if body, got := scrape(t, reg); got[series] != 1 {
			t.Fatalf("scrape %d: %s = %v (present: %v), want 1 in\n%s", i, series, got[series], strings.Contains(body, series), body)
		}
	}
}
