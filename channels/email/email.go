// Package email is the email channel: it sends an alert ("you have new
// Digital Post from …") as a multipart text + HTML message through an SMTP
// submission server, using github.com/wneessen/go-mail.
//
// Each Send dials the server, says EHLO, upgrades with STARTTLS or speaks
// TLS from the start (per Config.TLSPolicy), authenticates with PLAIN or
// LOGIN when a Username is set, sends one message and QUITs. Connections are
// not pooled. The whole conversation is bounded by Config.Timeout and by
// ctx: go-mail's own context only bounds the dial and its timeout is
// renewed per phase, so the adapter puts a hard deadline on the connection
// itself and cuts it when ctx ends.
//
// The message carries the shared texts (channels.Title, Headline, ReadAt),
// one link (the configured mailbox URL) and nothing of the letter. Its
// Message-ID is derived from Alert.DeliveryID, so a retried delivery carries
// the same Message-ID; it is also the Receipt's ProviderID.
//
// Failures are classified from the SMTP reply:
//
//	reply                                         stage             kind
//	4xx (421, 450, 451 greylisting, 452)          any               transient
//	530, 534, 535, x.7.8 (authentication)         any               misconfigured
//	5xx before MAIL (greeting, EHLO, STARTTLS)    connect           misconfigured
//	5xx to MAIL FROM (our sender refused)         mail              misconfigured
//	550/551/553 with 5.1.1, 5.1.2 or 5.1.10       rcpt, data        gone
//	other 5xx (552, 554, 550 5.7.1 …)             rcpt, data        permanent
//	STARTTLS required but not offered, AUTH not
//	offered, TLS certificate refused              connect           misconfigured
//	network errors, timeouts, cancelled ctx       any               transient
//
// Errors carry the reply code ("550 5.1.1") and never the server's reply
// text, which often quotes the recipient's address.
package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	netmail "net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	gosmtp "github.com/wneessen/go-mail/smtp"

	"github.com/digitalpost/postbud/channels"
)

// TLSPolicy is how the connection to the SMTP server is encrypted.
type TLSPolicy string

// The TLS policies.
const (
	// TLSMandatory requires STARTTLS; a server that does not offer it is a
	// misconfiguration.
	TLSMandatory TLSPolicy = "mandatory"
	// TLSOpportunistic uses STARTTLS when the server offers it.
	TLSOpportunistic TLSPolicy = "opportunistic"
	// TLSNone never encrypts.
	TLSNone TLSPolicy = "none"
	// TLSImplicit speaks TLS from the first byte (SMTPS, port 465).
	TLSImplicit TLSPolicy = "implicit"
)

// Defaults for Config fields left zero.
const (
	DefaultPort         = 587
	DefaultImplicitPort = 465
	DefaultFromName     = "Digital Post"
	DefaultTimeout      = 30 * time.Second
)

// Config configures the email channel.
type Config struct {
	// Host is the SMTP server's host name or IP address. Required.
	Host string
	// Port is the SMTP server's port. Default 587 (465 when TLSPolicy is
	// "implicit").
	Port int
	// Username turns on SMTP AUTH (PLAIN or LOGIN, whichever the server
	// offers, PLAIN first). Default: no AUTH.
	Username string
	// Password is the SMTP AUTH password; set with Username.
	Password string
	// TLSPolicy is "mandatory" (STARTTLS required), "opportunistic",
	// "none" or "implicit" (SMTPS). Default "mandatory".
	TLSPolicy TLSPolicy
	// From is the sender address ("post@besked.digitalpost.dk"), a bare
	// address. Its domain is also the right-hand side of the Message-ID.
	// Required.
	From string
	// FromName is the sender's display name. Default "Digital Post".
	FromName string
	// HELO is the name the client gives in EHLO/HELO. Default: the host's
	// name (os.Hostname).
	HELO string
	// Timeout bounds one whole SMTP conversation, from dial to QUIT.
	// Default 30s. A shorter ctx deadline wins.
	Timeout time.Duration
	// TLSConfig overrides the TLS client configuration (tests use it for a
	// fake's root CAs). Default: system roots, ServerName = Host, TLS 1.2+.
	TLSConfig *tls.Config
}

