// Package metrics exports postbud's Prometheus metrics: the dispatcher's
// measurements (it implements dispatcher.Observer), the HTTP ingest's event
// counts, paper jobs, and the asynq queues' sizes and latency.
//
// Labels never carry personal data: every label value comes from a fixed
// set (channel, platform, result, kind, event type, status, paper reason)
// and anything outside its set is recorded as "other", so a bug upstream can
// neither leak an address into a time series nor explode the number of
// series.
package metrics

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Other is the label value recorded for anything outside a label's fixed
// set of values.
const Other = "other"

// None is the kind label of an attempt that met no failure.
const None = "none"

// Statuses of an event offered to the HTTP ingest (httpapi.Result.Status).
const (
	StatusAccepted    = "accepted"
	StatusDuplicate   = "duplicate"
	StatusInvalid     = "invalid"
	StatusForbidden   = "forbidden"
	StatusUnavailable = "unavailable"
	// StatusRefused: a read or unread from a platform without the
	// citizen's consent to show the (public) letter.
	StatusRefused = "refused"
)

// Reasons a letter goes on paper.
const (
	// PaperExempt: the citizen is exempt from Digital Post.
	PaperExempt = "exempt"
	// PaperUnder15: the citizen is under 15 and paper for minors is on.
	PaperUnder15 = "under 15"
	// PaperForward: an unopened letter of the last 6 months forwarded on
	// exemption.
	PaperForward = "forward"
)

// Fixed label sets.
var (
	channelNames = []string{string(channels.Email), string(channels.SMS), string(channels.APNs),
		string(channels.FCM), string(channels.Paper)}
	kindNames = []string{channels.Transient.String(), channels.Gone.String(), channels.Permanent.String(),
		channels.Throttled.String(), channels.Misconfigured.String()}
	resultNames = append([]string{dispatcher.ResultSent, dispatcher.ResultSkipped, dispatcher.ResultFailed,
		dispatcher.ResultRetrying, dispatcher.ResultGone, dispatcher.ResultPaper, dispatcher.ResultReport},
		kindNames...)
	statusNames = []string{StatusAccepted, StatusDuplicate, StatusInvalid, StatusForbidden, StatusUnavailable, StatusRefused}
	paperNames  = []string{PaperExempt, PaperUnder15, PaperForward}
)

// Buckets.
var (
	// sendBuckets cover one provider call: 5 ms to 30 s (the send timeout).
	sendBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	// alertBuckets cover event to alert: 10 ms to 1 h.
	alertBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	// lagBuckets cover a read-state change to its webhook: 10 ms to a day
	// (a platform that was down gets its update when it is back).
	lagBuckets = append(slices.Clone(alertBuckets), 4*3600, 12*3600, 24*3600)
)

// Metrics records postbud's measurements. Its methods are safe for
// concurrent use. It implements dispatcher.Observer.
type Metrics struct {
	alerts       *prometheus.CounterVec
	sendDuration *prometheus.HistogramVec
	eventToAlert *prometheus.HistogramVec
	removed      *prometheus.CounterVec
	webhooks     *prometheus.CounterVec
	webhookLag   *prometheus.HistogramVec
	webhookSend  *prometheus.HistogramVec
	events       *prometheus.CounterVec
	paper        *prometheus.CounterVec
	health       *health
}

var _ dispatcher.Observer = (*Metrics)(nil)

