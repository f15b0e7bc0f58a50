// Package webhooktest is a fake mailbox platform for tests: an
// httptest.Server on loopback that receives postbud's state-change
// webhooks the way a platform would.
//
// Every POST is checked with signature.Verify under the receiver's secrets
// (401 otherwise) and its body decoded strictly with webhook.ParseBody (400
// otherwise). Accepted changes are recorded in order; per message the
// receiver keeps the highest version seen, and counts as stale a delivery
// whose version is lower than that, and as a duplicate one whose
// webhook-id it already accepted. Both are still answered 204, as a real
// receiver acknowledges what it drops.
//
// It can be told to fail the next requests (status, Retry-After, a dropped
// connection), to answer 410 Gone, to be down (503) until told otherwise,
// to delay or stall each answer. It is safe for concurrent use and closes
// through t.Cleanup.
package webhooktest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/channeltest"
	"github.com/digitalpost/postbud/channels/signature"
	"github.com/digitalpost/postbud/channels/webhook"
)

// DefaultSecret is the key a Receiver accepts when Options gives none
// (32 bytes).
const DefaultSecret = "webhooktest-secret-key-32-bytes!"

// Path is where the receiver takes webhooks (any path is served; URL
// returns this one).
const Path = "/webhooks/postbud"

// Options configures a Receiver. The zero value uses the defaults.
type Options struct {
	// Secrets are the keys signatures are accepted under; several model a
	// rotation. The first is the one Endpoint hands out. Default
	// DefaultSecret.
	Secrets [][]byte
	// Tolerance is how far webhook-timestamp may be from Now. Default
	// signature.DefaultTolerance.
	Tolerance time.Duration
	// Now is the receiver's clock. Default time.Now.
	Now func() time.Time
}

// Delivery is one webhook the receiver accepted.
type Delivery struct {
	// ID, Timestamp and Signature are the webhook headers as received.
	ID        string
	Timestamp string
	Signature string
	// Raw is the body as received.
	Raw []byte
	// Change is the decoded body.
	Change webhook.StateChange
	// Stale is set when a higher version of the message was accepted
	// before.
	Stale bool
	// Duplicate is set when a webhook with the same ID was accepted
	// before.
	Duplicate bool
}

// Attempt is one request that reached the receiver, whatever its answer.
type Attempt struct {
	// ID is the webhook-id header ("" when absent).
	ID string
	// Status is the answer's status; 0 when the connection was dropped or
	// the client gave up first.
	Status int
	// Err is why the request was refused with 400 or 401; nil otherwise.
	Err error
}

// Failure is how the receiver answers a request it is told to fail.
type Failure struct {
	// Status is the HTTP status (e.g. 429, 500, 404).
	Status int
	// RetryAfter, when set, is sent as the Retry-After header verbatim
	// ("7" or an HTTP date).
	RetryAfter string
	// Drop closes the connection without an answer (a network error);
	// Status and RetryAfter are then ignored.
	Drop bool
}

// Snapshot is the receiver's record at one moment, for WaitFor.
type Snapshot struct {
	// Requests counts requests that arrived, including held ones.
	Requests int
	// Attempts are the answered (or abandoned) requests, in order.
	Attempts []Attempt
	// Deliveries are the accepted webhooks, in order.
	Deliveries []Delivery
	// Versions holds per message id the highest version accepted.
	Versions map[string]int64
	// Stale and Duplicates count the accepted deliveries so marked.
	Stale      int
	Duplicates int
	// Rejected counts requests refused with 401.
	Rejected int
}

// Receiver is a running fake platform.
type Receiver struct {
	srv       *httptest.Server
	secrets   [][]byte
	tolerance time.Duration
	now       func() time.Time
	done      chan struct{} // closed when the test ends

	mu         sync.Mutex
	requests   int
	attempts   []Attempt
	deliveries []Delivery
	versions   map[string]int64
	seenIDs    map[string]bool
	stale      int
	duplicates int
	rejected   int
	failures   []Failure
	gone       bool
	down       bool
	delay      time.Duration
	stall      chan struct{} // non-nil while stalled; closed on Release
	changed    chan struct{} // closed and replaced on every change of the record
}

