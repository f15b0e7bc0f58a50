package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/signature"
	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/channels/webhook/webhooktest"
	"github.com/google/go-cmp/cmp"
)

var key32 = []byte("0123456789abcdef0123456789abcdef")

func TestConfigValidate(t *testing.T) {
	ok := webhook.Endpoint{URL: "https://sync.e-boks.dk/postbud", Secret: key32}
	tests := []struct {
		name  string
		cfg   webhook.Config
		wants []string // each must appear in the error; none means valid
	}{
		{name: "valid", cfg: webhook.Config{Endpoints: map[string]webhook.Endpoint{"e-boks": ok}}},
		{name: "valid, all four and a timeout", cfg: webhook.Config{Timeout: time.Second, Endpoints: map[string]webhook.Endpoint{
			"borger.dk": ok, "digital-post-app": ok, "e-boks": ok, "mit.dk": {URL: "http://127.0.0.1:8080/hook?token=x", Secret: make([]byte, 64)},
		}}},
		{name: "no endpoints", cfg: webhook.Config{}, wants: []string{"webhook.endpoints: at least one"}},
		{name: "unknown platform", cfg: webhook.Config{Endpoints: map[string]webhook.Endpoint{"eboks": ok}},
			wants: []string{"webhook.endpoints[eboks]: unknown platform"}},
		{name: "missing url and secret", cfg: webhook.Config{Endpoints: map[string]webhook.Endpoint{"e-boks": {}}},
			wants: []string{"webhook.endpoints[e-boks].url: is required", "webhook.endpoints[e-boks].secret: is required"}},
		{name: "bad scheme", cfg: webhook.Config{Endpoints: map[string]webhook.Endpoint{"mit.dk": {URL: "ftp://mit.dk/hook?token=s3cr3t", Secret: key32}}},
			wants: []string{"webhook.endpoints[mit.dk].url: scheme must be http or https"}},
		{name: "relative url", cfg: webhook.Config{Endpoints: map[string]webhook.Endpoint{"mit.dk": {URL: "/hook", Secret: key32}}},
			wants: []string{"webhook.endpoints[mit.dk].url: scheme"}},
		{name: "no host", cfg: webhook.Config{Endpoints: map[string]webhook.Endpoint{"mit.dk": {URL: "https:///hook", Secret: key32}}},
			wants: []string{"webhook.endpoints[mit.dk].url: host is missing"}},
		{name: "credentials in url", cfg: webhook.Config{Endpoints: map[string]webhook.Endpoint{"mit.dk": {URL: "https://user:s3cr3t@mit.dk/hook", Secret: key32}}},
			wants: []string{"webhook.endpoints[mit.dk].url: must not hold credentials"}},
		{name: "not a url", cfg: webhook.Config{Endpoints: map[string]webhook.Endpoint{"mit.dk": {URL: "https://mit.dk/%zz?token=s3cr3t", Secret: key32}}},
			wants: []string{"webhook.endpoints[mit.dk].url: is not a URL"}},
		{name: "short secret", cfg: webhook.Config{Endpoints: map[string]webhook.Endpoint{"e-boks": {URL: ok.URL, Secret: []byte("short")}}},
			wants: []string{"webhook.endpoints[e-boks].secret: must be 24 to 64 bytes, got 5"}},
		{name: "long secret", cfg: webhook.Config{Endpoints: map[string]webhook.Endpoint{"e-boks": {URL: ok.URL, Secret: make([]byte, 65)}}},
			wants: []string{"webhook.endpoints[e-boks].secret: must be 24 to 64 bytes, got 65"}},
		{name: "negative timeout", cfg: webhook.Config{Endpoints: map[string]webhook.Endpoint{"e-boks": ok}, Timeout: -time.Second},
			wants: []string{"webhook.timeout: must not be negative"}},
		{name: "every problem at once", cfg: webhook.Config{Timeout: -1, Endpoints: map[string]webhook.Endpoint{
			"borger.dk": {URL: "mailto:x"}, "mit.dk": {URL: "https://mit.dk", Secret: []byte("x")}, "nemid": ok,
		}}, wants: []string{
			"webhook.endpoints[borger.dk].url: scheme", "webhook.endpoints[borger.dk].secret: is required",
			"webhook.endpoints[mit.dk].secret: must be", "webhook.endpoints[nemid]: unknown platform", "webhook.timeout",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wants) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := webhook.New(tt.cfg, nil); err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate = nil, want errors")
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q\nmissing %q", err, w)
				}
			}
			if got, want := strings.Count(err.Error(), "\n")+1, len(tt.wants); got != want {
				t.Errorf("Validate reported %d problems, want %d: %v", got, want, err)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("Validate quotes the URL's secret: %v", err)
			}
			if _, err := webhook.New(tt.cfg, nil); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestEndpointRedacts(t *testing.T) {
	ep := webhook.Endpoint{URL: "https://sync.mit.dk/hook?token=s3cr3t", Secret: []byte("very-secret-key-very-secret-key!")}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", slog.Any("endpoint", ep))
	for name, s := range map[string]string{
		"%v": fmt.Sprintf("%v", ep), "%+v": fmt.Sprintf("%+v", ep), "%#v": fmt.Sprintf("%#v", ep), "slog": logged.String(),
	} {
		if strings.Contains(s, "s3cr3t") || strings.Contains(s, "very-secret") || strings.Contains(s, "118 101 114") {
			t.Errorf("%s shows a secret: %s", name, s)
		}
		if !strings.Contains(s, "sync.mit.dk") {
			t.Errorf("%s lost the host: %s", name, s)
		}
	}
}

// newSender returns a Sender whose endpoints are the given receivers.
func newSender(t *testing.T, timeout time.Duration, eps map[string]*webhooktest.Receiver) *webhook.Sender {
	t.Helper()
	cfg := webhook.Config{Endpoints: map[string]webhook.Endpoint{}, Timeout: timeout}
	for name, r := range eps {
		cfg.Endpoints[name] = r.Endpoint()
		cfg.HTTPClient = r.Client()
	}
	s, err := webhook.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestDeliver(t *testing.T) {
	r := webhooktest.New(t, webhooktest.Options{})
	s := newSender(t, 0, map[string]*webhooktest.Receiver{webhook.PlatformMitDK: r})
	sc := change()
	before := time.Now()
	rc, err := s.Deliver(t.Context(), webhook.PlatformMitDK, "msg_1", sc)
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if rc.ProviderID != "msg_1" {
		t.Errorf("receipt ProviderID = %q, want the webhook id", rc.ProviderID)
	}
	ds := r.Deliveries()
	if len(ds) != 1 {
		t.Fatalf("receiver accepted %d webhooks, want 1", len(ds))
	}
	d := ds[0]
	if diff := cmp.Diff(string(webhook.Body(sc)), string(d.Raw)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	want := sc
	want.ChangedAt = sc.ChangedAt.UTC()
	if diff := cmp.Diff(want, d.Change); diff != "" {
		t.Errorf("change (-want +got):\n%s", diff)
	}
	if d.ID != "msg_1" {
		t.Errorf("webhook-id = %q, want msg_1", d.ID)
	}
	ts, err := strconv.ParseInt(d.Timestamp, 10, 64)
	if err != nil || ts < before.Unix() || ts > time.Now().Unix() {
		t.Errorf("webhook-timestamp = %q, want the send time (%d..)", d.Timestamp, before.Unix())
	}
	if wantSig := signature.Sign(r.Secret(), "msg_1", time.Unix(ts, 0), d.Raw); d.Signature != wantSig {
		t.Errorf("webhook-signature = %q, want %q", d.Signature, wantSig)
	}
	if got, _ := r.Version(sc.MessageID); got != sc.Version {
		t.Errorf("receiver version = %d, want %d", got, sc.Version)
	}
}

// Every status class maps to its kind, code and Retry-After.
func TestDeliverClassification(t *testing.T) {
	type want struct {
		kind       channels.Kind
		code       string
		retryAfter time.Duration
	}
	tests := []struct {
		name    string
		setup   func(*webhooktest.Receiver)
		timeout time.Duration
		want    *want // nil: delivered
	}{
		{name: "2xx", setup: func(*webhooktest.Receiver) {}},
		{name: "410 gone", setup: func(r *webhooktest.Receiver) { r.SetGone(true) }, want: &want{channels.Gone, "http_410", 0}},
		{name: "410 once", setup: func(r *webhooktest.Receiver) { r.FailNext(1, webhooktest.Failure{Status: 410}) }, want: &want{channels.Gone, "http_410", 0}},
		{name: "429 with seconds", setup: func(r *webhooktest.Receiver) {
			r.FailNext(1, webhooktest.Failure{Status: 429, RetryAfter: "7"})
		}, want: &want{channels.Throttled, "http_429", 7 * time.Second}},
		{name: "429 without Retry-After", setup: func(r *webhooktest.Receiver) {
			r.FailNext(1, webhooktest.Failure{Status: 429})
		}, want: &want{channels.Throttled, "http_429", webhook.DefaultRetryAfter}},
		{name: "429 with garbage", setup: func(r *webhooktest.Receiver) {
			r.FailNext(1, webhooktest.Failure{Status: 429, RetryAfter: "soon"})
		}, want: &want{channels.Throttled, "http_429", webhook.DefaultRetryAfter}},
		{name: "429 with a day", setup: func(r *webhooktest.Receiver) {
			r.FailNext(1, webhooktest.Failure{Status: 429, RetryAfter: "86400"})
		}, want: &want{channels.Throttled, "http_429", webhook.MaxRetryAfter}},
		{name: "401", setup: func(r *webhooktest.Receiver) { r.FailNext(1, webhooktest.Failure{Status: 401}) }, want: &want{channels.Misconfigured, "http_401", 0}},
		{name: "403", setup: func(r *webhooktest.Receiver) { r.FailNext(1, webhooktest.Failure{Status: 403}) }, want: &want{channels.Misconfigured, "http_403", 0}},
		{name: "3xx not followed", setup: func(r *webhooktest.Receiver) { r.FailNext(1, webhooktest.Failure{Status: 308}) }, want: &want{channels.Misconfigured, "http_308", 0}},
		{name: "500", setup: func(r *webhooktest.Receiver) { r.FailNext(1, webhooktest.Failure{Status: 500}) }, want: &want{channels.Transient, "http_500", 0}},
		{name: "502", setup: func(r *webhooktest.Receiver) { r.FailNext(1, webhooktest.Failure{Status: 502}) }, want: &want{channels.Transient, "http_502", 0}},
		{name: "503 down", setup: func(r *webhooktest.Receiver) { r.SetDown(true) }, want: &want{channels.Transient, "http_503", 0}},
		{name: "408", setup: func(r *webhooktest.Receiver) { r.FailNext(1, webhooktest.Failure{Status: 408}) }, want: &want{channels.Transient, "http_408", 0}},
		{name: "400", setup: func(r *webhooktest.Receiver) { r.FailNext(1, webhooktest.Failure{Status: 400}) }, want: &want{channels.Permanent, "http_400", 0}},
		{name: "404", setup: func(r *webhooktest.Receiver) { r.FailNext(1, webhooktest.Failure{Status: 404}) }, want: &want{channels.Permanent, "http_404", 0}},
		{name: "422", setup: func(r *webhooktest.Receiver) { r.FailNext(1, webhooktest.Failure{Status: 422}) }, want: &want{channels.Permanent, "http_422", 0}},
		{name: "dropped connection", setup: func(r *webhooktest.Receiver) { r.FailNext(1, webhooktest.Failure{Drop: true}) }, want: &want{channels.Transient, "network", 0}},
		{name: "timeout", setup: func(r *webhooktest.Receiver) { r.Stall() }, timeout: 50 * time.Millisecond, want: &want{channels.Transient, "timeout", 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := webhooktest.New(t, webhooktest.Options{})
			tt.setup(r)
			s := newSender(t, tt.timeout, map[string]*webhooktest.Receiver{webhook.PlatformBorgerDK: r})
			_, err := s.Deliver(t.Context(), webhook.PlatformBorgerDK, "msg_class", change())
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Deliver: %v", err)
				}
				if n := len(r.Deliveries()); n != 1 {
					t.Errorf("receiver accepted %d webhooks, want 1", n)
				}
				return
			}
			if err == nil {
				t.Fatal("Deliver succeeded, want an error")
			}
			got := want{channels.KindOf(err), channels.CodeOf(err), channels.RetryAfterOf(err)}
			if diff := cmp.Diff(*tt.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("Deliver error %q classified (-want +got):\n%s", err, diff)
			}
			if strings.Contains(err.Error(), r.URL()) || strings.Contains(err.Error(), "/webhooks/") {
				t.Errorf("error quotes the endpoint URL: %v", err)
			}
		})
	}
}

// An endpoint's URL query (a token) never reaches errors, whatever fails.
func TestDeliverErrorsHideURL(t *testing.T) {
	r := webhooktest.New(t, webhooktest.Options{})
	r.FailNext(1, webhooktest.Failure{Drop: true})
	r.FailNext(1, webhooktest.Failure{Status: 500})
	cfg := webhook.Config{
		Endpoints:  map[string]webhook.Endpoint{webhook.PlatformApp: {URL: r.URL() + "?token=s3cr3t-token", Secret: r.Secret()}},
		HTTPClient: r.Client(),
	}
	s, err := webhook.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		_, err := s.Deliver(t.Context(), webhook.PlatformApp, "msg_x", change())
		if err == nil {
			t.Fatalf("attempt %d succeeded, want an error", i)
		}
		if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "token") {
			t.Errorf("attempt %d: error quotes the URL's token: %v", i, err)
		}
	}
	if _, err := s.Deliver(t.Context(), webhook.PlatformApp, "msg_x", change()); err != nil {
		t.Fatalf("third attempt: %v", err)
	}
	if n := len(r.Deliveries()); n != 1 {
		t.Errorf("receiver accepted %d webhooks, want 1", n)
	}
}

