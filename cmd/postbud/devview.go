package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/signature"
	"github.com/digitalpost/postbud/channels/sink"
	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/httpapi"
)

// The parts of `postbud dev` that show the rules at work: a paper sink
// that records print jobs with a masked postal address, webhook sinks that
// receive the platforms' read-state webhooks and verify their signatures,
// and the page that puts each letter's trail, read state and webhooks
// together.

// paperJob is one letter dev would have printed.
type paperJob struct {
	At         time.Time `json:"at"`
	MessageID  string    `json:"message_id"`
	DeliveryID string    `json:"delivery_id"`
	Sender     string    `json:"sender"`
	To         string    `json:"to"` // masked
}

// paperSink records print jobs instead of printing: a paper job is the
// letter itself, so it shows the sender and the (masked) postal address,
// not an alert text.
type paperSink struct {
	keep int
	n    atomic.Int64
	mu   sync.Mutex
	jobs []paperJob
}

var _ channels.Sender = (*paperSink)(nil)

func (p *paperSink) Send(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return channels.Receipt{}, err
	}
	id := fmt.Sprintf("paper-%d", p.n.Add(1))
	job := paperJob{At: time.Now(), MessageID: a.MessageID, DeliveryID: a.DeliveryID, To: maskPostal(to.Value),
		Sender: strings.Join(a.Senders, ", ")}
	p.mu.Lock()
	p.jobs = append(p.jobs, job)
	if len(p.jobs) > p.keep {
		p.jobs = p.jobs[len(p.jobs)-p.keep:]
	}
	p.mu.Unlock()
	return channels.Receipt{ProviderID: id}, nil
}

// Jobs returns the kept print jobs, oldest first.
func (p *paperSink) Jobs() []paperJob {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]paperJob(nil), p.jobs...)
}

// maskPostal shows a postal address's first letter and its last part (the
// postcode and town): "Vestergade 12, 1456 København K" is
// "V…, 1456 København K".
func maskPostal(a string) string {
	a = strings.TrimSpace(a)
	if a == "" {
		return "…"
	}
	r, _ := utf8.DecodeRuneInString(a)
	i := strings.LastIndexAny(a, ",\n")
	if i < 0 {
		return string(r) + "…"
	}
	return string(r) + "…, " + strings.TrimSpace(a[i+1:])
}

// receivedWebhook is one request a platform's webhook sink received.
type receivedWebhook struct {
	At       time.Time `json:"at"`
	Platform string    `json:"platform"` // the receiving platform
	ID       string    `json:"webhook_id"`
	// Verified says the Standard Webhooks signature matched the
	// platform's secret; Problem says why not, or why the body was refused.
	Verified  bool   `json:"verified"`
	Problem   string `json:"problem,omitempty"`
	MessageID string `json:"message_id,omitempty"`
	State     string `json:"state,omitempty"`
	Version   int64  `json:"version,omitempty"`
	From      string `json:"from,omitempty"` // the platform where the change happened
}

// webhookSinks are the four platforms' webhook endpoints in dev: POST
// /<platform> verifies the signature with the platform's secret, records
// the request and answers 204 (401 for a bad signature, 400 for a bad
// body).
type webhookSinks struct {
	secrets map[string][]byte
	mu      sync.Mutex
	got     []receivedWebhook
}

func newWebhookSinks() *webhookSinks { return &webhookSinks{secrets: map[string][]byte{}} }

func (s *webhookSinks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/")
	secret, ok := s.secrets[p]
	if !ok || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, webhook.MaxBodySize+1))
	if err != nil {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	rec := receivedWebhook{At: time.Now(), Platform: p, ID: r.Header.Get(signature.HeaderID)}
	status := http.StatusNoContent
	if err := signature.Verify([][]byte{secret}, r.Header, body, time.Now(), 0); err != nil {
		rec.Problem, status = err.Error(), http.StatusUnauthorized
	} else if sc, err := webhook.ParseBody(body); err != nil {
		rec.Verified, rec.Problem, status = true, err.Error(), http.StatusBadRequest
	} else {
		rec.Verified, rec.MessageID, rec.Version, rec.From = true, sc.MessageID, sc.Version, sc.Platform
		rec.State = webhook.StateUnread
		if sc.Read {
			rec.State = webhook.StateRead
		}
	}
	s.mu.Lock()
	s.got = append(s.got, rec)
	if len(s.got) > 1000 {
		s.got = s.got[len(s.got)-1000:]
	}
	s.mu.Unlock()
	w.WriteHeader(status)
}

