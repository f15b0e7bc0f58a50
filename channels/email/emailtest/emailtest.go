// Package emailtest is a fake SMTP server for tests of the email channel and
// of anything that sends through it (the dispatcher's end-to-end tests).
//
// The server listens on 127.0.0.1 and speaks real SMTP (RFC 5321): EHLO/HELO,
// STARTTLS with a self-signed certificate it generates (or implicit TLS),
// AUTH PLAIN and LOGIN against one configured user, MAIL, RCPT, DATA with
// dot-unstuffing, RSET, NOOP and QUIT. It records every message it accepts,
// raw and parsed, and it can be told to fail: reply a chosen code at a chosen
// stage (greylisting, unknown recipient, refused credentials, permanent
// rejections), withdraw STARTTLS, or stall. It is safe for concurrent use and
// closes itself, with all its goroutines, through t.Cleanup.
package emailtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// MaxMessageBytes is the largest DATA the server accepts; a larger message
// is refused with 552 5.3.4.
const MaxMessageBytes = 10 << 20

// Stage is a point of the SMTP conversation where the server can be told to
// fail.
type Stage int

// The stages a Failure can target.
const (
	// StageGreeting replaces the 220 greeting; the server closes the
	// connection after the reply.
	StageGreeting Stage = iota + 1
	// StageAuth answers an AUTH exchange once the client sent its
	// credentials, whatever they are.
	StageAuth
	// StageMail answers MAIL FROM.
	StageMail
	// StageRcpt answers RCPT TO.
	StageRcpt
	// StageData answers the DATA command (before the message is sent).
	StageData
	// StageMessage answers the final "." of the message: the message is
	// read in full but not accepted.
	StageMessage
)

func (s Stage) String() string {
	switch s {
	case StageGreeting:
		return "greeting"
	case StageAuth:
		return "auth"
	case StageMail:
		return "mail"
	case StageRcpt:
		return "rcpt"
	case StageData:
		return "data"
	case StageMessage:
		return "message"
	}
	return "stage(" + strconv.Itoa(int(s)) + ")"
}

// Failure is a reply the server gives instead of the normal one.
type Failure struct {
	// Stage is where the reply replaces the normal one.
	Stage Stage
	// Code is the SMTP reply code (451, 550, ...).
	Code int
	// Enhanced is the RFC 3463 enhanced status code ("5.1.1") that starts
	// the reply text; empty for none.
	Enhanced string
	// Text is the reply text; "{rcpt}" is replaced by the recipient's
	// address at StageRcpt (as real servers do, which is what adapters must
	// keep out of their errors).
	Text string
	// Times is how many times the failure fires; 0 means once.
	Times int
}

// StallPoint is where a stalled server stops answering.
type StallPoint int

// The places the server can stall.
const (
	// StallNone answers normally.
	StallNone StallPoint = iota
	// StallAfterGreeting sends the 220 greeting and then never answers.
	StallAfterGreeting
	// StallAfterData reads the whole message after DATA and never answers
	// its final ".".
	StallAfterData
)

// Message is one message the server accepted.
type Message struct {
	// From is the envelope sender (MAIL FROM), without angle brackets.
	From string
	// To are the envelope recipients (RCPT TO), in order.
	To []string
	// Data is the message as sent after DATA, dot-unstuffed, with its CRLF
	// line ends and without the terminating "." line.
	Data []byte
	// Header is the parsed header of Data.
	Header mail.Header
	// Parts are the leaf MIME parts of the body in order, with their
	// transfer encoding (quoted-printable, base64) decoded. A message that
	// is not multipart has one part.
	Parts []Part
	// ParseErr is why Data could not be parsed, if it could not.
	ParseErr error
	// TLS tells whether the session was encrypted (STARTTLS or implicit).
	TLS bool
	// AuthUser is the user the session authenticated as, if any.
	AuthUser string
	// QueueID is the id the server returned in its 250 reply.
	QueueID string
}

// MessageID returns the Message-ID header, angle brackets included.
func (m Message) MessageID() string { return m.Header.Get("Message-Id") }