// The receiver refuses a webhook signed with another secret with 401,
// which the sender reports as Misconfigured.
func TestDeliverWrongSecret(t *testing.T) {
	r := webhooktest.New(t, webhooktest.Options{})
	s, err := webhook.New(webhook.Config{
		Endpoints:  map[string]webhook.Endpoint{webhook.PlatformEBoks: {URL: r.URL(), Secret: key32}},
		HTTPClient: r.Client(),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := change()
	sc.Platform = webhook.PlatformMitDK
	_, err = s.Deliver(t.Context(), webhook.PlatformEBoks, "msg_w", sc)
	if k := channels.KindOf(err); k != channels.Misconfigured || channels.CodeOf(err) != "http_401" {
		t.Fatalf("Deliver = %v (%v), want misconfigured 401", err, k)
	}
	snap := r.Snapshot()
	if snap.Rejected != 1 || len(snap.Deliveries) != 0 {
		t.Errorf("receiver rejected %d and accepted %d, want 1 and 0", snap.Rejected, len(snap.Deliveries))
	}
	if len(snap.Attempts) != 1 || !errors.Is(snap.Attempts[0].Err, signature.ErrBadSignature) {
		t.Errorf("attempts = %+v, want one refused with ErrBadSignature", snap.Attempts)
	}
}

// Deliver refuses what it must not send without contacting anyone.
func TestDeliverRefuses(t *testing.T) {
	r := webhooktest.New(t, webhooktest.Options{})
	s := newSender(t, 0, map[string]*webhooktest.Receiver{webhook.PlatformMitDK: r})
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		platform string
		id       string
		edit     func(*webhook.StateChange)
		kind     channels.Kind
		code     string
	}{
		{name: "unknown platform", platform: webhook.PlatformEBoks, id: "msg_1", kind: channels.Misconfigured, code: "unknown platform"},
		{name: "empty id", platform: webhook.PlatformMitDK, id: "", kind: channels.Permanent, code: "invalid id"},
		{name: "id with a dot", platform: webhook.PlatformMitDK, id: "msg.1", kind: channels.Permanent, code: "invalid id"},
		{name: "id with a space", platform: webhook.PlatformMitDK, id: "msg 1", kind: channels.Permanent, code: "invalid id"},
		{name: "no message id", platform: webhook.PlatformMitDK, id: "msg_1", edit: func(sc *webhook.StateChange) { sc.MessageID = "" },
			kind: channels.Permanent, code: "invalid state change"},
		{name: "back to its own platform", platform: webhook.PlatformMitDK, id: "msg_1", edit: func(sc *webhook.StateChange) { sc.Platform = webhook.PlatformMitDK },
			kind: channels.Permanent, code: "same platform"},
		{name: "cancelled context", ctx: cancelled, platform: webhook.PlatformMitDK, id: "msg_1", kind: channels.Transient, code: "canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			sc := change()
			if tt.edit != nil {
				tt.edit(&sc)
			}
			_, err := s.Deliver(ctx, tt.platform, tt.id, sc)
			if k, c := channels.KindOf(err), channels.CodeOf(err); err == nil || k != tt.kind || c != tt.code {
				t.Fatalf("Deliver = %v (%v, %q), want %v %q", err, k, c, tt.kind, tt.code)
			}
		})
	}
	if n := r.Snapshot().Requests; n != 0 {
		t.Errorf("receiver got %d requests, want 0", n)
	}
}