// Received returns what the sinks received, oldest first.
func (s *webhookSinks) Received() []receivedWebhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]receivedWebhook(nil), s.got...)
}

// devView renders the dev page from the API (trails and read state, asked
// for in-process with the ops key) and the sinks.
type devView struct {
	api      *httpapi.API
	opsKey   string
	sinks    map[channels.Name]*sink.Sink
	paper    *paperSink
	hooks    *webhookSinks
	citizens []devCitizen
	// consents returns the platforms a citizen gave consent to show
	// public post, as stored.
	consents  func(ctx context.Context, cpr string) ([]event.Platform, error)
	letterIDs func() []string
}

// devCitizenRow is a demo citizen on the page, with the consents stored.
type devCitizenRow struct {
	devCitizen
	Consent string
}

// citizenRows returns the demo citizens with their consents.
func (v *devView) citizenRows(ctx context.Context) []devCitizenRow {
	rows := make([]devCitizenRow, len(v.citizens))
	for i, c := range v.citizens {
		rows[i] = devCitizenRow{devCitizen: c, Consent: "?"}
		if v.consents == nil {
			continue
		}
		ps, err := v.consents(ctx, c.CPR)
		switch {
		case err != nil:
			rows[i].Consent = "unknown (store unavailable)"
		case len(ps) == 0:
			rows[i].Consent = "none (e-Boks and mit.dk are told nothing of public letters)"
		default:
			names := make([]string, len(ps))
			for j, p := range ps {
				names[j] = string(p)
			}
			rows[i].Consent = strings.Join(names, ", ")
		}
	}
	return rows
}

// devLetter is one letter on the page.
type devLetter struct {
	MessageID string
	First     time.Time
	Trail     []devOutcome
	State     devState
	Webhooks  []receivedWebhook
	Problem   string
}

type devState struct {
	State    string    `json:"state"`
	Version  int64     `json:"version"`
	At       time.Time `json:"changed_at"`
	Platform string    `json:"platform"`
}

// devOutcome is a trail entry with what dev knows of where it went.
type devOutcome struct {
	dispatcher.Outcome
	To string
}

// Label names the outcome as the page shows it: held (with what it waits
// for), coalesced, sent, skipped, paper, failed, …
func (o devOutcome) Label() string {
	switch {
	case o.Result == dispatcher.ResultDeferred && strings.HasPrefix(o.Reason, "coalescing"):
		return "held (coalescing)"
	case o.Result == dispatcher.ResultDeferred && strings.HasPrefix(o.Reason, "quiet hours"):
		return "held (quiet hours)"
	case o.Result == dispatcher.ResultDeferred && strings.HasPrefix(o.Reason, "scheduled"):
		return "held (scheduled)"
	case o.Result == dispatcher.ResultDeferred:
		return "held"
	case o.Result == dispatcher.ResultSent && strings.HasPrefix(o.Reason, "coalesced"):
		return "coalesced"
	case o.Result == dispatcher.ResultSent && o.Channel == channels.Paper:
		return "paper"
	}
	return o.Result
}

// get asks the API for path with the ops key and decodes the JSON answer.
func (v *devView) get(ctx context.Context, path string, out any) error {
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+v.opsKey)
	rec := httptest.NewRecorder()
	v.api.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return fmt.Errorf("%s: %d %s", path, rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	return json.Unmarshal(rec.Body.Bytes(), out)
}

// letter puts one letter's trail, read state and webhooks together.
func (v *devView) letter(ctx context.Context, id string, to map[string]string, hooks []receivedWebhook) devLetter {
	l := devLetter{MessageID: id}
	var trail struct {
		Trail []dispatcher.Outcome `json:"trail"`
	}
	if err := v.get(ctx, "/v1/messages/"+url.PathEscape(id)+"/trail", &trail); err != nil {
		l.Problem = err.Error()
	}
	for _, o := range trail.Trail {
		if l.First.IsZero() || o.At.Before(l.First) {
			l.First = o.At
		}
		l.Trail = append(l.Trail, devOutcome{Outcome: o, To: to[o.DeliveryID]})
	}
	slices.SortStableFunc(l.Trail, func(a, b devOutcome) int { return a.At.Compare(b.At) })
	if err := v.get(ctx, "/v1/messages/"+url.PathEscape(id)+"/state", &l.State); err != nil && l.Problem == "" {
		l.Problem = err.Error()
	}
	for _, h := range hooks {
		if h.MessageID == id {
			l.Webhooks = append(l.Webhooks, h)
		}
	}
	return l
}