// Validate reports every problem with c at once, each naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("email: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch {
	case c.Host == "":
		bad("Host", "required")
	case strings.ContainsAny(c.Host, " \t\r\n/"):
		bad("Host", "%q is not a host name", c.Host)
	}
	if c.Port < 0 || c.Port > 65535 {
		bad("Port", "%d is out of range 1–65535", c.Port)
	}
	switch c.TLSPolicy {
	case "", TLSMandatory, TLSOpportunistic, TLSNone, TLSImplicit:
	default:
		bad("TLSPolicy", "%q is not one of mandatory, opportunistic, none, implicit", c.TLSPolicy)
	}
	if c.Password != "" && c.Username == "" {
		bad("Password", "set without Username")
	}
	if c.Username != "" && c.Password == "" {
		bad("Username", "set without Password")
	}
	if c.Username != "" && c.TLSPolicy == TLSNone && !isLoopback(c.Host) {
		bad("TLSPolicy", `"none" would send Username and Password in clear text`)
	}
	if c.From == "" {
		bad("From", "required")
	} else if a, err := netmail.ParseAddress(c.From); err != nil || a.Address != c.From || a.Name != "" {
		bad("From", "%q is not a bare email address", c.From)
	} else if domainOf(c.From) == "" {
		bad("From", "%q has no domain", c.From)
	}
	if strings.ContainsAny(c.FromName, "\r\n") {
		bad("FromName", "contains a line break")
	}
	if strings.ContainsAny(c.HELO, " \t\r\n") {
		bad("HELO", "%q is not a host name", c.HELO)
	}
	if c.Timeout < 0 {
		bad("Timeout", "%v is negative", c.Timeout)
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return addr[i+1:]
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.TLSPolicy == "" {
		c.TLSPolicy = TLSMandatory
	}
	if c.Port == 0 {
		c.Port = DefaultPort
		if c.TLSPolicy == TLSImplicit {
			c.Port = DefaultImplicitPort
		}
	}
	if c.FromName == "" {
		c.FromName = DefaultFromName
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Sender sends alerts by email. It is safe for concurrent use.
type Sender struct {
	cfg    Config
	from   *netmail.Address
	domain string
	tls    *tls.Config
	logger *slog.Logger
}

var (
	_ channels.Sender = (*Sender)(nil)
	_ channels.Pinger = (*Sender)(nil)
)

// New returns a Sender for cfg. It does not connect; see Ping.
func New(cfg Config, logger *slog.Logger) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tc := &tls.Config{}
	if cfg.TLSConfig != nil {
		tc = cfg.TLSConfig.Clone()
	}
	if tc.ServerName == "" {
		tc.ServerName = cfg.Host
	}
	if tc.MinVersion == 0 {
		tc.MinVersion = tls.VersionTLS12
	}
	return &Sender{
		cfg:    cfg,
		from:   &netmail.Address{Name: cfg.FromName, Address: cfg.From},
		domain: domainOf(cfg.From),
		tls:    tc,
		logger: logger.With(slog.String("channel", string(channels.Email))),
	}, nil
}

// Send sends alert a to the email address to. The Receipt's ProviderID is
// the message's Message-ID ("<DeliveryID@domain-of-From>").
func (s *Sender) Send(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return channels.Receipt{}, ctxError(err)
	}
	if to.Channel != "" && to.Channel != channels.Email {
		return channels.Receipt{}, channels.Fail(channels.Permanent, "wrong-channel",
			fmt.Errorf("send email: address is for channel %q", to.Channel))
	}
	msg, id, err := s.message(to.Value, a)
	if err != nil {
		return channels.Receipt{}, err
	}
	err = s.converse(ctx, func(c *gomail.Client, sc *gosmtp.Client) error {
		return c.SendWithSMTPClient(sc, msg)
	})
	attrs := []slog.Attr{slog.String("message_id", a.MessageID), slog.String("delivery_id", a.DeliveryID)}
	if err != nil {
		level := slog.LevelDebug
		if channels.KindOf(err) == channels.Misconfigured {
			level = slog.LevelError
		}
		s.logger.LogAttrs(ctx, level, "email not sent", append(attrs,
			slog.String("kind", channels.KindOf(err).String()), slog.String("code", channels.CodeOf(err)))...)
		return channels.Receipt{}, err
	}
	s.logger.LogAttrs(ctx, slog.LevelDebug, "email sent", append(attrs, slog.String("provider_id", id))...)
	return channels.Receipt{ProviderID: id}, nil
}