// Subject returns the Subject header with RFC 2047 words decoded.
func (m Message) Subject() string {
	s := m.Header.Get("Subject")
	if d, err := new(mime.WordDecoder).DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// Part returns the first part of the given media type ("text/plain").
func (m Message) Part(mediaType string) (Part, bool) {
	for _, p := range m.Parts {
		if p.MediaType == mediaType {
			return p, true
		}
	}
	return Part{}, false
}

// Part is one leaf MIME part of a message.
type Part struct {
	// MediaType is the lower-case media type ("text/html").
	MediaType string
	// Params are the Content-Type parameters ("charset").
	Params map[string]string
	// Header is the part's header (without Content-Transfer-Encoding when
	// the body was quoted-printable).
	Header textproto.MIMEHeader
	// Body is the decoded body.
	Body []byte
}

// Text returns the body as a string with CRLF line ends turned into LF.
func (p Part) Text() string {
	return strings.ReplaceAll(string(p.Body), "\r\n", "\n")
}

// Option configures a Server.
type Option func(*options)

type options struct {
	hostname    string
	startTLS    bool
	implicitTLS bool
	user, pass  string
	auth        bool
	mechs       []string
	enhanced    bool
}

// WithSTARTTLS makes the server offer STARTTLS. While it does, it offers AUTH
// only after TLS is on, as servers configured for submission do.
func WithSTARTTLS() Option { return func(o *options) { o.startTLS = true } }

// WithImplicitTLS makes the server speak TLS from the first byte (SMTPS,
// port 465 style).
func WithImplicitTLS() Option { return func(o *options) { o.implicitTLS = true } }

// WithAuth makes the server require AUTH as user with pass before MAIL.
func WithAuth(user, pass string) Option {
	return func(o *options) { o.auth, o.user, o.pass = true, user, pass }
}

// WithAuthMechanisms sets the AUTH mechanisms offered, from "PLAIN" and
// "LOGIN"; both by default.
func WithAuthMechanisms(mechs ...string) Option {
	return func(o *options) { o.mechs = mechs }
}

// WithoutEnhancedStatusCodes stops the server advertising
// ENHANCEDSTATUSCODES; its replies still start with enhanced codes, as many
// real servers' do.
func WithoutEnhancedStatusCodes() Option { return func(o *options) { o.enhanced = false } }

// WithHostname sets the name the server greets with; "mx.emailtest.invalid"
// by default.
func WithHostname(name string) Option { return func(o *options) { o.hostname = name } }

// Server is a fake SMTP server on 127.0.0.1.
type Server struct {
	opts      options
	ln        net.Listener
	serverTLS *tls.Config
	pool      *x509.CertPool

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu       sync.Mutex
	notify   chan struct{} // closed and replaced on every change
	conns    map[net.Conn]struct{}
	nconns   int
	msgs     []Message
	failures []Failure
	stall    StallPoint
	stalled  int
	startTLS bool
	queueSeq int
}

// New starts a server on 127.0.0.1 and registers its Close with t.Cleanup.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := options{hostname: "mx.emailtest.invalid", mechs: []string{"PLAIN", "LOGIN"}, enhanced: true}
	for _, opt := range opts {
		opt(&o)
	}
	cert, pool, err := selfSigned()
	if err != nil {
		t.Fatalf("emailtest: certificate: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("emailtest: listen: %v", err)
	}
	s := &Server{
		opts:      o,
		serverTLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		pool:      pool,
		closing:   make(chan struct{}),
		notify:    make(chan struct{}),
		conns:     make(map[net.Conn]struct{}),
		startTLS:  o.startTLS,
	}
	if o.implicitTLS {
		ln = tls.NewListener(ln, s.serverTLS)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Addr returns the server's "127.0.0.1:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host returns the server's host, "127.0.0.1".
func (s *Server) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port returns the server's port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// CertPool returns a pool holding the server's self-signed certificate.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// ClientTLSConfig returns a client configuration that trusts the server's
// certificate. Each call returns a new value.
func (s *Server) ClientTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.pool, ServerName: s.Host(), MinVersion: tls.VersionTLS12}
}

// Messages returns the messages accepted so far, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Delivered returns the raw DATA of the messages accepted so far, in order.
func (s *Server) Delivered() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]byte, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = m.Data
	}
	return out
}

