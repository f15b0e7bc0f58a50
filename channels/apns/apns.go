// Package apns is the push channel for iPhone and iPad: it sends alerts to
// the Digital Post apps through the Apple Push Notification service (APNs),
// with github.com/sideshow/apns2 and token-based authentication (one .p8
// key, key id and team id for all apps).
//
// One apns2 client per APNs environment (production, sandbox) is built once
// and shared by every send, so all sends to one environment multiplex over a
// single HTTP/2 connection; the provider token (JWT) is shared and renewed by
// apns2 before it expires.
//
// Failures are classified as channels.Kind (see docs/design.md, "Error kinds"):
//
//	200                                               success, Receipt.ProviderID = apns-id
//	410 Unregistered / ExpiredToken                   Gone (GoneSince gives APNs' timestamp)
//	400 BadDeviceToken / DeviceTokenNotForTopic       Gone
//	403 (InvalidProviderToken, ExpiredProviderToken,
//	    MissingProviderToken, any other 403)          Misconfigured
//	429 TooManyRequests / TooManyProviderTokenUpdates Throttled (Retry-After, else 5s)
//	other 4xx (PayloadTooLarge, BadCollapseId, …)     Permanent
//	5xx, an unreadable (non-JSON) error body,
//	network errors, timeouts                          Transient
//
// Errors and logs carry the status and reason, never the device token.
package apns

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
)

const (
	// DefaultRetryAfter is the wait a 429 asks for when APNs sends no
	// Retry-After header.
	DefaultRetryAfter = 5 * time.Second
	// ThreadID is the aps thread-id of every visible alert, so iOS groups
	// Digital Post alerts together.
	ThreadID = "digital-post"
	// MaxPayload is the APNs size limit of a notification payload, in bytes.
	MaxPayload = 4096
	// maxCollapseID is the APNs size limit of apns-collapse-id, in bytes.
	maxCollapseID = 64
)

// Sender sends alerts through APNs. It is safe for concurrent use.
type Sender struct {
	apps    map[string]App
	timeout time.Duration
	log     *slog.Logger
	prod    *apns2.Client
	sandbox *apns2.Client
}

var (
	_ channels.Sender = (*Sender)(nil)
	_ channels.Pinger = (*Sender)(nil)
	_ io.Closer       = (*Sender)(nil)
)

// New validates cfg, loads the signing key and returns a Sender. It does not
// connect: the first send (or Ping) opens the connection. A nil logger
// discards.
func New(cfg Config, logger *slog.Logger) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var (
		key *ecdsa.PrivateKey
		err error
	)
	if cfg.KeyFile != "" {
		key, err = token.AuthKeyFromFile(cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("apns.key_file: %w", err)
		}
	} else if key, err = token.AuthKeyFromBytes(cfg.Key); err != nil {
		return nil, fmt.Errorf("apns.key: %w", err)
	}
	tok := &token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID}
	s := &Sender{
		apps:    maps.Clone(cfg.Apps),
		timeout: cfg.Timeout,
		log:     logger.With(slog.String("channel", string(channels.APNs))),
	}
	if s.prod, err = newClient(tok, cfg.ProductionURL, cfg); err != nil {
		return nil, err
	}
	if s.sandbox, err = newClient(tok, cfg.SandboxURL, cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// newClient builds one long-lived apns2 client for host. Its transport is
// the standard library's, speaking HTTP/2 only (as APNs requires), with
// apns2's dial settings and HTTP/2 health pings on an idle connection; it
// uses cfg.TLSConfig when set, and it is wrapped to see each response's
// status and Retry-After header, which apns2.Response does not expose.
func newClient(tok *token.Token, host string, cfg Config) (*apns2.Client, error) {
	c := apns2.NewTokenClient(tok)
	c.Host = host
	c.HTTPClient.Transport = &peekTransport{next: newTransport(cfg.TLSConfig)}
	c.HTTPClient.Timeout = 0 // each send's context carries cfg.Timeout
	return c, nil
}

// newTransport returns an HTTP/2-only transport that pings a connection
// that has been silent for apns2.ReadIdleTimeout and closes it when the
// ping is not answered within pingTimeout.
func newTransport(tlsConfig *tls.Config) *http.Transport {
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: apns2.TLSDialTimeout, KeepAlive: apns2.TCPKeepAlive}).DialContext,
		TLSHandshakeTimeout: apns2.TLSDialTimeout,
		ForceAttemptHTTP2:   true,
		Protocols:           &protocols,
		// For HTTP/2 this bounds the connections being dialled at once,
		// not the total: concurrent first sends share one connection
		// rather than each dialling their own, as APNs asks.
		MaxConnsPerHost: 1,
		HTTP2:           &http.HTTP2Config{SendPingTimeout: apns2.ReadIdleTimeout, PingTimeout: pingTimeout},
	}
	if tlsConfig != nil {
		tr.TLSClientConfig = tlsConfig.Clone()
	}
	return tr
}

// pingTimeout is how long a health ping may go unanswered before the
// connection is closed.
const pingTimeout = 15 * time.Second

