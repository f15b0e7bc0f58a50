package fcm

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/channeltest"
	"github.com/digitalpost/postbud/channels/fcm/fcmtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testToken looks like an FCM registration token: instance id, colon,
// APA91b blob.
const testToken = "fG3kT9xQRzy0bLk2mN4pQs:APA91bHq3Xw7Zt0v8yJkLm2Nn5Pp9Rr1Ss4Tt6Uu8Vv0Ww2Xx4Yy6Zz8Aa0Bb2Cc4Dd6Ee8Ff0Gg2Hh4Ii6Jj8Kk0Ll2Mm4Nn6Oo8Pp0Qq2Rr4Ss6Tt8Uu0Vv2Ww4Xx6Yy8Zz0aB1cD2eF3gH4iJ5kL6"

const (
	appDPA   = "digital-post-app"
	appEBoks = "e-boks"
	projDPA  = "digital-post-app-test"
	projEBox = "e-boks-test"
)

// newSender builds a Sender for cfg and closes it when the test ends.
func newSender(t *testing.T, cfg Config, logger *slog.Logger) *Sender {
	t.Helper()
	s, err := New(cfg, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// oneApp returns a config with one app on fake.
func oneApp(fake *fcmtest.Server, timeout time.Duration) Config {
	return Config{
		Apps:     map[string]App{appDPA: {ProjectID: projDPA, Credentials: fake.ServiceAccount(projDPA)}},
		Endpoint: fake.Endpoint(),
		Timeout:  timeout,
	}
}

func to(app string) channels.Address {
	return channels.Address{Channel: channels.FCM, Value: testToken, App: app}
}

func TestConformance(t *testing.T) {
	channeltest.Run(t, func(t *testing.T) *channeltest.Harness {
		fake := fcmtest.New(t)
		// A short timeout keeps the cases where the SDK retries 503 (or a
		// failing token endpoint) for up to 7 s fast.
		s := newSender(t, oneApp(fake, 1500*time.Millisecond), nil)
		failNext := func(n int, f fcmtest.Failure) func() {
			return func() { fake.FailNext(n, f) }
		}
		quota := fcmtest.Failure{HTTPStatus: 429, Status: "RESOURCE_EXHAUSTED", Message: "Too many requests.", RetryAfter: 120 * time.Second}
		return &channeltest.Harness{
			Sender:    s,
			To:        to(appDPA),
			Delivered: fake.Payloads,
			Stall:     fake.Stall,
			Failures: []channeltest.Failure{
				{Name: "404 UNREGISTERED", Want: channels.Gone, Arm: failNext(1, fcmtest.Unregistered)},
				{Name: "token unregistered", Want: channels.Gone, Arm: func() { fake.Unregister(testToken) }},
				{Name: "403 SENDER_ID_MISMATCH", Want: channels.Gone, Arm: failNext(1, fcmtest.SenderIDMismatch)},
				{Name: "400 INVALID_ARGUMENT invalid registration token", Want: channels.Gone, Arm: failNext(1, fcmtest.InvalidToken)},
				{Name: "429 QUOTA_EXCEEDED Retry-After 10", Want: channels.Throttled, RetryAfter: MinQuotaRetryAfter, Arm: failNext(1, fcmtest.QuotaExceeded)},
				{Name: "429 RESOURCE_EXHAUSTED Retry-After 120", Want: channels.Throttled, RetryAfter: 120 * time.Second, Arm: failNext(1, quota)},
				{Name: "401 THIRD_PARTY_AUTH_ERROR", Want: channels.Misconfigured, Arm: failNext(1, fcmtest.ThirdPartyAuthError)},
				{Name: "401 UNAUTHENTICATED", Want: channels.Misconfigured, Arm: failNext(1, fcmtest.Unauthenticated)},
				{Name: "403 PERMISSION_DENIED", Want: channels.Misconfigured, Arm: failNext(1, fcmtest.PermissionDenied)},
				{Name: "token exchange refused", Want: channels.Misconfigured, Arm: func() { fake.FailTokenExchange(http.StatusBadRequest, "invalid_grant") }},
				{Name: "token exchange 503", Want: channels.Transient, Arm: func() { fake.FailTokenExchange(http.StatusServiceUnavailable, "temporarily_unavailable") }},
				{Name: "400 INVALID_ARGUMENT", Want: channels.Permanent, Arm: failNext(1, fcmtest.InvalidArgument)},
				{Name: "503 UNAVAILABLE on every retry", Want: channels.Transient, Arm: failNext(100, fcmtest.Unavailable)},
				{Name: "500 INTERNAL", Want: channels.Transient, Arm: failNext(1, fcmtest.Internal)},
			},
		}
	})
}

// TestClassification checks codes, kinds and waits beyond what the
// conformance suite checks, and that no error or log line holds the token.
func TestClassification(t *testing.T) {
	echo := fcmtest.InvalidArgument
	echo.Message = `Invalid value at 'message.token' (TYPE_STRING), "` + testToken + `"`
	partial := fcmtest.InvalidArgument
	partial.Message = "Invalid value at 'message.android.collapse_key', near " + testToken[10:60]
	tests := []struct {
		name     string
		fail     fcmtest.Failure
		n        int
		wantKind channels.Kind
		wantCode string
		wantWait time.Duration
	}{
		{"unregistered", fcmtest.Unregistered, 1, channels.Gone, "UNREGISTERED", 0},
		{"sender id mismatch", fcmtest.SenderIDMismatch, 1, channels.Gone, "SENDER_ID_MISMATCH", 0},
		{"invalid token", fcmtest.InvalidToken, 1, channels.Gone, "INVALID_ARGUMENT", 0},
		{"invalid token echoed", echo, 1, channels.Gone, "INVALID_ARGUMENT", 0},
		{"invalid argument", fcmtest.InvalidArgument, 1, channels.Permanent, "INVALID_ARGUMENT", 0},
		{"invalid argument with token-like text", partial, 1, channels.Permanent, "INVALID_ARGUMENT", 0},
		{"quota retry-after 10 waits 60", fcmtest.QuotaExceeded, 1, channels.Throttled, "QUOTA_EXCEEDED", MinQuotaRetryAfter},
		{"quota retry-after 300", fcmtest.Failure{HTTPStatus: 429, Status: "RESOURCE_EXHAUSTED", ErrorCode: "QUOTA_EXCEEDED", RetryAfter: 300 * time.Second}, 1, channels.Throttled, "QUOTA_EXCEEDED", 300 * time.Second},
		{"third party auth", fcmtest.ThirdPartyAuthError, 1, channels.Misconfigured, "THIRD_PARTY_AUTH_ERROR", 0},
		{"unauthenticated", fcmtest.Unauthenticated, 1, channels.Misconfigured, "UNAUTHENTICATED", 0},
		{"not found without fcm code", fcmtest.Failure{HTTPStatus: 404, Status: "NOT_FOUND", Message: "Requested entity was not found."}, 1, channels.Misconfigured, "NOT_FOUND", 0},
		{"internal", fcmtest.Internal, 1, channels.Transient, "INTERNAL", 0},
		{"unavailable until the deadline", fcmtest.Unavailable, 100, channels.Transient, "UNAVAILABLE", 0},
		{"413 without a google body", fcmtest.Failure{HTTPStatus: 413}, 1, channels.Permanent, "http_413", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := fcmtest.New(t)
			var logs bytes.Buffer
			var mu sync.Mutex
			logger := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			s := newSender(t, oneApp(fake, 1500*time.Millisecond), logger)
			fake.FailNext(tt.n, tt.fail)
			_, err := s.Send(context.Background(), to(appDPA), channeltest.Alert())
			if err == nil {
				t.Fatal("Send succeeded")
			}
			got := struct {
				Kind channels.Kind
				Code string
				Wait time.Duration
			}{channels.KindOf(err), channels.CodeOf(err), channels.RetryAfterOf(err)}
			want := struct {
				Kind channels.Kind
				Code string
				Wait time.Duration
			}{tt.wantKind, tt.wantCode, tt.wantWait}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("classification of %v (-want +got):\n%s", err, diff)
			}
			mu.Lock()
			defer mu.Unlock()
			for what, text := range map[string]string{"error": err.Error(), "log": logs.String()} {
				if strings.Contains(text, testToken[:20]) || strings.Contains(text, testToken[30:50]) {
					t.Errorf("%s holds (part of) the token: %s", what, text)
				}
			}
			if !strings.Contains(logs.String(), tt.wantCode) {
				t.Errorf("log does not name the code %s: %s", tt.wantCode, logs.String())
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestTokenExchangeRefusedIsNotRetried(t *testing.T) {
	fake := fcmtest.New(t)
	s := newSender(t, oneApp(fake, 0), nil) // default timeout, 10 s
	fake.FailTokenExchange(http.StatusBadRequest, "invalid_grant")
	start := time.Now()
	_, err := s.Send(context.Background(), to(appDPA), channeltest.Alert())
	elapsed := time.Since(start)
	if k, c := channels.KindOf(err), channels.CodeOf(err); k != channels.Misconfigured || c != "TOKEN_EXCHANGE_REFUSED" {
		t.Errorf("err = %v (%s, %s), want misconfigured TOKEN_EXCHANGE_REFUSED", err, k, c)
	}
	if !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("err = %v, want it to name the OAuth2 error", err)
	}
	// The SDK alone would retry the transport error for about 7 s.
	if elapsed > 3*time.Second {
		t.Errorf("Send took %v, want the SDK's retries cut short", elapsed)
	}
	if n := fake.Attempts(); n != 0 {
		t.Errorf("fake saw %d send attempts without a token, want 0", n)
	}
	// Healed, the next send exchanges a token and goes through.
	fake.FailTokenExchange(0, "")
	if _, err := s.Send(context.Background(), to(appDPA), channeltest.Alert()); err != nil {
		t.Fatalf("Send after healing: %v", err)
	}
	if n := fake.TokenExchanges(); n != 1 {
		t.Errorf("token exchanges = %d, want 1", n)
	}
}

func TestUnavailableRetriedWithinDeadline(t *testing.T) {
	t.Run("once, then accepted", func(t *testing.T) {
		fake := fcmtest.New(t)
		s := newSender(t, oneApp(fake, 5*time.Second), nil)
		fake.FailNext(1, fcmtest.Unavailable)
		rc, err := s.Send(context.Background(), to(appDPA), channeltest.Alert())
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		if !strings.HasPrefix(rc.ProviderID, "projects/"+projDPA+"/messages/") {
			t.Errorf("ProviderID = %q", rc.ProviderID)
		}
		if n := fake.Attempts(); n != 2 {
			t.Errorf("attempts = %d, want 2 (the SDK retries 503)", n)
		}
	})
	t.Run("always, bounded by Timeout", func(t *testing.T) {
		fake := fcmtest.New(t)
		const timeout = 1500 * time.Millisecond
		s := newSender(t, oneApp(fake, timeout), nil)
		fake.FailNext(100, fcmtest.Unavailable)
		start := time.Now()
		_, err := s.Send(context.Background(), to(appDPA), channeltest.Alert())
		elapsed := time.Since(start)
		if k, c := channels.KindOf(err), channels.CodeOf(err); k != channels.Transient || c != "UNAVAILABLE" {
			t.Errorf("err = %v (%s, %s), want transient UNAVAILABLE", err, k, c)
		}
		if n := fake.Attempts(); n < 2 {
			t.Errorf("attempts = %d, want the SDK's retries (≥ 2)", n)
		}
		if elapsed > timeout+time.Second {
			t.Errorf("Send took %v, want about the %v timeout", elapsed, timeout)
		}
	})
}

// TestAppRouting sends through each app's own project and service account.
func TestAppRouting(t *testing.T) {
	fake := fcmtest.New(t)
	file := filepath.Join(t.TempDir(), "e-boks.json")
	if err := os.WriteFile(file, fake.ServiceAccount(projEBox), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSender(t, Config{
		Apps: map[string]App{
			appDPA:   {ProjectID: projDPA, Credentials: fake.ServiceAccount(projDPA)},
			appEBoks: {ProjectID: projEBox, CredentialsFile: file},
			// mit.dk's key belongs to another project: FCM refuses it.
			"mit.dk": {ProjectID: "mit-dk-test", Credentials: fake.ServiceAccount("someone-else")},
		},
		Endpoint: fake.Endpoint(),
	}, nil)
	ctx := context.Background()
	for _, app := range []string{appEBoks, appDPA, appEBoks} {
		rc, err := s.Send(ctx, to(app), channeltest.Alert())
		if err != nil {
			t.Fatalf("Send via %s: %v", app, err)
		}
		if want := "projects/" + map[string]string{appDPA: projDPA, appEBoks: projEBox}[app] + "/messages/"; !strings.HasPrefix(rc.ProviderID, want) {
			t.Errorf("Send via %s: ProviderID %q, want prefix %q", app, rc.ProviderID, want)
		}
	}
	var projects []string
	for _, m := range fake.Messages() {
		projects = append(projects, m.Project)
	}
	if diff := cmp.Diff([]string{projEBox, projDPA, projEBox}, projects); diff != "" {
		t.Errorf("projects sent to (-want +got):\n%s", diff)
	}
	if n := fake.TokenExchanges(); n != 2 {
		t.Errorf("token exchanges = %d, want one per app used (2)", n)
	}
	_, err := s.Send(ctx, to("mit.dk"), channeltest.Alert())
	if k, c := channels.KindOf(err), channels.CodeOf(err); k != channels.Misconfigured || c != "PERMISSION_DENIED" {
		t.Errorf("Send with another project's key: %v (%s, %s), want misconfigured PERMISSION_DENIED", err, k, c)
	}
	_, err = s.Send(ctx, to("borger.dk"), channeltest.Alert())
	if k, c := channels.KindOf(err), channels.CodeOf(err); k != channels.Misconfigured || c != "unknown_app" {
		t.Errorf("Send for an unconfigured app: %v (%s, %s), want misconfigured unknown_app", err, k, c)
	}
}

// TestTokenCached checks that many concurrent sends share one access token.
func TestTokenCached(t *testing.T) {
	fake := fcmtest.New(t)
	s := newSender(t, oneApp(fake, 5*time.Second), nil)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			a := channeltest.Alert()
			a.MessageID = "msg-" + string(rune('a'+i))
			_, err := s.Send(context.Background(), to(appDPA), a)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Send: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := fake.WaitMessages(ctx, n); err != nil {
		t.Fatal(err)
	}
	if got := fake.TokenExchanges(); got != 1 {
		t.Errorf("token exchanges = %d for %d sends, want 1", got, n)
	}
}

// TestHTTPClient checks that a configured client's transport carries both
// the token exchange and the send, with authentication layered on top.
func TestHTTPClient(t *testing.T) {
	fake := fcmtest.New(t)
	var mu sync.Mutex
	var paths []string
	cfg := oneApp(fake, 5*time.Second)
	cfg.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		mu.Unlock()
		return http.DefaultTransport.RoundTrip(r)
	})}
	s := newSender(t, cfg, nil)
	if _, err := s.Send(context.Background(), to(appDPA), channeltest.Alert()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"POST /token", "POST /v1/projects/" + projDPA + "/messages:send"}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("requests through the configured transport (-want +got):\n%s", diff)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestPing(t *testing.T) {
	fake := fcmtest.New(t)
	s := newSender(t, oneApp(fake, 5*time.Second), nil)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if n := fake.Attempts(); n != 1 {
		t.Errorf("Ping made %d requests, want 1 dry run", n)
	}
	if n := len(fake.Payloads()); n != 0 {
		t.Errorf("Ping delivered %d messages, want none", n)
	}
	bad := fcmtest.New(t)
	s = newSender(t, oneApp(bad, 5*time.Second), nil)
	bad.FailTokenExchange(http.StatusUnauthorized, "unauthorized_client")
	err := s.Ping(context.Background())
	if k := channels.KindOf(err); err == nil || k != channels.Misconfigured {
		t.Errorf("Ping with refused credentials = %v (%s), want misconfigured", err, k)
	}
	if err != nil && !strings.Contains(err.Error(), appDPA) {
		t.Errorf("Ping error %v does not name the app", err)
	}
}

// TestRefusedBeforeSending covers addresses and alerts refused without
// contacting FCM.
func TestRefusedBeforeSending(t *testing.T) {
	silentNoBadge := channeltest.Alert()
	silentNoBadge.Silent, silentNoBadge.Badge = true, -1
	tests := []struct {
		name     string
		to       channels.Address
		alert    channels.Alert
		wantKind channels.Kind
		wantCode string
	}{
		{"empty token", channels.Address{Channel: channels.FCM, App: appDPA}, channeltest.Alert(), channels.Permanent, "empty_token"},
		{"another channel's address", channels.Address{Channel: channels.APNs, Value: testToken, App: appDPA}, channeltest.Alert(), channels.Permanent, "wrong_channel"},
		{"unknown app", to("borger.dk"), channeltest.Alert(), channels.Misconfigured, "unknown_app"},
		{"silent without badge", to(appDPA), silentNoBadge, channels.Permanent, "no_badge"},
	}
	fake := fcmtest.New(t)
	s := newSender(t, oneApp(fake, 5*time.Second), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Send(context.Background(), tt.to, tt.alert)
			if k, c := channels.KindOf(err), channels.CodeOf(err); err == nil || k != tt.wantKind || c != tt.wantCode {
				t.Errorf("Send = %v (%s, %s), want %s %s", err, k, c, tt.wantKind, tt.wantCode)
			}
		})
	}
	if n := fake.Attempts() + fake.TokenExchanges(); n != 0 {
		t.Errorf("fake saw %d requests, want none", n)
	}
}

var fixedNow = time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)