// WaitMessages waits until at least n messages were accepted and returns
// them, or returns ctx's error.
func (s *Server) WaitMessages(ctx context.Context, n int) ([]Message, error) {
	if err := s.wait(ctx, func() bool { return len(s.msgs) >= n }); err != nil {
		return nil, err
	}
	return s.Messages(), nil
}

// Connections returns how many connections the server accepted.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nconns
}

// WaitStalled waits until sessions stalled n times in all, or returns ctx's
// error.
func (s *Server) WaitStalled(ctx context.Context, n int) error {
	return s.wait(ctx, func() bool { return s.stalled >= n })
}

// FailNext arms f: the next f.Times times the conversation reaches f.Stage,
// the server replies f.Code instead of the normal reply. Failures armed for
// the same stage fire in the order they were armed.
func (s *Server) FailNext(f Failure) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, f)
}

// Greylist makes the next n replies at stage (StageRcpt or StageData) a
// "451 4.7.1" greylisting refusal.
func (s *Server) Greylist(stage Stage, n int) {
	s.FailNext(Failure{Stage: stage, Code: 451, Enhanced: "4.7.1",
		Text: "Greylisted, please try again later", Times: n})
}

// RejectRecipient makes the next RCPT TO fail with "550 5.1.1" naming the
// recipient, as Postfix does.
func (s *Server) RejectRecipient() {
	s.FailNext(Failure{Stage: StageRcpt, Code: 550, Enhanced: "5.1.1",
		Text: "<{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"})
}

// RejectAuth makes the next AUTH fail with "535 5.7.8".
func (s *Server) RejectAuth() {
	s.FailNext(Failure{Stage: StageAuth, Code: 535, Enhanced: "5.7.8",
		Text: "Error: authentication failed"})
}

// Stall makes every later session stall at p, until the client or the
// server closes the connection; StallNone ends it.
func (s *Server) Stall(p StallPoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stall = p
}

// SetSTARTTLS sets whether later EHLO replies offer STARTTLS.
func (s *Server) SetSTARTTLS(offer bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startTLS = offer
}

// Close stops the server, closes every open connection and waits for all
// its goroutines. It is called by t.Cleanup and may be called again.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		_ = s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// changed wakes the waiters; s.mu must be held.
func (s *Server) changed() {
	close(s.notify)
	s.notify = make(chan struct{})
}

func (s *Server) wait(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ok := cond()
		ch := s.notify
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// takeFailure returns and spends the first failure armed for stage.
func (s *Server) takeFailure(stage Stage) (Failure, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.failures {
		if f.Stage != stage {
			continue
		}
		f.Times--
		if f.Times == 0 {
			s.failures = append(s.failures[:i], s.failures[i+1:]...)
		} else {
			s.failures[i] = f
		}
		return f, true
	}
	return Failure{}, false
}

func (s *Server) stallPoint() StallPoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stall
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		select {
		case <-s.closing:
			s.mu.Unlock()
			_ = conn.Close()
			return
		default:
		}
		s.conns[conn] = struct{}{}
		s.nconns++
		s.changed()
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				_ = conn.Close()
				s.mu.Lock()
				delete(s.conns, conn)
				s.mu.Unlock()
			}()
			sess := &session{s: s, conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn), tls: s.opts.implicitTLS}
			sess.run()
		}()
	}
}

// session is one SMTP connection.
type session struct {
	s    *Server
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer

	tls      bool
	greeted  bool
	authUser string
	from     string
	hasFrom  bool
	rcpts    []string
}

func (c *session) reply(code int, enhanced, text string) error {
	if enhanced != "" {
		text = enhanced + " " + text
	}
	if _, err := fmt.Fprintf(c.w, "%d %s\r\n", code, text); err != nil {
		return err
	}
	return c.w.Flush()
}