// maxLetters bounds the letters the page shows (the newest).
const maxLetters = 50

func (v *devView) data(ctx context.Context, only string) map[string]any {
	alerts := allAlerts(v.sinks)
	to := map[string]string{}
	for _, a := range alerts {
		to[a.DeliveryID] = a.To
	}
	jobs := v.paper.Jobs()
	for _, j := range jobs {
		to[j.DeliveryID] = j.To
	}
	hooks := v.hooks.Received()
	ids := []string{only}
	if only == "" {
		ids = v.letterIDs()
	}
	var letters []devLetter
	for _, id := range ids {
		letters = append(letters, v.letter(ctx, id, to, hooks))
	}
	slices.SortFunc(letters, func(a, b devLetter) int { return b.First.Compare(a.First) })
	if len(letters) > maxLetters {
		letters = letters[:maxLetters]
	}
	byPlatform := map[string][]receivedWebhook{}
	for _, h := range hooks {
		byPlatform[h.Platform] = append(byPlatform[h.Platform], h)
	}
	type platformHooks struct {
		Platform string
		Received []receivedWebhook
	}
	var platforms []platformHooks
	for _, p := range event.ReadingPlatforms() {
		r := byPlatform[string(p)]
		slices.Reverse(r)
		platforms = append(platforms, platformHooks{Platform: string(p), Received: r})
	}
	slices.Reverse(jobs)
	var codes []sink.Alert
	for _, a := range alerts {
		if a.Code != "" {
			codes = append(codes, a)
		}
	}
	return map[string]any{"Letters": letters, "Alerts": alerts, "Paper": jobs, "Webhooks": platforms,
		"Citizens": v.citizenRows(ctx), "One": only != "", "Codes": codes}
}

func (v *devView) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = devPage.Execute(w, v.data(r.Context(), ""))
}