// A retry of the same change carries the same webhook-id: the receiver
// sees the failed attempt and the retry under one id, and a second
// successful delivery as a duplicate.
func TestDeliverRetryKeepsID(t *testing.T) {
	r := webhooktest.New(t, webhooktest.Options{})
	s := newSender(t, 0, map[string]*webhooktest.Receiver{webhook.PlatformApp: r})
	r.SetDown(true)
	if _, err := s.Deliver(t.Context(), webhook.PlatformApp, "msg_retry", change()); channels.KindOf(err) != channels.Transient {
		t.Fatalf("Deliver while down = %v, want transient", err)
	}
	r.SetDown(false)
	for i := range 2 {
		if _, err := s.Deliver(t.Context(), webhook.PlatformApp, "msg_retry", change()); err != nil {
			t.Fatalf("Deliver %d: %v", i, err)
		}
	}
	snap := r.Snapshot()
	var got []webhooktest.Attempt
	for _, a := range snap.Attempts {
		got = append(got, webhooktest.Attempt{ID: a.ID, Status: a.Status})
	}
	want := []webhooktest.Attempt{{ID: "msg_retry", Status: 503}, {ID: "msg_retry", Status: 204}, {ID: "msg_retry", Status: 204}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attempts (-want +got):\n%s", diff)
	}
	if snap.Duplicates != 1 || !snap.Deliveries[1].Duplicate || snap.Deliveries[0].Duplicate {
		t.Errorf("duplicates = %d, deliveries %+v; want the second marked", snap.Duplicates, snap.Deliveries)
	}
}