func (c *session) replyFailure(f Failure, rcpt string) error {
	return c.reply(f.Code, f.Enhanced, strings.ReplaceAll(f.Text, "{rcpt}", rcpt))
}

func (c *session) readLine() (string, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// hold blocks until the connection is closed by either side.
func (c *session) hold() {
	c.s.mu.Lock()
	c.s.stalled++
	c.s.changed()
	c.s.mu.Unlock()
	_, _ = io.Copy(io.Discard, c.r)
}

func (c *session) resetTx() {
	c.from, c.hasFrom, c.rcpts = "", false, nil
}

func (c *session) authOffered() bool {
	if !c.s.opts.auth {
		return false
	}
	c.s.mu.Lock()
	starttls := c.s.startTLS
	c.s.mu.Unlock()
	return c.tls || !starttls
}

func (c *session) run() {
	if f, ok := c.s.takeFailure(StageGreeting); ok {
		_ = c.replyFailure(f, "")
		return
	}
	if err := c.reply(220, "", c.s.opts.hostname+" ESMTP emailtest"); err != nil {
		return
	}
	if c.s.stallPoint() == StallAfterGreeting {
		c.hold()
		return
	}
	for {
		line, err := c.readLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		var done bool
		switch verb {
		case "EHLO":
			err = c.ehlo(arg)
		case "HELO":
			if arg == "" {
				err = c.reply(501, "5.5.4", "Syntax: HELO hostname")
				break
			}
			c.greeted = true
			c.resetTx()
			err = c.reply(250, "", c.s.opts.hostname)
		case "STARTTLS":
			done, err = c.starttls()
		case "AUTH":
			err = c.auth(arg)
		case "MAIL":
			err = c.mail(arg)
		case "RCPT":
			err = c.rcpt(arg)
		case "DATA":
			done, err = c.data()
		case "RSET":
			c.resetTx()
			err = c.reply(250, "2.0.0", "Ok")
		case "NOOP":
			err = c.reply(250, "2.0.0", "Ok")
		case "VRFY":
			err = c.reply(252, "2.0.0", "Cannot VRFY user")
		case "QUIT":
			_ = c.reply(221, "2.0.0", "Bye")
			return
		default:
			err = c.reply(500, "5.5.2", "Error: command not recognized")
		}
		if err != nil || done {
			return
		}
	}
}

func (c *session) ehlo(arg string) error {
	if arg == "" {
		return c.reply(501, "5.5.4", "Syntax: EHLO hostname")
	}
	c.greeted = true
	c.resetTx()
	c.s.mu.Lock()
	starttls := c.s.startTLS && !c.tls
	c.s.mu.Unlock()
	lines := []string{c.s.opts.hostname, "8BITMIME", "SMTPUTF8", "SIZE " + strconv.Itoa(MaxMessageBytes)}
	if c.s.opts.enhanced {
		lines = append(lines, "ENHANCEDSTATUSCODES")
	}
	if starttls {
		lines = append(lines, "STARTTLS")
	}
	if c.authOffered() && c.authUser == "" {
		lines = append(lines, "AUTH "+strings.Join(c.s.opts.mechs, " "))
	}
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		if _, err := fmt.Fprintf(c.w, "250%s%s\r\n", sep, l); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

// starttls switches the session to TLS; done reports a session to end.
func (c *session) starttls() (done bool, err error) {
	c.s.mu.Lock()
	offered := c.s.startTLS && !c.tls
	c.s.mu.Unlock()
	if !offered {
		return false, c.reply(502, "5.5.1", "Error: command not implemented")
	}
	if err := c.reply(220, "2.0.0", "Ready to start TLS"); err != nil {
		return true, err
	}
	tc := tls.Server(c.conn, c.s.serverTLS)
	if err := tc.Handshake(); err != nil {
		return true, nil
	}
	c.r, c.w = bufio.NewReader(tc), bufio.NewWriter(tc)
	c.tls, c.greeted, c.authUser = true, false, ""
	c.resetTx()
	return false, nil
}

func (c *session) decode(s string) (string, bool) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	return string(b), err == nil
}

// challenge sends a 334 challenge and returns the client's answer; ok is
// false when the client cancelled or sent bad base64.
func (c *session) challenge(prompt string) (answer string, ok bool, err error) {
	if err := c.reply(334, "", base64.StdEncoding.EncodeToString([]byte(prompt))); err != nil {
		return "", false, err
	}
	line, err := c.readLine()
	if err != nil {
		return "", false, err
	}
	if line == "*" {
		return "", false, c.reply(501, "5.7.0", "Authentication cancelled")
	}
	a, ok := c.decode(line)
	if !ok {
		return "", false, c.reply(501, "5.5.2", "Invalid base64")
	}
	return a, true, nil
}

func (c *session) auth(arg string) error {
	switch {
	case !c.greeted:
		return c.reply(503, "5.5.1", "Error: send EHLO first")
	case !c.authOffered():
		return c.reply(503, "5.5.1", "Error: authentication not enabled")
	case c.authUser != "":
		return c.reply(503, "5.5.1", "Error: already authenticated")
	}
	mech, initial, _ := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	offered := false
	for _, m := range c.s.opts.mechs {
		offered = offered || strings.EqualFold(m, mech)
	}
	if !offered {
		return c.reply(504, "5.5.4", "Unrecognized authentication type")
	}
	var user, pass string
	switch mech {
	case "PLAIN":
		resp := initial
		if resp == "" {
			a, ok, err := c.challenge("")
			if !ok || err != nil {
				return err
			}
			resp = base64.StdEncoding.EncodeToString([]byte(a))
		}
		dec, ok := c.decode(resp)
		fields := strings.Split(dec, "\x00")
		if !ok || len(fields) != 3 {
			return c.reply(501, "5.5.2", "Invalid PLAIN response")
		}
		user, pass = fields[1], fields[2]
	case "LOGIN":
		if initial != "" {
			u, ok := c.decode(initial)
			if !ok {
				return c.reply(501, "5.5.2", "Invalid base64")
			}
			user = u
		} else {
			u, ok, err := c.challenge("Username:")
			if !ok || err != nil {
				return err
			}
			user = u
		}
		p, ok, err := c.challenge("Password:")
		if !ok || err != nil {
			return err
		}
		pass = p
	default:
		return c.reply(504, "5.5.4", "Unrecognized authentication type")
	}
	if f, ok := c.s.takeFailure(StageAuth); ok {
		return c.replyFailure(f, "")
	}
	if user != c.s.opts.user || pass != c.s.opts.pass {
		return c.reply(535, "5.7.8", "Error: authentication failed")
	}
	c.authUser = user
	return c.reply(235, "2.7.0", "Authentication successful")
}

// path returns the address in "<addr> params" after a "FROM:"/"TO:" prefix.
func path(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimSpace(arg[len(prefix):])
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", false
	}
	return rest[1:end], true
}