// New returns Metrics registered with reg; a nil reg registers nothing
// (the metrics are then recorded but never exported). It panics if reg
// already holds postbud's metrics, like prometheus.MustRegister.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postbud_alerts_total",
			Help: "Delivery attempts of alerts, by channel, result (sent, retrying, gone, failed, …) and failure kind (none when sent).",
		}, []string{"channel", "result", "kind"}),
		sendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "postbud_send_duration_seconds",
			Help:    "Time one send to the channel's provider took, whatever its outcome.",
			Buckets: sendBuckets,
		}, []string{"channel"}),
		eventToAlert: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "postbud_event_to_alert_seconds",
			Help:    "Time from a letter's arrival at postbud to its alert handed to the provider.",
			Buckets: alertBuckets,
		}, []string{"channel"}),
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postbud_addresses_removed_total",
			Help: "Addresses and push tokens removed because the provider reported them gone.",
		}, []string{"channel"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postbud_webhooks_total",
			Help: "Read-state webhook attempts to the platforms, by platform and result (sent or the failure kind).",
		}, []string{"platform", "result"}),
		webhookLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "postbud_webhook_lag_seconds",
			Help:    "Time from a read-state change to a webhook attempt carrying it.",
			Buckets: lagBuckets,
		}, []string{"platform"}),
		webhookSend: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "postbud_webhook_send_seconds",
			Help:    "Time one webhook request to a platform took, whatever its outcome.",
			Buckets: sendBuckets,
		}, []string{"platform"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postbud_events_total",
			Help: "Events offered to the HTTP ingest, by event type and status (accepted, duplicate, invalid, forbidden, unavailable, refused).",
		}, []string{"type", "status"}),
		paper: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postbud_paper_jobs_total",
			Help: "Letters sent on paper, by reason (exempt, under 15, forward).",
		}, []string{"reason"}),
		health: newHealth(),
	}
	// Series that exist from the start, so rate() and absent() work
	// before the first occurrence.
	for _, c := range channelNames {
		m.removed.WithLabelValues(c)
	}
	for _, t := range event.Types() {
		for _, s := range statusNames {
			m.events.WithLabelValues(string(t), s)
		}
	}
	for _, r := range paperNames {
		m.paper.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.alerts, m.sendDuration, m.eventToAlert, m.removed, m.webhooks, m.webhookLag,
			m.webhookSend, m.events, m.paper, m.health.up, m.health.providers)
	}
	return m
}

// Delivered records one delivery attempt: its outcome and how long the
// send took.
func (m *Metrics) Delivered(ch channels.Name, result, kind string, took time.Duration) {
	c := oneOf(string(ch), channelNames)
	if kind == "" {
		kind = None
	} else {
		kind = oneOf(kind, kindNames)
	}
	m.alerts.WithLabelValues(c, oneOf(result, resultNames), kind).Inc()
	m.health.delivered(c, result, kind)
	m.sendDuration.WithLabelValues(c).Observe(took.Seconds())
}

// EventToAlert records the time from a letter's arrival to its alert.
func (m *Metrics) EventToAlert(ch channels.Name, since time.Duration) {
	m.eventToAlert.WithLabelValues(oneOf(string(ch), channelNames)).Observe(since.Seconds())
}

// AddressRemoved counts a gone address or token removed.
func (m *Metrics) AddressRemoved(ch channels.Name) {
	m.removed.WithLabelValues(oneOf(string(ch), channelNames)).Inc()
}

// Webhook records one webhook attempt to a platform.
func (m *Metrics) Webhook(p event.Platform, result string, lag, took time.Duration) {
	pl := platform(p)
	m.webhooks.WithLabelValues(pl, oneOf(result, resultNames)).Inc()
	m.webhookLag.WithLabelValues(pl).Observe(lag.Seconds())
	m.webhookSend.WithLabelValues(pl).Observe(took.Seconds())
}

// Event counts one event offered to the HTTP ingest: its type (as sent;
// an unknown or missing type counts as "other") and the status it was
// answered with (httpapi.Result.Status).
func (m *Metrics) Event(typ, status string) {
	m.EventN(typ, status, 1)
}

// EventN counts n events of one type and status (a batch).
func (m *Metrics) EventN(typ, status string, n int) {
	if n <= 0 {
		return
	}
	t := Other
	if slices.Contains(event.Types(), event.Type(typ)) {
		t = typ
	}
	m.events.WithLabelValues(t, oneOf(status, statusNames)).Add(float64(n))
}

