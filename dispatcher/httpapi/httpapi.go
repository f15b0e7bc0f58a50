// Package httpapi is postbud's HTTP face: the authenticated event ingest of
// contract v1 (POST /v1/events, POST /v1/events/batch), the confirmation
// of contact addresses (POST /v1/contacts/confirm, /resend), the ops API (a
// letter's delivery trail) behind the ops gate (dispatcher/opsauth), the
// self-service systems' exemption query (POST /v1/self-service/exemption,
// selfservice.go), the health endpoints and the API's OpenAPI document
// (GET /openapi.yaml, docs/openapi.yaml).
//
// Answers follow docs/events.md: 202 with accepted or duplicate; 400 as
// application/problem+json naming each bad field; 401 without a known key;
// 403 when a platform's key sends an event from another platform, or
// changes another platform's consent; 422 for a read or unread from a
// platform without the citizen's consent to show the letter; 413 for a
// body over the limit; 429 over the platform's rate; 503 when Redis cannot
// be reached, so the platform retries.
package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/signature"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/opsauth"
	"github.com/digitalpost/postbud/docs"
)

// Limits.
const (
	// MaxBatchEvents is the most events one batch may hold.
	MaxBatchEvents = 500
	// MaxBatchBytes bounds a batch request body.
	MaxBatchBytes = 4 << 20
)

// Platform is one platform allowed to send events: the SHA-256 of its API
// key (keys are never kept in clear) and its rate limit.
type Platform struct {
	Name      event.Platform
	KeySHA256 [32]byte
	// Rate is the events per second it may send (burst: twice that, and
	// at least one full batch); 0 means no limit.
	Rate float64
	// SigningSecrets, when set, make the platform's events need a valid
	// Standard Webhooks signature (webhook-id, webhook-timestamp within
	// ±5 minutes, webhook-signature); a replayed webhook-id is refused.
	SigningSecrets [][]byte
}

// Config wires the API.
type Config struct {
	Dispatcher *dispatcher.Dispatcher
	Platforms  []Platform
	// Guard authenticates ops keys and audits every ops request and every
	// refused authentication; nil: no ops key is accepted.
	Guard *opsauth.Guard
	// SeparateOps serves the ops routes (trail, ops, the state API for
	// ops keys, and whatever HandleOps adds) only on OpsHandler, for a
	// listener of their own; the public handler then has none of them.
	SeparateOps bool
	Logger      *slog.Logger
	// Ready reports readiness beyond the store (channels, draining).
	Ready func(context.Context) error
	// Channels, if set, lists the channels' health for /readyz?verbose
	// (readiness itself stays about the process).
	Channels func() any
	// CountEvent, if set, is told each event's type ("" when unparsable)
	// and answer status (metrics).
	CountEvent func(typ, status string)
	// SMSReportFunc reads and verifies one signed delivery report of the
	// SMS gateway at POST /v1/sms/reports; nil turns the endpoint off. An
	// error wrapping ErrBadSignature is answered 401, any other 400.
	SMSReportFunc func(*http.Request) (SMSReport, error)
	// Now is the clock (default time.Now): rate limits, signature
	// tolerance, report times.
	Now func() time.Time
	// SelfService are the self-service systems that may ask about
	// citizens' exemptions (POST /v1/self-service/exemption) and do
	// nothing else.
	SelfService []SelfService
	// WaitReplicas, if set, is called after events were accepted and
	// before the 202: it returns once they are on enough Redis replicas
	// (redisstore.Replicas). An error is answered 503, so the platform
	// retries; idempotency makes the retry safe.
	WaitReplicas func(context.Context) error
}

// SMSReport is an SMS delivery report as SMSReportFunc reads it.
type SMSReport struct {
	ID      string // the gateway's message id
	UserRef string // the delivery id the message was sent with
	Status  string
	Code    string // the gateway's error code, if any
	Final   bool   // no later report follows
	Dead    bool   // the message can no longer be delivered
	At      time.Time
}

// ErrBadSignature is what SMSReportFunc wraps for a report that is not
// signed, or not signed with the configured secret.
var ErrBadSignature = errors.New("report: missing or bad signature")

