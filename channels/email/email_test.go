package email_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/channeltest"
	"github.com/digitalpost/postbud/channels/email"
	"github.com/digitalpost/postbud/channels/email/emailtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	rcptAddr = "Borger.Bruger@example.dk"
	fromAddr = "besked@digitalpost.example"
	user     = "postbud"
	pass     = "s3cret-æøå"
)

var rcpt = channels.Address{Channel: channels.Email, Value: rcptAddr}

// newSender returns a Sender for srv: no TLS, no AUTH, unless mod says
// otherwise. Its logs go to logs when given, else to the test's output.
func newSender(t *testing.T, srv *emailtest.Server, logs *syncBuffer, mod func(*email.Config)) *email.Sender {
	t.Helper()
	cfg := email.Config{
		Host:      srv.Host(),
		Port:      srv.Port(),
		TLSPolicy: email.TLSNone,
		From:      fromAddr,
		HELO:      "postbud.test",
		Timeout:   10 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	var h slog.Handler = slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})
	if logs != nil {
		h = slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	s, err := email.New(cfg, slog.New(h))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// secure is the production setup: STARTTLS required, AUTH.
func secure(srv *emailtest.Server) func(*email.Config) {
	return func(c *email.Config) {
		c.TLSPolicy = email.TLSMandatory
		c.Username, c.Password = user, pass
		c.TLSConfig = srv.ClientTLSConfig()
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// failure is one way the fake fails, with what the adapter must make of it.
type failure struct {
	name     string
	arm      func(srv *emailtest.Server)
	wantKind channels.Kind
	wantCode string
}

func failures() []failure {
	fail := func(f emailtest.Failure) func(*emailtest.Server) {
		return func(srv *emailtest.Server) { srv.FailNext(f) }
	}
	return []failure{
		{"smtp 451 4.7.1 greylisted at RCPT", func(s *emailtest.Server) { s.Greylist(emailtest.StageRcpt, 1) },
			channels.Transient, "451 4.7.1"},
		{"smtp 451 4.7.1 greylisted at DATA", func(s *emailtest.Server) { s.Greylist(emailtest.StageData, 1) },
			channels.Transient, "451 4.7.1"},
		{"smtp 421 4.7.0 rate limited at greeting", fail(emailtest.Failure{Stage: emailtest.StageGreeting, Code: 421,
			Enhanced: "4.7.0", Text: "Too many messages, slow down"}), channels.Throttled, "421 4.7.0"},
		{"smtp 421 4.3.2 at greeting", fail(emailtest.Failure{Stage: emailtest.StageGreeting, Code: 421,
			Enhanced: "4.3.2", Text: "Service not available, closing channel"}), channels.Transient, "421 4.3.2"},
		{"smtp 452 4.2.2 mailbox full", fail(emailtest.Failure{Stage: emailtest.StageRcpt, Code: 452,
			Enhanced: "4.2.2", Text: "<{rcpt}>: Mailbox full"}), channels.Transient, "452 4.2.2"},
		{"smtp 451 4.3.0 after the message", fail(emailtest.Failure{Stage: emailtest.StageMessage, Code: 451,
			Enhanced: "4.3.0", Text: "Temporary lookup failure"}), channels.Transient, "451 4.3.0"},
		{"smtp 550 5.1.1 unknown recipient", func(s *emailtest.Server) { s.RejectRecipient() },
			channels.Gone, "550 5.1.1"},
		{"smtp 553 5.1.2 unknown domain", fail(emailtest.Failure{Stage: emailtest.StageRcpt, Code: 553,
			Enhanced: "5.1.2", Text: "<{rcpt}>: Recipient address rejected: Domain not found"}), channels.Gone, "553 5.1.2"},
		{"smtp 550 5.1.10 null MX", fail(emailtest.Failure{Stage: emailtest.StageRcpt, Code: 550,
			Enhanced: "5.1.10", Text: "Recipient address has null MX"}), channels.Gone, "550 5.1.10"},
		{"smtp 535 5.7.8 credentials refused", func(s *emailtest.Server) { s.RejectAuth() },
			channels.Misconfigured, "535 5.7.8"},
		{"smtp 530 5.7.0 authentication required", fail(emailtest.Failure{Stage: emailtest.StageMail, Code: 530,
			Enhanced: "5.7.0", Text: "Authentication required"}), channels.Misconfigured, "530 5.7.0"},
		{"smtp 550 5.7.1 sender refused", fail(emailtest.Failure{Stage: emailtest.StageMail, Code: 550,
			Enhanced: "5.7.1", Text: "Sender address rejected: not owned by user"}), channels.Misconfigured, "550 5.7.1"},
		{"smtp 554 5.3.2 at greeting", fail(emailtest.Failure{Stage: emailtest.StageGreeting, Code: 554,
			Enhanced: "5.3.2", Text: "No SMTP service here"}), channels.Misconfigured, "554 5.3.2"},
		{"mandatory TLS without STARTTLS", func(s *emailtest.Server) { s.SetSTARTTLS(false) },
			channels.Misconfigured, "starttls-unavailable"},
		{"smtp 554 5.7.1 message refused", fail(emailtest.Failure{Stage: emailtest.StageMessage, Code: 554,
			Enhanced: "5.7.1", Text: "Message rejected as spam"}), channels.Permanent, "554 5.7.1"},
		{"smtp 552 5.3.4 message too big", fail(emailtest.Failure{Stage: emailtest.StageMessage, Code: 552,
			Enhanced: "5.3.4", Text: "Message size exceeds fixed limit"}), channels.Permanent, "552 5.3.4"},
		{"smtp 550 5.7.1 relay denied at RCPT", fail(emailtest.Failure{Stage: emailtest.StageRcpt, Code: 550,
			Enhanced: "5.7.1", Text: "<{rcpt}>: Relay access denied"}), channels.Permanent, "550 5.7.1"},
		{"smtp 550 without enhanced code", fail(emailtest.Failure{Stage: emailtest.StageRcpt, Code: 550,
			Text: "<{rcpt}> rejected"}), channels.Permanent, "550"},
	}
}

func TestConformance(t *testing.T) {
	channeltest.Run(t, func(t *testing.T) *channeltest.Harness {
		srv := emailtest.New(t, emailtest.WithSTARTTLS(), emailtest.WithAuth(user, pass))
		h := &channeltest.Harness{
			Sender:    newSender(t, srv, nil, secure(srv)),
			To:        rcpt,
			Delivered: srv.Delivered,
			Stall:     func() { srv.Stall(emailtest.StallAfterData) },
		}
		for _, f := range failures() {
			h.Failures = append(h.Failures, channeltest.Failure{
				Name: f.name, Want: f.wantKind, Arm: func() { f.arm(srv) },
			})
		}
		return h
	})
}

// TestFailureCodes checks the code each failure carries, and that nothing
// was delivered.
func TestFailureCodes(t *testing.T) {
	for _, f := range failures() {
		t.Run(f.name, func(t *testing.T) {
			srv := emailtest.New(t, emailtest.WithSTARTTLS(), emailtest.WithAuth(user, pass))
			s := newSender(t, srv, nil, secure(srv))
			f.arm(srv)
			_, err := s.Send(ctxT(t), rcpt, channeltest.Alert())
			if err == nil {
				t.Fatal("Send succeeded")
			}
			got := struct {
				Kind channels.Kind
				Code string
			}{channels.KindOf(err), channels.CodeOf(err)}
			want := struct {
				Kind channels.Kind
				Code string
			}{f.wantKind, f.wantCode}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("classification of %v (-want +got):\n%s", err, diff)
			}
			// A reply code is the server's refusal: another relay may
			// take the alert (channels/failover).
			if f.wantCode != "" && f.wantCode[0] >= '2' && f.wantCode[0] <= '5' && channels.Unsure(err) {
				t.Errorf("the server refused with %s, but the error leaves open that it took the message", f.wantCode)
			}
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("server accepted %d messages", n)
			}
		})
	}
}

// TestReplyCodeWithoutExtension: a server that does not advertise
// ENHANCEDSTATUSCODES but sends the codes is still understood.
func TestReplyCodeWithoutExtension(t *testing.T) {
	srv := emailtest.New(t, emailtest.WithoutEnhancedStatusCodes())
	s := newSender(t, srv, nil, nil)
	srv.RejectRecipient()
	_, err := s.Send(ctxT(t), rcpt, channeltest.Alert())
	if k, c := channels.KindOf(err), channels.CodeOf(err); k != channels.Gone || c != "550 5.1.1" {
		t.Errorf("err = %v: kind %s code %q, want gone, 550 5.1.1", err, k, c)
	}
}

func TestErrorsHoldNoAddress(t *testing.T) {
	tests := []struct {
		name string
		arm  func(*emailtest.Server)
	}{
		{"550 5.1.1", func(s *emailtest.Server) { s.RejectRecipient() }},
		{"451 quoting the recipient", func(s *emailtest.Server) {
			s.FailNext(emailtest.Failure{Stage: emailtest.StageRcpt, Code: 451, Enhanced: "4.7.1",
				Text: "<{rcpt}>: Recipient address rejected: greylisted"})
		}},
		{"550 without enhanced code", func(s *emailtest.Server) {
			s.FailNext(emailtest.Failure{Stage: emailtest.StageRcpt, Code: 550, Text: "{rcpt} unknown"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := emailtest.New(t)
			var logs syncBuffer
			s := newSender(t, srv, &logs, nil)
			tt.arm(srv)
			_, err := s.Send(ctxT(t), rcpt, channeltest.Alert())
			if err == nil {
				t.Fatal("Send succeeded")
			}
			local := strings.ToLower(rcptAddr[:strings.IndexByte(rcptAddr, '@')])
			for what, text := range map[string]string{"error": err.Error(), "code": channels.CodeOf(err), "logs": logs.String()} {
				if l := strings.ToLower(text); strings.Contains(l, local) || strings.Contains(l, "example.dk") {
					t.Errorf("%s names the recipient: %q", what, text)
				}
			}
			if logs.String() == "" {
				t.Error("the failure was not logged")
			}
		})
	}
}

func TestTransports(t *testing.T) {
	tests := []struct {
		name     string
		srvOpts  []emailtest.Option
		mod      func(srv *emailtest.Server, c *email.Config)
		wantTLS  bool
		wantUser string
	}{
		{name: "no TLS, no AUTH"},
		{
			name:    "opportunistic with STARTTLS",
			srvOpts: []emailtest.Option{emailtest.WithSTARTTLS()},
			mod: func(srv *emailtest.Server, c *email.Config) {
				c.TLSPolicy, c.TLSConfig = email.TLSOpportunistic, srv.ClientTLSConfig()
			},
			wantTLS: true,
		},
		{
			name: "opportunistic without STARTTLS",
			mod:  func(_ *emailtest.Server, c *email.Config) { c.TLSPolicy = email.TLSOpportunistic },
		},
		{
			name:     "STARTTLS and AUTH PLAIN",
			srvOpts:  []emailtest.Option{emailtest.WithSTARTTLS(), emailtest.WithAuth(user, pass)},
			mod:      func(srv *emailtest.Server, c *email.Config) { secure(srv)(c) },
			wantTLS:  true,
			wantUser: user,
		},
		{
			name: "STARTTLS and AUTH LOGIN",
			srvOpts: []emailtest.Option{emailtest.WithSTARTTLS(), emailtest.WithAuth(user, pass),
				emailtest.WithAuthMechanisms("LOGIN")},
			mod:      func(srv *emailtest.Server, c *email.Config) { secure(srv)(c) },
			wantTLS:  true,
			wantUser: user,
		},
		{
			name:    "implicit TLS and AUTH PLAIN",
			srvOpts: []emailtest.Option{emailtest.WithImplicitTLS(), emailtest.WithAuth(user, pass)},
			mod: func(srv *emailtest.Server, c *email.Config) {
				c.TLSPolicy, c.TLSConfig = email.TLSImplicit, srv.ClientTLSConfig()
				c.Username, c.Password = user, pass
			},
			wantTLS:  true,
			wantUser: user,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := emailtest.New(t, tt.srvOpts...)
			s := newSender(t, srv, nil, func(c *email.Config) {
				if tt.mod != nil {
					tt.mod(srv, c)
				}
			})
			if _, err := s.Send(ctxT(t), rcpt, channeltest.Alert()); err != nil {
				t.Fatalf("Send: %v", err)
			}
			msgs := srv.Messages()
			if len(msgs) != 1 {
				t.Fatalf("server accepted %d messages, want 1", len(msgs))
			}
			type session struct {
				From     string
				To       []string
				TLS      bool
				AuthUser string
			}
			got := session{msgs[0].From, msgs[0].To, msgs[0].TLS, msgs[0].AuthUser}
			want := session{fromAddr, []string{rcptAddr}, tt.wantTLS, tt.wantUser}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("session (-want +got):\n%s", diff)
			}
			if n := srv.Connections(); n != 1 {
				t.Errorf("connections = %d, want 1", n)
			}
		})
	}
}

func TestUntrustedCertificate(t *testing.T) {
	srv := emailtest.New(t, emailtest.WithSTARTTLS())
	// No TLSConfig: the system roots do not know the fake's certificate.
	s := newSender(t, srv, nil, func(c *email.Config) { c.TLSPolicy = email.TLSMandatory })
	_, err := s.Send(ctxT(t), rcpt, channeltest.Alert())
	if k, c := channels.KindOf(err), channels.CodeOf(err); k != channels.Misconfigured || c != "tls-certificate" {
		t.Errorf("err = %v: kind %s code %q, want misconfigured, tls-certificate", err, k, c)
	}
}

func TestAuthNotOffered(t *testing.T) {
	srv := emailtest.New(t) // no AUTH
	s := newSender(t, srv, nil, func(c *email.Config) { c.Username, c.Password = user, pass })
	_, err := s.Send(ctxT(t), rcpt, channeltest.Alert())
	if k, c := channels.KindOf(err), channels.CodeOf(err); k != channels.Misconfigured || c != "auth-unavailable" {
		t.Errorf("err = %v: kind %s code %q, want misconfigured, auth-unavailable", err, k, c)
	}
}

var urlRE = regexp.MustCompile(`https?://[^\s<>"]+`)

func TestRenderedGolden(t *testing.T) {
	tests := []struct {
		name  string
		alert channels.Alert
	}{
		{"da", func() channels.Alert {
			a := channeltest.Alert()
			a.Senders, a.Count = []string{"Københavns Kommune", "Ærø Kommune", "Sønderborg Kommune"}, 3
			return a
		}()},
		{"en", func() channels.Alert {
			a := channeltest.Alert()
			a.Language, a.Senders = "en", []string{"Københavns Kommune"}
			return a
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := emailtest.New(t)
			s := newSender(t, srv, nil, nil)
			if _, err := s.Send(ctxT(t), rcpt, tt.alert); err != nil {
				t.Fatalf("Send: %v", err)
			}
			m := srv.Messages()[0]
			if m.ParseErr != nil {
				t.Fatalf("message does not parse: %v", m.ParseErr)
			}
			if got, want := m.Subject(), channels.Title(tt.alert); got != want {
				t.Errorf("Subject = %q, want %q", got, want)
			}
			if mt := m.Header.Get("Content-Type"); !strings.HasPrefix(mt, "multipart/alternative;") {
				t.Errorf("Content-Type = %q, want multipart/alternative", mt)
			}
			if len(m.Parts) != 2 {
				t.Fatalf("message has %d parts, want 2", len(m.Parts))
			}
			for _, p := range []struct{ mediaType, golden string }{
				{"text/plain", tt.name + ".txt"},
				{"text/html", tt.name + ".html"},
			} {
				part, ok := m.Part(p.mediaType)
				if !ok {
					t.Fatalf("no %s part", p.mediaType)
				}
				if cs := part.Params["charset"]; !strings.EqualFold(cs, "utf-8") {
					t.Errorf("%s charset = %q, want UTF-8", p.mediaType, cs)
				}
				body := part.Text()
				golden(t, filepath.Join("testdata", p.golden), body)
				if !strings.Contains(body, channels.Headline(tt.alert)) {
					t.Errorf("%s part lacks the headline %q (æøå lost?)", p.mediaType, channels.Headline(tt.alert))
				}
				if diff := cmp.Diff([]string{tt.alert.MailboxURL}, uniq(urlRE.FindAllString(body, -1))); diff != "" {
					t.Errorf("%s part links (-want +got):\n%s", p.mediaType, diff)
				}
			}
			html, _ := m.Part("text/html")
			if n := strings.Count(html.Text(), "<a "); n != 1 {
				t.Errorf("HTML has %d links, want 1", n)
			}
		})
	}
}

func uniq(ss []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file (run with -update to create): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

func TestHTMLEscapes(t *testing.T) {
	srv := emailtest.New(t)
	s := newSender(t, srv, nil, nil)
	a := channeltest.Alert()
	a.Senders = []string{`<b onclick="x()">Ærø & Co</b>`}
	if _, err := s.Send(ctxT(t), rcpt, a); err != nil {
		t.Fatalf("Send: %v", err)
	}
	m := srv.Messages()[0]
	html, _ := m.Part("text/html")
	text, _ := m.Part("text/plain")
	if strings.Contains(html.Text(), "<b ") || !strings.Contains(html.Text(), "&lt;b onclick=&#34;x()&#34;&gt;Ærø &amp; Co&lt;/b&gt;") {
		t.Errorf("HTML does not escape the sender name:\n%s", html.Text())
	}
	if !strings.Contains(text.Text(), a.Senders[0]) {
		t.Errorf("text part lacks the sender name as given:\n%s", text.Text())
	}
}

func TestHeaders(t *testing.T) {
	srv := emailtest.New(t)
	s := newSender(t, srv, nil, nil)
	rc, err := s.Send(ctxT(t), rcpt, channeltest.Alert())
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	m := srv.Messages()[0]
	from, err := mail.ParseAddress(m.Header.Get("From"))
	if err != nil {
		t.Fatalf("From: %v", err)
	}
	to, err := mail.ParseAddress(m.Header.Get("To"))
	if err != nil {
		t.Fatalf("To: %v", err)
	}
	got := map[string]string{
		"Auto-Submitted":   m.Header.Get("Auto-Submitted"),
		"From":             from.String(),
		"To":               to.Address,
		"Message-ID":       m.MessageID(),
		"MIME-Version":     m.Header.Get("Mime-Version"),
		"Content-Language": m.Header.Get("Content-Language"),
		"ProviderID":       rc.ProviderID,
		"has Date":         boolString(m.Header.Get("Date") != ""),
	}
	want := map[string]string{
		"Auto-Submitted":   "auto-generated",
		"From":             `"Digital Post" <besked@digitalpost.example>`,
		"To":               rcptAddr,
		"Message-ID":       "<" + channeltest.Alert().DeliveryID + "@digitalpost.example>",
		"MIME-Version":     "1.0",
		"Content-Language": "da",
		"ProviderID":       "<" + channeltest.Alert().DeliveryID + "@digitalpost.example>",
		"has Date":         "true",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestMessageIDFollowsDelivery(t *testing.T) {
	srv := emailtest.New(t)
	s := newSender(t, srv, nil, nil)
	a := channeltest.Alert()
	b := channeltest.Alert()
	b.DeliveryID = "0f0e0d0c0b0a09080706050403020100"
	var receipts []string
	for _, alert := range []channels.Alert{a, a, b} {
		rc, err := s.Send(ctxT(t), rcpt, alert)
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		receipts = append(receipts, rc.ProviderID)
	}
	msgs := srv.Messages()
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.MessageID())
	}
	want := []string{
		"<" + a.DeliveryID + "@digitalpost.example>",
		"<" + a.DeliveryID + "@digitalpost.example>",
		"<" + b.DeliveryID + "@digitalpost.example>",
	}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("Message-IDs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, receipts); diff != "" {
		t.Errorf("ProviderIDs (-want +got):\n%s", diff)
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name     string
		to       string
		alter    func(*channels.Alert)
		wantKind channels.Kind
		wantCode string
	}{
		{"invalid address", "not an address", nil, channels.Gone, "invalid-address"},
		{"empty DeliveryID", rcptAddr, func(a *channels.Alert) { a.DeliveryID = "" }, channels.Permanent, "bad-delivery-id"},
		{"DeliveryID with a space", rcptAddr, func(a *channels.Alert) { a.DeliveryID = "a b" }, channels.Permanent, "bad-delivery-id"},
		{"relative mailbox URL", rcptAddr, func(a *channels.Alert) { a.MailboxURL = "/digitalpost" }, channels.Permanent, "bad-mailbox-url"},
		{"javascript mailbox URL", rcptAddr, func(a *channels.Alert) { a.MailboxURL = "javascript:alert(1)" }, channels.Permanent, "bad-mailbox-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := emailtest.New(t)
			s := newSender(t, srv, nil, nil)
			a := channeltest.Alert()
			if tt.alter != nil {
				tt.alter(&a)
			}
			_, err := s.Send(ctxT(t), channels.Address{Channel: channels.Email, Value: tt.to}, a)
			if k, c := channels.KindOf(err), channels.CodeOf(err); err == nil || k != tt.wantKind || c != tt.wantCode {
				t.Errorf("err = %v: kind %s code %q, want %s %q", err, k, c, tt.wantKind, tt.wantCode)
			}
			if err != nil && strings.Contains(err.Error(), "not an address") {
				t.Errorf("error quotes the address: %v", err)
			}
			if n := srv.Connections(); n != 0 {
				t.Errorf("connections = %d, want 0", n)
			}
		})
	}
}

// TestStallBoundedByTimeout: with no deadline on ctx, Config.Timeout ends a
// conversation the server stopped answering.
func TestStallBoundedByTimeout(t *testing.T) {
	for _, p := range []struct {
		name string
		at   emailtest.StallPoint
	}{{"after greeting", emailtest.StallAfterGreeting}, {"after DATA", emailtest.StallAfterData}} {
		t.Run(p.name, func(t *testing.T) {
			srv := emailtest.New(t)
			s := newSender(t, srv, nil, func(c *email.Config) { c.Timeout = 300 * time.Millisecond })
			srv.Stall(p.at)
			start := time.Now()
			_, err := s.Send(context.Background(), rcpt, channeltest.Alert())
			if k, c := channels.KindOf(err), channels.CodeOf(err); err == nil || k != channels.Transient || c != "timeout" {
				t.Errorf("err = %v: kind %s code %q, want transient timeout", err, k, c)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Send took %v with a 300ms Timeout", d)
			}
			if p.at == emailtest.StallAfterData && !channels.Unsure(err) {
				t.Errorf("a timeout after DATA must leave open that the server took the message")
			}
			if srv.Connections() != 1 || len(srv.Messages()) != 0 {
				t.Errorf("connections %d, messages %d; want 1, 0", srv.Connections(), len(srv.Messages()))
			}
		})
	}
}

// TestCancelMidConversation: cancelling ctx ends a send stalled after DATA
// at once, although Config.Timeout is long and go-mail itself only watches
// ctx while dialling.
func TestCancelMidConversation(t *testing.T) {
	srv := emailtest.New(t)
	s := newSender(t, srv, nil, func(c *email.Config) { c.Timeout = time.Hour })
	srv.Stall(emailtest.StallAfterData)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.Send(ctx, rcpt, channeltest.Alert())
		done <- err
	}()
	if err := srv.WaitStalled(ctxT(t), 1); err != nil {
		t.Fatalf("server never stalled: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || channels.KindOf(err) != channels.Transient {
			t.Errorf("err = %v, want a transient context.Canceled", err)
		}
	case <-ctxT(t).Done():
		t.Fatal("Send did not return after ctx was cancelled")
	}
}