func (c *session) mail(arg string) error {
	switch {
	case !c.greeted:
		return c.reply(503, "5.5.1", "Error: send HELO/EHLO first")
	case c.s.opts.auth && c.authUser == "":
		return c.reply(530, "5.7.0", "Authentication required")
	case c.hasFrom:
		return c.reply(503, "5.5.1", "Error: nested MAIL command")
	}
	from, ok := path(arg, "FROM:")
	if !ok {
		return c.reply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
	}
	if f, ok := c.s.takeFailure(StageMail); ok {
		return c.replyFailure(f, "")
	}
	c.from, c.hasFrom = from, true
	return c.reply(250, "2.1.0", "Ok")
}

func (c *session) rcpt(arg string) error {
	if !c.hasFrom {
		return c.reply(503, "5.5.1", "Error: need MAIL command")
	}
	to, ok := path(arg, "TO:")
	if !ok || to == "" {
		return c.reply(501, "5.5.4", "Syntax: RCPT TO:<address>")
	}
	if f, ok := c.s.takeFailure(StageRcpt); ok {
		return c.replyFailure(f, to)
	}
	c.rcpts = append(c.rcpts, to)
	return c.reply(250, "2.1.5", "Ok")
}

// readData reads the message up to the "." line, dot-unstuffed, keeping
// CRLF; tooBig reports a message over MaxMessageBytes (read to its end).
func (c *session) readData() (data []byte, tooBig bool, err error) {
	var buf bytes.Buffer
	for {
		line, err := c.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: keep it whole.
			rest, err2 := c.r.ReadBytes('\n')
			line, err = append(append([]byte(nil), line...), rest...), err2
		}
		if err != nil {
			return nil, false, err
		}
		if bytes.Equal(line, []byte(".\r\n")) || bytes.Equal(line, []byte(".\n")) {
			break
		}
		if line[0] == '.' {
			line = line[1:]
		}
		if buf.Len()+len(line) > MaxMessageBytes {
			tooBig = true
			continue
		}
		buf.Write(line)
	}
	return buf.Bytes(), tooBig, nil
}

