// Package smstest is a fake SMS gateway for tests: an httptest.Server on
// loopback speaking the GatewayAPI REST protocol that package sms uses.
//
// It serves POST /rest/mtsms (HTTP Basic auth with the token as user name,
// strict JSON: only the fields postbud sends are known) and GET /rest/me,
// records every message it accepts and gives each an increasing id. It can
// be told to fail the next requests (status, error code, Retry-After, a
// dropped connection), to delay or stall requests, and it posts signed
// delivery reports to a message's callback_url. It is safe for concurrent
// use and closes through t.Cleanup.
package smstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"

	"github.com/digitalpost/postbud/channels/channeltest"
)

// Defaults of Options.
const (
	DefaultToken  = "smstest-token"
	DefaultSecret = "smstest-report-secret"
)

// Options configures a Gateway. The zero value uses the defaults.
type Options struct {
	// Token is the API token the gateway accepts. Default DefaultToken.
	Token string
	// Secret signs delivery reports (X-Gwapi-Signature). Default
	// DefaultSecret.
	Secret []byte
}

// Message is one message the gateway accepted.
type Message struct {
	// ID is the id the gateway returned.
	ID int64
	// Raw is the request body as received.
	Raw []byte
	// The fields of the request.
	Sender      string
	Message     string
	MSISDNs     []uint64
	UserRef     string
	CallbackURL string
	MaxParts    int
	Encoding    string
	// Received is when the gateway accepted it.
	Received time.Time
}

// Failure is how the gateway answers a request it is told to fail.
type Failure struct {
	// Status is the HTTP status (e.g. 401, 429, 500).
	Status int
	// Code and Message make the JSON error body, as the gateway's
	// {"code": "0x0215", "message": "...", "incident_uuid": "..."}; an
	// empty Code is left out.
	Code    string
	Message string
	// RetryAfter, when set, is sent as the Retry-After header verbatim
	// ("7" or an HTTP date).
	RetryAfter string
	// Drop closes the connection without an answer (a network error);
	// Status and the rest are then ignored.
	Drop bool
}

// Gateway is a running fake gateway.
type Gateway struct {
	srv    *httptest.Server
	token  string
	secret []byte
	done   chan struct{} // closed when the test ends

	mu       sync.Mutex
	messages []Message
	nextID   int64
	failures []Failure
	requests int
	stall    chan struct{} // non-nil while stalled; closed on Release
	delay    time.Duration
	changed  chan struct{} // closed and replaced when a request arrives or a message is accepted
}

// New starts a fake gateway on loopback; it closes when t ends.
func New(t testing.TB, o Options) *Gateway {
	t.Helper()
	if o.Token == "" {
		o.Token = DefaultToken
	}
	if len(o.Secret) == 0 {
		o.Secret = []byte(DefaultSecret)
	}
	g := &Gateway{
		token:   o.Token,
		secret:  bytes.Clone(o.Secret),
		done:    make(chan struct{}),
		nextID:  1000000,
		changed: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rest/mtsms", g.handleMTSMS)
	mux.HandleFunc("GET /rest/me", g.handleMe)
	g.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(g.done) // lets stalled handlers return before Close waits on them
		g.srv.Close()
	})
	return g
}

// URL is the gateway's base URL (for sms.Config.BaseURL).
func (g *Gateway) URL() string { return g.srv.URL }

// Token is the API token the gateway accepts.
func (g *Gateway) Token() string { return g.token }

// Secret is the key that signs delivery reports.
func (g *Gateway) Secret() []byte { return bytes.Clone(g.secret) }

// Client returns an HTTP client for the gateway.
func (g *Gateway) Client() *http.Client { return g.srv.Client() }

// Messages returns the accepted messages, in order.
func (g *Gateway) Messages() []Message {
	g.mu.Lock()
	defer g.mu.Unlock()
	return cloneMessages(g.messages)
}

// Raw returns the raw bodies of the accepted messages, in order.
func (g *Gateway) Raw() [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([][]byte, len(g.messages))
	for i, m := range g.messages {
		out[i] = bytes.Clone(m.Raw)
	}
	return out
}

// Requests returns how many requests reached the gateway, failed or not.
func (g *Gateway) Requests() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.requests
}

// notify wakes the waiters; g.mu must be held.
func (g *Gateway) notify() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// wait blocks until cond, called with g.mu held, is true, or ctx ends.
func (g *Gateway) wait(ctx context.Context, cond func() bool) error {
	for {
		g.mu.Lock()
		if cond() {
			g.mu.Unlock()
			return nil
		}
		changed := g.changed
		g.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitMessages waits until at least n messages were accepted and returns
// them, or returns ctx's error.
func (g *Gateway) WaitMessages(ctx context.Context, n int) ([]Message, error) {
	if err := g.wait(ctx, func() bool { return len(g.messages) >= n }); err != nil {
		return nil, fmt.Errorf("smstest: waiting for %d messages: %w", n, err)
	}
	return g.Messages(), nil
}

// WaitRequests waits until at least n requests reached the gateway (held,
// failed or accepted), or returns ctx's error.
func (g *Gateway) WaitRequests(ctx context.Context, n int) error {
	if err := g.wait(ctx, func() bool { return g.requests >= n }); err != nil {
		return fmt.Errorf("smstest: waiting for %d requests: %w", n, err)
	}
	return nil
}

// FailNext makes the next n requests fail as f. Calls queue up in order.
func (g *Gateway) FailNext(n int, f Failure) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for range n {
		g.failures = append(g.failures, f)
	}
}

// ClearFailures drops the failures FailNext queued and not used yet: the
// gateway answers again.
func (g *Gateway) ClearFailures() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failures = nil
}