// Ping connects, says EHLO, does STARTTLS and AUTH as configured, and QUITs.
// Its errors are classified like Send's.
func (s *Sender) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return ctxError(err)
	}
	return s.converse(ctx, nil)
}

// converse runs one SMTP conversation: dial, EHLO, STARTTLS, AUTH, then fn
// (if any), then QUIT. The conversation ends by Config.Timeout or when ctx
// ends, whichever comes first. Errors come back classified.
func (s *Sender) converse(ctx context.Context, fn func(*gomail.Client, *gosmtp.Client) error) error {
	deadline := time.Now().Add(s.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var (
		mu   sync.Mutex
		conn *boundedConn
	)
	current := func() *boundedConn {
		mu.Lock()
		defer mu.Unlock()
		return conn
	}
	dial := func(dctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		raw, err := d.DialContext(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		bc := newBoundedConn(raw, deadline)
		mu.Lock()
		conn = bc
		mu.Unlock()
		if ctx.Err() != nil { // ended before the AfterFunc below could see bc
			bc.expire()
		}
		if s.cfg.TLSPolicy == TLSImplicit {
			tc := tls.Client(bc, s.tls)
			if err := tc.HandshakeContext(dctx); err != nil {
				return nil, err
			}
			return tc, nil
		}
		return bc, nil
	}
	stop := context.AfterFunc(ctx, func() {
		if bc := current(); bc != nil {
			bc.expire()
		}
	})
	defer stop()
	defer func() {
		// go-mail leaves the connection open when EHLO, STARTTLS or AUTH
		// fails; close it whatever happened.
		if bc := current(); bc != nil {
			_ = bc.Close()
		}
	}()

	client, err := gomail.NewClient(s.cfg.Host, s.options(dial)...)
	if err != nil {
		return channels.Fail(channels.Misconfigured, "client", fmt.Errorf("send email: %w", err))
	}
	sc, err := client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return s.classify(ctx, current(), stageConnect, err)
	}
	if fn != nil {
		if err := fn(client, sc); err != nil {
			return s.classify(ctx, current(), stageSend, err)
		}
		// The message is accepted: a failing QUIT changes nothing.
		_ = client.CloseWithSMTPClient(sc)
		return nil
	}
	if err := client.CloseWithSMTPClient(sc); err != nil {
		return s.classify(ctx, current(), stageConnect, err)
	}
	return nil
}

func (s *Sender) options(dial gomail.DialContextFunc) []gomail.Option {
	opts := []gomail.Option{
		gomail.WithPort(s.cfg.Port),
		gomail.WithTimeout(s.cfg.Timeout),
		gomail.WithTLSConfig(s.tls),
		gomail.WithDialContextFunc(dial),
		// One message per connection: no NOOP before it, no RSET after it
		// (a failing RSET would turn an accepted message into an error).
		gomail.WithoutNoop(),
		gomail.WithoutRset(),
	}
	switch s.cfg.TLSPolicy {
	case TLSMandatory:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case TLSOpportunistic:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case TLSImplicit:
		// The dial function above does the TLS handshake; WithSSL keeps
		// go-mail from also trying STARTTLS.
		opts = append(opts, gomail.WithSSL(), gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if s.cfg.HELO != "" {
		opts = append(opts, gomail.WithHELO(s.cfg.HELO))
	}
	if s.cfg.Username != "" {
		opts = append(opts,
			gomail.WithUsername(s.cfg.Username),
			gomail.WithPassword(s.cfg.Password),
			gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthPlain, gomail.SMTPAuthLogin))
	}
	return opts
}

// ctxError is the error of a send that ctx ended.
func ctxError(err error) error {
	code := "canceled"
	if errors.Is(err, context.DeadlineExceeded) {
		code = "timeout"
	}
	return channels.Fail(channels.Transient, code, fmt.Errorf("send email: %w", err))
}

// replyCode formats an SMTP reply code for channels.Error.Code.
func replyCode(code int, enhanced string) string {
	s := strconv.Itoa(code)
	if enhanced != "" {
		s += " " + enhanced
	}
	return s
}