func (c *session) data() (done bool, err error) {
	if !c.hasFrom || len(c.rcpts) == 0 {
		return false, c.reply(503, "5.5.1", "Error: need RCPT command")
	}
	if f, ok := c.s.takeFailure(StageData); ok {
		return false, c.replyFailure(f, "")
	}
	if err := c.reply(354, "", "End data with <CR><LF>.<CR><LF>"); err != nil {
		return true, err
	}
	data, tooBig, err := c.readData()
	if err != nil {
		return true, err
	}
	if c.s.stallPoint() == StallAfterData {
		c.hold()
		return true, nil
	}
	if f, ok := c.s.takeFailure(StageMessage); ok {
		c.resetTx()
		return false, c.replyFailure(f, "")
	}
	if tooBig {
		c.resetTx()
		return false, c.reply(552, "5.3.4", "Error: message too big")
	}
	m := Message{From: c.from, To: c.rcpts, Data: data, TLS: c.tls, AuthUser: c.authUser}
	m.Header, m.Parts, m.ParseErr = parse(data)
	c.s.mu.Lock()
	c.s.queueSeq++
	m.QueueID = fmt.Sprintf("Q%08X", c.s.queueSeq)
	c.s.msgs = append(c.s.msgs, m)
	c.s.changed()
	c.s.mu.Unlock()
	c.resetTx()
	return false, c.reply(250, "2.0.0", "Ok: queued as "+m.QueueID)
}

// parse parses a message into its header and leaf parts.
func parse(data []byte) (mail.Header, []Part, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	parts, err := parseEntity(textproto.MIMEHeader(msg.Header), msg.Body, false)
	return msg.Header, parts, err
}

func parseEntity(h textproto.MIMEHeader, body io.Reader, decoded bool) ([]Part, error) {
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, fmt.Errorf("content-type: %w", err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		var parts []Part
		for {
			p, err := mr.NextPart() // decodes quoted-printable itself
			if err == io.EOF {
				return parts, nil
			}
			if err != nil {
				return parts, fmt.Errorf("multipart: %w", err)
			}
			sub, err := parseEntity(p.Header, p, true)
			parts = append(parts, sub...)
			if err != nil {
				return parts, err
			}
		}
	}
	switch cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); {
	case cte == "base64":
		body = base64.NewDecoder(base64.StdEncoding, &newlineStripper{r: body})
	case cte == "quoted-printable" && !decoded:
		body = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	return []Part{{MediaType: mt, Params: params, Header: h, Body: b}}, nil
}

// newlineStripper drops CR and LF, for base64 bodies split into lines.
type newlineStripper struct{ r io.Reader }

func (n *newlineStripper) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for _, b := range p[:k] {
			if b != '\r' && b != '\n' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// selfSigned makes a self-signed ECDSA certificate for 127.0.0.1, ::1 and
// localhost, valid for a day.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "emailtest"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
