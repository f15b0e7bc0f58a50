// Package sms sends alerts as text messages through an HTTP SMS gateway
// speaking the GatewayAPI REST protocol (POST /rest/mtsms), as used by
// Danish senders.
//
// The text is the shared headline and mailbox sentence of package channels,
// normalised to the GSM 03.38 alphabet where possible so that an ordinary
// alert is one 160-character SMS (see Text and package gsm7). Each
// message carries the delivery id as its userref, so the gateway's delivery
// reports (ParseReport) can be matched to the delivery that caused them.
//
// Failures are classified into the kinds of package channels:
//
//	401, 403, auth/IP/credit codes        misconfigured
//	429                                   throttled (Retry-After, default 1 s)
//	5xx, network, timeout                 transient
//	400/422 with a recipient code (Gone)  gone
//	other 4xx                             permanent
//
// Errors and logs hold the gateway's status and error code, never the phone
// number, the token or the gateway's free-text message (which may quote the
// number).
package sms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/gsm7"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultBaseURL  = "https://gatewayapi.com"
	DefaultMaxParts = 1
	DefaultTimeout  = 10 * time.Second
	// MaxMaxParts is the largest MaxParts accepted: a guard on the cost of
	// one alert.
	MaxMaxParts = 10
)

// maxResponse bounds how much of a gateway response is read.
const maxResponse = 64 << 10

// Config configures the SMS gateway adapter.
type Config struct {
	// BaseURL is the gateway's base URL, without the /rest path. Default
	// "https://gatewayapi.com".
	BaseURL string
	// Token is the gateway API token, sent as the HTTP Basic user name with
	// an empty password. Required. It is a secret.
	Token string
	// Sender is the originator shown on the phone: up to 11 ASCII letters
	// and digits, or a number of up to 15 digits. Required.
	Sender string
	// CallbackURL, when set, is where the gateway posts delivery reports
	// for each message (callback_url); empty uses the account's default
	// webhook. Must be an absolute http or https URL.
	CallbackURL string
	// MaxParts is the most SMS segments one alert may use (max_parts),
	// 1..10. Default 1: an alert that does not fit is shortened (see Text).
	MaxParts int
	// Timeout is the deadline on every send, on top of the caller's
	// context. Default 10s.
	Timeout time.Duration
	// HTTPClient sends the requests. Default: a client of its own using
	// http.DefaultTransport's settings. Tests pass the fake's client.
	HTTPClient *http.Client
}

// Validate reports every problem of c at once, each naming its field. Zero
// values are valid where a default applies.
func (c Config) Validate() error {
	var errs []error
	if c.BaseURL != "" {
		if err := checkURL(c.BaseURL); err != nil {
			errs = append(errs, fmt.Errorf("sms: BaseURL: %w", err))
		}
	}
	if c.Token == "" {
		errs = append(errs, errors.New("sms: Token is required"))
	} else if strings.ContainsAny(c.Token, " \t\r\n:") {
		errs = append(errs, errors.New("sms: Token must not contain white space or ':'"))
	}
	if err := checkSender(c.Sender); err != nil {
		errs = append(errs, fmt.Errorf("sms: Sender: %w", err))
	}
	if c.CallbackURL != "" {
		if err := checkURL(c.CallbackURL); err != nil {
			errs = append(errs, fmt.Errorf("sms: CallbackURL: %w", err))
		}
	}
	if c.MaxParts < 0 || c.MaxParts > MaxMaxParts {
		errs = append(errs, fmt.Errorf("sms: MaxParts must be between 1 and %d (0 for the default %d), got %d",
			MaxMaxParts, DefaultMaxParts, c.MaxParts))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("sms: Timeout must not be negative, got %v", c.Timeout))
	}
	return errors.Join(errs...)
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("scheme must be http or https")
	}
	if u.Host == "" {
		return errors.New("host is missing")
	}
	if u.User != nil {
		return errors.New("must not hold credentials")
	}
	return nil
}

// checkSender applies the SMS originator rules: up to 11 alphanumeric
// characters, or up to 15 digits.
func checkSender(s string) error {
	if s == "" {
		return errors.New("is required")
	}
	digits := true
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			digits = false
		default:
			return errors.New("must hold only ASCII letters and digits")
		}
	}
	if digits && len(s) > 15 {
		return fmt.Errorf("a numeric sender has at most 15 digits, got %d", len(s))
	}
	if !digits && len(s) > 11 {
		return fmt.Errorf("an alphanumeric sender has at most 11 characters, got %d", len(s))
	}
	return nil
}

// Sender sends alerts through the gateway. It is safe for concurrent use.
type Sender struct {
	cfg      Config
	endpoint string // BaseURL + /rest/mtsms
	me       string // BaseURL + /rest/me
	client   *http.Client
	ownsHTTP bool
	logger   *slog.Logger
	now      func() time.Time
}

var (
	_ channels.Sender = (*Sender)(nil)
	_ channels.Pinger = (*Sender)(nil)
	_ io.Closer       = (*Sender)(nil)
)