// Stall holds every later request until Release is called, the client
// gives up, or the test ends. As with a real gateway, a request released
// just after its client gave up may still be accepted.
func (g *Gateway) Stall() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stall == nil {
		g.stall = make(chan struct{})
	}
}

// Release lets stalled requests and later ones through.
func (g *Gateway) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stall != nil {
		close(g.stall)
		g.stall = nil
	}
}

// SetDelay makes every later request wait d before it is answered (0 for
// none).
func (g *Gateway) SetDelay(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.delay = d
}

// hold applies the stall and delay; it reports false when the request
// should be abandoned.
func (g *Gateway) hold(r *http.Request) bool {
	g.mu.Lock()
	g.requests++
	g.notify()
	stall, delay := g.stall, g.delay
	g.mu.Unlock()
	return channeltest.Hold(r.Context(), stall, delay, g.done)
}

// authorized checks HTTP Basic auth: the token as user, an empty password.
func (g *Gateway) authorized(w http.ResponseWriter, r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok || user != g.token || pass != "" {
		writeError(w, Failure{Status: http.StatusUnauthorized, Code: "0x0223", Message: "Invalid Consumer Key"})
		return false
	}
	return true
}

// takeFailure pops the next queued failure, if any, and answers with it.
func (g *Gateway) takeFailure(w http.ResponseWriter) bool {
	g.mu.Lock()
	if len(g.failures) == 0 {
		g.mu.Unlock()
		return false
	}
	f := g.failures[0]
	g.failures = g.failures[1:]
	g.mu.Unlock()
	if f.Drop {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler)
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	writeError(w, f)
	return true
}

func writeError(w http.ResponseWriter, f Failure) {
	body := map[string]any{
		"message":       f.Message,
		"incident_uuid": "00000000-0000-4000-8000-00000000" + fmt.Sprintf("%04d", f.Status),
	}
	if f.Code != "" {
		body["code"] = f.Code
	}
	writeJSON(w, f.Status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// mtsms is the request body the fake knows: the fields package sms sends.
type mtsms struct {
	Sender     *string `json:"sender"`
	Message    *string `json:"message"`
	Recipients []struct {
		MSISDN uint64 `json:"msisdn"`
	} `json:"recipients"`
	UserRef     string `json:"userref"`
	CallbackURL string `json:"callback_url"`
	MaxParts    *int   `json:"max_parts"`
	Encoding    string `json:"encoding"`
}

func (g *Gateway) handleMTSMS(w http.ResponseWriter, r *http.Request) {
	if !g.hold(r) {
		return
	}
	if !g.authorized(w, r) {
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeError(w, Failure{Status: http.StatusRequestEntityTooLarge, Message: "Request body too large"})
		return
	}
	var req mtsms
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, Failure{Status: http.StatusUnprocessableEntity, Message: "Invalid json request body: " + err.Error()})
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, Failure{Status: http.StatusUnprocessableEntity, Message: "Invalid json request body: trailing data"})
		return
	}
	if msg := validate(req); msg != "" {
		writeError(w, Failure{Status: http.StatusBadRequest, Code: "0x0222", Message: msg})
		return
	}
	if g.takeFailure(w) {
		return
	}
	m := Message{
		Raw:         raw,
		Sender:      *req.Sender,
		Message:     *req.Message,
		UserRef:     req.UserRef,
		CallbackURL: req.CallbackURL,
		Encoding:    req.Encoding,
		Received:    time.Now(),
	}
	if req.MaxParts != nil {
		m.MaxParts = *req.MaxParts
	}
	for _, rc := range req.Recipients {
		m.MSISDNs = append(m.MSISDNs, rc.MSISDN)
	}
	ids := make([]int64, 0, 1)
	g.mu.Lock()
	g.nextID++
	m.ID = g.nextID
	ids = append(ids, m.ID)
	g.messages = append(g.messages, m)
	g.notify()
	g.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"ids":   ids,
		"usage": map[string]any{"countries": map[string]int{"DK": 1}, "currency": "DKK", "total_cost": 0.12},
	})
}