func (v *devView) letterPage(w http.ResponseWriter, r *http.Request) {
	id := strings.ToLower(r.PathValue("id"))
	d := v.data(r.Context(), id)
	if l := d["Letters"].([]devLetter); len(l) == 1 && len(l[0].Trail) == 0 && l[0].Problem != "" {
		w.WriteHeader(http.StatusNotFound)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = devPage.Execute(w, d)
}

func allAlerts(sinks map[channels.Name]*sink.Sink) []sink.Alert {
	var all []sink.Alert
	for _, s := range sinks {
		all = append(all, s.Alerts()...)
	}
	slices.SortFunc(all, func(a, b sink.Alert) int { return b.At.Compare(a.At) })
	return all
}

var devPage = template.Must(template.New("dev").Funcs(template.FuncMap{"time": humanTime,
	"path": url.PathEscape}).Parse(`<!doctype html>
<html lang="da"><head><meta charset="utf-8"><title>postbud dev — the rules at work</title>
{{if not .One}}<meta http-equiv="refresh" content="5">{{end}}
<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;width:100%;margin-bottom:1rem}
td,th{border-bottom:1px solid #ddd;padding:.3rem .4rem;text-align:left;vertical-align:top}th{background:#f4f4f4}
code{font-size:.85em}.ch{font-weight:600}section{border:1px solid #ccc;border-radius:6px;padding:.2rem 1rem;margin:1rem 0}
.r-sent,.r-coalesced,.r-paper{color:#060}.r-skipped{color:#a50}.r-failed,.r-gone{color:#b00}.r-held{color:#06a}
.bad{color:#b00}</style></head><body>
<h1>postbud dev — the rules at work</h1>
<p>What postbud did with each letter: sent, held (quiet hours, a schedule, coalescing), coalesced, skipped and why,
put on paper; each letter's read state and the webhooks the four platforms received. Nothing leaves this machine.
Times are Copenhagen local time.{{if not .One}} The page refreshes every 5 seconds.{{else}} <a href="/">All letters</a>.{{end}}</p>
{{if not .One}}<h2>Demo citizens</h2>
<table><tr><th>CPR</th><th>name</th><th>what it shows</th><th>consent to show public post</th></tr>
{{range .Citizens}}<tr><td><code>{{.CPR}}</code></td><td>{{.Name}}</td><td>{{.Rule}}</td><td class="consent">{{.Consent}}</td></tr>
{{end}}</table>
<p>The demo citizens' addresses start confirmed. A new email or mobile sent from a platform gets a
confirmation code, and alerts skip it ("email not confirmed") until the code comes back:
<code>POST /v1/contacts/confirm</code> with <code>{"cpr": …, "channel": "email", "code": …}</code>
(docs/events.md §7).</p>
<h2>Confirmation codes sent ({{len .Codes}})</h2>
<table id="codes"><tr><th>time</th><th>channel</th><th>to</th><th>code</th></tr>
{{range .Codes}}<tr><td>{{time .At}}</td><td class="ch">{{.Channel}}</td><td>{{.To}}</td><td><code class="code">{{.Code}}</code></td></tr>
{{else}}<tr><td colspan="4">none</td></tr>{{end}}</table>{{end}}
<h2>Letters ({{len .Letters}})</h2>
{{range .Letters}}<section id="m-{{.MessageID}}" class="letter">
<h3>Letter <a href="/dev/messages/{{path .MessageID}}"><code>{{.MessageID}}</code></a></h3>
<p class="state">Read state: <b>{{if .State.State}}{{.State.State}}{{else}}unknown{{end}}</b>{{if .State.Version}}
(version {{.State.Version}}, changed on {{.State.Platform}} at {{time .State.At}}){{end}}</p>
{{if .Problem}}<p class="bad">{{.Problem}}</p>{{end}}
<table><tr><th>time</th><th>channel</th><th>to</th><th>outcome</th><th>reason</th></tr>
{{range .Trail}}<tr><td>{{time .At}}</td><td class="ch">{{.Channel}}{{if .App}} ({{.App}}){{end}}</td><td>{{.To}}</td>
<td class="r-{{.Result}}">{{.Label}}</td><td>{{.Reason}}{{if .Kind}} [{{.Kind}}{{if .Code}} {{.Code}}{{end}}]{{end}}</td></tr>
{{end}}</table>
<p class="webhooks">Webhooks: {{range .Webhooks}}<span>{{.Platform}} got {{.State}} v{{.Version}}
{{if .Verified}}(signature verified){{else}}<span class="bad">(refused: {{.Problem}})</span>{{end}}</span>; {{else}}none{{end}}</p>
</section>
{{else}}<p>No letters yet. Send one (see the terminal).</p>{{end}}
<h2>Webhooks the platforms received</h2>
{{range .Webhooks}}<h3>{{.Platform}} ({{len .Received}})</h3>
<table class="hooks" id="hooks-{{.Platform}}"><tr><th>time</th><th>message id</th><th>state</th><th>version</th><th>changed on</th><th>signature</th></tr>
{{range .Received}}<tr><td>{{time .At}}</td><td><a href="/dev/messages/{{path .MessageID}}"><code>{{.MessageID}}</code></a></td>
<td>{{.State}}</td><td>{{.Version}}</td><td>{{.From}}</td>
<td>{{if .Verified}}verified{{else}}<span class="bad">refused: {{.Problem}}</span>{{end}}</td></tr>
{{else}}<tr><td colspan="6">none</td></tr>{{end}}</table>
{{end}}
<h2>Paper ({{len .Paper}})</h2>
<table><tr><th>time</th><th>to</th><th>sender</th><th>message id</th></tr>
{{range .Paper}}<tr><td>{{time .At}}</td><td>{{.To}}</td><td>{{.Sender}}</td>
<td><a href="/dev/messages/{{path .MessageID}}"><code>{{.MessageID}}</code></a></td></tr>
{{else}}<tr><td colspan="4">none</td></tr>{{end}}</table>
<h2>Alerts ({{len .Alerts}})</h2>
<table><tr><th>time</th><th>channel</th><th>to</th><th>title</th><th>text</th><th>message id</th></tr>
{{range .Alerts}}<tr><td>{{time .At}}</td><td class="ch">{{.Channel}}{{if .App}} ({{.App}}){{end}}</td>
<td>{{.To}}</td><td>{{.Title}}</td><td>{{.Text}}{{if .Silent}}(silent badge update: {{.Badge}}){{end}}</td>
<td>{{if .MessageID}}<a href="/dev/messages/{{path .MessageID}}"><code>{{.MessageID}}</code></a>{{end}}</td></tr>
{{else}}<tr><td colspan="6">none</td></tr>{{end}}
</table></body></html>
`))
