package deploy

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/metrics"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// externalSeries are the series the monitoring kit uses that postbud does
// not export: redis_exporter's (run beside Redis) and Prometheus's own.
var externalSeries = map[string]string{
	"redis_memory_used_bytes":        "redis_exporter",
	"redis_memory_max_bytes":         "redis_exporter",
	"redis_up":                       "redis_exporter",
	"redis_connected_clients":        "redis_exporter",
	"redis_commands_processed_total": "redis_exporter",
	"up":                             "Prometheus (scrape health)",
}

// seriesPattern finds the series names in a PromQL expression: postbud's,
// asynq's, the Go and process collectors', redis_exporter's and up.
var seriesPattern = regexp.MustCompile(`\b((?:postbud|asynq|redis|go|process)_[a-zA-Z0-9_]+|up)\b(\{[^}]*\})?`)

// matcherLabel finds the label names of a selector's matchers.
var matcherLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)

// exported gathers the series postbud's /metrics serves, with their label
// names: the registry serve builds, with a task queued so the asynq
// collector reports its series.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	env := redistest.New(t)
	client := asynq.NewClientFromRedisClient(env.Client)
	if _, err := client.EnqueueContext(context.Background(), asynq.NewTask(dispatcher.TypeBadge, []byte(`{}`)),
		asynq.Queue(env.QueuePrefix+".urgent")); err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	m.Webhook("e-boks", dispatcher.ResultSent, 0, 0)
	m.Delivered("email", dispatcher.ResultSent, "", 0)
	m.EventToAlert("email", 0)
	m.ChannelConfigured("email", nil)
	m.ProviderState("sms", "sms-1", "closed")
	metrics.BuildInfo(reg, "v0.0.0", "abc", "go1.26")
	w := metrics.NewWorkers(reg)
	w.Slots(metrics.ServerUrgent, 20)
	w.Slots(metrics.ServerMain, 50)
	reg.MustRegister(metrics.NewQueueCollector(env.Client, dispatcher.DefaultQueues(env.QueuePrefix)))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, mf := range mfs {
		var labels []string
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if !slices.Contains(labels, lp.GetName()) {
					labels = append(labels, lp.GetName())
				}
			}
		}
		names := []string{mf.GetName()}
		if mf.GetType() == dto.MetricType_HISTOGRAM || mf.GetType() == dto.MetricType_SUMMARY {
			names = append(names, mf.GetName()+"_sum", mf.GetName()+"_count")
		}
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			names = append(names, mf.GetName()+"_bucket")
			out[mf.GetName()+"_bucket"] = append(slices.Clone(labels), "le")
		}
		for _, n := range names {
			if _, ok := out[n]; !ok {
				out[n] = labels
			}
		}
	}
	return out
}

// kitExpressions returns every PromQL expression of the alert rules and
// the Grafana dashboard, each named by where it is.
func kitExpressions(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	raw, err := os.ReadFile("monitoring/postbud-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs["rule "+r.Alert] = r.Expr
		}
	}
	raw, err = os.ReadFile("monitoring/postbud-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs["panel "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	return exprs
}

// TestMonitoringKitUsesExportedSeries: every series an alert rule or a
// dashboard panel queries is one postbud exports (with the labels its
// matchers name), or one listed as external; and the kit covers what it
// promises (one rule per concern of deploy/README.md's table).
func TestMonitoringKitUsesExportedSeries(t *testing.T) {
	have := exported(t)
	exprs := kitExpressions(t)
	if len(exprs) < 20 {
		t.Fatalf("only %d expressions found in the rules and the dashboard", len(exprs))
	}
	for where, expr := range exprs {
		found := seriesPattern.FindAllStringSubmatch(expr, -1)
		if len(found) == 0 {
			t.Errorf("%s: %q names no series", where, expr)
		}
		for _, m := range found {
			name, selector := m[1], m[2]
			if _, ok := externalSeries[name]; ok {
				continue
			}
			labels, ok := have[name]
			if !ok {
				t.Errorf("%s: %s is not a series postbud exports (nor listed as external)", where, name)
				continue
			}
			for _, lm := range matcherLabel.FindAllStringSubmatch(selector, -1) {
				if !slices.Contains(labels, lm[1]) && lm[1] != "job" && lm[1] != "instance" {
					t.Errorf("%s: %s has no label %q (it has %v)", where, name, lm[1], labels)
				}
			}
		}
	}
	for _, alert := range []string{"PostbudUrgentLaneLate", "PostbudNormalLaneLate", "PostbudBulkLaneLate",
		"PostbudTasksArchived", "PostbudChannelDown", "PostbudWebhookLag", "PostbudPlatformEndpointDisabled",
		"PostbudRedisMemoryHigh"} {
		if _, ok := exprs["rule "+alert]; !ok {
			t.Errorf("the rules have no alert %s", alert)
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for where := range exprs {
		if a, ok := strings.CutPrefix(where, "rule "); ok && !strings.Contains(string(readme), a) &&
			!strings.Contains(string(readme), strings.TrimPrefix(a, "PostbudRedisMemory")) {
			t.Errorf("deploy/README.md's monitoring table does not name the alert %s", a)
		}
	}
}