// New validates cfg, applies its defaults and returns a Sender. A nil
// logger discards logs.
func New(cfg Config, logger *slog.Logger) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.MaxParts == 0 {
		cfg.MaxParts = DefaultMaxParts
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sender{
		cfg:      cfg,
		endpoint: cfg.BaseURL + "/rest/mtsms",
		me:       cfg.BaseURL + "/rest/me",
		client:   cfg.HTTPClient,
		logger:   logger.With(slog.String("channel", string(channels.SMS))),
		now:      time.Now,
	}
	if s.client == nil {
		s.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		s.ownsHTTP = true
	}
	return s, nil
}

// mtRequest is the body of POST /rest/mtsms.
type mtRequest struct {
	Sender      string      `json:"sender"`
	Message     string      `json:"message"`
	Recipients  []recipient `json:"recipients"`
	UserRef     string      `json:"userref,omitempty"`
	CallbackURL string      `json:"callback_url,omitempty"`
	MaxParts    int         `json:"max_parts"`
	Encoding    string      `json:"encoding,omitempty"`
}

type recipient struct {
	// MSISDN is the number with its country code and no "+", as a JSON
	// number.
	MSISDN uint64 `json:"msisdn"`
}

// mtResponse is the body of a 200 answer.
type mtResponse struct {
	IDs []json.Number `json:"ids"`
}

// apiError is the body of an error answer. Message and variables may
// quote the phone number: they are never copied into errors or logs.
type apiError struct {
	Code         string `json:"code"`
	IncidentUUID string `json:"incident_uuid"`
}

// MSISDN converts an E.164 number ("+4512345678") to the gateway's MSISDN:
// the digits with the country code and no "+". It fails for anything else.
func MSISDN(e164 string) (uint64, error) {
	digits, ok := strings.CutPrefix(e164, "+")
	if !ok {
		return 0, errors.New("sms: number is not in E.164 form (no leading +)")
	}
	if len(digits) < 7 || len(digits) > 15 {
		return 0, fmt.Errorf("sms: number has %d digits, want 7 to 15", len(digits))
	}
	if digits[0] == '0' {
		return 0, errors.New("sms: number has no country code")
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, errors.New("sms: number holds characters other than digits")
	}
	return n, nil
}

// Send sends one alert to the E.164 number in to.Value. The receipt holds
// the gateway's message id.
func (s *Sender) Send(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
	if to.Channel != "" && to.Channel != channels.SMS {
		return channels.Receipt{}, channels.Fail(channels.Permanent, "wrong channel",
			fmt.Errorf("send sms: address is for channel %q", to.Channel))
	}
	msisdn, err := MSISDN(to.Value)
	if err != nil {
		return channels.Receipt{}, channels.Fail(channels.Gone, "invalid msisdn", fmt.Errorf("send sms: %w", err))
	}
	if a.MailboxURL == "" {
		return channels.Receipt{}, channels.Fail(channels.Permanent, "no mailbox url",
			errors.New("send sms: alert has no MailboxURL"))
	}
	text, err := Text(a, s.cfg.MaxParts)
	if err != nil {
		return channels.Receipt{}, fmt.Errorf("send sms: %w", err)
	}
	enc, segments := gsm7.Encoding(text), gsm7.Segments(text)
	req := mtRequest{
		Sender:      s.cfg.Sender,
		Message:     text,
		Recipients:  []recipient{{MSISDN: msisdn}},
		UserRef:     a.DeliveryID,
		CallbackURL: s.cfg.CallbackURL,
		MaxParts:    s.cfg.MaxParts,
	}
	if enc == gsm7.UCS2 {
		req.Encoding = gsm7.UCS2
	}
	var body bytes.Buffer
	e := json.NewEncoder(&body)
	e.SetEscapeHTML(false)
	if err := e.Encode(req); err != nil {
		return channels.Receipt{}, channels.Fail(channels.Permanent, "encode", fmt.Errorf("send sms: %w", err))
	}
	if err := ctx.Err(); err != nil {
		return channels.Receipt{}, channels.Interrupted(fmt.Errorf("send sms: %w", err))
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()

	resp, err := s.do(ctx, http.MethodPost, s.endpoint, &body)
	if err != nil {
		return channels.Receipt{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// An answer that is not a 2xx is the gateway's refusal: it did not
		// take the message (see channels.Unsure).
		return channels.Receipt{}, channels.Refused(s.classify(resp, raw))
	}
	// The gateway has accepted the message: never report a failure now, a
	// retry would send the SMS twice.
	var ok mtResponse
	if err == nil {
		err = json.Unmarshal(raw, &ok)
	}
	if err != nil || len(ok.IDs) == 0 {
		s.logger.WarnContext(ctx, "sms accepted without a readable message id",
			slog.String("message_id", a.MessageID), slog.Int("status", resp.StatusCode))
		return channels.Receipt{}, nil
	}
	rc := channels.Receipt{ProviderID: ok.IDs[0].String()}
	s.logger.DebugContext(ctx, "sms accepted",
		slog.String("message_id", a.MessageID), slog.String("provider_id", rc.ProviderID),
		slog.String("encoding", enc), slog.Int("segments", segments))
	return rc, nil
}

// Ping checks that the gateway is reachable and accepts the token, by
// reading the account (GET /rest/me).
func (s *Sender) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	resp, err := s.do(ctx, http.MethodGet, s.me, nil)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("ping: %w", s.classify(resp, raw))
	}
	return nil
}

