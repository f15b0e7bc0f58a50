package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/sink"
	"github.com/digitalpost/postbud/dispatcher/httpapi"
)

// The demo secrets of `postbud dev`. They are printed at start and are
// worthless outside it: dev runs on an embedded Redis that dies with it.
const (
	devPlatformKey = "dev-core-platform-key"
	devOpsKey      = "dev-ops-key-0123456789"
	devPseudonym   = "dev-pseudonymisation-key-not-for-production"
)

// devCitizens are the demo citizens dev registers at start. The CPR numbers
// are made up (valid dates, no modulus-11 check).
var devCitizens = []struct {
	CPR, Name, Email, Mobile, Language, Token, Provider string
}{
	{"010190-1234", "Anna (email, SMS, iPhone)", "anna@example.dk", "12345678", "da", "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90", "apns"},
	{"150805-4321", "Bo (email, Android)", "bo@example.dk", "", "da", "fcm-demo-token-bo-0001", "fcm"},
	{"311265-2345", "Carol (English, email)", "carol@example.com", "", "en", "", ""},
}

// dev runs the daemon on an embedded Redis (miniredis) with demo citizens
// and local sinks that record alerts instead of sending them.
func dev(ctx context.Context, args []string, e env, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", "", "Runs postbud on an embedded Redis with demo citizens; alerts go to local sinks\n"+
		"(nothing is sent) and are shown at http://127.0.0.1:8080/. POSTBUD_* variables override its defaults.")
	if err := parse(fs, args, 0, stdout, stderr); err != nil {
		return err
	}
	getenv := e.get
	mr := miniredis.NewMiniRedis()
	mr.ClockTTL(true)
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return fmt.Errorf("embedded redis: %w", err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	defaults := map[string]string{
		"POSTBUD_HTTP_ADDR":     "127.0.0.1:8080",
		"POSTBUD_REDIS_URL":     "redis://" + mr.Addr(),
		"POSTBUD_PSEUDONYM_KEY": devPseudonym,
		"POSTBUD_OPS_KEY":       devOpsKey,
		"POSTBUD_KEY_CORE":      devPlatformKey,
		// Every platform has a demo key (docs/events.md §12), so each
		// example of the contract can be sent as its source.
		"POSTBUD_KEY_BORGER_DK":        "dev-borger-dk-platform-key",
		"POSTBUD_KEY_DIGITAL_POST_APP": "dev-digital-post-app-platform-key",
		"POSTBUD_KEY_E_BOKS":           "dev-e-boks-platform-key",
		"POSTBUD_KEY_MIT_DK":           "dev-mit-dk-platform-key",
		// A support key beside the admin ops key, to try the roles.
		"POSTBUD_OPS_KEYS":   "support:support:dev-support-key-0123456789",
		"POSTBUD_LOG_FORMAT": "text",
		// miniredis is slow at polling; a calmer interval keeps dev idle.
		"POSTBUD_TASK_CHECK_INTERVAL": "100ms",
	}
	devEnv := func(k string) string {
		if v := getenv(k); v != "" && k != "POSTBUD_REDIS_URL" {
			return v
		}
		return defaults[k]
	}
	sinks := map[channels.Name]*sink.Sink{}
	senders := map[channels.Name]channels.Sender{}
	for _, n := range []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM, channels.Paper} {
		sinks[n] = sink.New(n, 1000)
		senders[n] = sinks[n]
	}
	ov := &overrides{
		embedded: true,
		rdb:      rdb,
		senders:  senders,
		mount: func(api *httpapi.API) {
			api.Handle("GET /dev/alerts", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]any{"alerts": allAlerts(sinks)})
			}))
			api.Handle("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				_ = devPage.Execute(w, map[string]any{"Alerts": allAlerts(sinks), "Citizens": devCitizens})
			}))
		},
		started: func(base string) {
			if err := registerDemoCitizens(ctx, base); err != nil {
				fmt.Fprintln(stderr, "postbud dev: registering demo citizens:", err)
			}
			fmt.Fprintf(stdout, `postbud dev is running on an embedded Redis (nothing is sent; alerts go to local sinks).

  alerts page     %[1]s/
  alerts JSON     %[1]s/dev/alerts
  event API       POST %[1]s/v1/events   (Authorization: Bearer %[2]s, source "core")
  ops trail       GET  %[1]s/v1/messages/<message-id>/trail   (Authorization: Bearer %[3]s)
  health          %[1]s/healthz  %[1]s/readyz
  metrics         %[1]s/metrics
  dashboard       %[1]s/monitoring/   (user: any, password: %[3]s)

Send a letter to the demo citizen Anna:
  POSTBUD_URL=%[1]s POSTBUD_EMIT_KEY=%[2]s go run ./cmd/postbud emit -letter 010190-1234 -sender Skattestyrelsen

Stop with Ctrl-C.
`, base, devPlatformKey, devOpsKey)
		},
	}
	return serve(ctx, env{get: devEnv, names: e.names}, stdout, stderr, ov)
}

