// Package fcmtest is a fake Firebase Cloud Messaging service for tests: an
// httptest.Server on loopback that speaks the FCM HTTP v1 API and the Google
// OAuth2 JWT-bearer token exchange that guards it.
//
// The fake hands out service-account JSON whose token_uri points at its own
// /token endpoint, so the real client library signs a JWT with the account's
// RSA key, exchanges it for an access token, and presents that token to
// POST /v1/projects/{project}/messages:send. The fake verifies every step,
// records what it accepted, and can be told to fail the way FCM fails: an
// unregistered token, the next sends with a given status and FCM error code
// (with Retry-After), a refused token exchange, or a stall.
//
// A Server is safe for concurrent use and closes itself through t.Cleanup.
package fcmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"
)

// Scopes the token endpoint accepts; the assertion must ask for one of them.
const (
	ScopeMessaging     = "https://www.googleapis.com/auth/firebase.messaging"
	ScopeCloudPlatform = "https://www.googleapis.com/auth/cloud-platform"
)

// Failure is one way FCM answers a send with an error, in the v1 error
// shape: {"error": {"code", "message", "status", "details": [FcmError]}}.
type Failure struct {
	// HTTPStatus is the response status (404, 429, 503, ...).
	HTTPStatus int
	// Status is the Google RPC status ("NOT_FOUND", "RESOURCE_EXHAUSTED").
	Status string
	// ErrorCode is the FCM error code in the FcmError detail
	// ("UNREGISTERED", "QUOTA_EXCEEDED"); empty sends no detail.
	ErrorCode string
	// Message is the human-readable error message.
	Message string
	// RetryAfter, when positive, is sent as a Retry-After header in whole
	// seconds.
	RetryAfter time.Duration
}

