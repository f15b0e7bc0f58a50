package paper_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/channeltest"
	"github.com/digitalpost/postbud/channels/paper"
	"github.com/digitalpost/postbud/channels/paper/papertest"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const token = "papertest-secret-token"

// address is a fictional postal address; its lines must never show in an
// error or a log.
const address = "Jens Hansen\nÅboulevarden 12, 2. th.\n8000 Aarhus C"

var addressLines = strings.Split(address, "\n")

var fixedNow = time.Date(2025, 3, 14, 9, 26, 53, 0, time.FixedZone("CET", 3600))

func to() channels.Address {
	return channels.Address{Channel: channels.Paper, Value: address}
}

// logBuffer is a concurrency-safe sink for a JSON slog handler.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newLogger returns a debug-level JSON logger and, registered on t, a check
// that nothing it logged holds a line of the address.
func newLogger(t *testing.T) *slog.Logger {
	t.Helper()
	buf := &logBuffer{}
	t.Cleanup(func() {
		logs := buf.String()
		for _, line := range addressLines {
			if strings.Contains(logs, line) {
				t.Errorf("logs hold the address line %q:\n%s", line, logs)
			}
		}
	})
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// assertNoAddress fails t when err's text holds any line of the address.
func assertNoAddress(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, line := range addressLines {
		if strings.Contains(err.Error(), line) {
			t.Errorf("error %q holds the address line %q", err, line)
		}
	}
}

func newURLSender(t *testing.T, fake *papertest.Server, mod func(*paper.Config)) *paper.Sender {
	t.Helper()
	cfg := paper.Config{URL: fake.URL(), Token: token, HTTPClient: fake.Client(), NowFunc: func() time.Time { return fixedNow }}
	if mod != nil {
		mod(&cfg)
	}
	s, err := paper.New(cfg, newLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformanceURL(t *testing.T) {
	channeltest.Run(t, func(t *testing.T) *channeltest.Harness {
		fake := papertest.New(t, token)
		s := newURLSender(t, fake, nil)
		fail := func(status int, retryAfter string) func() {
			return func() { fake.FailNext(1, status, retryAfter) }
		}
		return &channeltest.Harness{
			Sender:    s,
			To:        to(),
			Delivered: fake.Payloads,
			Stall:     fake.Stall,
			Failures: []channeltest.Failure{
				{Name: "401 unauthorized", Want: channels.Misconfigured, Arm: fail(401, "")},
				{Name: "rotated token", Want: channels.Misconfigured, Arm: func() { fake.SetToken("rotated") }},
				{Name: "403 forbidden", Want: channels.Misconfigured, Arm: fail(403, "")},
				{Name: "302 redirect not followed", Want: channels.Misconfigured, Arm: fail(302, "")},
				{Name: "429 Retry-After 3", Want: channels.Throttled, RetryAfter: 3 * time.Second, Arm: fail(429, "3")},
				{Name: "429 Retry-After date", Want: channels.Throttled, RetryAfter: 40 * time.Second,
					Arm: fail(429, fixedNow.Add(40*time.Second).UTC().Format(http.TimeFormat))},
				{Name: "429 without Retry-After", Want: channels.Throttled, RetryAfter: paper.DefaultRetryAfter, Arm: fail(429, "")},
				{Name: "500 internal error", Want: channels.Transient, Arm: fail(500, "")},
				{Name: "503 unavailable", Want: channels.Transient, Arm: fail(503, "")},
				{Name: "400 bad request", Want: channels.Permanent, Arm: fail(400, "")},
				{Name: "413 too large", Want: channels.Permanent, Arm: fail(413, "")},
				{Name: "422 unprocessable", Want: channels.Permanent, Arm: fail(422, "")},
			},
		}
	})
}

func TestURLRequest(t *testing.T) {
	fake := papertest.New(t, token)
	s := newURLSender(t, fake, nil)
	a := channeltest.Alert()
	rc, err := s.Send(t.Context(), to(), a)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if rc.ProviderID != "pj-1" {
		t.Errorf("ProviderID = %q, want the provider's id pj-1", rc.ProviderID)
	}
	got := fake.Accepted()
	if len(got) != 1 {
		t.Fatalf("fake accepted %d jobs, want 1", len(got))
	}
	if got[0].IdempotencyKey != a.DeliveryID {
		t.Errorf("Idempotency-Key = %q, want %q", got[0].IdempotencyKey, a.DeliveryID)
	}
	if got[0].Authorization != "Bearer "+token {
		t.Errorf("Authorization = %q, want the bearer token", got[0].Authorization)
	}
	want := paper.Job{
		JobID:     a.DeliveryID,
		MessageID: a.MessageID,
		Sender:    "Skattestyrelsen",
		Address:   address,
		Language:  "da",
		CreatedAt: fixedNow.UTC(),
	}
	if diff := cmp.Diff(want, got[0].Job); diff != "" {
		t.Errorf("job (-want +got):\n%s", diff)
	}
}

func TestURLNoToken(t *testing.T) {
	fake := papertest.New(t, "")
	s := newURLSender(t, fake, func(c *paper.Config) { c.Token = "" })
	if _, err := s.Send(t.Context(), to(), channeltest.Alert()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := fake.Accepted(); len(got) != 1 || got[0].Authorization != "" {
		t.Errorf("accepted = %+v, want one job without Authorization", got)
	}
}

// A retry of the same delivery is one job at the provider: the repeat is
// answered 409 and counts as a success.
func TestURLRetryIsOneJob(t *testing.T) {
	fake := papertest.New(t, token)
	s := newURLSender(t, fake, nil)
	fake.FailNext(1, http.StatusInternalServerError, "")
	a := channeltest.Alert()

	_, err := s.Send(t.Context(), to(), a)
	if k := channels.KindOf(err); err == nil || k != channels.Transient {
		t.Fatalf("first Send err = %v (%s), want transient", err, k)
	}
	var ids []string
	for range 3 {
		rc, err := s.Send(t.Context(), to(), a)
		if err != nil {
			t.Fatalf("retry Send: %v", err)
		}
		ids = append(ids, rc.ProviderID)
	}
	if diff := cmp.Diff([]string{"pj-1", "pj-1", "pj-1"}, ids); diff != "" {
		t.Errorf("provider ids (-want +got):\n%s", diff)
	}
	if n := len(fake.Jobs()); n != 1 {
		t.Errorf("fake holds %d jobs, want 1", n)
	}
	if n := fake.Requests(); n != 4 {
		t.Errorf("fake saw %d requests, want 4", n)
	}
}

// Without an id in the provider's answer, the receipt names the job.
func TestURLProviderIDFallback(t *testing.T) {
	for _, status := range []int{http.StatusAccepted, http.StatusConflict} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			fake := papertest.New(t, token)
			s := newURLSender(t, fake, nil)
			fake.FailNext(1, status, "")
			a := channeltest.Alert()
			rc, err := s.Send(t.Context(), to(), a)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if rc.ProviderID != a.DeliveryID {
				t.Errorf("ProviderID = %q, want the job id %q", rc.ProviderID, a.DeliveryID)
			}
		})
	}
}

// Timeout bounds one POST even when the caller's context has no deadline.
func TestURLTimeout(t *testing.T) {
	fake := papertest.New(t, token)
	s := newURLSender(t, fake, func(c *paper.Config) { c.Timeout = 100 * time.Millisecond })
	fake.Stall()
	_, err := s.Send(t.Context(), to(), channeltest.Alert())
	if err == nil {
		t.Fatal("Send to a stalled provider succeeded")
	}
	if k, code := channels.KindOf(err), channels.CodeOf(err); k != channels.Transient || code != "timeout" {
		t.Errorf("err = %v: kind %s code %q, want transient timeout", err, k, code)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
	}
}

func TestURLUnreachable(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL + papertest.Path
	dead.Close()
	s, err := paper.New(paper.Config{URL: deadURL}, newLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	_, err = s.Send(t.Context(), to(), channeltest.Alert())
	if k, code := channels.KindOf(err), channels.CodeOf(err); err == nil || k != channels.Transient || code != "network" {
		t.Errorf("Send err = %v: kind %s code %q, want transient network", err, k, code)
	}
	if err := s.Ping(t.Context()); err == nil || channels.KindOf(err) != channels.Transient {
		t.Errorf("Ping err = %v, want transient", err)
	}
}

func TestURLPing(t *testing.T) {
	fake := papertest.New(t, token)
	s := newURLSender(t, fake, nil)
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	fake.SetToken("rotated")
	if err := s.Ping(t.Context()); err == nil || channels.KindOf(err) != channels.Misconfigured {
		t.Errorf("Ping with a refused token = %v, want misconfigured", err)
	}
	if n := len(fake.Jobs()); n != 0 {
		t.Errorf("Ping made %d jobs", n)
	}
}

func TestRetryAfter(t *testing.T) {
	now := fixedNow
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", paper.DefaultRetryAfter},
		{"3", 3 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"0", paper.DefaultRetryAfter},
		{"-4", paper.DefaultRetryAfter},
		{"soon", paper.DefaultRetryAfter},
		{now.Add(90 * time.Second).UTC().Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).UTC().Format(http.TimeFormat), paper.DefaultRetryAfter},
	}
	for _, tt := range tests {
		if got := paper.RetryAfter(tt.header, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

// A job that cannot be printed is refused before anything is sent or
// written, and the error does not quote the address.
func TestInvalidJob(t *testing.T) {
	tests := []struct {
		name  string
		addr  string
		alert func(*channels.Alert)
		code  string
	}{
		{name: "empty address", addr: "", code: "empty_address"},
		{name: "blank address", addr: " \n\t ", code: "empty_address"},
		{name: "address too long", addr: address + strings.Repeat("x", paper.MaxAddressLen), code: "address_too_long"},
		{name: "control character", addr: address + "\x00", code: "invalid_address"},
		{name: "invalid UTF-8", addr: address + "\xff", code: "invalid_address"},
		{name: "no message id", addr: address, alert: func(a *channels.Alert) { a.MessageID = "" }, code: "empty_message_id"},
		{name: "no delivery id", addr: address, alert: func(a *channels.Alert) { a.DeliveryID = "" }, code: "invalid_job_id"},
		{name: "path in delivery id", addr: address, alert: func(a *channels.Alert) { a.DeliveryID = "../../etc/cron.d/x" }, code: "invalid_job_id"},
		{name: "hidden delivery id", addr: address, alert: func(a *channels.Alert) { a.DeliveryID = ".d7c4" }, code: "invalid_job_id"},
		{name: "coalesced alert", addr: address, alert: func(a *channels.Alert) { a.Count = 2 }, code: "coalesced"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := papertest.New(t, token)
			url := newURLSender(t, fake, nil)
			dir := t.TempDir()
			spool := newSpoolSender(t, dir, nil)
			a := channeltest.Alert()
			if tt.alert != nil {
				tt.alert(&a)
			}
			addr := channels.Address{Channel: channels.Paper, Value: tt.addr}
			for mode, s := range map[string]*paper.Sender{"url": url, "spool": spool} {
				_, err := s.Send(t.Context(), addr, a)
				if k := channels.KindOf(err); err == nil || k != channels.Permanent {
					t.Errorf("%s: Send err = %v (%s), want permanent", mode, err, k)
				}
				if code := channels.CodeOf(err); code != tt.code {
					t.Errorf("%s: code = %q, want %q", mode, code, tt.code)
				}
				assertNoAddress(t, err)
			}
			if n := fake.Requests(); n != 0 {
				t.Errorf("fake saw %d requests", n)
			}
			if names := dirNames(t, dir); len(names) != 0 {
				t.Errorf("spool holds %q", names)
			}
		})
	}
}

// No error the channel can return quotes the address, whatever failed.
func TestErrorsHoldNoAddress(t *testing.T) {
	statuses := []int{301, 400, 401, 403, 404, 409, 413, 422, 429, 500, 502, 503}
	for _, status := range statuses {
		fake := papertest.New(t, token)
		s := newURLSender(t, fake, nil)
		fake.FailNext(1, status, "")
		_, err := s.Send(t.Context(), to(), channeltest.Alert())
		if status != 409 && err == nil {
			t.Errorf("status %d: Send succeeded", status)
		}
		assertNoAddress(t, err)
	}

	// The file system errors: not a directory, and cancelled.
	dir := filepath.Join(t.TempDir(), "spool")
	s := newSpoolSender(t, dir, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Send(ctx, to(), channeltest.Alert())
	if err == nil {
		t.Error("cancelled Send succeeded")
	}
	assertNoAddress(t, err)
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = s.Send(t.Context(), to(), channeltest.Alert())
	if err == nil {
		t.Error("Send into a file succeeded")
	}
	assertNoAddress(t, err)
}

func TestConfigValidate(t *testing.T) {
	abs := filepath.Join(t.TempDir(), "spool")
	tests := []struct {
		name string
		cfg  paper.Config
		want []string // each a substring of one error; nil for valid
	}{
		{name: "spool", cfg: paper.Config{SpoolDir: abs}},
		{name: "url", cfg: paper.Config{URL: "http://127.0.0.1:8080/v1/print-jobs"}},
		{name: "https with token and timeout", cfg: paper.Config{URL: "https://print.example/jobs", Token: "t0k", Timeout: time.Second}},
		{name: "both", cfg: paper.Config{SpoolDir: abs, URL: "https://print.example/jobs"},
			want: []string{"SpoolDir and URL are both set"}},
		{name: "neither", cfg: paper.Config{}, want: []string{"neither SpoolDir nor URL"}},
		{name: "relative spool", cfg: paper.Config{SpoolDir: "var/spool/paper"}, want: []string{"SpoolDir \"var/spool/paper\" is not an absolute path"}},
		{name: "ftp url", cfg: paper.Config{URL: "ftp://print.example/jobs"}, want: []string{"URL is not an absolute http or https URL"}},
		{name: "url without host", cfg: paper.Config{URL: "http:///jobs"}, want: []string{"URL is not an absolute http or https URL"}},
		{name: "relative url", cfg: paper.Config{URL: "/jobs"}, want: []string{"URL is not an absolute http or https URL"}},
		{name: "unparsable url", cfg: paper.Config{URL: "http://[::1"}, want: []string{"URL is not an absolute http or https URL"}},
		{name: "token without url", cfg: paper.Config{SpoolDir: abs, Token: "t0k"}, want: []string{"Token is set but only used with URL"}},
		{name: "token with newline", cfg: paper.Config{URL: "https://print.example/jobs", Token: "t0k\nX-Evil: 1"},
			want: []string{"Token holds spaces or control characters"}},
		{name: "negative timeout", cfg: paper.Config{URL: "https://print.example/jobs", Timeout: -time.Second}, want: []string{"Timeout -1s is negative"}},
		{name: "every problem at once", cfg: paper.Config{SpoolDir: "spool", Token: "a b", Timeout: -1},
			want: []string{"SpoolDir \"spool\" is not an absolute path", "Token is set but only used with URL", "Token holds spaces", "Timeout -1ns is negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Errorf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, want it to say %q", err, w)
				}
			}
			if got, want := strings.Count(err.Error(), "\n")+1, len(tt.want); got != want {
				t.Errorf("Validate reported %d problems, want %d: %q", got, want, err)
			}
			if _, nerr := paper.New(tt.cfg, nil); nerr == nil {
				t.Errorf("New accepted an invalid config")
			}
		})
	}
}

func TestJobLogValueRedacts(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("job", "job", paper.Job{JobID: "j1", MessageID: "m1", Address: address})
	if strings.Contains(buf.String(), addressLines[1]) || !strings.Contains(buf.String(), `"job_id":"j1"`) {
		t.Errorf("logged job = %s, want ids and no address", buf.String())
	}
}

func TestURLConcurrent(t *testing.T) {
	fake := papertest.New(t, token)
	s := newURLSender(t, fake, nil)
	const n = 16
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.Send(t.Context(), to(), alertN(i))
			errs <- err
		}()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	jobs, err := fake.WaitJobs(ctx, n)
	if err != nil {
		t.Fatalf("WaitJobs: %v", err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Send: %v", err)
		}
	}
	got := map[string]bool{}
	for _, j := range jobs {
		got[j.JobID] = true
	}
	want := map[string]bool{}
	for i := range n {
		want[alertN(i).DeliveryID] = true
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("accepted job ids (-want +got):\n%s", diff)
	}

	// Waiting for more than will come ends with the context.
	short, cancelShort := context.WithCancel(t.Context())
	cancelShort()
	if _, err := fake.WaitJobs(short, n+1); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitJobs for %d jobs = %v, want context.Canceled", n+1, err)
	}
}