// New starts a fake platform on loopback; it closes when t ends.
func New(t testing.TB, o Options) *Receiver {
	t.Helper()
	r := &Receiver{
		tolerance: o.Tolerance,
		now:       o.Now,
		done:      make(chan struct{}),
		versions:  make(map[string]int64),
		seenIDs:   make(map[string]bool),
		changed:   make(chan struct{}),
	}
	for _, s := range o.Secrets {
		r.secrets = append(r.secrets, bytes.Clone(s))
	}
	if len(r.secrets) == 0 {
		r.secrets = [][]byte{[]byte(DefaultSecret)}
	}
	if r.tolerance <= 0 {
		r.tolerance = signature.DefaultTolerance
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.handle))
	t.Cleanup(func() {
		close(r.done) // lets held handlers return before Close waits on them
		r.srv.Close()
	})
	return r
}

// URL is the receiver's webhook URL.
func (r *Receiver) URL() string { return r.srv.URL + Path }

// Secret is the receiver's first (current) key.
func (r *Receiver) Secret() []byte { return bytes.Clone(r.secrets[0]) }

// Endpoint is the webhook.Endpoint that reaches the receiver.
func (r *Receiver) Endpoint() webhook.Endpoint {
	return webhook.Endpoint{URL: r.URL(), Secret: r.Secret()}
}

// Client returns an HTTP client for the receiver.
func (r *Receiver) Client() *http.Client { return r.srv.Client() }

// Snapshot returns a copy of the receiver's record.
func (r *Receiver) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshot()
}

// snapshot copies the record; r.mu must be held.
func (r *Receiver) snapshot() Snapshot {
	s := Snapshot{
		Requests:   r.requests,
		Attempts:   slices.Clone(r.attempts),
		Deliveries: make([]Delivery, len(r.deliveries)),
		Versions:   maps.Clone(r.versions),
		Stale:      r.stale,
		Duplicates: r.duplicates,
		Rejected:   r.rejected,
	}
	for i, d := range r.deliveries {
		d.Raw = bytes.Clone(d.Raw)
		s.Deliveries[i] = d
	}
	return s
}

// Deliveries returns the accepted webhooks, in order.
func (r *Receiver) Deliveries() []Delivery { return r.Snapshot().Deliveries }

// Changes returns the accepted state changes, in order, stale ones
// included.
func (r *Receiver) Changes() []webhook.StateChange {
	ds := r.Deliveries()
	out := make([]webhook.StateChange, len(ds))
	for i, d := range ds {
		out[i] = d.Change
	}
	return out
}

// Version returns the highest version accepted for messageID.
func (r *Receiver) Version(messageID string) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.versions[messageID]
	return v, ok
}

// Stale counts accepted deliveries whose version was lower than one
// already accepted for the same message.
func (r *Receiver) Stale() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stale
}

// Duplicates counts accepted deliveries whose webhook-id was accepted
// before.
func (r *Receiver) Duplicates() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.duplicates
}

// Attempts returns every answered request, in order.
func (r *Receiver) Attempts() []Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.attempts)
}

// WaitFor waits until cond holds for the receiver's record and returns
// that record, or returns ctx's error. cond is called after every change.
func (r *Receiver) WaitFor(ctx context.Context, cond func(Snapshot) bool) (Snapshot, error) {
	for {
		r.mu.Lock()
		s := r.snapshot()
		changed := r.changed
		r.mu.Unlock()
		if cond(s) {
			return s, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return s, fmt.Errorf("webhooktest: waiting: %w", ctx.Err())
		}
	}
}

// WaitDeliveries waits until at least n webhooks were accepted and returns
// them.
func (r *Receiver) WaitDeliveries(ctx context.Context, n int) ([]Delivery, error) {
	s, err := r.WaitFor(ctx, func(s Snapshot) bool { return len(s.Deliveries) >= n })
	if err != nil {
		return nil, fmt.Errorf("webhooktest: %d of %d deliveries: %w", len(s.Deliveries), n, err)
	}
	return s.Deliveries, nil
}

// WaitRequests waits until at least n requests arrived (held, refused or
// accepted).
func (r *Receiver) WaitRequests(ctx context.Context, n int) error {
	s, err := r.WaitFor(ctx, func(s Snapshot) bool { return s.Requests >= n })
	if err != nil {
		return fmt.Errorf("webhooktest: %d of %d requests: %w", s.Requests, n, err)
	}
	return nil
}

// FailNext makes the next n requests fail as f. Calls queue up in order.
func (r *Receiver) FailNext(n int, f Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for range n {
		r.failures = append(r.failures, f)
	}
}

// SetGone makes every later request be answered 410 Gone (true) or not.
func (r *Receiver) SetGone(gone bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gone = gone
}

