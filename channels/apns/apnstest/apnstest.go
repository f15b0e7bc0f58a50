// Package apnstest is a fake Apple Push Notification service for tests: an
// HTTP/2-over-TLS server on loopback that speaks the APNs provider API
// (POST /3/device/{token}) closely enough for the real apns2 client.
//
// It verifies the ES256 provider token (JWT) against a P-256 key it generates
// itself, checks the apns-* headers and the topic, records every accepted
// notification, and can be told to fail: mark a token unregistered (410),
// fail the next N requests with any status and reason (optionally with
// Retry-After or a non-JSON body), delay, or stall until the test ends.
//
// Point the adapter at it with Config.Key = s.KeyPEM(), KeyID = s.KeyID(),
// TeamID = s.TeamID(), ProductionURL/SandboxURL = s.URL() and TLSConfig =
// s.TLSConfig().
package apnstest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Defaults for Options.
const (
	// DefaultKeyID is the key id the fake expects in the JWT "kid" header.
	DefaultKeyID = "FAKEKEY123"
	// DefaultTeamID is the team id the fake expects in the JWT "iss" claim.
	DefaultTeamID = "FAKETEAM12"
)

// DefaultTopics returns the bundle ids the fake accepts when Options.Topics is
// empty: one per Digital Post app.
func DefaultTopics() []string {
	return []string{"dk.digitaliser.digitalpost", "dk.e-boks.app", "dk.mitdk.app"}
}

// maxPayload is the APNs limit for an alert payload, in bytes.
const maxPayload = 4096

// Options configures a fake server. Zero values take the defaults.
type Options struct {
	// KeyID is the expected JWT "kid"; default DefaultKeyID.
	KeyID string
	// TeamID is the expected JWT "iss"; default DefaultTeamID.
	TeamID string
	// Topics are the accepted apns-topic values; default DefaultTopics.
	Topics []string
	// KeyPEM is the PKCS#8 PEM of the P-256 signing key to verify with;
	// default a freshly generated key. Pass another fake's KeyPEM to run
	// a production and a sandbox fake for one adapter.
	KeyPEM []byte
}

// Notification is one notification the fake accepted.
type Notification struct {
	// Token is the device token from the request path.
	Token string
	// Topic is the apns-topic header.
	Topic string
	// CollapseID is the apns-collapse-id header ("" when absent).
	CollapseID string
	// PushType is the apns-push-type header.
	PushType string
	// Priority is the apns-priority header ("" when absent).
	Priority string
	// Expiration is the apns-expiration header, Unix seconds ("" when absent).
	Expiration string
	// ApnsID is the apns-id the fake answered with.
	ApnsID string
	// Body is the raw JSON payload.
	Body []byte
	// Payload is Body decoded.
	Payload Payload
}

// Payload is the decoded JSON payload of a notification.
type Payload struct {
	APS APS `json:"aps"`
	// MessageID is the custom "message_id" key, if any.
	MessageID string `json:"message_id,omitempty"`
}

// APS is the "aps" dictionary of a payload.
type APS struct {
	Alert            *Alert `json:"alert,omitempty"`
	Badge            *int   `json:"badge,omitempty"`
	Sound            string `json:"sound,omitempty"`
	ContentAvailable int    `json:"content-available,omitempty"`
	ThreadID         string `json:"thread-id,omitempty"`
}

// Alert is the "aps.alert" dictionary. A plain-string alert decodes into
// Body.
type Alert struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

// UnmarshalJSON accepts both the dictionary and the plain-string form.
func (a *Alert) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = Alert{Body: s}
		return nil
	}
	type plain Alert
	return json.Unmarshal(b, (*plain)(a))
}

// Failure is how the fake answers a request it was told to fail.
type Failure struct {
	// Status is the HTTP status (e.g. 400, 429, 503).
	Status int
	// Reason is the APNs reason sent as {"reason": Reason}.
	Reason string
	// RetryAfter, when non-zero, is sent as a Retry-After header in whole
	// seconds.
	RetryAfter time.Duration
	// Body, when non-empty, replaces the JSON body with these raw bytes
	// (sent as text/html): a proxy's or load balancer's error page.
	Body string
}

// Server is a fake APNs server. It is safe for concurrent use.
type Server struct {
	srv     *httptest.Server
	key     *ecdsa.PrivateKey
	keyPEM  []byte
	keyID   string
	teamID  string
	topics  map[string]bool
	release chan struct{} // closed at cleanup: frees stalled requests

	mu           sync.Mutex
	notes        []Notification
	changed      chan struct{} // closed and replaced on every accepted notification
	unregistered map[string]time.Time
	failures     []Failure
	stalled      bool
	delay        time.Duration
	conns        int
	requests     int
	seq          int
}