// One change fans out to the other platforms, concurrently.
func TestDeliverFanOut(t *testing.T) {
	receivers := map[string]*webhooktest.Receiver{}
	var eps = webhook.Config{Endpoints: map[string]webhook.Endpoint{}}
	for _, p := range webhook.Platforms() {
		r := webhooktest.New(t, webhooktest.Options{Secrets: [][]byte{[]byte(p + "-secret-0123456789abcdefghij")}})
		receivers[p] = r
		eps.Endpoints[p] = r.Endpoint()
	}
	s, err := webhook.New(eps, nil) // its own client: the receivers are plain http
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if diff := cmp.Diff(webhook.Platforms(), s.Platforms()); diff != "" {
		t.Errorf("Platforms (-want +got):\n%s", diff)
	}
	sc := change() // made on e-boks
	targets := s.Targets(sc.Platform)
	if diff := cmp.Diff([]string{"borger.dk", "digital-post-app", "mit.dk"}, targets); diff != "" {
		t.Fatalf("Targets (-want +got):\n%s", diff)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(targets))
	for i, p := range targets {
		wg.Go(func() { _, errs[i] = s.Deliver(t.Context(), p, "msg_fan", sc) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	for p, r := range receivers {
		want := 1
		if p == sc.Platform {
			want = 0
		}
		if n := len(r.Deliveries()); n != want {
			t.Errorf("%s accepted %d webhooks, want %d", p, n, want)
		}
	}
}

// The receiver counts a version lower than one it accepted as stale, and
// keeps the highest version per message, under concurrent deliveries.
func TestReceiverStaleCounting(t *testing.T) {
	r := webhooktest.New(t, webhooktest.Options{})
	s := newSender(t, 0, map[string]*webhooktest.Receiver{webhook.PlatformBorgerDK: r})
	deliver := func(msg string, version int64, read bool) {
		t.Helper()
		sc := change()
		sc.MessageID, sc.Version, sc.Read = msg, version, read
		if _, err := s.Deliver(t.Context(), webhook.PlatformBorgerDK, fmt.Sprintf("%s_v%d", msg, version), sc); err != nil {
			t.Fatalf("Deliver %s v%d: %v", msg, version, err)
		}
	}
	deliver("a", 1, true)
	deliver("a", 3, false)
	deliver("a", 2, true) // stale
	deliver("a", 3, false)
	deliver("b", 5, true)
	deliver("b", 1, false) // stale
	snap := r.Snapshot()
	if snap.Stale != 2 {
		t.Errorf("stale = %d, want 2", snap.Stale)
	}
	if diff := cmp.Diff(map[string]int64{"a": 3, "b": 5}, snap.Versions); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	var stale []bool
	for _, d := range snap.Deliveries {
		stale = append(stale, d.Stale)
	}
	if diff := cmp.Diff([]bool{false, false, true, false, false, true}, stale); diff != "" {
		t.Errorf("stale marks (-want +got):\n%s", diff)
	}
	if snap.Duplicates != 1 {
		t.Errorf("duplicates = %d, want 1 (a v3 twice)", snap.Duplicates)
	}

	// Concurrent deliveries of versions 1..n of one message: whatever the
	// order, the highest wins and stale ones are counted.
	const n = 20
	var wg sync.WaitGroup
	for v := 1; v <= n; v++ {
		wg.Go(func() {
			sc := change()
			sc.MessageID, sc.Version = "c", int64(v)
			if _, err := s.Deliver(t.Context(), webhook.PlatformBorgerDK, fmt.Sprintf("c_v%d", v), sc); err != nil {
				t.Errorf("Deliver c v%d: %v", v, err)
			}
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	snap, err := r.WaitFor(ctx, func(s webhooktest.Snapshot) bool { return len(s.Deliveries) == 6+n })
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if v := snap.Versions["c"]; v != n {
		t.Errorf("highest version of c = %d, want %d", v, n)
	}
	// Count the stale ones from the order the receiver saw.
	var high int64
	wantStale := 2
	for _, d := range snap.Deliveries[6:] {
		if d.Change.Version < high {
			wantStale++
		} else {
			high = d.Change.Version
		}
	}
	if snap.Stale != wantStale {
		t.Errorf("stale = %d, want %d", snap.Stale, wantStale)
	}
}