func TestPing(t *testing.T) {
	tests := []struct {
		name     string
		arm      func(*emailtest.Server)
		wantErr  bool
		wantKind channels.Kind
	}{
		{"ok", func(*emailtest.Server) {}, false, 0},
		{"credentials refused", func(s *emailtest.Server) { s.RejectAuth() }, true, channels.Misconfigured},
		{"no STARTTLS", func(s *emailtest.Server) { s.SetSTARTTLS(false) }, true, channels.Misconfigured},
		{"greeting 421", func(s *emailtest.Server) {
			s.FailNext(emailtest.Failure{Stage: emailtest.StageGreeting, Code: 421, Text: "busy"})
		}, true, channels.Transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := emailtest.New(t, emailtest.WithSTARTTLS(), emailtest.WithAuth(user, pass))
			s := newSender(t, srv, nil, secure(srv))
			tt.arm(srv)
			err := s.Ping(ctxT(t))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Ping = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && channels.KindOf(err) != tt.wantKind {
				t.Errorf("KindOf(%v) = %s, want %s", err, channels.KindOf(err), tt.wantKind)
			}
			if srv.Connections() != 1 || len(srv.Messages()) != 0 {
				t.Errorf("connections %d, messages %d; want 1, 0", srv.Connections(), len(srv.Messages()))
			}
		})
	}
}