// TestMessage checks the parsed fields FCM receives for each kind of alert.
func TestMessage(t *testing.T) {
	intp := func(n int) *int { return &n }
	base := func(f func(*channels.Alert)) channels.Alert {
		a := channeltest.Alert()
		a.Expires = fixedNow.Add(24 * time.Hour)
		f(&a)
		return a
	}
	const id = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	tests := []struct {
		name  string
		alert channels.Alert
		want  fcmtest.Message
	}{
		{"normal da", base(func(a *channels.Alert) {}), fcmtest.Message{
			Title: "Ny Digital Post", Body: "Du har modtaget ny Digital Post fra Skattestyrelsen.",
			CollapseKey: id, Tag: id, Priority: "normal", TTL: "86400s", NotificationCount: intp(3),
			Data: map[string]string{"message_id": id},
		}},
		{"urgent en", base(func(a *channels.Alert) { a.Urgent, a.Language = true, "en" }), fcmtest.Message{
			Title: "New Digital Post", Body: "You have received new Digital Post from Skattestyrelsen.",
			CollapseKey: id, Tag: id, Priority: "high", TTL: "86400s", NotificationCount: intp(3),
			Data: map[string]string{"message_id": id},
		}},
		{"badge left alone, no expiry", base(func(a *channels.Alert) { a.Badge, a.Expires = -1, time.Time{} }), fcmtest.Message{
			Title: "Ny Digital Post", Body: "Du har modtaget ny Digital Post fra Skattestyrelsen.",
			CollapseKey: id, Tag: id, Priority: "normal",
			Data: map[string]string{"message_id": id},
		}},
		{"expired goes now or never", base(func(a *channels.Alert) { a.Expires = fixedNow.Add(-time.Minute) }), fcmtest.Message{
			Title: "Ny Digital Post", Body: "Du har modtaget ny Digital Post fra Skattestyrelsen.",
			CollapseKey: id, Tag: id, Priority: "normal", TTL: "0s", NotificationCount: intp(3),
			Data: map[string]string{"message_id": id},
		}},
		{"ttl capped at 28 days, rounded up", base(func(a *channels.Alert) { a.Expires = fixedNow.Add(90*24*time.Hour + time.Millisecond) }), fcmtest.Message{
			Title: "Ny Digital Post", Body: "Du har modtaget ny Digital Post fra Skattestyrelsen.",
			CollapseKey: id, Tag: id, Priority: "normal", TTL: "2419200s", NotificationCount: intp(3),
			Data: map[string]string{"message_id": id},
		}},
		{"silent badge", base(func(a *channels.Alert) { a.Silent, a.Badge = true, 0 }), fcmtest.Message{
			CollapseKey: "badge", Priority: "normal", TTL: "86400s",
			Data: map[string]string{"type": "badge", "badge": "0", "message_id": id},
		}},
	}
	fake := fcmtest.New(t)
	s := newSender(t, oneApp(fake, 5*time.Second), nil)
	s.now = func() time.Time { return fixedNow }
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Send(context.Background(), to(appDPA), tt.alert); err != nil {
				t.Fatalf("Send: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := fake.WaitMessages(ctx, i+1)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.Project, want.Token = projDPA, testToken
			if diff := cmp.Diff(want, got[i], cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Raw" }, cmp.Ignore())); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
			for _, forbidden := range []string{"cpr", "subject"} {
				if bytes.Contains(bytes.ToLower(got[i].Raw), []byte(forbidden)) {
					t.Errorf("payload mentions %q: %s", forbidden, got[i].Raw)
				}
			}
		})
	}
}

