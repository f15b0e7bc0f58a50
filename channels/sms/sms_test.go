package sms_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/channeltest"
	"github.com/digitalpost/postbud/channels/gsm7"
	"github.com/digitalpost/postbud/channels/sms"
	"github.com/digitalpost/postbud/channels/sms/smstest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// number is the test recipient; its digits must never show in errors or
// logs.
const (
	number = "+4512345678"
	digits = "12345678"
)

var to = channels.Address{Channel: channels.SMS, Value: number}

// newSender returns a Sender wired to g; mod may change the config.
func newSender(t *testing.T, g *smstest.Gateway, logger *slog.Logger, mod func(*sms.Config)) *sms.Sender {
	t.Helper()
	cfg := sms.Config{
		BaseURL:     g.URL(),
		Token:       g.Token(),
		Sender:      "DigitalPost",
		CallbackURL: "https://postbud.example/sms/reports",
		HTTPClient:  g.Client(),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := sms.New(cfg, logger)
	if err != nil {
		t.Fatalf("sms.New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// failures are every failure the fake can be told to produce, with the
// kind the adapter must classify it as.
func failures(g *smstest.Gateway) []channeltest.Failure {
	arm := func(f smstest.Failure) func() { return func() { g.FailNext(1, f) } }
	return []channeltest.Failure{
		{Name: "http 401 invalid consumer key", Want: channels.Misconfigured,
			Arm: arm(smstest.Failure{Status: 401, Code: "0x0223", Message: "Invalid Consumer Key"})},
		{Name: "http 403 unauthorized ip", Want: channels.Misconfigured,
			Arm: arm(smstest.Failure{Status: 403, Code: "0x0213", Message: "Unauthorized IP-address: %1"})},
		{Name: "http 400 insufficient credit", Want: channels.Misconfigured,
			Arm: arm(smstest.Failure{Status: 400, Code: "0x0216", Message: "Insufficient credit"})},
		{Name: "http 429 retry-after 7", Want: channels.Throttled, RetryAfter: 7 * time.Second,
			Arm: arm(smstest.Failure{Status: 429, Message: "Too many requests", RetryAfter: "7"})},
		{Name: "http 429 retry-after http date", Want: channels.Throttled, RetryAfter: 20 * time.Second,
			Arm: func() {
				g.FailNext(1, smstest.Failure{Status: 429, Message: "Too many requests",
					RetryAfter: time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)})
			}},
		{Name: "http 429 without retry-after", Want: channels.Throttled, RetryAfter: time.Second,
			Arm: arm(smstest.Failure{Status: 429, Message: "Too many requests"})},
		{Name: "http 500", Want: channels.Transient,
			Arm: arm(smstest.Failure{Status: 500, Message: "Internal error"})},
		{Name: "http 503", Want: channels.Transient,
			Arm: arm(smstest.Failure{Status: 503, Message: "Service unavailable"})},
		{Name: "connection dropped", Want: channels.Transient,
			Arm: arm(smstest.Failure{Drop: true})},
		{Name: "http 400 0x0214 temporary blacklist", Want: channels.Transient,
			Arm: arm(smstest.Failure{Status: 400, Code: "0x0214", Message: "Temporary blacklist for MSISDN 4512345678"})},
		{Name: "http 400 0x0215 msisdn blacklisted", Want: channels.Gone,
			Arm: arm(smstest.Failure{Status: 400, Code: "0x0215", Message: "MSISDN 4512345678 blacklisted"})},
		{Name: "http 422 0x1060 invalid destination address", Want: channels.Gone,
			Arm: arm(smstest.Failure{Status: 422, Code: "0x1060", Message: "Invalid destination address 4512345678"})},
		{Name: "http 400 0x0220 unsupported parameter", Want: channels.Permanent,
			Arm: arm(smstest.Failure{Status: 400, Code: "0x0220", Message: "Unsupported parameter foo"})},
		{Name: "http 422 invalid json", Want: channels.Permanent,
			Arm: arm(smstest.Failure{Status: 422, Message: "Invalid json request body"})},
		{Name: "http 413", Want: channels.Permanent,
			Arm: arm(smstest.Failure{Status: 413, Message: "Request body too large"})},
	}
}

func TestConformance(t *testing.T) {
	channeltest.Run(t, func(t *testing.T) *channeltest.Harness {
		g := smstest.New(t, smstest.Options{})
		return &channeltest.Harness{
			Sender:    newSender(t, g, nil, nil),
			To:        to,
			Delivered: g.Raw,
			Failures:  failures(g),
			Stall:     g.Stall,
		}
	})
}

// TestErrors checks each failure's code and that no error names the
// number, and that a failed send was not accepted.
func TestErrors(t *testing.T) {
	wantCodes := map[string]string{
		"http 401 invalid consumer key":               "http_401 0x0223",
		"http 403 unauthorized ip":                    "http_403 0x0213",
		"http 400 insufficient credit":                "http_400 0x0216",
		"http 429 retry-after 7":                      "http_429",
		"http 429 retry-after http date":              "http_429",
		"http 429 without retry-after":                "http_429",
		"http 500":                                    "http_500",
		"http 503":                                    "http_503",
		"connection dropped":                          "network",
		"http 400 0x0214 temporary blacklist":         "http_400 0x0214",
		"http 400 0x0215 msisdn blacklisted":          "http_400 0x0215",
		"http 422 0x1060 invalid destination address": "http_422 0x1060",
		"http 400 0x0220 unsupported parameter":       "http_400 0x0220",
		"http 422 invalid json":                       "http_422",
		"http 413":                                    "http_413",
	}
	probe := smstest.New(t, smstest.Options{})
	for _, f := range failures(probe) {
		t.Run(f.Name, func(t *testing.T) {
			g := smstest.New(t, smstest.Options{})
			var logs bytes.Buffer
			s := newSender(t, g, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), nil)
			for _, h := range failures(g) {
				if h.Name == f.Name {
					h.Arm()
				}
			}
			_, err := s.Send(context.Background(), to, channeltest.Alert())
			if err == nil {
				t.Fatal("Send succeeded")
			}
			want, ok := wantCodes[f.Name]
			if !ok {
				t.Fatalf("no code expected for %q: add it to the table", f.Name)
			}
			if got := channels.CodeOf(err); got != want {
				t.Errorf("CodeOf = %q, want %q", got, want)
			}
			if strings.Contains(err.Error(), digits) || strings.Contains(err.Error(), g.Token()) {
				t.Errorf("error %q holds the number or the token", err)
			}
			if strings.Contains(logs.String(), digits) {
				t.Errorf("logs hold the number: %s", logs.String())
			}
			if n := len(g.Messages()); n != 0 {
				t.Errorf("fake accepted %d messages", n)
			}
		})
	}
}

func TestSendRequest(t *testing.T) {
	g := smstest.New(t, smstest.Options{})
	var logs bytes.Buffer
	s := newSender(t, g, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), nil)
	a := channeltest.Alert()
	rc, err := s.Send(context.Background(), to, a)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs, err := g.WaitMessages(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	if want := m.ID; rc.ProviderID != jsonString(want) {
		t.Errorf("ProviderID = %q, want %d", rc.ProviderID, want)
	}
	got := struct {
		Sender, Message, UserRef, CallbackURL, Encoding string
		MSISDNs                                         []uint64
		MaxParts                                        int
	}{m.Sender, m.Message, m.UserRef, m.CallbackURL, m.Encoding, m.MSISDNs, m.MaxParts}
	want := got
	want.Sender = "DigitalPost"
	want.Message = channels.Headline(a) + " " + channels.ReadAt(a)
	want.UserRef = a.DeliveryID
	want.CallbackURL = "https://postbud.example/sms/reports"
	want.Encoding = ""
	want.MSISDNs = []uint64{4512345678}
	want.MaxParts = 1
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("request (-want +got):\n%s", d)
	}
	// msisdn is a JSON number, not a string.
	if !bytes.Contains(m.Raw, []byte(`"msisdn":4512345678`)) {
		t.Errorf("raw body does not carry msisdn as a number: %s", m.Raw)
	}
	if !strings.Contains(logs.String(), "sms accepted") || strings.Contains(logs.String(), digits) {
		t.Errorf("logs = %s, want an acceptance without the number", logs.String())
	}
}

func jsonString(id int64) string {
	b, _ := json.Marshal(id)
	return string(b)
}

// TestGolden renders typical alerts and compares the request bodies with
// testdata/*.golden; -update rewrites them. Every one must stay a single
// GSM 03.38 segment with the Danish letters intact.
func TestGolden(t *testing.T) {
	base := channels.Alert{
		DeliveryID: "d7c4f1c0a1b2c3d4e5f60718293a4b5c",
		MessageID:  "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
		Count:      1,
		MailboxURL: "https://www.borger.dk/digitalpost",
		Badge:      -1,
	}
	tests := []struct {
		name     string
		lang     string
		senders  []string
		count    int
		notify   string
		wantText string // a substring the text must hold
	}{
		{name: "da-skattestyrelsen", lang: "da", senders: []string{"Skattestyrelsen"}, wantText: "Læs den på"},
		{name: "en-skattestyrelsen", lang: "en", senders: []string{"Skattestyrelsen"}, wantText: "Read it at"},
		{name: "da-aarhus-kommune", lang: "da", senders: []string{"Aarhus Kommune"}, wantText: "fra Aarhus Kommune."},
		{name: "en-aarhus-kommune", lang: "en", senders: []string{"Aarhus Kommune"}, wantText: "from Aarhus Kommune."},
		{name: "da-udbetaling-danmark", lang: "da", senders: []string{"Udbetaling Danmark"}, wantText: "Udbetaling Danmark"},
		{name: "en-udbetaling-danmark", lang: "en", senders: []string{"Udbetaling Danmark"}, wantText: "Udbetaling Danmark"},
		{name: "da-koebenhavns-kommune", lang: "da", senders: []string{"Københavns Kommune"}, wantText: "Københavns Kommune"},
		{name: "en-koebenhavns-kommune", lang: "en", senders: []string{"Københavns Kommune"}, wantText: "Københavns Kommune"},
		{name: "da-coalesced", lang: "da", senders: []string{"Skattestyrelsen", "Aarhus Kommune", "Udbetaling Danmark"}, count: 3,
			wantText: "Skattestyrelsen, Aarhus Kommune og Udbetaling Danmark"},
		{name: "en-coalesced", lang: "en", senders: []string{"Skattestyrelsen", "Aarhus Kommune", "Udbetaling Danmark"}, count: 3,
			wantText: "Skattestyrelsen, Aarhus Kommune and Udbetaling Danmark"},
		{name: "da-notification-typography", lang: "da", senders: []string{"Region Hovedstaden"},
			notify: "Region Hovedstaden – “indkaldelse” til dit besøg…", wantText: `Region Hovedstaden - "indkaldelse" til dit besøg...`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := smstest.New(t, smstest.Options{})
			s := newSender(t, g, nil, nil)
			a := base
			a.Language, a.Senders, a.Notification = tt.lang, tt.senders, tt.notify
			if tt.count > 0 {
				a.Count = tt.count
			}
			if _, err := s.Send(context.Background(), to, a); err != nil {
				t.Fatalf("Send: %v", err)
			}
			m, err := g.Last()
			if err != nil {
				t.Fatal(err)
			}
			if enc, n := gsm7.Encoding(m.Message), gsm7.Segments(m.Message); enc != gsm7.GSM7 || n != 1 || m.Encoding != "" {
				t.Errorf("text %q is %s in %d segments (encoding field %q), want one GSM7 segment", m.Message, enc, n, m.Encoding)
			}
			if !strings.Contains(m.Message, tt.wantText) {
				t.Errorf("text %q does not hold %q", m.Message, tt.wantText)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, m.Raw, "", "  "); err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", tt.name+".golden"), pretty.Bytes())
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, d)
	}
}

func TestUCS2WhenNeeded(t *testing.T) {
	g := smstest.New(t, smstest.Options{})
	s := newSender(t, g, nil, func(c *sms.Config) { c.MaxParts = 2 })
	a := channeltest.Alert()
	a.Notification = "Ny post 📬 fra Skattestyrelsen."
	if _, err := s.Send(context.Background(), to, a); err != nil {
		t.Fatalf("Send: %v", err)
	}
	m, err := g.Last()
	if err != nil {
		t.Fatal(err)
	}
	if m.Encoding != "UCS2" || m.MaxParts != 2 {
		t.Errorf("encoding %q, max_parts %d; want UCS2, 2", m.Encoding, m.MaxParts)
	}
	if !strings.Contains(m.Message, "📬") {
		t.Errorf("text %q lost the emoji", m.Message)
	}
}

func TestMaxPartsShortening(t *testing.T) {
	many := []string{"Skattestyrelsen", "Aarhus Kommune", "Udbetaling Danmark", "Københavns Kommune",
		"Styrelsen for Arbejdsmarked og Rekruttering", "Region Hovedstaden"}
	long := strings.Repeat("Meget lang afsendernavn ", 8)
	notification := "Skattestyrelsen har sendt dig en besked om din årsopgørelse, som nu er klar – log på for at se den og tjekke at oplysningerne om dig er rigtige."
	tests := []struct {
		name     string
		alert    func(a *channels.Alert)
		maxParts int
		want     string // the text, with {read} for channels.ReadAt; "" when an error is wanted
	}{
		{
			name:     "coalesced list fits in three parts",
			alert:    func(a *channels.Alert) { a.Senders, a.Count = many, 6 },
			maxParts: 3,
			want: "Du har 6 nye breve i Digital Post fra Skattestyrelsen, Aarhus Kommune, Udbetaling Danmark, Københavns Kommune, " +
				"Styrelsen for Arbejdsmarked og Rekruttering og Region Hovedstaden. {read}",
		},
		{
			name:     "coalesced list shortened to a count",
			alert:    func(a *channels.Alert) { a.Senders, a.Count = many, 6 },
			maxParts: 1,
			want:     "Du har 6 nye breve i Digital Post fra 6 afsendere. {read}",
		},
		{
			name:     "english count",
			alert:    func(a *channels.Alert) { a.Senders, a.Count, a.Language = many, 7, "en" },
			maxParts: 1,
			want:     "You have 7 new letters in Digital Post from 6 senders. {read}",
		},
		{
			name:     "long notification gives way to the generic text",
			alert:    func(a *channels.Alert) { a.Notification = notification },
			maxParts: 1,
			want:     "Du har modtaget ny Digital Post fra Skattestyrelsen. {read}",
		},
		{
			name:     "long notification kept with two parts",
			alert:    func(a *channels.Alert) { a.Notification = notification },
			maxParts: 2,
			want:     strings.Replace(notification, "–", "-", 1) + " {read}",
		},
		{
			name:     "one sender too long",
			alert:    func(a *channels.Alert) { a.Senders = []string{long} },
			maxParts: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := channeltest.Alert()
			tt.alert(&a)
			tt.want = strings.ReplaceAll(tt.want, "{read}", channels.ReadAt(a))
			got, err := sms.Text(a, tt.maxParts)
			if tt.want == "" {
				if k := channels.KindOf(err); err == nil || k != channels.Permanent {
					t.Fatalf("Text = %q, %v; want a permanent error", got, err)
				}
			} else if err != nil || got != tt.want {
				t.Fatalf("Text = %q, %v\nwant %q", got, err, tt.want)
			} else if n := gsm7.Segments(got); n > tt.maxParts {
				t.Errorf("text takes %d segments, MaxParts is %d", n, tt.maxParts)
			}

			// The same through Send: the gateway sees the text, or nothing.
			g := smstest.New(t, smstest.Options{})
			s := newSender(t, g, nil, func(c *sms.Config) { c.MaxParts = tt.maxParts })
			_, err = s.Send(context.Background(), to, a)
			if tt.want == "" {
				if channels.KindOf(err) != channels.Permanent || g.Requests() != 0 {
					t.Errorf("Send: %v after %d requests; want a permanent error and no request", err, g.Requests())
				}
				return
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			m, err := g.Last()
			if err != nil {
				t.Fatal(err)
			}
			if m.Message != tt.want || m.MaxParts != tt.maxParts {
				t.Errorf("gateway got %q with max_parts %d", m.Message, m.MaxParts)
			}
		})
	}
}

func TestInvalidAddress(t *testing.T) {
	tests := []struct {
		name string
		to   channels.Address
		want channels.Kind
	}{
		{"no plus", channels.Address{Channel: channels.SMS, Value: "4512345678"}, channels.Gone},
		{"spaces", channels.Address{Channel: channels.SMS, Value: "+45 12 34 56 78"}, channels.Gone},
		{"letters", channels.Address{Channel: channels.SMS, Value: "+45abcdefgh"}, channels.Gone},
		{"too short", channels.Address{Channel: channels.SMS, Value: "+451234"}, channels.Gone},
		{"too long", channels.Address{Channel: channels.SMS, Value: "+4512345678901234"}, channels.Gone},
		{"no country code", channels.Address{Channel: channels.SMS, Value: "+0012345678"}, channels.Gone},
		{"empty", channels.Address{Channel: channels.SMS}, channels.Gone},
		{"other channel", channels.Address{Channel: channels.Email, Value: number}, channels.Permanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := smstest.New(t, smstest.Options{})
			s := newSender(t, g, nil, nil)
			_, err := s.Send(context.Background(), tt.to, channeltest.Alert())
			if k := channels.KindOf(err); err == nil || k != tt.want {
				t.Fatalf("Send = %v, want a %s error", err, tt.want)
			}
			if strings.Contains(err.Error(), "1234") || strings.Contains(err.Error(), "abcdefgh") {
				t.Errorf("error %q holds the number", err)
			}
			if g.Requests() != 0 {
				t.Errorf("gateway got %d requests", g.Requests())
			}
		})
	}
}