// The failures real FCM sends, with its own messages.
var (
	// Unregistered is 404 UNREGISTERED: the app instance is gone.
	Unregistered = Failure{HTTPStatus: 404, Status: "NOT_FOUND", ErrorCode: "UNREGISTERED", Message: "Requested entity was not found."}
	// SenderIDMismatch is 403 SENDER_ID_MISMATCH: the token belongs to
	// another Firebase project.
	SenderIDMismatch = Failure{HTTPStatus: 403, Status: "PERMISSION_DENIED", ErrorCode: "SENDER_ID_MISMATCH", Message: "SenderId mismatch"}
	// QuotaExceeded is 429 QUOTA_EXCEEDED with Retry-After 10.
	QuotaExceeded = Failure{HTTPStatus: 429, Status: "RESOURCE_EXHAUSTED", ErrorCode: "QUOTA_EXCEEDED", Message: "Quota exceeded for quota metric 'Send requests'.", RetryAfter: 10 * time.Second}
	// ThirdPartyAuthError is 401 THIRD_PARTY_AUTH_ERROR (APNs or web push
	// credentials refused).
	ThirdPartyAuthError = Failure{HTTPStatus: 401, Status: "UNAUTHENTICATED", ErrorCode: "THIRD_PARTY_AUTH_ERROR", Message: "Auth error from APNS or Web Push Service"}
	// InvalidArgument is 400 INVALID_ARGUMENT about the message itself.
	InvalidArgument = Failure{HTTPStatus: 400, Status: "INVALID_ARGUMENT", ErrorCode: "INVALID_ARGUMENT", Message: "Request contains an invalid argument."}
	// InvalidToken is 400 INVALID_ARGUMENT about the registration token.
	InvalidToken = Failure{HTTPStatus: 400, Status: "INVALID_ARGUMENT", ErrorCode: "INVALID_ARGUMENT", Message: "The registration token is not a valid FCM registration token"}
	// Unavailable is 503 UNAVAILABLE, which the client library retries.
	Unavailable = Failure{HTTPStatus: 503, Status: "UNAVAILABLE", ErrorCode: "UNAVAILABLE", Message: "The service is currently unavailable."}
	// Internal is 500 INTERNAL.
	Internal = Failure{HTTPStatus: 500, Status: "INTERNAL", ErrorCode: "INTERNAL", Message: "Internal error encountered."}
	// Unauthenticated is 401 without an FCM detail: the bearer token was
	// refused.
	Unauthenticated = Failure{HTTPStatus: 401, Status: "UNAUTHENTICATED", Message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."}
	// PermissionDenied is 403 without an FCM detail: the service account
	// may not send for the project.
	PermissionDenied = Failure{HTTPStatus: 403, Status: "PERMISSION_DENIED", Message: "Permission 'cloudmessaging.messages.create' denied on resource (or it may not exist)."}
)

// Message is one send the fake accepted.
type Message struct {
	// Project is the project in the request path.
	Project string
	// ValidateOnly marks a dry run: checked, not delivered.
	ValidateOnly bool
	Token        string
	Topic        string
	// Data is the message's data payload.
	Data map[string]string
	// Title and Body are the top-level notification's.
	Title, Body string
	// CollapseKey, Priority and TTL are android.collapse_key, .priority
	// and .ttl ("86400s").
	CollapseKey, Priority, TTL string
	// Tag, AndroidTitle and AndroidBody are android.notification's.
	Tag, AndroidTitle, AndroidBody string
	// NotificationCount is android.notification.notification_count.
	NotificationCount *int
	// Raw is the request body as received.
	Raw []byte
}

// Server is a fake FCM. Create it with New.
type Server struct {
	// URL is the server's base URL ("http://127.0.0.1:port").
	URL string

	srv     *httptest.Server
	release chan struct{}
	closed  sync.Once

	mu           sync.Mutex
	accounts     map[string]*account // by client_email
	access       map[string]*account // by access token
	messages     []Message
	changed      chan struct{} // closed and replaced when messages grow
	failures     []Failure
	unregistered map[string]bool
	tokenFail    *tokenFailure
	stalled      bool
	exchanges    int
	attempts     int
	nextID       int
}

type account struct {
	email, keyID, project string
	key                   *rsa.PublicKey
}

type tokenFailure struct {
	status int
	code   string
}

// New starts a fake FCM on loopback and closes it when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		release:      make(chan struct{}),
		accounts:     make(map[string]*account),
		access:       make(map[string]*account),
		changed:      make(chan struct{}),
		unregistered: make(map[string]bool),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /v1/projects/{rest...}", s.send)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Endpoint is the FCM API base URL to configure the client with, the
// fake's counterpart of "https://fcm.googleapis.com/v1".
func (s *Server) Endpoint() string { return s.URL + "/v1" }

// TokenURL is the fake's OAuth2 token endpoint.
func (s *Server) TokenURL() string { return s.URL + "/token" }

// Close releases stalled requests and shuts the server down. It is safe to
// call more than once.
func (s *Server) Close() {
	s.closed.Do(func() {
		close(s.release)
		s.srv.Close()
	})
}

// ServiceAccount creates a service account for projectID with a fresh RSA
// key and returns its JSON key file, in Google's format, with token_uri
// pointing at the fake. Tokens it obtains may send only to projectID.
func (s *Server) ServiceAccount(projectID string) []byte {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(fmt.Sprintf("fcmtest: generate key: %v", err))
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(fmt.Sprintf("fcmtest: marshal key: %v", err))
	}
	keyID := randomHex(20)
	email := fmt.Sprintf("postbud-%s@%s.iam.gserviceaccount.com", randomHex(3), projectID)
	s.mu.Lock()
	s.accounts[email] = &account{email: email, keyID: keyID, project: projectID, key: &key.PublicKey}
	s.mu.Unlock()
	b, err := json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  projectID,
		"private_key_id":              keyID,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   randomDigits(21),
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   s.TokenURL(),
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"universe_domain":             "googleapis.com",
	}, "", "  ")
	if err != nil {
		panic(err)
	}
	return b
}

// Unregister makes every later send to token fail with 404 UNREGISTERED.
func (s *Server) Unregister(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unregistered[token] = true
}

// FailNext makes the next n send requests (retries included) fail with f.
func (s *Server) FailNext(n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures = append(s.failures, f)
	}
}

// FailTokenExchange makes every later token request fail with the HTTP
// status and OAuth2 error code ("invalid_grant"); status 0 heals it.
func (s *Server) FailTokenExchange(status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == 0 {
		s.tokenFail = nil
		return
	}
	s.tokenFail = &tokenFailure{status: status, code: code}
}

// Stall makes the fake hold every later request, token exchanges included,
// until the client gives up or the server closes.
func (s *Server) Stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalled = true
}