// New starts a fake APNs server on loopback, closed by t.Cleanup (stalled
// requests are released first).
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.KeyID == "" {
		opts.KeyID = DefaultKeyID
	}
	if opts.TeamID == "" {
		opts.TeamID = DefaultTeamID
	}
	if len(opts.Topics) == 0 {
		opts.Topics = DefaultTopics()
	}
	key, keyPEM, err := loadKey(opts.KeyPEM)
	if err != nil {
		t.Fatalf("apnstest: %v", err)
	}
	s := &Server{
		key:          key,
		keyPEM:       keyPEM,
		keyID:        opts.KeyID,
		teamID:       opts.TeamID,
		topics:       make(map[string]bool),
		release:      make(chan struct{}),
		changed:      make(chan struct{}),
		unregistered: make(map[string]time.Time),
	}
	for _, tp := range opts.Topics {
		s.topics[tp] = true
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	s.srv.EnableHTTP2 = true
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	s.srv.StartTLS()
	t.Cleanup(func() {
		close(s.release)
		s.srv.Close()
	})
	return s
}

// URL is the server's base URL ("https://127.0.0.1:port"), for
// Config.ProductionURL / SandboxURL.
func (s *Server) URL() string { return s.srv.URL }

// KeyPEM is the PKCS#8 PEM of the signing key, as in an Apple .p8 file.
func (s *Server) KeyPEM() []byte { return slices.Clone(s.keyPEM) }

// KeyID is the key id the server expects.
func (s *Server) KeyID() string { return s.keyID }

// TeamID is the team id the server expects.
func (s *Server) TeamID() string { return s.teamID }

// Certificate is the server's self-signed certificate.
func (s *Server) Certificate() *x509.Certificate { return s.srv.Certificate() }

// CertPool holds the server's self-signed certificate.
func (s *Server) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.srv.Certificate())
	return pool
}

// TLSConfig is a client TLS configuration that trusts the server.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.CertPool(), MinVersion: tls.VersionTLS12}
}

// Conns is the number of connections the server has accepted.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Requests is the number of requests the server has received, accepted or
// not.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Unregister makes the server answer 410 Unregistered for token, with at as
// the time APNs learned the token was no longer valid.
func (s *Server) Unregister(token string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unregistered[token] = at
}

// FailNext makes the next n well-formed, authorised requests fail with f.
func (s *Server) FailNext(n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures = append(s.failures, f)
	}
}

// Delay makes every later request wait d before it is answered (or until
// the client gives up).
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Stall makes every later request hang until the client gives up or the
// test ends.
func (s *Server) Stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalled = true
}

// Notifications returns a copy of the accepted notifications, in order.
func (s *Server) Notifications() []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Notification, len(s.notes))
	for i, n := range s.notes {
		n.Body = slices.Clone(n.Body)
		out[i] = n
	}
	return out
}

// Delivered returns the raw JSON bodies of the accepted notifications, in
// order.
func (s *Server) Delivered() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]byte, len(s.notes))
	for i, n := range s.notes {
		out[i] = slices.Clone(n.Body)
	}
	return out
}

