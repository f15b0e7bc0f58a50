package apns_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/apns"
	"github.com/digitalpost/postbud/channels/apns/apnstest"
	"github.com/digitalpost/postbud/channels/channeltest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// deviceToken is a well-formed APNs device token (hex).
const deviceToken = "7a3f5c9e1b2d4f6a8c0e2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c5e7b9d2f4a"

var apps = map[string]apns.App{
	"digital-post-app": {Topic: "dk.digitaliser.digitalpost"},
	"e-boks":           {Topic: "dk.e-boks.app"},
	"mit.dk":           {Topic: "dk.mitdk.app"},
}

// syncBuffer is an io.Writer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// config points an adapter at f for both environments.
func config(f *apnstest.Server) apns.Config {
	return apns.Config{
		Key:           f.KeyPEM(),
		KeyID:         f.KeyID(),
		TeamID:        f.TeamID(),
		Apps:          apps,
		ProductionURL: f.URL(),
		SandboxURL:    f.URL(),
		TLSConfig:     f.TLSConfig(),
	}
}

func newSender(t *testing.T, cfg apns.Config, logs *syncBuffer) *apns.Sender {
	t.Helper()
	var logger *slog.Logger
	if logs != nil {
		logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := apns.New(cfg, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func address(app, env string) channels.Address {
	return channels.Address{Channel: channels.APNs, Value: deviceToken, App: app, Environment: env}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// failures lists every failure the fake can produce, with the kind and
// code the adapter must report.
func failures(f *apnstest.Server) []struct {
	channeltest.Failure
	Code string
} {
	next := func(status int, reason string, retryAfter time.Duration) func() {
		return func() { f.FailNext(1, apnstest.Failure{Status: status, Reason: reason, RetryAfter: retryAfter}) }
	}
	type failure = struct {
		channeltest.Failure
		Code string
	}
	return []failure{
		{channeltest.Failure{Name: "410 Unregistered", Want: channels.Gone,
			Arm: func() { f.Unregister(deviceToken, time.Now().Add(-time.Hour)) }}, "http_410 Unregistered"},
		{channeltest.Failure{Name: "410 ExpiredToken", Want: channels.Gone, Arm: next(410, "ExpiredToken", 0)}, "http_410 ExpiredToken"},
		{channeltest.Failure{Name: "400 BadDeviceToken", Want: channels.Gone, Arm: next(400, "BadDeviceToken", 0)}, "http_400 BadDeviceToken"},
		{channeltest.Failure{Name: "400 DeviceTokenNotForTopic", Want: channels.Gone, Arm: next(400, "DeviceTokenNotForTopic", 0)}, "http_400 DeviceTokenNotForTopic"},
		{channeltest.Failure{Name: "403 InvalidProviderToken", Want: channels.Misconfigured, Arm: next(403, "InvalidProviderToken", 0)}, "http_403 InvalidProviderToken"},
		{channeltest.Failure{Name: "403 ExpiredProviderToken", Want: channels.Misconfigured, Arm: next(403, "ExpiredProviderToken", 0)}, "http_403 ExpiredProviderToken"},
		{channeltest.Failure{Name: "403 MissingProviderToken", Want: channels.Misconfigured, Arm: next(403, "MissingProviderToken", 0)}, "http_403 MissingProviderToken"},
		{channeltest.Failure{Name: "429 TooManyRequests with Retry-After", Want: channels.Throttled, RetryAfter: 30 * time.Second,
			Arm: next(429, "TooManyRequests", 30*time.Second)}, "http_429 TooManyRequests"},
		{channeltest.Failure{Name: "429 TooManyProviderTokenUpdates without Retry-After", Want: channels.Throttled, RetryAfter: apns.DefaultRetryAfter,
			Arm: next(429, "TooManyProviderTokenUpdates", 0)}, "http_429 TooManyProviderTokenUpdates"},
		{channeltest.Failure{Name: "413 PayloadTooLarge", Want: channels.Permanent, Arm: next(413, "PayloadTooLarge", 0)}, "http_413 PayloadTooLarge"},
		{channeltest.Failure{Name: "400 BadCollapseId", Want: channels.Permanent, Arm: next(400, "BadCollapseId", 0)}, "http_400 BadCollapseId"},
		{channeltest.Failure{Name: "400 BadExpirationDate", Want: channels.Permanent, Arm: next(400, "BadExpirationDate", 0)}, "http_400 BadExpirationDate"},
		{channeltest.Failure{Name: "500 InternalServerError", Want: channels.Transient, Arm: next(500, "InternalServerError", 0)}, "http_500 InternalServerError"},
		{channeltest.Failure{Name: "503 ServiceUnavailable", Want: channels.Transient, Arm: next(503, "ServiceUnavailable", 0)}, "http_503 ServiceUnavailable"},
		{channeltest.Failure{Name: "503 Shutdown", Want: channels.Transient, Arm: next(503, "Shutdown", 0)}, "http_503 Shutdown"},
		{channeltest.Failure{Name: "502 non-JSON body", Want: channels.Transient,
			Arm: func() {
				f.FailNext(1, apnstest.Failure{Status: 502, Body: "<html><body>502 Bad Gateway</body></html>"})
			}}, "502 unreadable response"},
	}
}

func TestConformance(t *testing.T) {
	channeltest.Run(t, func(t *testing.T) *channeltest.Harness {
		f := apnstest.New(t, apnstest.Options{})
		h := &channeltest.Harness{
			Sender:    newSender(t, config(f), nil),
			To:        address("e-boks", "production"),
			Delivered: f.Delivered,
			Stall:     f.Stall,
		}
		for _, fl := range failures(f) {
			h.Failures = append(h.Failures, fl.Failure)
		}
		return h
	})
}

// TestFailureCodes checks the code of each failure, and that neither the
// error nor the log holds the device token.
func TestFailureCodes(t *testing.T) {
	f := apnstest.New(t, apnstest.Options{})
	for _, fl := range failures(f) {
		t.Run(fl.Name, func(t *testing.T) {
			g := apnstest.New(t, apnstest.Options{})
			var logs syncBuffer
			s := newSender(t, config(g), &logs)
			for _, gl := range failures(g) {
				if gl.Name == fl.Name {
					gl.Arm()
				}
			}
			_, err := s.Send(testContext(t), address("mit.dk", "production"), channeltest.Alert())
			if got := channels.CodeOf(err); got != fl.Code {
				t.Errorf("CodeOf(%v) = %q, want %q", err, got, fl.Code)
			}
			if k := channels.KindOf(err); k != fl.Want {
				t.Errorf("KindOf(%v) = %s, want %s", err, k, fl.Want)
			}
			if err != nil && strings.Contains(err.Error(), deviceToken) {
				t.Errorf("error holds the device token: %v", err)
			}
			if strings.Contains(logs.String(), deviceToken) {
				t.Errorf("log holds the device token: %s", logs.String())
			}
			if !strings.Contains(logs.String(), fl.Code) {
				t.Errorf("log does not name the code %q: %s", fl.Code, logs.String())
			}
		})
	}
}

func TestNetworkErrorHoldsNoToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	f := apnstest.New(t, apnstest.Options{})
	cfg := config(f)
	cfg.ProductionURL = "https://" + addr
	s := newSender(t, cfg, nil)
	_, err = s.Send(testContext(t), address("e-boks", "production"), channeltest.Alert())
	if err == nil {
		t.Fatal("Send to a closed port succeeded")
	}
	if k, code := channels.KindOf(err), channels.CodeOf(err); k != channels.Transient || code != "network" {
		t.Errorf("KindOf, CodeOf = %s, %q; want transient, \"network\" (err %v)", k, code, err)
	}
	if strings.Contains(err.Error(), deviceToken) {
		t.Errorf("error holds the device token: %v", err)
	}
	if err := s.Ping(testContext(t)); channels.KindOf(err) != channels.Transient || err == nil {
		t.Errorf("Ping to a closed port = %v, want a transient error", err)
	}
}

func TestTimeout(t *testing.T) {
	f := apnstest.New(t, apnstest.Options{})
	f.Stall()
	cfg := config(f)
	cfg.Timeout = 200 * time.Millisecond
	s := newSender(t, cfg, nil)
	start := time.Now()
	_, err := s.Send(context.Background(), address("e-boks", "production"), channeltest.Alert())
	if k, code := channels.KindOf(err), channels.CodeOf(err); k != channels.Transient || code != "timeout" {
		t.Errorf("KindOf, CodeOf = %s, %q; want transient, \"timeout\" (err %v)", k, code, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %v with a 200ms Timeout", d)
	}
}

// TestOneConnection sends many alerts at once through one Sender and checks
// they share one HTTP/2 connection.
func TestOneConnection(t *testing.T) {
	f := apnstest.New(t, apnstest.Options{})
	s := newSender(t, config(f), nil)
	const n = 64
	ctx := testContext(t)
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a := channeltest.Alert()
			a.MessageID = fmt.Sprintf("msg-%02d", i)
			rc, err := s.Send(ctx, address("digital-post-app", "production"), a)
			ids[i], errs[i] = rc.ProviderID, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Send: %v", err)
	}
	notes, err := f.WaitNotifications(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != n {
		t.Errorf("fake accepted %d notifications, want %d", len(notes), n)
	}
	if c := f.Conns(); c != 1 {
		t.Errorf("fake saw %d connections, want 1", c)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || seen[id] {
			t.Errorf("ProviderID %q is empty or repeated", id)
		}
		seen[id] = true
	}
}

// ignoreRaw leaves out what the header tests do not compare.
var ignoreRaw = cmpopts.IgnoreFields(apnstest.Notification{}, "Body", "ApnsID")

func intPtr(i int) *int { return &i }

func TestNotification(t *testing.T) {
	expires := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	visible := func(badge *int) apnstest.Payload {
		return apnstest.Payload{
			APS: apnstest.APS{
				Alert:    &apnstest.Alert{Title: "Ny Digital Post", Body: "Du har modtaget ny Digital Post fra Skattestyrelsen."},
				Badge:    badge,
				Sound:    "default",
				ThreadID: apns.ThreadID,
			},
			MessageID: channeltest.Alert().MessageID,
		}
	}
	tests := []struct {
		name  string
		alter func(*channels.Alert)
		want  apnstest.Notification
	}{
		{
			name:  "visible alert with badge",
			alter: func(a *channels.Alert) {},
			want: apnstest.Notification{
				Token: deviceToken, Topic: "dk.e-boks.app", CollapseID: channeltest.Alert().MessageID,
				PushType: "alert", Priority: "10", Expiration: strconv.FormatInt(expires.Unix(), 10),
				Payload: visible(intPtr(3)),
			},
		},
		{
			name:  "badge zero clears the badge",
			alter: func(a *channels.Alert) { a.Badge = 0 },
			want: apnstest.Notification{
				Token: deviceToken, Topic: "dk.e-boks.app", CollapseID: channeltest.Alert().MessageID,
				PushType: "alert", Priority: "10", Expiration: strconv.FormatInt(expires.Unix(), 10),
				Payload: visible(intPtr(0)),
			},
		},
		{
			name:  "badge -1 leaves the badge alone",
			alter: func(a *channels.Alert) { a.Badge = -1 },
			want: apnstest.Notification{
				Token: deviceToken, Topic: "dk.e-boks.app", CollapseID: channeltest.Alert().MessageID,
				PushType: "alert", Priority: "10", Expiration: strconv.FormatInt(expires.Unix(), 10),
				Payload: visible(nil),
			},
		},
		{
			name:  "silent badge update",
			alter: func(a *channels.Alert) { a.Silent, a.Badge = true, 2 },
			want: apnstest.Notification{
				Token: deviceToken, Topic: "dk.e-boks.app", CollapseID: channeltest.Alert().MessageID,
				PushType: "background", Priority: "5", Expiration: strconv.FormatInt(expires.Unix(), 10),
				Payload: apnstest.Payload{
					APS:       apnstest.APS{ContentAvailable: 1, Badge: intPtr(2)},
					MessageID: channeltest.Alert().MessageID,
				},
			},
		},
		{
			name:  "no expiry sends no apns-expiration",
			alter: func(a *channels.Alert) { a.Expires = time.Time{} },
			want: apnstest.Notification{
				Token: deviceToken, Topic: "dk.e-boks.app", CollapseID: channeltest.Alert().MessageID,
				PushType: "alert", Priority: "10", Payload: visible(intPtr(3)),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := apnstest.New(t, apnstest.Options{})
			s := newSender(t, config(f), nil)
			a := channeltest.Alert()
			a.Expires = expires
			tt.alter(&a)
			rc, err := s.Send(testContext(t), address("e-boks", "production"), a)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := f.Notifications()
			if len(got) != 1 {
				t.Fatalf("fake accepted %d notifications, want 1", len(got))
			}
			if diff := cmp.Diff(tt.want, got[0], ignoreRaw); diff != "" {
				t.Errorf("notification (-want +got):\n%s", diff)
			}
			if rc.ProviderID != got[0].ApnsID {
				t.Errorf("ProviderID = %q, want the apns-id %q", rc.ProviderID, got[0].ApnsID)
			}
			if a.Silent && bytes.Contains(got[0].Body, []byte(`"alert"`)) {
				t.Errorf("silent payload has an alert: %s", got[0].Body)
			}
		})
	}
}

func TestCollapseID(t *testing.T) {
	long := strings.Repeat("x", 100)
	tests := []struct {
		messageID string
		wantLen   int
		same      bool
	}{
		{messageID: "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", wantLen: 36, same: true},
		{messageID: strings.Repeat("y", 64), wantLen: 64, same: true},
		{messageID: long, wantLen: 64},
	}
	f := apnstest.New(t, apnstest.Options{})
	s := newSender(t, config(f), nil)
	for i, tt := range tests {
		a := channeltest.Alert()
		a.MessageID = tt.messageID
		for range 2 {
			if _, err := s.Send(testContext(t), address("mit.dk", "production"), a); err != nil {
				t.Fatalf("Send(%d): %v", i, err)
			}
		}
		notes := f.Notifications()
		first, second := notes[len(notes)-2].CollapseID, notes[len(notes)-1].CollapseID
		if len(first) != tt.wantLen || first != second {
			t.Errorf("collapse ids %q, %q for message id of %d bytes: want twice the same %d bytes",
				first, second, len(tt.messageID), tt.wantLen)
		}
		if tt.same && first != tt.messageID {
			t.Errorf("collapse id %q, want the message id %q", first, tt.messageID)
		}
	}
}

func TestRouting(t *testing.T) {
	prod := apnstest.New(t, apnstest.Options{})
	sandbox := apnstest.New(t, apnstest.Options{KeyPEM: prod.KeyPEM()})
	pool := x509.NewCertPool()
	pool.AddCert(prod.Certificate())
	pool.AddCert(sandbox.Certificate())
	cfg := config(prod)
	cfg.SandboxURL = sandbox.URL()
	cfg.TLSConfig.RootCAs = pool
	s := newSender(t, cfg, nil)

	tests := []struct {
		app, env    string
		wantSandbox bool
		wantTopic   string
	}{
		{"digital-post-app", "production", false, "dk.digitaliser.digitalpost"},
		{"e-boks", "production", false, "dk.e-boks.app"},
		{"mit.dk", "production", false, "dk.mitdk.app"},
		{"digital-post-app", "sandbox", true, "dk.digitaliser.digitalpost"},
		{"e-boks", "sandbox", true, "dk.e-boks.app"},
		{"mit.dk", "sandbox", true, "dk.mitdk.app"},
		{"e-boks", "", false, "dk.e-boks.app"},
		{"e-boks", "development", false, "dk.e-boks.app"},
	}
	for _, tt := range tests {
		t.Run(tt.app+"/"+tt.env, func(t *testing.T) {
			p0, s0 := len(prod.Notifications()), len(sandbox.Notifications())
			if _, err := s.Send(testContext(t), address(tt.app, tt.env), channeltest.Alert()); err != nil {
				t.Fatalf("Send: %v", err)
			}
			hit, other := prod, sandbox
			n0, o0 := p0, s0
			if tt.wantSandbox {
				hit, other, n0, o0 = sandbox, prod, s0, p0
			}
			got := hit.Notifications()
			if len(got) != n0+1 {
				t.Fatalf("wanted fake got %d new notifications, want 1", len(got)-n0)
			}
			if n := len(other.Notifications()); n != o0 {
				t.Errorf("other fake got %d new notifications, want 0", n-o0)
			}
			if topic := got[len(got)-1].Topic; topic != tt.wantTopic {
				t.Errorf("apns-topic = %q, want %q", topic, tt.wantTopic)
			}
		})
	}
	if prod.Conns() != 1 || sandbox.Conns() != 1 {
		t.Errorf("connections: production %d, sandbox %d; want 1 each", prod.Conns(), sandbox.Conns())
	}
}

func TestRefusedBeforeSending(t *testing.T) {
	tests := []struct {
		name     string
		to       channels.Address
		alert    func() channels.Alert
		wantKind channels.Kind
		wantCode string
	}{
		{"unknown app", address("dr.dk", "production"), channeltest.Alert, channels.Permanent, "unknown app"},
		{"empty token", channels.Address{Channel: channels.APNs, App: "e-boks"}, channeltest.Alert, channels.Gone, "BadDeviceToken"},
		{"token with a path", channels.Address{Channel: channels.APNs, Value: "../../x", App: "e-boks"}, channeltest.Alert, channels.Gone, "BadDeviceToken"},
		{"payload over 4 KB", address("e-boks", "production"), func() channels.Alert {
			a := channeltest.Alert()
			a.Senders = []string{strings.Repeat("Styrelsen for Dataforsyning og Infrastruktur ", 100)}
			return a
		}, channels.Permanent, "PayloadTooLarge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := apnstest.New(t, apnstest.Options{})
			s := newSender(t, config(f), nil)
			_, err := s.Send(testContext(t), tt.to, tt.alert())
			if k, code := channels.KindOf(err), channels.CodeOf(err); err == nil || k != tt.wantKind || code != tt.wantCode {
				t.Errorf("Send = %v (kind %s, code %q), want kind %s, code %q", err, k, code, tt.wantKind, tt.wantCode)
			}
			if n := f.Requests(); n != 0 {
				t.Errorf("fake got %d requests, want 0", n)
			}
		})
	}
}

func TestWrongCredentials(t *testing.T) {
	other := apnstest.New(t, apnstest.Options{})
	tests := []struct {
		name  string
		alter func(*apns.Config)
	}{
		{"wrong key id", func(c *apns.Config) { c.KeyID = "WRONGKEY12" }},
		{"wrong team id", func(c *apns.Config) { c.TeamID = "WRONGTEAM1" }},
		{"another key", func(c *apns.Config) { c.Key = other.KeyPEM() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := apnstest.New(t, apnstest.Options{})
			cfg := config(f)
			tt.alter(&cfg)
			s := newSender(t, cfg, nil)
			_, err := s.Send(testContext(t), address("e-boks", "production"), channeltest.Alert())
			if k, code := channels.KindOf(err), channels.CodeOf(err); k != channels.Misconfigured || code != "http_403 InvalidProviderToken" {
				t.Errorf("Send = %v (kind %s, code %q), want misconfigured, 403 InvalidProviderToken", err, k, code)
			}
		})
	}
}

func TestGoneSince(t *testing.T) {
	at := time.UnixMilli(1_735_689_600_123) // APNs sends milliseconds; apns2 keeps seconds
	f := apnstest.New(t, apnstest.Options{})
	s := newSender(t, config(f), nil)
	f.Unregister(deviceToken, at)
	_, err := s.Send(testContext(t), address("e-boks", "production"), channeltest.Alert())
	if k := channels.KindOf(err); k != channels.Gone {
		t.Fatalf("KindOf(%v) = %s, want gone", err, k)
	}
	got, ok := apns.GoneSince(fmt.Errorf("deliver: %w", err))
	if !ok || !got.Equal(at.Truncate(time.Second)) {
		t.Errorf("GoneSince = %v, %v; want %v, true", got, ok, at.Truncate(time.Second))
	}

	f.FailNext(1, apnstest.Failure{Status: 400, Reason: "BadDeviceToken"})
	_, err = s.Send(testContext(t), address("mit.dk", "production"), channeltest.Alert())
	if k := channels.KindOf(err); k != channels.Gone {
		t.Fatalf("KindOf(%v) = %s, want gone", err, k)
	}
	for _, e := range []error{err, nil, errors.New("other"), channels.Fail(channels.Gone, "410", nil)} {
		if got, ok := apns.GoneSince(e); ok {
			t.Errorf("GoneSince(%v) = %v, true; want false", e, got)
		}
	}
}

func TestPing(t *testing.T) {
	f := apnstest.New(t, apnstest.Options{})
	s := newSender(t, config(f), nil)
	if err := s.Ping(testContext(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, err := s.Send(testContext(t), address("e-boks", "production"), channeltest.Alert()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if c := f.Conns(); c != 1 {
		t.Errorf("fake saw %d connections after Ping and Send, want 1 (Ping's connection reused)", c)
	}
	if n := len(f.Notifications()); n != 1 {
		t.Errorf("fake accepted %d notifications, want 1 (Ping pushes nothing)", n)
	}
}

func TestKeyFile(t *testing.T) {
	f := apnstest.New(t, apnstest.Options{})
	cfg := config(f)
	cfg.Key = nil
	cfg.KeyFile = filepath.Join(t.TempDir(), "AuthKey.p8")
	if err := os.WriteFile(cfg.KeyFile, f.KeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSender(t, cfg, nil)
	if _, err := s.Send(testContext(t), address("e-boks", "production"), channeltest.Alert()); err != nil {
		t.Fatalf("Send with KeyFile: %v", err)
	}

	cfg.KeyFile = filepath.Join(t.TempDir(), "missing.p8")
	if _, err := apns.New(cfg, nil); err == nil || !strings.HasPrefix(err.Error(), "apns.key_file: ") {
		t.Errorf("New with a missing key file = %v, want an apns.key_file error", err)
	}
}

// TestGolden compares the payloads on the wire with testdata/*.json.
func TestGolden(t *testing.T) {
	tests := []struct {
		name  string
		alter func(*channels.Alert)
	}{
		{"da", func(a *channels.Alert) {}},
		{"en", func(a *channels.Alert) { a.Language = "en" }},
		{"da-coalesced", func(a *channels.Alert) {
			a.Senders = []string{"Ærø Kommune", "Færdselsstyrelsen", "Sønderborg Kommune"}
			a.Count = 4
		}},
		{"en-coalesced", func(a *channels.Alert) {
			a.Language = "en"
			a.Senders = []string{"Ærø Kommune", "Udbetaling Danmark"}
			a.Count = 2
		}},
		{"da-notification", func(a *channels.Alert) {
			a.Senders = []string{"Region Hovedstaden"}
			a.Notification = "Du har fået en indkaldelse fra Rigshospitalet – se tid & sted i Digital Post."
		}},
		{"silent", func(a *channels.Alert) { a.Silent, a.Badge = true, 0 }},
	}
	f := apnstest.New(t, apnstest.Options{})
	s := newSender(t, config(f), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := channeltest.Alert()
			tt.alter(&a)
			before := len(f.Delivered())
			if _, err := s.Send(testContext(t), address("e-boks", "production"), a); err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := f.Delivered()[before]
			if !json.Valid(got) {
				t.Fatalf("payload is not JSON: %s", got)
			}
			if want, err := apns.Render(a); err != nil || !bytes.Equal(want, got) {
				t.Errorf("Render = %s, %v; the wire carried %s", want, err, got)
			}
			for _, s := range a.Senders {
				if !a.Silent && a.Notification == "" && !bytes.Contains(got, []byte(s)) {
					t.Errorf("payload does not hold %q verbatim: %s", s, got)
				}
			}
			path := filepath.Join("testdata", tt.name+".json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(bytes.TrimSuffix(want, []byte("\n"))), string(got)); diff != "" {
				t.Errorf("payload differs from %s (-want +got):\n%s", path, diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	f := apnstest.New(t, apnstest.Options{})
	valid := config(f)
	tests := []struct {
		name  string
		alter func(*apns.Config)
		want  []string
	}{
		{"valid", func(c *apns.Config) {}, nil},
		{"valid with key file and defaults", func(c *apns.Config) {
			c.Key, c.KeyFile, c.ProductionURL, c.SandboxURL, c.TLSConfig = nil, "/run/secrets/apns.p8", "", "", nil
		}, nil},
		{"empty", func(c *apns.Config) { *c = apns.Config{} }, []string{
			"apns.apps: required: at least one app",
			"apns.key_file: required (or apns.key)",
			"apns.key_id: required",
			"apns.team_id: required",
		}},
		{"key and key file", func(c *apns.Config) { c.KeyFile = "/run/secrets/apns.p8" }, []string{
			"apns.key: set only one of apns.key and apns.key_file",
		}},
		{"key not a .p8", func(c *apns.Config) { c.Key = []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n") }, []string{
			"apns.key: not a PKCS#8 PEM ECDSA key (.p8)",
		}},
		{"short and lower-case ids", func(c *apns.Config) { c.KeyID, c.TeamID = "ABC", "team123456" }, []string{
			"apns.key_id: must be 10 characters",
			"apns.team_id: must be upper-case letters and digits",
		}},
		{"app without topic", func(c *apns.Config) {
			c.Apps = map[string]apns.App{"e-boks": {}, "mit.dk": {Topic: "dk mitdk"}, "digital-post-app": {Topic: "dk.digitaliser.digitalpost"}}
		}, []string{
			"apns.apps[e-boks].topic: required",
			"apns.apps[mit.dk].topic: must be a bundle id without spaces",
		}},
		{"bad urls and timeout", func(c *apns.Config) {
			c.ProductionURL, c.SandboxURL, c.Timeout = "http://api.push.apple.com", "https://api.sandbox.push.apple.com/3/device", -time.Second
		}, []string{
			"apns.production_url: must be an https base URL such as https://api.push.apple.com",
			"apns.sandbox_url: must be an https base URL such as https://api.push.apple.com",
			"apns.timeout: must not be negative",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.alter(&c)
			var got []string
			if err := c.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
			if _, err := apns.New(c, nil); (err == nil) != (tt.want == nil) && c.KeyFile == "" {
				t.Errorf("New error = %v, want an error: %v", err, tt.want != nil)
			}
		})
	}
}