// PaperJob counts one letter sent on paper, by reason: PaperExempt,
// PaperUnder15 or PaperForward; any other reason counts as "other".
func (m *Metrics) PaperJob(reason string) {
	m.paper.WithLabelValues(oneOf(reason, paperNames)).Inc()
}

func platform(p event.Platform) string {
	if slices.Contains(event.Platforms(), p) {
		return string(p)
	}
	return Other
}

func oneOf(v string, set []string) string {
	if slices.Contains(set, v) {
		return v
	}
	return Other
}

// NewQueueCollector returns a collector of postbud's asynq queues (the
// lanes of q) in rdb, with the series of github.com/hibiken/asynq/x/metrics:
// per queue, asynq_queue_size, asynq_tasks_enqueued_total{state} (a gauge
// of the tasks in each state: pending, active, scheduled, retry, archived,
// completed), asynq_queue_latency_seconds (age of the oldest pending task),
// asynq_queue_memory_usage_approx_bytes, asynq_tasks_processed_total,
// asynq_tasks_failed_total and asynq_queue_paused_total (1 when paused).
// It reads Redis on every scrape. rdb is not closed by the collector.
//
// Only postbud's lanes, each on its own: x/metrics' collector reads every
// queue the Redis lists and drops the whole scrape when one of them fails,
// so a queue of another application (or another test) removed between the
// listing and its read took postbud's series with it. A lane that never had
// a task is not known to asynq and has no series; a lane that cannot be
// read is reported as the scrape's error, the other lanes still served.
func NewQueueCollector(rdb redis.UniversalClient, q dispatcher.Queues) prometheus.Collector {
	return &queueCollector{insp: asynq.NewInspectorFromRedisClient(rdb), queues: []string{q.Urgent, q.Normal, q.Bulk}}
}

type queueCollector struct {
	insp   *asynq.Inspector
	queues []string
}

// The series of x/metrics, with its names, help and labels.
var (
	asynqTasks = prometheus.NewDesc("asynq_tasks_enqueued_total",
		"Number of tasks enqueued; broken down by queue and state.", []string{"queue", "state"}, nil)
	asynqSize = prometheus.NewDesc("asynq_queue_size",
		"Number of tasks in a queue", []string{"queue"}, nil)
	asynqLatency = prometheus.NewDesc("asynq_queue_latency_seconds",
		"Number of seconds the oldest pending task is waiting in pending state to be processed.", []string{"queue"}, nil)
	asynqMemory = prometheus.NewDesc("asynq_queue_memory_usage_approx_bytes",
		"Number of memory used by a given queue (approximated number by sampling).", []string{"queue"}, nil)
	asynqProcessed = prometheus.NewDesc("asynq_tasks_processed_total",
		"Number of tasks processed (both succeeded and failed); broken down by queue", []string{"queue"}, nil)
	asynqFailed = prometheus.NewDesc("asynq_tasks_failed_total",
		"Number of tasks failed; broken down by queue", []string{"queue"}, nil)
	asynqPaused = prometheus.NewDesc("asynq_queue_paused_total",
		"Number of queues paused", []string{"queue"}, nil)
)

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{asynqTasks, asynqSize, asynqLatency, asynqMemory, asynqProcessed, asynqFailed, asynqPaused} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	known, err := c.insp.Queues()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(asynqSize, fmt.Errorf("asynq queues: %w", err))
		return
	}
	for _, q := range c.queues {
		if !slices.Contains(known, q) {
			continue // never had a task
		}
		info, err := c.insp.GetQueueInfo(q)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(asynqSize, fmt.Errorf("asynq queue %s: %w", q, err))
			continue
		}
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{q}, labels...)...)
		}
		for state, n := range map[string]int{"active": info.Active, "pending": info.Pending, "scheduled": info.Scheduled,
			"retry": info.Retry, "archived": info.Archived, "completed": info.Completed} {
			gauge(asynqTasks, float64(n), state)
		}
		gauge(asynqSize, float64(info.Size))
		gauge(asynqLatency, info.Latency.Seconds())
		gauge(asynqMemory, float64(info.MemoryUsage))
		ch <- prometheus.MustNewConstMetric(asynqProcessed, prometheus.CounterValue, float64(info.ProcessedTotal), q)
		ch <- prometheus.MustNewConstMetric(asynqFailed, prometheus.CounterValue, float64(info.FailedTotal), q)
		paused := 0.0
		if info.Paused {
			paused = 1
		}
		gauge(asynqPaused, paused)
	}
}