func TestConcurrentSends(t *testing.T) {
	srv := emailtest.New(t, emailtest.WithSTARTTLS(), emailtest.WithAuth(user, pass))
	s := newSender(t, srv, nil, secure(srv))
	const n = 8
	ids := []string{"aa", "bb", "cc", "dd", "ee", "ff", "a0", "b0"}
	errs := make(chan error, n)
	for i := range n {
		go func() {
			a := channeltest.Alert()
			a.DeliveryID = ids[i]
			_, err := s.Send(ctxT(t), rcpt, a)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Send: %v", err)
		}
	}
	msgs, err := srv.WaitMessages(ctxT(t), n)
	if err != nil {
		t.Fatalf("WaitMessages: %v", err)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.MessageID()] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct Message-IDs, want %d", len(seen), n)
	}
}

func TestConfigValidate(t *testing.T) {
	valid := email.Config{Host: "smtp.example.dk", From: fromAddr}
	tests := []struct {
		name       string
		mod        func(*email.Config)
		wantFields []string
	}{
		{"valid with defaults", func(*email.Config) {}, nil},
		{"valid in full", func(c *email.Config) {
			c.Port, c.Username, c.Password, c.TLSPolicy = 465, user, pass, email.TLSImplicit
			c.FromName, c.HELO, c.Timeout = "Digital Post", "postbud.example.dk", time.Minute
		}, nil},
		{"AUTH in clear to loopback", func(c *email.Config) {
			c.Host, c.TLSPolicy, c.Username, c.Password = "127.0.0.1", email.TLSNone, user, pass
		}, nil},
		{"no host", func(c *email.Config) { c.Host = "" }, []string{"Host"}},
		{"host with a path", func(c *email.Config) { c.Host = "smtp.example.dk/x" }, []string{"Host"}},
		{"port too big", func(c *email.Config) { c.Port = 70000 }, []string{"Port"}},
		{"negative port", func(c *email.Config) { c.Port = -1 }, []string{"Port"}},
		{"unknown TLS policy", func(c *email.Config) { c.TLSPolicy = "starttls" }, []string{"TLSPolicy"}},
		{"password without user", func(c *email.Config) { c.Password = pass }, []string{"Password"}},
		{"user without password", func(c *email.Config) { c.Username = user }, []string{"Username"}},
		{"AUTH in clear", func(c *email.Config) {
			c.TLSPolicy, c.Username, c.Password = email.TLSNone, user, pass
		}, []string{"TLSPolicy"}},
		{"no from", func(c *email.Config) { c.From = "" }, []string{"From"}},
		{"from with a name", func(c *email.Config) { c.From = "Digital Post <post@example.dk>" }, []string{"From"}},
		{"from not an address", func(c *email.Config) { c.From = "post" }, []string{"From"}},
		{"from name with a line break", func(c *email.Config) { c.FromName = "Digital\r\nBcc: x@y" }, []string{"FromName"}},
		{"HELO with a space", func(c *email.Config) { c.HELO = "my host" }, []string{"HELO"}},
		{"negative timeout", func(c *email.Config) { c.Timeout = -time.Second }, []string{"Timeout"}},
		{"everything wrong", func(c *email.Config) {
			*c = email.Config{Port: -1, TLSPolicy: "x", Password: "p", HELO: "a b", Timeout: -1, FromName: "\n"}
		}, []string{"FromName", "From", "HELO", "Host", "Password", "Port", "TLSPolicy", "Timeout"}},
	}
	fieldRE := regexp.MustCompile(`^email: (\w+): `)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.mod(&c)
			err := c.Validate()
			var fields []string
			if err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					m := fieldRE.FindStringSubmatch(line)
					if m == nil {
						t.Errorf("error line does not name a field: %q", line)
						continue
					}
					fields = append(fields, m[1])
				}
			}
			less := func(a, b string) bool { return a < b }
			if diff := cmp.Diff(tt.wantFields, fields, cmpopts.SortSlices(less)); diff != "" {
				t.Errorf("fields named (-want +got):\n%s\nerror: %v", diff, err)
			}
			if _, err := email.New(c, nil); (err == nil) != (tt.wantFields == nil) {
				t.Errorf("New error = %v, want error %v", err, tt.wantFields != nil)
			}
		})
	}
}