// Send pushes one alert to the device token to.Value of the app to.App.
func (s *Sender) Send(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
	app, ok := s.apps[to.App]
	if !ok {
		return channels.Receipt{}, channels.Fail(channels.Permanent, "unknown app",
			fmt.Errorf("apns: unknown app %q", to.App))
	}
	if !isHex(to.Value) {
		// APNs would answer 400 BadDeviceToken; refusing here also keeps
		// anything but hex digits out of the request path.
		return channels.Receipt{}, channels.Fail(channels.Gone, "BadDeviceToken",
			errors.New("apns: malformed device token"))
	}
	body, err := Render(a)
	if err != nil {
		return channels.Receipt{}, channels.Fail(channels.Permanent, "render", fmt.Errorf("apns: %w", err))
	}
	if len(body) > MaxPayload {
		return channels.Receipt{}, channels.Fail(channels.Permanent, "PayloadTooLarge",
			fmt.Errorf("apns: payload of %d bytes exceeds %d", len(body), MaxPayload))
	}
	if err := ctx.Err(); err != nil {
		return channels.Receipt{}, transportError(err)
	}

	n := &apns2.Notification{
		DeviceToken: to.Value,
		Topic:       app.Topic,
		CollapseID:  CollapseID(a.MessageID),
		Expiration:  a.Expires,
		Priority:    apns2.PriorityHigh,
		PushType:    apns2.PushTypeAlert,
		Payload:     body,
	}
	if a.Silent {
		n.Priority, n.PushType = apns2.PriorityLow, apns2.PushTypeBackground
	}
	client, env := s.prod, "production"
	if to.Environment == "sandbox" {
		client, env = s.sandbox, "sandbox"
	}
	log := s.log.With(slog.String("message_id", a.MessageID), slog.String("app", to.App), slog.String("environment", env))

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	seen := new(peek)
	res, err := client.PushWithContext(context.WithValue(ctx, peekKey{}, seen), n)
	if err != nil {
		if seen.status == 0 {
			err = transportError(err)
			log.Debug("apns send failed", slog.String("code", channels.CodeOf(err)))
			return channels.Receipt{}, err
		}
		// APNs (or something in front of it) answered, but the body was
		// not APNs' JSON: apns2 gives up decoding it.
		res = &apns2.Response{StatusCode: seen.status, ApnsID: seen.apnsID}
		if res.StatusCode != http.StatusOK {
			err = channels.Fail(channels.Transient, strconv.Itoa(seen.status)+" unreadable response",
				fmt.Errorf("apns: status %d with a body that is not APNs JSON", seen.status))
			log.Warn("apns send failed", slog.String("code", channels.CodeOf(err)))
			return channels.Receipt{}, err
		}
	}
	if res.StatusCode == http.StatusOK {
		log.Debug("apns sent", slog.String("apns_id", res.ApnsID))
		return channels.Receipt{ProviderID: res.ApnsID}, nil
	}
	err = classify(res, seen.retryAfter)
	switch channels.KindOf(err) {
	case channels.Misconfigured:
		log.Error("apns refused our credentials", slog.String("code", channels.CodeOf(err)))
	case channels.Gone:
		log.Info("apns token gone", slog.String("code", channels.CodeOf(err)))
	default:
		log.Warn("apns send failed", slog.String("code", channels.CodeOf(err)))
	}
	return channels.Receipt{}, err
}