func allAlerts(sinks map[channels.Name]*sink.Sink) []sink.Alert {
	var all []sink.Alert
	for _, s := range sinks {
		all = append(all, s.Alerts()...)
	}
	slices.SortFunc(all, func(a, b sink.Alert) int { return b.At.Compare(a.At) })
	return all
}

func registerDemoCitizens(ctx context.Context, base string) error {
	now := time.Now().UTC()
	var events []map[string]any
	for i, c := range devCitizens {
		data := map[string]any{"cpr": c.CPR, "email": c.Email, "language": c.Language}
		if c.Mobile != "" {
			data["mobile"] = c.Mobile
		}
		events = append(events, map[string]any{"id": fmt.Sprintf("dev-contact-%d", i), "type": "contact.updated",
			"occurred_at": now.Format(time.RFC3339Nano), "source": "core", "data": data})
		if c.Token != "" {
			events = append(events, map[string]any{"id": fmt.Sprintf("dev-device-%d", i), "type": "device.registered",
				"occurred_at": now.Format(time.RFC3339Nano), "source": "core",
				"data": map[string]any{"cpr": c.CPR, "app": "digital-post-app", "provider": c.Provider, "token": c.Token}})
		}
	}
	body, _ := json.Marshal(map[string]any{"events": events})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events/batch", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+devPlatformKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

var devPage = template.Must(template.New("dev").Funcs(template.FuncMap{"time": humanTime}).Parse(`<!doctype html>
<html lang="da"><head><meta charset="utf-8"><title>postbud dev — alerts</title>
<meta http-equiv="refresh" content="3">
<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;vertical-align:top}th{background:#f4f4f4}
code{font-size:.85em}.ch{font-weight:600}</style></head><body>
<h1>postbud dev</h1>
<p>Alerts postbud would have sent. Nothing leaves this machine. The page refreshes every 3 seconds.</p>
<h2>Demo citizens</h2>
<ul>{{range .Citizens}}<li><code>{{.CPR}}</code> — {{.Name}}</li>{{end}}</ul>
<h2>Alerts ({{len .Alerts}})</h2>
<table><tr><th>time</th><th>channel</th><th>to</th><th>title</th><th>text</th><th>message id</th></tr>
{{range .Alerts}}<tr><td>{{time .At}}</td><td class="ch">{{.Channel}}{{if .App}} ({{.App}}){{end}}</td>
<td>{{.To}}</td><td>{{.Title}}</td><td>{{.Text}}{{if .Silent}}(silent badge update: {{.Badge}}){{end}}</td><td><code>{{.MessageID}}</code></td></tr>
{{else}}<tr><td colspan="6">No alerts yet. Send a letter (see the terminal).</td></tr>{{end}}
</table></body></html>
`))