// TokenExchanges reports how many token requests the fake answered with an
// access token.
func (s *Server) TokenExchanges() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchanges
}

// Attempts reports how many send requests arrived, failed ones included.
func (s *Server) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// Messages returns the sends the fake accepted (dry runs included), in
// order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Payloads returns the raw bodies of the accepted sends that were not dry
// runs, in order.
func (s *Server) Payloads() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, m := range s.messages {
		if !m.ValidateOnly {
			out = append(out, m.Raw)
		}
	}
	return out
}

// WaitMessages waits until the fake has accepted at least n sends and
// returns them, or returns ctx's error.
func (s *Server) WaitMessages(ctx context.Context, n int) ([]Message, error) {
	for {
		s.mu.Lock()
		if len(s.messages) >= n {
			out := append([]Message(nil), s.messages...)
			s.mu.Unlock()
			return out, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("fcmtest: waiting for %d messages: %w", n, ctx.Err())
		}
	}
}

// stall holds the request while the fake is stalled; it reports false if
// the request ended meanwhile.
func (s *Server) stall(r *http.Request) bool {
	s.mu.Lock()
	stalled := s.stalled
	s.mu.Unlock()
	if !stalled {
		return true
	}
	select {
	case <-s.release:
	case <-r.Context().Done():
	}
	return false
}

// assertionClaims are the claims of a Google service-account assertion.
type assertionClaims struct {
	jwt.RegisteredClaims
	Scope string `json:"scope"`
}

// token serves the OAuth2 JWT-bearer grant (RFC 7523) as Google does.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if !s.stall(r) {
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+gt)
		return
	}
	s.mu.Lock()
	tf := s.tokenFail
	s.mu.Unlock()
	if tf != nil {
		oauthError(w, tf.status, tf.code, "Invalid JWT Signature.")
		return
	}
	var claims assertionClaims
	var acct *account
	_, err := jwt.ParseWithClaims(r.PostForm.Get("assertion"), &claims, func(tok *jwt.Token) (any, error) {
		c := tok.Claims.(*assertionClaims)
		s.mu.Lock()
		acct = s.accounts[c.Issuer]
		s.mu.Unlock()
		if acct == nil {
			return nil, errors.New("unknown issuer")
		}
		if kid, _ := tok.Header["kid"].(string); kid != acct.keyID {
			return nil, errors.New("unknown key id")
		}
		return acct.key, nil
	}, jwt.WithValidMethods([]string{"RS256"}))
	switch {
	case err != nil:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: "+err.Error())
		return
	case !claims.VerifyAudience(s.TokenURL(), true):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: audience")
		return
	case claims.ExpiresAt == nil || claims.IssuedAt == nil || claims.ExpiresAt.Sub(claims.IssuedAt.Time) > time.Hour:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
		return
	case !hasScope(claims.Scope):
		oauthError(w, http.StatusBadRequest, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
		return
	}
	at := "ya29.fake-" + randomHex(24)
	s.mu.Lock()
	s.access[at] = acct
	s.exchanges++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(map[string]any{"access_token": at, "expires_in": 3599, "token_type": "Bearer"})
}

func hasScope(scope string) bool {
	for _, sc := range strings.Fields(scope) {
		if sc == ScopeMessaging || sc == ScopeCloudPlatform {
			return true
		}
	}
	return false
}

// The FCM v1 request, as far as the fake understands it; unknown fields are
// refused as FCM refuses them.
type sendRequest struct {
	ValidateOnly bool         `json:"validate_only"`
	Message      *wireMessage `json:"message"`
}

type wireMessage struct {
	Token        string            `json:"token"`
	Topic        string            `json:"topic"`
	Condition    string            `json:"condition"`
	Data         map[string]string `json:"data"`
	Notification *struct {
		Title string `json:"title"`
		Body  string `json:"body"`
		Image string `json:"image"`
	} `json:"notification"`
	Android *struct {
		CollapseKey           string            `json:"collapse_key"`
		Priority              string            `json:"priority"`
		TTL                   string            `json:"ttl"`
		RestrictedPackageName string            `json:"restricted_package_name"`
		Data                  map[string]string `json:"data"`
		DirectBootOK          bool              `json:"direct_boot_ok"`
		Notification          *struct {
			Title             string `json:"title"`
			Body              string `json:"body"`
			Icon              string `json:"icon"`
			Color             string `json:"color"`
			Sound             string `json:"sound"`
			Tag               string `json:"tag"`
			ClickAction       string `json:"click_action"`
			ChannelID         string `json:"channel_id"`
			NotificationCount *int   `json:"notification_count"`
			Visibility        string `json:"visibility"`
		} `json:"notification"`
	} `json:"android"`
}