// Ping opens (or reuses) the HTTP/2 connection to the production APNs host:
// it sends an unauthenticated GET / and takes any HTTP answer as success.
// It checks DNS, TCP, TLS and HTTP/2 but not the signing key: APNs only
// judges the provider token on a real push. The connection stays open for
// the next send.
func (s *Sender) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.prod.Host+"/", nil)
	if err != nil {
		return fmt.Errorf("apns ping: %w", err)
	}
	resp, err := s.prod.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("apns ping: %w", transportError(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	return resp.Body.Close()
}

// Close closes the idle connections of both environments.
func (s *Sender) Close() error {
	s.prod.CloseIdleConnections()
	s.sandbox.CloseIdleConnections()
	return nil
}

// Render returns the JSON payload of a: for a visible alert aps.alert
// {title: channels.Title, body: channels.Headline}, the default sound and
// the thread id; for a silent one only aps.content-available = 1. Both carry
// aps.badge when a.Badge ≥ 0 and the letter's id as "message_id". Non-ASCII
// letters (æøå) are written as they are. The bytes are those on the wire.
func Render(a channels.Alert) ([]byte, error) {
	var p pushPayload
	if a.Silent {
		p.APS.ContentAvailable = 1
	} else {
		p.APS.Alert = &alert{Title: channels.Title(a), Body: channels.Headline(a)}
		p.APS.Sound = "default"
		p.APS.ThreadID = ThreadID
	}
	if a.Badge >= 0 {
		p.APS.Badge = &a.Badge
	}
	p.MessageID = a.MessageID
	// json.Marshal, as apns2 re-encodes the payload with it anyway: "<",
	// ">" and "&" become \u003c, \u003e and \u0026 on the wire.
	return json.Marshal(p)
}

// pushPayload is the JSON payload of a notification.
type pushPayload struct {
	APS       aps    `json:"aps"`
	MessageID string `json:"message_id,omitempty"`
}

// aps is the payload's "aps" dictionary: the keys Apple defines.
type aps struct {
	Alert            *alert `json:"alert,omitempty"`
	Badge            *int   `json:"badge,omitempty"`
	Sound            string `json:"sound,omitempty"`
	ContentAvailable int    `json:"content-available,omitempty"`
	ThreadID         string `json:"thread-id,omitempty"`
}

type alert struct {
	Title string `json:"title"`
	Body  string `json:"body"`
}

// CollapseID returns the apns-collapse-id for a letter: the message id
// itself, or, when it is longer than APNs' 64-byte limit, the hex SHA-256 of
// it (64 bytes, still the same for every send of that letter).
func CollapseID(messageID string) string {
	if len(messageID) <= maxCollapseID {
		return messageID
	}
	sum := sha256.Sum256([]byte(messageID))
	return hex.EncodeToString(sum[:])
}

// GoneSince returns, for an error from Send caused by a 410 answer, the time
// APNs says it learned the token was no longer valid. The dispatcher can
// ignore a 410 older than the token's registration (the app registered
// again since). It returns false for any other error or when APNs gave no
// timestamp.
func GoneSince(err error) (time.Time, bool) {
	var r *rejection
	if errors.As(err, &r) && r.status == http.StatusGone && !r.timestamp.IsZero() {
		return r.timestamp, true
	}
	return time.Time{}, false
}

// GoneSince implements the interface channels.GoneAt looks for.
func (r *rejection) GoneSince() time.Time {
	if r.status == http.StatusGone {
		return r.timestamp
	}
	return time.Time{}
}

// rejection is APNs' answer to a refused notification. It holds the status,
// reason and 410 timestamp, never the token.
type rejection struct {
	status    int
	reason    string
	timestamp time.Time
}

func (r *rejection) Error() string {
	if r.reason == "" {
		return fmt.Sprintf("apns: rejected with status %d", r.status)
	}
	return fmt.Sprintf("apns: rejected with status %d %s", r.status, r.reason)
}

// classify turns a non-200 APNs response into a channels error.
func classify(res *apns2.Response, retryAfter string) error {
	rej := &rejection{status: res.StatusCode, reason: res.Reason, timestamp: res.Timestamp.Time}
	code := channels.HTTPCode(res.StatusCode)
	if res.Reason != "" {
		code += " " + res.Reason
	}
	switch st := res.StatusCode; {
	case st == http.StatusGone:
		return channels.Fail(channels.Gone, code, rej)
	case st == http.StatusBadRequest &&
		(res.Reason == apns2.ReasonBadDeviceToken || res.Reason == apns2.ReasonDeviceTokenNotForTopic):
		return channels.Fail(channels.Gone, code, rej)
	case st == http.StatusForbidden:
		return channels.Fail(channels.Misconfigured, code, rej)
	case st == http.StatusTooManyRequests:
		return channels.Throttle(parseRetryAfter(retryAfter, time.Now()), code, rej)
	case st >= 500:
		return channels.Fail(channels.Transient, code, rej)
	case st >= 400:
		return channels.Fail(channels.Permanent, code, rej)
	default:
		return channels.Fail(channels.Transient, code, rej)
	}
}

// parseRetryAfter reads a Retry-After header with channels.RetryAfter, or
// returns DefaultRetryAfter.
func parseRetryAfter(h string, now time.Time) time.Duration {
	if d := channels.RetryAfter(h, now); d > 0 {
		return d
	}
	return DefaultRetryAfter
}

// transportError classifies an error that got no APNs answer as Transient.
// It drops *url.Error, whose text holds the request URL and so the device
// token.
func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	code := "network"
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		code = "timeout"
	case errors.Is(err, context.Canceled):
		code = "canceled"
	}
	return channels.Fail(channels.Transient, code, fmt.Errorf("apns: %w", err))
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// peek is what peekTransport saw of one response.
type peek struct {
	status     int
	retryAfter string
	apnsID     string
}

type peekKey struct{}

// peekTransport records the status and headers of each response into the
// *peek in the request's context. http.Client calls RoundTrip on the
// caller's goroutine, so the caller may read the peek after Do returns.
type peekTransport struct {
	next *http.Transport
}

func (t *peekTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if p, ok := r.Context().Value(peekKey{}).(*peek); ok && err == nil {
		p.status = resp.StatusCode
		p.retryAfter = resp.Header.Get("Retry-After")
		p.apnsID = resp.Header.Get("apns-id")
	}
	return resp, err
}

// CloseIdleConnections lets apns2.Client.CloseIdleConnections reach the
// HTTP/2 transport.
func (t *peekTransport) CloseIdleConnections() { t.next.CloseIdleConnections() }