// BuildInfo registers postbud_build_info{version,revision,goversion} 1
// with reg: the running build, for dashboards and alerts across a rollout.
func BuildInfo(reg prometheus.Registerer, version, revision, goVersion string) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "postbud_build_info",
		Help: "The running build: 1, labelled with postbud's version, VCS revision and Go version.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(version, revision, goVersion).Set(1)
	reg.MustRegister(g)
}

// NewRegistry returns a registry holding the Go runtime and process
// collectors, for New, NewQueueCollector and Handler.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves the metrics gathered from g in the Prometheus text (or
// OpenMetrics, when asked) format. A collector that fails is reported in
// the response and the other metrics are still served.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		EnableOpenMetrics:   true,
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	})
}

// Worker servers: postbud runs two asynq servers, each with worker slots
// of its own (cmd/postbud serve).
const (
	// ServerUrgent works the urgent lane (POSTBUD_URGENT_CONCURRENCY).
	ServerUrgent = "urgent"
	// ServerMain works every lane, urgent first (POSTBUD_CONCURRENCY).
	ServerMain = "main"
)

// Workers exports the worker slots of postbud's asynq servers,
// postbud_workers{server}, and how many are busy,
// postbud_workers_busy{server}: a main server at its slots (a provider
// hangs) while the urgent one has room is the separation at work; and
// postbud_batch_yielding, 1 while batch tasks yield to the urgent lane.
type Workers struct {
	slots, busy *prometheus.GaugeVec
	yielding    prometheus.Gauge
}

// NewWorkers returns Workers registered with reg (nil registers nothing).
func NewWorkers(reg prometheus.Registerer) *Workers {
	w := &Workers{
		slots: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "postbud_workers",
			Help: "Worker slots of an asynq server of this replica (server: urgent for the urgent lane alone, main for every lane).",
		}, []string{"server"}),
		busy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "postbud_workers_busy",
			Help: "Worker slots of an asynq server of this replica that run a task now.",
		}, []string{"server"}),
		yielding: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postbud_batch_yielding",
			Help: "1 while this replica's batch tasks yield Redis to the urgent lane (it flowed at their last look; POSTBUD_BATCH_YIELD_RATE), else 0.",
		}),
	}
	for _, s := range []string{ServerUrgent, ServerMain} {
		w.busy.WithLabelValues(s)
	}
	if reg != nil {
		reg.MustRegister(w.slots, w.busy, w.yielding)
	}
	return w
}

// Yielding records whether batch tasks yield to the urgent lane, as they
// last looked.
func (w *Workers) Yielding(on bool) {
	if on {
		w.yielding.Set(1)
	} else {
		w.yielding.Set(0)
	}
}

// Slots records the worker slots of server (ServerUrgent, ServerMain).
func (w *Workers) Slots(server string, n int) {
	w.slots.WithLabelValues(oneOf(server, []string{ServerUrgent, ServerMain})).Set(float64(n))
}

// Start records a task started on server; the returned func records its
// end.
func (w *Workers) Start(server string) (done func()) {
	g := w.busy.WithLabelValues(oneOf(server, []string{ServerUrgent, ServerMain}))
	g.Inc()
	return g.Dec
}