// send serves POST /v1/projects/{project}/messages:send.
func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	if !s.stall(r) {
		return
	}
	project, ok := strings.CutSuffix(r.PathValue("rest"), "/messages:send")
	if !ok || project == "" || strings.Contains(project, "/") {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.attempts++
	auth, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	acct := s.access[auth]
	var fail *Failure
	if len(s.failures) > 0 && acct != nil {
		f := s.failures[0]
		s.failures = s.failures[1:]
		fail = &f
	}
	s.mu.Unlock()
	switch {
	case acct == nil:
		writeError(w, Unauthenticated)
		return
	case acct.project != project:
		writeError(w, PermissionDenied)
		return
	case fail != nil:
		writeError(w, *fail)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeError(w, Failure{HTTPStatus: 400, Status: "INVALID_ARGUMENT", Message: "Invalid content type: " + ct})
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeError(w, Failure{HTTPStatus: 400, Status: "INVALID_ARGUMENT", Message: "Request body unreadable."})
		return
	}
	var req sendRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() || req.Message == nil {
		writeError(w, Failure{HTTPStatus: 400, Status: "INVALID_ARGUMENT", Message: fmt.Sprintf("Invalid JSON payload received. %v", err)})
		return
	}
	m := req.Message
	if targets := btoi(m.Token != "") + btoi(m.Topic != "") + btoi(m.Condition != ""); targets != 1 {
		writeError(w, Failure{HTTPStatus: 400, Status: "INVALID_ARGUMENT", ErrorCode: "INVALID_ARGUMENT", Message: "Exactly one of token, topic or condition must be set."})
		return
	}
	msg := Message{Project: project, ValidateOnly: req.ValidateOnly, Token: m.Token, Topic: m.Topic, Data: m.Data, Raw: raw}
	if n := m.Notification; n != nil {
		msg.Title, msg.Body = n.Title, n.Body
	}
	if a := m.Android; a != nil {
		msg.CollapseKey, msg.Priority, msg.TTL = a.CollapseKey, a.Priority, a.TTL
		if n := a.Notification; n != nil {
			msg.Tag, msg.AndroidTitle, msg.AndroidBody, msg.NotificationCount = n.Tag, n.Title, n.Body, n.NotificationCount
		}
	}
	s.mu.Lock()
	if m.Token != "" && s.unregistered[m.Token] && !req.ValidateOnly {
		s.mu.Unlock()
		writeError(w, Unregistered)
		return
	}
	s.nextID++
	id := s.nextID
	if !req.ValidateOnly {
		s.messages = append(s.messages, msg)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	name := fmt.Sprintf("projects/%s/messages/%d", project, 1700000000000000+id)
	if req.ValidateOnly {
		name = fmt.Sprintf("projects/%s/messages/fake_message_id", project)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	json.NewEncoder(w).Encode(map[string]string{"name": name})
}

// writeError answers in the Google API error shape FCM uses.
func writeError(w http.ResponseWriter, f Failure) {
	type detail struct {
		Type      string `json:"@type"`
		ErrorCode string `json:"errorCode"`
	}
	body := struct {
		Error struct {
			Code    int      `json:"code"`
			Message string   `json:"message"`
			Status  string   `json:"status"`
			Details []detail `json:"details,omitempty"`
		} `json:"error"`
	}{}
	body.Error.Code = f.HTTPStatus
	body.Error.Message = f.Message
	body.Error.Status = f.Status
	if f.ErrorCode != "" {
		body.Error.Details = []detail{{Type: "type.googleapis.com/google.firebase.fcm.v1.FcmError", ErrorCode: f.ErrorCode}}
	}
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter/time.Second)))
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(f.HTTPStatus)
	json.NewEncoder(w).Encode(body)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomDigits(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b)
}