// TestGolden compares the JSON the client library sends with golden files.
func TestGolden(t *testing.T) {
	tests := []struct {
		file  string
		alert func(a *channels.Alert)
	}{
		{"alert_da.json", func(a *channels.Alert) {
			a.Senders, a.Count = []string{"Københavns Kommune", "Ærø Kommune"}, 2
		}},
		{"alert_en.json", func(a *channels.Alert) {
			a.Language, a.Urgent, a.Senders = "en", true, []string{"Ærø Kommune"}
		}},
		{"alert_notification.json", func(a *channels.Alert) {
			a.Notification = "Din årsopgørelse for 2024 er klar – se den på borger.dk"
		}},
		{"silent.json", func(a *channels.Alert) {
			a.Silent, a.Badge = true, 7
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			fake := fcmtest.New(t)
			s := newSender(t, oneApp(fake, 5*time.Second), nil)
			s.now = func() time.Time { return fixedNow }
			a := channeltest.Alert()
			a.Expires = fixedNow.Add(6 * time.Hour)
			tt.alert(&a)
			if _, err := s.Send(context.Background(), to(appDPA), a); err != nil {
				t.Fatalf("Send: %v", err)
			}
			raw := fake.Payloads()[0]
			var got bytes.Buffer
			if err := json.Indent(&got, raw, "", "  "); err != nil {
				t.Fatal(err)
			}
			got.WriteByte('\n')
			path := filepath.Join("testdata", tt.file)
			if *update {
				if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got.String()); diff != "" {
				t.Errorf("%s (-want +got):\n%s", path, diff)
			}
			if !a.Silent && !bytes.ContainsAny(raw, "æøåÆØÅ") {
				t.Errorf("payload has no Danish letters left intact: %s", raw)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	fake := fcmtest.New(t)
	sa := fake.ServiceAccount(projDPA)
	good := App{ProjectID: projDPA, Credentials: sa}
	tests := []struct {
		name string
		cfg  Config
		want []string // fields the error must name; nil means valid
	}{
		{"valid", Config{Apps: map[string]App{appDPA: good}}, nil},
		{"valid with endpoint and timeout", Config{Apps: map[string]App{appDPA: good}, Endpoint: "https://fcm.example.dk/v1", Timeout: time.Second}, nil},
		{"valid loopback http", Config{Apps: map[string]App{appDPA: good}, Endpoint: fake.Endpoint()}, nil},
		{"valid credentials file", Config{Apps: map[string]App{appDPA: {ProjectID: "p", CredentialsFile: "/run/secrets/fcm.json"}}}, nil},
		{"no apps", Config{}, []string{"Apps:"}},
		{"everything wrong", Config{
			Apps: map[string]App{
				"":       good,
				appDPA:   {Credentials: sa},
				appEBoks: {ProjectID: "e/boks"},
				"mit.dk": {ProjectID: "mit", CredentialsFile: "x.json", Credentials: sa},
			},
			Endpoint: "http://fcm.googleapis.com/v1",
			Timeout:  -time.Second,
		}, []string{
			`Apps: an app name is empty`,
			`Apps["digital-post-app"].ProjectID`,
			`Apps["e-boks"].ProjectID`,
			`Apps["e-boks"].Credentials: one of`,
			`Apps["mit.dk"].Credentials: set only one`,
			"Endpoint:",
			"Timeout:",
		}},
		{"credentials not json", Config{Apps: map[string]App{appDPA: {ProjectID: "p", Credentials: []byte("nope")}}}, []string{`Apps["digital-post-app"].Credentials`}},
		{"credentials not a service account", Config{Apps: map[string]App{appDPA: {ProjectID: "p", Credentials: []byte(`{"type":"external_account","token_url":"https://evil.example"}`)}}}, []string{`Apps["digital-post-app"].Credentials`, "service_account", "client_email", "private_key"}},
		{"endpoint not a url", Config{Apps: map[string]App{appDPA: good}, Endpoint: "fcm.googleapis.com"}, []string{"Endpoint:"}},
		{"endpoint ftp", Config{Apps: map[string]App{appDPA: good}, Endpoint: "ftp://127.0.0.1/v1"}, []string{"Endpoint:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted a bad config")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate error does not mention %q:\n%v", w, err)
				}
			}
			if _, err := New(tt.cfg, nil); err == nil {
				t.Error("New accepted a config Validate refused")
			}
		})
	}
}

func TestNewReadsCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"type":"authorized_user"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{filepath.Join(dir, "missing.json"), bad} {
		_, err := New(Config{Apps: map[string]App{appDPA: {ProjectID: "p", CredentialsFile: file}}}, nil)
		if err == nil || !strings.Contains(err.Error(), `Apps["digital-post-app"]`) {
			t.Errorf("New with credentials file %s: %v, want an error naming the app", filepath.Base(file), err)
		}
	}
}

// TestGuardEndsWithContext checks that a send stuck behind a stalled token
// exchange ends with its context, not when the exchange gives up.
func TestGuardEndsWithContext(t *testing.T) {
	fake := fcmtest.New(t)
	s := newSender(t, oneApp(fake, 30*time.Second), nil)
	fake.Stall()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Send(ctx, to(appDPA), channeltest.Alert())
	if k := channels.KindOf(err); err == nil || k != channels.Transient || channels.CodeOf(err) != "timeout" {
		t.Errorf("Send = %v (%s), want transient timeout", err, k)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Send took %v behind a stalled token exchange, want about 200ms", elapsed)
	}
}