// WaitNotifications waits until at least n notifications were accepted and
// returns them, or returns ctx's error.
func (s *Server) WaitNotifications(ctx context.Context, n int) ([]Notification, error) {
	for {
		s.mu.Lock()
		have, ch := len(s.notes), s.changed
		s.mu.Unlock()
		if have >= n {
			return s.Notifications(), nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("apnstest: %d of %d notifications: %w", have, n, ctx.Err())
		}
	}
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	stalled, delay := s.stalled, s.delay
	s.mu.Unlock()
	if stalled {
		select {
		case <-s.release:
			reject(w, http.StatusServiceUnavailable, "Shutdown")
		case <-r.Context().Done():
		}
		return
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.release:
			reject(w, http.StatusServiceUnavailable, "Shutdown")
			return
		case <-r.Context().Done():
			return
		}
	}

	if r.ProtoMajor != 2 {
		reject(w, http.StatusHTTPVersionNotSupported, "HTTP2Required")
		return
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if !ok {
		reject(w, http.StatusNotFound, "BadPath")
		return
	}
	if r.Method != http.MethodPost {
		reject(w, http.StatusMethodNotAllowed, "MethodNotAllowed")
		return
	}
	if reason := s.checkAuth(r.Header.Get("authorization")); reason != "" {
		reject(w, http.StatusForbidden, reason)
		return
	}
	if token == "" {
		reject(w, http.StatusBadRequest, "MissingDeviceToken")
		return
	}
	if !isHex(token) {
		reject(w, http.StatusBadRequest, "BadDeviceToken")
		return
	}
	n := Notification{
		Token:      token,
		Topic:      r.Header.Get("apns-topic"),
		CollapseID: r.Header.Get("apns-collapse-id"),
		PushType:   r.Header.Get("apns-push-type"),
		Priority:   r.Header.Get("apns-priority"),
		Expiration: r.Header.Get("apns-expiration"),
	}
	if status, reason := checkHeaders(n, s.topics); status != 0 {
		reject(w, status, reason)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	if err != nil {
		return // the client went away
	}
	switch {
	case len(body) > maxPayload:
		reject(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge")
		return
	case len(body) == 0:
		reject(w, http.StatusBadRequest, "PayloadEmpty")
		return
	}
	n.Body = body
	if err := json.Unmarshal(body, &n.Payload); err != nil {
		reject(w, http.StatusBadRequest, "BadPayload")
		return
	}

	s.mu.Lock()
	if len(s.failures) > 0 {
		f := s.failures[0]
		s.failures = s.failures[1:]
		s.mu.Unlock()
		fail(w, f)
		return
	}
	if at, ok := s.unregistered[token]; ok {
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusGone)
		fmt.Fprintf(w, `{"reason":"Unregistered","timestamp":%d}`, at.UnixMilli())
		return
	}
	s.seq++
	n.ApnsID = r.Header.Get("apns-id")
	if n.ApnsID == "" {
		n.ApnsID = fmt.Sprintf("00000000-0000-4000-8000-%012d", s.seq)
	}
	s.notes = append(s.notes, n)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()

	w.Header().Set("apns-id", n.ApnsID)
	w.WriteHeader(http.StatusOK)
}

// checkHeaders validates the apns-* headers as APNs does.
func checkHeaders(n Notification, topics map[string]bool) (int, string) {
	switch {
	case n.Topic == "":
		return http.StatusBadRequest, "MissingTopic"
	case !topics[n.Topic]:
		return http.StatusBadRequest, "TopicDisallowed"
	case len(n.CollapseID) > 64:
		return http.StatusBadRequest, "BadCollapseId"
	}
	switch n.PushType {
	case "alert", "background":
	default:
		return http.StatusBadRequest, "InvalidPushType"
	}
	switch n.Priority {
	case "", "1", "5", "10":
	default:
		return http.StatusBadRequest, "BadPriority"
	}
	if n.PushType == "background" && (n.Priority == "" || n.Priority == "10") {
		return http.StatusBadRequest, "BadPriority" // background pushes must use priority 5
	}
	if n.Expiration != "" {
		if _, err := strconv.ParseInt(n.Expiration, 10, 64); err != nil {
			return http.StatusBadRequest, "BadExpirationDate"
		}
	}
	return 0, ""
}

// checkAuth verifies an "authorization: bearer <JWT>" header and returns the
// APNs reason when it is refused.
func (s *Server) checkAuth(h string) string {
	jwt, ok := strings.CutPrefix(h, "bearer ")
	if !ok || jwt == "" {
		return "MissingProviderToken"
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return "InvalidProviderToken"
	}
	var head struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var claims struct {
		Iss string `json:"iss"`
		Iat int64  `json:"iat"`
	}
	if decodeSegment(parts[0], &head) != nil || decodeSegment(parts[1], &claims) != nil {
		return "InvalidProviderToken"
	}
	if head.Alg != "ES256" || head.Kid != s.keyID || claims.Iss != s.teamID {
		return "InvalidProviderToken"
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return "InvalidProviderToken"
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, ss := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(&s.key.PublicKey, digest[:], r, ss) {
		return "InvalidProviderToken"
	}
	age := time.Since(time.Unix(claims.Iat, 0))
	switch {
	case age > time.Hour:
		return "ExpiredProviderToken"
	case age < -time.Minute:
		return "InvalidProviderToken"
	}
	return ""
}

// loadKey parses keyPEM, or generates a P-256 key when it is empty.
func loadKey(keyPEM []byte) (*ecdsa.PrivateKey, []byte, error) {
	if len(keyPEM) == 0 {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, fmt.Errorf("marshal key: %w", err)
		}
		return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, fmt.Errorf("Options.KeyPEM is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("Options.KeyPEM: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, nil, fmt.Errorf("Options.KeyPEM is not a P-256 ECDSA key")
	}
	return key, slices.Clone(keyPEM), nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return s != ""
}

func reject(w http.ResponseWriter, status int, reason string) {
	fail(w, Failure{Status: status, Reason: reason})
}

func fail(w http.ResponseWriter, f Failure) {
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter.Round(time.Second)/time.Second)))
	}
	if f.Body != "" {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.Status)
		io.WriteString(w, f.Body)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	json.NewEncoder(w).Encode(struct {
		Reason string `json:"reason"`
	}{f.Reason})
}