// API is the HTTP handler.
type API struct {
	cfg      Config
	log      *slog.Logger
	limiters map[event.Platform]*rate.Limiter
	mux      *http.ServeMux
	opsMux   *http.ServeMux // == mux unless SeparateOps
	// public and ops serve mux and opsMux behind the self-service gate.
	public, opsGated http.Handler
	// ssLimiters are the self-service systems' rate limits, by name.
	ssLimiters map[string]*rate.Limiter
	guard      *opsauth.Guard
	draining   atomic.Bool
}

// New returns the API.
func New(cfg Config) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Guard == nil {
		cfg.Guard, _ = opsauth.New(nil, nil)
	}
	a := &API{cfg: cfg, log: cfg.Logger, limiters: map[event.Platform]*rate.Limiter{}, mux: http.NewServeMux(),
		guard: cfg.Guard}
	a.opsMux = a.mux
	if cfg.SeparateOps {
		a.opsMux = http.NewServeMux()
	}
	a.public, a.opsGated = a.selfServiceGate(a.mux), a.selfServiceGate(a.opsMux)
	a.ssLimiters = newSelfServiceLimiters(cfg.SelfService)
	a.mux.HandleFunc(SelfServiceRoute, a.selfServiceExemption)
	for _, p := range cfg.Platforms {
		if p.Rate > 0 {
			a.limiters[p.Name] = rate.NewLimiter(rate.Limit(p.Rate), max(int(2*p.Rate)+1, MaxBatchEvents))
		}
	}
	a.mux.HandleFunc("POST /v1/events", a.postEvent)
	a.mux.HandleFunc("POST /v1/events/batch", a.postBatch)
	a.mux.HandleFunc("POST /v1/contacts/confirm", a.confirmContact)
	a.mux.HandleFunc("POST /v1/contacts/resend", a.resendCode)
	// Every ops route goes through a.ops (admin unless a.support says
	// support may): one gate, one audit log.
	a.opsMux.Handle("GET /v1/messages/{id}/trail", a.support(a.getTrail))
	a.opsMux.Handle("POST /v1/ops/platforms/{platform}/enable", a.ops(a.enablePlatform))
	a.opsMux.Handle("POST /v1/citizens/access", a.support(a.citizenAccess))
	a.mux.HandleFunc("GET /v1/messages/{id}/state", a.platformOrOps(a.getState))
	if cfg.SeparateOps {
		a.opsMux.Handle("GET /v1/messages/{id}/state", a.support(a.getState))
	}
	for _, m := range a.muxes() {
		m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		})
		m.HandleFunc("GET /readyz", a.readyz)
		m.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/yaml")
			_, _ = w.Write(docs.OpenAPI)
		})
	}
	if cfg.SMSReportFunc != nil {
		a.mux.HandleFunc("POST /v1/sms/reports", a.smsReport)
	}
	return a
}

// Handle adds another handler to the API's public mux (dev pages).
func (a *API) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// HandleOps adds a handler for ops (/metrics, the dashboard): to OpsHandler
// when the ops routes are separate, else to the public mux. h does its own
// authentication (or, like /metrics, needs none).
func (a *API) HandleOps(pattern string, h http.Handler) { a.opsMux.Handle(pattern, h) }

// OpsHandler serves the ops routes; without SeparateOps it is the API
// itself.
func (a *API) OpsHandler() http.Handler {
	if a.opsMux == a.mux {
		return a
	}
	return a.opsGated
}

func (a *API) muxes() []*http.ServeMux {
	if a.opsMux == a.mux {
		return []*http.ServeMux{a.mux}
	}
	return []*http.ServeMux{a.mux, a.opsMux}
}