func TestMissingMailboxURL(t *testing.T) {
	g := smstest.New(t, smstest.Options{})
	s := newSender(t, g, nil, nil)
	a := channeltest.Alert()
	a.MailboxURL = ""
	if _, err := s.Send(context.Background(), to, a); channels.KindOf(err) != channels.Permanent {
		t.Fatalf("Send = %v, want a permanent error", err)
	}
}

func TestTimeout(t *testing.T) {
	g := smstest.New(t, smstest.Options{})
	g.Stall()
	s := newSender(t, g, nil, func(c *sms.Config) { c.Timeout = 100 * time.Millisecond })
	_, err := s.Send(context.Background(), to, channeltest.Alert())
	if channels.KindOf(err) != channels.Transient || channels.CodeOf(err) != "timeout" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send = %v (code %q), want a transient timeout", err, channels.CodeOf(err))
	}
	if n := len(g.Messages()); n != 0 {
		t.Errorf("stalled fake accepted %d messages", n)
	}
}

func TestDelayWithinDeadline(t *testing.T) {
	g := smstest.New(t, smstest.Options{})
	g.SetDelay(50 * time.Millisecond)
	s := newSender(t, g, nil, nil)
	if _, err := s.Send(context.Background(), to, channeltest.Alert()); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

func TestStallReleasedDuringSend(t *testing.T) {
	g := smstest.New(t, smstest.Options{})
	g.Stall()
	s := newSender(t, g, nil, nil)
	done := make(chan error, 1)
	go func() {
		_, err := s.Send(context.Background(), to, channeltest.Alert())
		done <- err
	}()
	// Wait until the request is held, then let it through.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.WaitRequests(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("Send returned while stalled: %v", err)
	default:
	}
	g.Release()
	if err := <-done; err != nil {
		t.Fatalf("Send: %v", err)
	}
	if _, err := g.WaitMessages(ctx, 1); err != nil {
		t.Fatal(err)
	}
}