// validate checks the request as the gateway would; it returns "" when the
// request is acceptable.
func validate(req mtsms) string {
	switch {
	case req.Sender == nil || *req.Sender == "":
		return "Missing required parameter sender"
	case len(*req.Sender) > 15:
		return "Sender too long"
	case req.Message == nil || *req.Message == "":
		return "Missing required parameter message"
	case len(req.Recipients) == 0:
		return "Missing required parameter recipients"
	case req.MaxParts != nil && (*req.MaxParts < 1 || *req.MaxParts > 255):
		return "max_parts must be between 1 and 255"
	case req.Encoding != "" && req.Encoding != "UTF8" && req.Encoding != "UCS2":
		return "Unsupported parameter encoding"
	}
	seen := make(map[uint64]bool, len(req.Recipients))
	for _, rc := range req.Recipients {
		if rc.MSISDN == 0 {
			return "Missing required parameter msisdn"
		}
		if seen[rc.MSISDN] {
			return "A message contains the same recipient more than once"
		}
		seen[rc.MSISDN] = true
	}
	return ""
}

func (g *Gateway) handleMe(w http.ResponseWriter, r *http.Request) {
	if !g.hold(r) {
		return
	}
	if !g.authorized(w, r) {
		return
	}
	if g.takeFailure(w) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"credit": 1234.56, "currency": "DKK", "id": 1})
}

// Report describes one delivery report SendReportWith posts.
type Report struct {
	// Status is the delivery status ("DELIVERED", "ENROUTE", ...).
	Status string
	// Code and Error, when set, are the report's error code ("0x1010")
	// and description; else they are sent as null.
	Code  string
	Error string
	// Time is the status time; zero means now.
	Time time.Time
	// Secret, when set, signs the report instead of the gateway's secret
	// (to test a wrong secret).
	Secret []byte
	// Unsigned leaves the X-Gwapi-Signature header out.
	Unsigned bool
	// Tamper changes the body after signing, so it no longer matches the
	// signed claims.
	Tamper bool
}

// SendReport posts a signed delivery report with status for the accepted
// message id to its callback_url, and returns the HTTP status the receiver
// answered.
func (g *Gateway) SendReport(ctx context.Context, id int64, status string) (int, error) {
	return g.SendReportWith(ctx, id, Report{Status: status})
}

// SendReportBadSignature is SendReport with the report signed under a wrong
// secret.
func (g *Gateway) SendReportBadSignature(ctx context.Context, id int64, status string) (int, error) {
	return g.SendReportWith(ctx, id, Report{Status: status, Secret: []byte("not-the-secret")})
}

// SendReportWith posts the delivery report rep for the accepted message id
// to its callback_url, as the gateway does: the JSON body, and the same
// fields as the claims of an HS256 JWT in X-Gwapi-Signature.
func (g *Gateway) SendReportWith(ctx context.Context, id int64, rep Report) (int, error) {
	var m *Message
	g.mu.Lock()
	for i := range g.messages {
		if g.messages[i].ID == id {
			mm := g.messages[i]
			m = &mm
		}
	}
	g.mu.Unlock()
	switch {
	case m == nil:
		return 0, fmt.Errorf("smstest: no message with id %d", id)
	case m.CallbackURL == "":
		return 0, fmt.Errorf("smstest: message %d has no callback_url", id)
	case len(m.MSISDNs) == 0:
		return 0, fmt.Errorf("smstest: message %d has no recipient", id)
	}
	at := rep.Time
	if at.IsZero() {
		at = time.Now()
	}
	fields := map[string]any{
		"id":      id,
		"msisdn":  m.MSISDNs[0],
		"time":    at.Unix(),
		"status":  rep.Status,
		"error":   nullable(rep.Error),
		"code":    nullable(rep.Code),
		"userref": nullable(m.UserRef),
	}
	body, err := json.Marshal(fields)
	if err != nil {
		return 0, fmt.Errorf("smstest: %w", err)
	}
	claims := jwt.MapClaims{"callback_url": m.CallbackURL, "api": 4}
	for k, v := range fields {
		claims[k] = v
	}
	secret := g.secret
	if len(rep.Secret) > 0 {
		secret = rep.Secret
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return 0, fmt.Errorf("smstest: sign report: %w", err)
	}
	if rep.Tamper {
		fields["status"] = rep.Status + "X"
		if body, err = json.Marshal(fields); err != nil {
			return 0, fmt.Errorf("smstest: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.CallbackURL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("smstest: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "*/*")
	if !rep.Unsigned {
		req.Header.Set("X-Gwapi-Signature", token)
	}
	resp, err := reportClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("smstest: post report: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// reportClient posts delivery reports; callback URLs in tests are on
// loopback, so no proxy is used.
var reportClient = &http.Client{Transport: &http.Transport{Proxy: nil}}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func cloneMessages(ms []Message) []Message {
	out := make([]Message, len(ms))
	for i, m := range ms {
		m.Raw = bytes.Clone(m.Raw)
		m.MSISDNs = append([]uint64(nil), m.MSISDNs...)
		out[i] = m
	}
	return out
}

// ErrNoMessage is returned by Last when no message was accepted.
var ErrNoMessage = errors.New("smstest: no message accepted")

// Last returns the last accepted message.
func (g *Gateway) Last() (Message, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.messages) == 0 {
		return Message{}, ErrNoMessage
	}
	return cloneMessages(g.messages[len(g.messages)-1:])[0], nil
}