// Drain makes /readyz answer 503 from now on, so load balancers stop
// sending work before the server stops.
func (a *API) Drain() { a.draining.Store(true) }

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.public.ServeHTTP(w, r) }

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if a.draining.Load() {
		problem(w, http.StatusServiceUnavailable, "draining", "this instance is shutting down", nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	err := a.cfg.Dispatcher.Ready(ctx)
	if err == nil && a.cfg.Ready != nil {
		err = a.cfg.Ready(ctx)
	}
	if err != nil {
		a.log.WarnContext(r.Context(), "not ready", "error", err)
		problem(w, http.StatusServiceUnavailable, "not ready", "Redis or a channel is not reachable (see the logs)", nil)
		return
	}
	if r.URL.Query().Has("verbose") && a.cfg.Channels != nil {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "channels": a.cfg.Channels()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// HashKey returns the SHA-256 of an API key, as Platform.KeySHA256 wants.
func HashKey(key string) [32]byte { return sha256.Sum256([]byte(key)) }

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	return strings.TrimSpace(tok), ok && tok != ""
}

// platform authenticates the request's key in constant time per platform.
func (a *API) platform(r *http.Request) (event.Platform, bool) {
	key, ok := bearer(r)
	if !ok {
		return "", false
	}
	sum := HashKey(key)
	var found event.Platform
	for _, p := range a.cfg.Platforms {
		if subtle.ConstantTimeCompare(sum[:], p.KeySHA256[:]) == 1 {
			found = p.Name
		}
	}
	return found, found != ""
}

// ops guards an ops route that needs an admin key: the default, so a
// route nobody thought about is not open to support.
func (a *API) ops(h http.HandlerFunc) http.Handler {
	return a.guard.Handler(h, opsauth.Options{Need: opsauth.Admin})
}

// support guards an ops route that reads: support and admin keys.
func (a *API) support(h http.HandlerFunc) http.Handler {
	return a.guard.Handler(h, opsauth.Options{Need: opsauth.Support})
}

// platformOrOps lets a platform's key through unaudited and sends
// anything else through the ops gate (support), unless the ops routes are
// on a listener of their own.
func (a *API) platformOrOps(h http.HandlerFunc) http.HandlerFunc {
	guarded := a.support(h)
	return func(w http.ResponseWriter, r *http.Request) {
		if _, ok := a.platform(r); ok {
			h(w, r)
			return
		}
		if !a.cfg.SeparateOps {
			guarded.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="postbud"`)
		problem(w, http.StatusUnauthorized, "unauthorized", "a platform API key is required as a bearer token", nil)
		a.guard.Refused(r, "", http.StatusUnauthorized)
	}
}

func (a *API) authorize(w http.ResponseWriter, r *http.Request) (event.Platform, bool) {
	p, ok := a.platform(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="postbud"`)
		problem(w, http.StatusUnauthorized, "unauthorized", "a platform API key is required as a bearer token", nil)
		a.guard.Refused(r, "", http.StatusUnauthorized)
		return "", false
	}
	return p, true
}

func (a *API) allow(w http.ResponseWriter, p event.Platform, n int) bool {
	l := a.limiters[p]
	if l == nil || l.AllowN(a.cfg.Now(), n) {
		return true
	}
	w.Header().Set("Retry-After", "1")
	problem(w, http.StatusTooManyRequests, "rate limited", fmt.Sprintf("platform %s is over its rate", p), nil)
	return false
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		problem(w, http.StatusRequestEntityTooLarge, "too large", fmt.Sprintf("the body must be at most %d bytes", limit), nil)
		return nil, false
	}
	if err != nil {
		problem(w, http.StatusBadRequest, "unreadable body", "the request body could not be read", nil)
		return nil, false
	}
	return body, true
}

// Result is the answer for one accepted event.
type Result struct {
	ID     string             `json:"id,omitempty"`
	Status string             `json:"status"` // accepted | duplicate | invalid | forbidden | refused | unavailable
	Errors []event.FieldError `json:"errors,omitempty"`
}

func (a *API) postEvent(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorize(w, r)
	if !ok {
		return
	}
	body, ok := readBody(w, r, event.MaxEventBytes)
	if !ok || !a.verified(w, r, p, body) {
		return
	}
	if !a.allow(w, p, 1) {
		return
	}
	res := a.accept(r.Context(), p, body)
	if (res.Status == "accepted" || res.Status == "duplicate") && !a.durable(w, r, 0) {
		return
	}
	switch res.Status {
	case "invalid":
		problem(w, http.StatusBadRequest, "invalid event", "the event has invalid fields", res.Errors)
	case "forbidden":
		problem(w, http.StatusForbidden, "forbidden", res.Errors[0].Reason, res.Errors)
	case "refused":
		problem(w, http.StatusUnprocessableEntity, "no consent", res.Errors[0].Reason, res.Errors)
	case "unavailable":
		w.Header().Set("Retry-After", "5")
		problem(w, http.StatusServiceUnavailable, "unavailable", "the event store cannot be reached; retry", nil)
	default:
		writeJSON(w, http.StatusAccepted, res)
	}
}

// accept validates and enqueues one event sent by platform p.
func (a *API) accept(ctx context.Context, p event.Platform, body []byte) Result {
	typ, res := a.accept1(ctx, p, body)
	if a.cfg.CountEvent != nil {
		a.cfg.CountEvent(typ, res.Status)
	}
	return res
}

func (a *API) accept1(ctx context.Context, p event.Platform, body []byte) (string, Result) {
	ev, res, ok := a.validate(p, body)
	if !ok {
		return res.typ, res.Result
	}
	dup, err := a.cfg.Dispatcher.Accept(ctx, ev)
	return string(ev.Type), a.answer(ctx, ev, dup, err)
}

// typedResult is a Result with the event's type ("" when unparsable).
type typedResult struct {
	Result
	typ string
}

// validate parses one event sent by platform p; ok false comes with the
// answer (invalid, forbidden).
func (a *API) validate(p event.Platform, body []byte) (*event.Event, typedResult, bool) {
	ev, err := event.Parse(body)
	if err != nil {
		var ve *event.ValidationError
		if errors.As(err, &ve) {
			return nil, typedResult{Result: Result{Status: "invalid", Errors: ve.Errors}}, false
		}
		return nil, typedResult{Result: Result{Status: "invalid", Errors: []event.FieldError{{Reason: "invalid event"}}}}, false
	}
	if ev.Source != p {
		return nil, typedResult{typ: string(ev.Type), Result: Result{ID: ev.ID, Status: "forbidden", Errors: []event.FieldError{{Field: "source",
			Reason: fmt.Sprintf("the key of platform %s may only send events with source %s", p, p)}}}}, false
	}
	if f := ev.Forbidden(); f != nil {
		return nil, typedResult{typ: string(ev.Type), Result: Result{ID: ev.ID, Status: "forbidden", Errors: []event.FieldError{*f}}}, false
	}
	if event.CoreOnly(ev.Type) && ev.Source != event.Core {
		return nil, typedResult{typ: string(ev.Type), Result: Result{ID: ev.ID, Status: "forbidden", Errors: []event.FieldError{{Field: "type",
			Reason: fmt.Sprintf("only core may send %s events", ev.Type)}}}}, false
	}
	return ev, typedResult{}, true
}

// answer is the Result of an accept of a valid event.
func (a *API) answer(ctx context.Context, ev *event.Event, dup bool, err error) Result {
	if errors.Is(err, dispatcher.ErrNoConsent) {
		return Result{ID: ev.ID, Status: "refused", Errors: []event.FieldError{{Field: "data.platform",
			Reason: strings.TrimPrefix(err.Error(), dispatcher.ErrNoConsent.Error()+": ")}}}
	}
	if err != nil {
		// Not the event id: a platform's id could hold anything.
		a.log.ErrorContext(ctx, "accepting an event failed", "type", ev.Type, "source", ev.Source, "error", err)
		return Result{ID: ev.ID, Status: "unavailable"}
	}
	if dup {
		return Result{ID: ev.ID, Status: "duplicate"}
	}
	return Result{ID: ev.ID, Status: "accepted"}
}

// postBatch takes {"events": [...]} and answers 202 with one result per
// event, in order; each event stands or falls alone. The batch as a whole is
// refused only when it cannot be read, is too large, or Redis is down.
func (a *API) postBatch(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorize(w, r)
	if !ok {
		return
	}
	body, ok := readBody(w, r, MaxBatchBytes)
	if !ok || !a.verified(w, r, p, body) {
		return
	}
	var batch struct {
		Events []json.RawMessage `json:"events"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&batch); err != nil {
		problem(w, http.StatusBadRequest, "invalid batch", "the body must be {\"events\": [ ... ]}",
			[]event.FieldError{{Field: "events", Reason: "must be an array of events"}})
		return
	}
	switch n := len(batch.Events); {
	case n == 0:
		problem(w, http.StatusBadRequest, "invalid batch", "the batch is empty",
			[]event.FieldError{{Field: "events", Reason: "must hold at least one event"}})
		return
	case n > MaxBatchEvents:
		problem(w, http.StatusRequestEntityTooLarge, "too large", fmt.Sprintf("a batch holds at most %d events", MaxBatchEvents), nil)
		return
	}
	if !a.allow(w, p, len(batch.Events)) {
		return
	}
	// Each event is validated alone; the valid ones are accepted together
	// (Dispatcher.AcceptBatch: a bounded number of Redis round trips, the
	// letters in a few batch tasks), each with its own answer.
	results := make([]typedResult, len(batch.Events))
	var valid []*event.Event
	var at []int
	for i, raw := range batch.Events {
		ev, res, ok := a.validate(p, raw)
		if ok {
			valid, at = append(valid, ev), append(at, i)
			res.typ = string(ev.Type)
		}
		results[i] = res
	}
	for j, acc := range a.cfg.Dispatcher.AcceptBatch(r.Context(), valid) {
		results[at[j]].Result = a.answer(r.Context(), valid[j], acc.Duplicate, acc.Err)
	}
	out := make([]Result, len(results))
	for i, res := range results {
		if a.cfg.CountEvent != nil {
			a.cfg.CountEvent(res.typ, res.Status)
		}
		out[i] = res.Result
	}
	for i, res := range out {
		if res.Status == "unavailable" {
			w.Header().Set("Retry-After", "5")
			problem(w, http.StatusServiceUnavailable, "unavailable",
				fmt.Sprintf("the event store cannot be reached; events before index %d were accepted, retry the batch", i), nil)
			return
		}
	}
	if !a.durable(w, r, len(results)) {
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"results": out})
}

// durable waits until what was accepted is on enough replicas, and
// answers 503 when it is not; n is the batch's size (0: one event).
func (a *API) durable(w http.ResponseWriter, r *http.Request, n int) bool {
	if a.cfg.WaitReplicas == nil {
		return true
	}
	if err := a.cfg.WaitReplicas(r.Context()); err != nil {
		a.log.WarnContext(r.Context(), "accepted events are not on enough Redis replicas", "events", max(n, 1), "error", err)
		w.Header().Set("Retry-After", "1")
		problem(w, http.StatusServiceUnavailable, "unavailable",
			"the event store could not replicate the event in time; retry (a repeated event is recognised)", nil)
		return false
	}
	return true
}

func (a *API) getTrail(w http.ResponseWriter, r *http.Request) {
	id := strings.ToLower(r.PathValue("id"))
	trail, err := a.cfg.Dispatcher.Trail(r.Context(), id)
	if letterError(w, err) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"message_id": id, "trail": trail})
}

// citizenAccess answers support's question who holds a citizen's mailbox
// and whose the citizen holds (access holders), the other parties masked.
// The CPR travels in the body, never in a URL.
func (a *API) citizenAccess(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, event.MaxQueryBytes)
	if !ok {
		return
	}
	cpr, err := event.ParseExemptionQuery(body) // the same {"cpr": ...} body
	if err != nil {
		var ve *event.ValidationError
		errs := []event.FieldError{{Reason: "invalid query"}}
		if errors.As(err, &ve) {
			errs = ve.Errors
		}
		problem(w, http.StatusBadRequest, "invalid query", "the query has invalid fields", errs)
		return
	}
	v, err := a.cfg.Dispatcher.AccessOf(r.Context(), cpr)
	if err != nil {
		a.log.ErrorContext(r.Context(), "access look-up failed", "error", err)
		problem(w, http.StatusServiceUnavailable, "unavailable", "the store cannot be reached", nil)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// letterError answers a failed look-up of a letter, and reports whether
// there was one.
func letterError(w http.ResponseWriter, err error) bool {
	switch {
	case errors.Is(err, dispatcher.ErrNotFound):
		problem(w, http.StatusNotFound, "not found", "no letter with that message id is tracked", nil)
	case err != nil:
		problem(w, http.StatusServiceUnavailable, "unavailable", "the store cannot be reached", nil)
	default:
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// problem writes an RFC 9457 problem document; errors names bad fields.
func problem(w http.ResponseWriter, status int, title, detail string, errs []event.FieldError) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type":   "about:blank",
		"title":  title,
		"status": status,
		"detail": detail,
		"errors": errs,
	})
}

// smsReport takes the SMS gateway's delivery report callbacks: signed with
// a JWT (HS256) in X-Gwapi-Signature; unsigned or badly signed ones are
// refused with 401.
func (a *API) smsReport(w http.ResponseWriter, r *http.Request) {
	rep, err := a.cfg.SMSReportFunc(r)
	switch {
	case errors.Is(err, ErrBadSignature):
		problem(w, http.StatusUnauthorized, "bad signature", "the report's X-Gwapi-Signature does not verify", nil)
		a.guard.Refused(r, "sms-gateway", http.StatusUnauthorized)
		return
	case err != nil:
		problem(w, http.StatusBadRequest, "invalid report", err.Error(), nil)
		return
	}
	at := rep.At
	if at.IsZero() {
		at = a.cfg.Now()
	}
	err = a.cfg.Dispatcher.Report(r.Context(), dispatcher.DeliveryReport{Channel: channels.SMS,
		DeliveryID: rep.UserRef, ProviderID: rep.ID, Status: rep.Status, Code: rep.Code, Final: rep.Final,
		Dead: rep.Dead, At: at})
	switch {
	case errors.Is(err, dispatcher.ErrNotFound):
		// Unknown or expired: acknowledge, or the gateway retries forever.
		writeJSON(w, http.StatusOK, map[string]string{"status": "unknown delivery"})
	case err != nil:
		problem(w, http.StatusServiceUnavailable, "unavailable", "the store cannot be reached; retry", nil)
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

// verified checks the Standard Webhooks signature of a platform that signs
// its events, and refuses a replayed webhook-id.
func (a *API) verified(w http.ResponseWriter, r *http.Request, p event.Platform, body []byte) bool {
	var secrets [][]byte
	for _, pl := range a.cfg.Platforms {
		if pl.Name == p {
			secrets = pl.SigningSecrets
		}
	}
	if len(secrets) == 0 {
		return true
	}
	if err := signature.Verify(secrets, r.Header, body, a.cfg.Now(), signature.DefaultTolerance); err != nil {
		problem(w, http.StatusUnauthorized, "bad signature", "the request's Standard Webhooks signature does not verify: "+err.Error(), nil)
		a.guard.Refused(r, string(p), http.StatusUnauthorized)
		return false
	}
	fresh, err := a.cfg.Dispatcher.FreshWebhookID(r.Context(), string(p), r.Header.Get(signature.HeaderID), 2*signature.DefaultTolerance)
	if err != nil {
		problem(w, http.StatusServiceUnavailable, "unavailable", "the store cannot be reached; retry", nil)
		return false
	}
	if !fresh {
		problem(w, http.StatusUnauthorized, "replayed", "this webhook-id was already received", nil)
		a.guard.Refused(r, string(p), http.StatusUnauthorized)
		return false
	}
	return true
}

// getState answers a letter's read state and version to a platform (its
// key) or ops, so platforms can reconcile. e-Boks and mit.dk are answered
// about a letter from a public sender only while the citizen consents
// (403 otherwise), as they are sent its webhooks only then.
func (a *API) getState(w http.ResponseWriter, r *http.Request) {
	id := strings.ToLower(r.PathValue("id"))
	var st dispatcher.ReadState
	var err error
	if p, ok := a.platform(r); ok {
		st, err = a.cfg.Dispatcher.StateFor(r.Context(), id, p)
	} else {
		st, err = a.cfg.Dispatcher.State(r.Context(), id)
	}
	switch {
	case errors.Is(err, dispatcher.ErrNoConsent):
		problem(w, http.StatusForbidden, "no consent", strings.TrimPrefix(err.Error(), dispatcher.ErrNoConsent.Error()+": "), nil)
	case letterError(w, err):
	default:
		state := "unread"
		if st.Read {
			state = "read"
		}
		out := map[string]any{"message_id": id, "state": state, "version": st.Version}
		if !st.ChangedAt.IsZero() && st.Version > 0 {
			out["changed_at"] = st.ChangedAt.UTC().Format(time.RFC3339Nano)
			out["platform"] = st.ChangedBy
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func (a *API) enablePlatform(w http.ResponseWriter, r *http.Request) {
	p := event.Platform(r.PathValue("platform"))
	if !slices.Contains(event.ReadingPlatforms(), p) {
		problem(w, http.StatusNotFound, "not found", "unknown platform", nil)
		return
	}
	if err := a.cfg.Dispatcher.EnablePlatform(r.Context(), p); err != nil {
		problem(w, http.StatusServiceUnavailable, "unavailable", "the store cannot be reached", nil)
		return
	}
	a.log.Warn("webhook endpoint re-enabled by ops", "platform", p)
	writeJSON(w, http.StatusOK, map[string]string{"platform": string(p), "status": "enabled"})
}