func TestPing(t *testing.T) {
	tests := []struct {
		name  string
		token string
		fail  *smstest.Failure
		ok    bool
		kind  channels.Kind // when not ok
	}{
		{name: "ok", ok: true},
		{name: "wrong token", token: "wrong", kind: channels.Misconfigured},
		{name: "server error", fail: &smstest.Failure{Status: 502}, kind: channels.Transient},
		{name: "throttled", fail: &smstest.Failure{Status: 429, RetryAfter: "3"}, kind: channels.Throttled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := smstest.New(t, smstest.Options{})
			s := newSender(t, g, nil, func(c *sms.Config) {
				if tt.token != "" {
					c.Token = tt.token
				}
			})
			if tt.fail != nil {
				g.FailNext(1, *tt.fail)
			}
			err := s.Ping(context.Background())
			if tt.ok {
				if err != nil {
					t.Fatalf("Ping: %v", err)
				}
				return
			}
			if err == nil || channels.KindOf(err) != tt.kind {
				t.Fatalf("Ping = %v, want a %s error", err, tt.kind)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	valid := sms.Config{Token: "tok", Sender: "DigitalPost"}
	tests := []struct {
		name string
		mod  func(c *sms.Config)
		want []string // field names the error must name; none for a valid config
	}{
		{name: "minimal", mod: func(c *sms.Config) {}},
		{name: "all set", mod: func(c *sms.Config) {
			c.BaseURL, c.CallbackURL, c.MaxParts, c.Timeout = "http://127.0.0.1:8080/", "https://postbud.example/cb", 10, time.Second
		}},
		{name: "numeric sender of 15 digits", mod: func(c *sms.Config) { c.Sender = "451234567890123" }},
		{name: "zero config", mod: func(c *sms.Config) { *c = sms.Config{} }, want: []string{"Token", "Sender"}},
		{name: "sender too long", mod: func(c *sms.Config) { c.Sender = "DigitalPost1" }, want: []string{"Sender"}},
		{name: "numeric sender too long", mod: func(c *sms.Config) { c.Sender = "4512345678901234" }, want: []string{"Sender"}},
		{name: "sender with space", mod: func(c *sms.Config) { c.Sender = "Digi Post" }, want: []string{"Sender"}},
		{name: "sender with æ", mod: func(c *sms.Config) { c.Sender = "Kæmner" }, want: []string{"Sender"}},
		{name: "bad urls", mod: func(c *sms.Config) { c.BaseURL, c.CallbackURL = "ftp://x", "/relative" },
			want: []string{"BaseURL", "CallbackURL"}},
		{name: "url with credentials", mod: func(c *sms.Config) { c.BaseURL = "https://u:p@gatewayapi.com" }, want: []string{"BaseURL"}},
		{name: "max parts too high", mod: func(c *sms.Config) { c.MaxParts = 11 }, want: []string{"MaxParts"}},
		{name: "max parts negative", mod: func(c *sms.Config) { c.MaxParts = -1 }, want: []string{"MaxParts"}},
		{name: "negative timeout", mod: func(c *sms.Config) { c.Timeout = -time.Second }, want: []string{"Timeout"}},
		{name: "token with colon", mod: func(c *sms.Config) { c.Token = "a:b" }, want: []string{"Token"}},
		{name: "everything wrong", mod: func(c *sms.Config) {
			*c = sms.Config{BaseURL: "x", Sender: "!", CallbackURL: "mailto:a@b", MaxParts: 99, Timeout: -1}
		}, want: []string{"BaseURL", "Token", "Sender", "CallbackURL", "MaxParts", "Timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.mod(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := sms.New(c, nil); err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted the config")
			}
			for _, field := range tt.want {
				if !strings.Contains(err.Error(), "sms: "+field) {
					t.Errorf("error %q does not name %s", err, field)
				}
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(tt.want) {
				t.Errorf("error reports %d problems, want %d: %v", got, len(tt.want), err)
			}
			if _, err := sms.New(c, nil); err == nil {
				t.Error("New accepted the config")
			}
		})
	}
}

func TestMSISDN(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"+4512345678", 4512345678, true},
		{"+46735551020", 46735551020, true},
		{"+17325551020", 17325551020, true},
		{"4512345678", 0, false},
		{"+45 12345678", 0, false},
		{"+", 0, false},
		{"+-4512345678", 0, false},
	}
	for _, tt := range tests {
		got, err := sms.MSISDN(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("MSISDN(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestGone(t *testing.T) {
	for code, want := range map[string]bool{
		"0x0215": true, "0X0215": true, "0x1010": true, "0x1060": true, "0x1084": true,
		"0x0216": false, "0x0220": false, "": false, "0x1013": false,
	} {
		if got := sms.Gone(code); got != want {
			t.Errorf("Gone(%q) = %v, want %v", code, got, want)
		}
	}
}