// Close releases idle connections of the Sender's own HTTP client.
func (s *Sender) Close() error {
	if s.ownsHTTP {
		s.client.CloseIdleConnections()
	}
	return nil
}

// do sends one authenticated request. A failure to get a response is a
// Transient error without the URL (which could be logged by a caller).
func (s *Sender) do(ctx context.Context, method, u string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, channels.Fail(channels.Misconfigured, "request", fmt.Errorf("sms: build request: %w", err))
	}
	req.SetBasicAuth(s.cfg.Token, "")
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "postbud")
	resp, err := s.client.Do(req)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, channels.Interrupted(fmt.Errorf("sms gateway: %w", cerr))
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, channels.Fail(channels.Transient, "network", fmt.Errorf("sms gateway: %w", err))
	}
	return resp, nil
}

// classify turns an error answer into a classified error. Its code is
// channels.HTTPCode ("http_400") followed by the gateway's error code when there is one.
func (s *Sender) classify(resp *http.Response, raw []byte) error {
	var ae apiError
	_ = json.Unmarshal(raw, &ae) // an unreadable body leaves the code empty
	code := channels.HTTPCode(resp.StatusCode)
	if ae.Code != "" && len(ae.Code) <= 16 && printable(ae.Code) {
		code += " " + ae.Code
	}
	status := http.StatusText(resp.StatusCode)
	if status == "" {
		status = "status " + strconv.Itoa(resp.StatusCode)
	}
	err := fmt.Errorf("sms gateway: %s", status)
	if ae.IncidentUUID != "" && len(ae.IncidentUUID) <= 64 && printable(ae.IncidentUUID) {
		err = fmt.Errorf("sms gateway: %s (incident %s)", status, ae.IncidentUUID)
	}
	st := resp.StatusCode
	switch {
	case st == http.StatusTooManyRequests:
		return channels.Throttle(retryAfter(resp.Header.Get("Retry-After"), s.now()), code, err)
	case st == http.StatusUnauthorized || st == http.StatusForbidden || misconfiguredCodes[strings.ToLower(ae.Code)]:
		return channels.Fail(channels.Misconfigured, code, err)
	case st >= 500 || st == http.StatusRequestTimeout || transientCodes[strings.ToLower(ae.Code)]:
		return channels.Fail(channels.Transient, code, err)
	case (st == http.StatusBadRequest || st == http.StatusUnprocessableEntity) && Gone(ae.Code):
		return channels.Fail(channels.Gone, code, err)
	case st >= 400:
		return channels.Fail(channels.Permanent, code, err)
	}
	// 1xx and 3xx the client did not follow.
	return channels.Fail(channels.Transient, code, err)
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x21 || r > 0x7E {
			return false
		}
	}
	return true
}

// misconfiguredCodes are GatewayAPI API error codes that mean our account
// or credentials are refused, whatever the HTTP status: retried and logged
// loudly, never blamed on the recipient.
var misconfiguredCodes = map[string]bool{
	"0x0210": true, // invalid username
	"0x0211": true, // invalid password
	"0x0212": true, // invalid IP address
	"0x0213": true, // unauthorized IP address
	"0x0216": true, // insufficient credit
	"0x021d": true, // SMS not enabled for account
	"0x0221": true, // unsupported signature method
	"0x0223": true, // invalid consumer key
	"0x0224": true, // invalid signature
}

// transientCodes are API error codes that are expected to clear by
// themselves.
var transientCodes = map[string]bool{
	"0x0214": true, // temporary blacklist for the MSISDN
}

// goneCodes are the GatewayAPI codes that say the number cannot receive an
// SMS: the API code for a blacklisted MSISDN, and the network codes for an
// unknown, invalid or barred subscriber that delivery reports carry.
var goneCodes = map[string]bool{
	"0x0215": true, // MSISDN blacklisted
	"0x1010": true, // HLR: unknown subscriber
	"0x1020": true, // MSC: unidentified subscriber
	"0x1025": true, // MSC: illegal subscriber
	"0x1040": true, // SMSC: unidentified subscriber
	"0x1060": true, // ESME: invalid destination address
	"0x1084": true, // ESME: invalid mobile subscriber
	"0x1093": true, // SP: illegal mobile subscriber - blocked
}

// Gone reports whether a GatewayAPI error code (API error or delivery
// report code, "0x0215") says the recipient's number cannot receive SMS, so
// that the number should be removed rather than retried.
func Gone(code string) bool {
	return goneCodes[strings.ToLower(code)]
}

// retryAfter reads a Retry-After header with channels.RetryAfter (capped
// at channels.MaxRetryAfter, a day); an absent, unreadable or past value
// means 1 s.
func retryAfter(h string, now time.Time) time.Duration {
	return max(channels.RetryAfter(h, now), time.Second)
}