// SetDown makes every later request be answered 503 Service Unavailable
// (true) until SetDown(false).
func (r *Receiver) SetDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// SetDelay makes every later request wait d before it is answered (0 for
// none).
func (r *Receiver) SetDelay(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delay = d
}

// Stall holds every later request until Release is called, the client
// gives up, or the test ends.
func (r *Receiver) Stall() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stall == nil {
		r.stall = make(chan struct{})
	}
}

// Release lets stalled requests and later ones through.
func (r *Receiver) Release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stall != nil {
		close(r.stall)
		r.stall = nil
	}
}

// notify wakes the waiters; r.mu must be held.
func (r *Receiver) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// record ends a request with its attempt.
func (r *Receiver) record(a Attempt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a.Status == http.StatusUnauthorized {
		r.rejected++
	}
	r.attempts = append(r.attempts, a)
	r.notify()
}

// hold applies the stall and delay; it reports false when the request
// should be abandoned.
func (r *Receiver) hold(req *http.Request) bool {
	r.mu.Lock()
	r.requests++
	r.notify()
	stall, delay := r.stall, r.delay
	r.mu.Unlock()
	return channeltest.Hold(req.Context(), stall, delay, r.done)
}

// handle answers one request. In order: hold (delay, stall); 405 for
// anything but POST; 503 while down; a queued failure; 410 while gone; 401
// unless the signature verifies; 415 unless JSON; 400 unless the body
// decodes strictly; else record and 204.
func (r *Receiver) handle(w http.ResponseWriter, req *http.Request) {
	id := req.Header.Get(signature.HeaderID)
	if !r.hold(req) {
		// The client gave up or the test ended: answer nothing, so no
		// late client takes an empty 200 for an acceptance.
		r.record(Attempt{ID: id})
		panic(http.ErrAbortHandler)
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		r.answer(w, Attempt{ID: id, Status: http.StatusMethodNotAllowed})
		return
	}
	r.mu.Lock()
	down, gone := r.down, r.gone
	var f *Failure
	if !down && len(r.failures) > 0 {
		f = &r.failures[0]
		r.failures = r.failures[1:]
	}
	r.mu.Unlock()
	switch {
	case down:
		r.answer(w, Attempt{ID: id, Status: http.StatusServiceUnavailable})
		return
	case f != nil && f.Drop:
		r.record(Attempt{ID: id})
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case f != nil:
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		r.answer(w, Attempt{ID: id, Status: f.Status})
		return
	case gone:
		r.answer(w, Attempt{ID: id, Status: http.StatusGone})
		return
	}

	raw, err := io.ReadAll(http.MaxBytesReader(w, req.Body, webhook.MaxBodySize))
	if err != nil {
		r.answer(w, Attempt{ID: id, Status: http.StatusRequestEntityTooLarge, Err: err})
		return
	}
	if err := signature.Verify(r.secrets, req.Header, raw, r.now(), r.tolerance); err != nil {
		r.answer(w, Attempt{ID: id, Status: http.StatusUnauthorized, Err: err})
		return
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		r.answer(w, Attempt{ID: id, Status: http.StatusUnsupportedMediaType})
		return
	}
	sc, err := webhook.ParseBody(raw)
	if err != nil {
		r.answer(w, Attempt{ID: id, Status: http.StatusBadRequest, Err: err})
		return
	}

	d := Delivery{
		ID:        id,
		Timestamp: req.Header.Get(signature.HeaderTimestamp),
		Signature: req.Header.Get(signature.HeaderSignature),
		Raw:       raw,
		Change:    sc,
	}
	r.mu.Lock()
	if v, ok := r.versions[sc.MessageID]; ok && sc.Version < v {
		d.Stale = true
		r.stale++
	} else {
		r.versions[sc.MessageID] = sc.Version
	}
	if r.seenIDs[id] {
		d.Duplicate = true
		r.duplicates++
	}
	r.seenIDs[id] = true
	r.deliveries = append(r.deliveries, d)
	r.mu.Unlock()
	r.answer(w, Attempt{ID: id, Status: http.StatusNoContent})
}

// answer writes a's status and records it.
func (r *Receiver) answer(w http.ResponseWriter, a Attempt) {
	if a.Status != http.StatusNoContent {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(a.Status)
		fmt.Fprintln(w, http.StatusText(a.Status))
	} else {
		w.WriteHeader(a.Status)
	}
	r.record(a)
}
