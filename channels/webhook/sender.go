package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/signature"
)

// Defaults applied by New and the classification of answers.
const (
	// DefaultTimeout bounds one delivery attempt.
	DefaultTimeout = 10 * time.Second
	// DefaultRetryAfter is the wait asked of a 429 without a usable
	// Retry-After.
	DefaultRetryAfter = 5 * time.Second
	// MaxRetryAfter caps the wait a 429 may ask for.
	MaxRetryAfter = time.Hour
)

// maxResponse bounds how much of an answer is read (and thrown away).
const maxResponse = 64 << 10

// Endpoint is where one platform receives state changes.
type Endpoint struct {
	// URL is the absolute http or https URL the webhooks are POSTed to.
	// Required. Its query may hold a token: it never appears in errors or
	// logs.
	URL string
	// Secret is the HMAC-SHA256 key shared with the platform, 24 to 64
	// bytes (see signature.ParseSecret for the "whsec_…" form). Required. It is a
	// secret.
	Secret []byte
}

// String hides the URL's path and query and the secret.
func (e Endpoint) String() string {
	return "webhook.Endpoint{URL: " + redactURL(e.URL) + ", Secret: [redacted]}"
}

// GoString hides the secret from %#v as well.
func (e Endpoint) GoString() string { return e.String() }

// LogValue hides the URL's path and query and the secret.
func (e Endpoint) LogValue() slog.Value {
	return slog.GroupValue(slog.String("url", redactURL(e.URL)), slog.String("secret", "[redacted]"))
}

// redactURL keeps the scheme and host of u.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "[redacted]"
	}
	return p.Scheme + "://" + p.Host + "/[redacted]"
}

// Config configures the platform webhooks.
type Config struct {
	// Endpoints holds one endpoint per platform, keyed by the platform's
	// name (PlatformBorgerDK, PlatformApp, PlatformEBoks, PlatformMitDK).
	// At least one is required; a platform left out is not sent webhooks.
	Endpoints map[string]Endpoint
	// Timeout bounds each delivery attempt, on top of the caller's
	// context. Default 10s.
	Timeout time.Duration
	// HTTPClient sends the requests; redirects are never followed (a 3xx
	// is Misconfigured). Default: a client of its own using
	// http.DefaultTransport's settings. Tests pass the fake's client.
	HTTPClient *http.Client
}

// Validate reports every problem of c at once, each naming its field as
// webhook.endpoints[<platform>].url. Zero values are valid where a default
// applies.
func (c Config) Validate() error {
	var errs []error
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("webhook.endpoints: at least one platform endpoint is required"))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Endpoints)) {
		ep := c.Endpoints[name]
		field := "webhook.endpoints[" + name + "]"
		if !KnownPlatform(name) {
			errs = append(errs, fmt.Errorf("%s: unknown platform (want one of %s)", field, strings.Join(Platforms(), ", ")))
		}
		if err := checkURL(ep.URL); err != nil {
			errs = append(errs, fmt.Errorf("%s.url: %w", field, err))
		}
		switch n := len(ep.Secret); {
		case n == 0:
			errs = append(errs, fmt.Errorf("%s.secret: is required", field))
		case n < signature.MinSecretLen || n > signature.MaxSecretLen:
			errs = append(errs, fmt.Errorf("%s.secret: must be %d to %d bytes, got %d", field, signature.MinSecretLen, signature.MaxSecretLen, n))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("webhook.timeout: must not be negative, got %v", c.Timeout))
	}
	return errors.Join(errs...)
}

// checkURL checks an endpoint URL; its errors never quote the URL.
func checkURL(s string) error {
	if s == "" {
		return errors.New("is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("is not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("scheme must be http or https")
	case u.Host == "":
		return errors.New("host is missing")
	case u.User != nil:
		return errors.New("must not hold credentials")
	case u.Fragment != "":
		return errors.New("must not have a fragment")
	}
	return nil
}

// Sender delivers state changes to the platforms. It is safe for
// concurrent use.
type Sender struct {
	endpoints map[string]Endpoint
	timeout   time.Duration
	client    *http.Client
	ownsHTTP  bool
	logger    *slog.Logger
	now       func() time.Time
}

var _ io.Closer = (*Sender)(nil)

// New validates cfg, applies its defaults and returns a Sender. A nil
// logger discards logs.
func New(cfg Config, logger *slog.Logger) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sender{
		endpoints: make(map[string]Endpoint, len(cfg.Endpoints)),
		timeout:   cfg.Timeout,
		logger:    logger.With(slog.String("channel", "webhook")),
		now:       time.Now,
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	for name, ep := range cfg.Endpoints {
		s.endpoints[name] = Endpoint{URL: ep.URL, Secret: bytes.Clone(ep.Secret)}
	}
	var c http.Client
	if cfg.HTTPClient != nil {
		c = *cfg.HTTPClient
	} else {
		c.Transport = http.DefaultTransport.(*http.Transport).Clone()
		s.ownsHTTP = true
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.client = &c
	return s, nil
}

// Platforms returns the names of the configured platforms, sorted.
func (s *Sender) Platforms() []string {
	return slices.Sorted(maps.Keys(s.endpoints))
}

// Targets returns the configured platforms other than origin, sorted: the
// ones a change made on origin is delivered to.
func (s *Sender) Targets(origin string) []string {
	return slices.DeleteFunc(s.Platforms(), func(p string) bool { return p == origin })
}

// Deliver POSTs sc to platform's endpoint as one signed webhook with
// webhook-id id. The caller keeps id the same on every retry of the same
// change (the receiver drops duplicates by it); the timestamp and
// signature are fresh on each attempt. id is 1 to 256 printable ASCII
// characters without '.', as the specification asks.
//
// A platform not in Config.Endpoints is Misconfigured; an unfit id or sc,
// or sc.Platform equal to platform (a change goes to the other platforms),
// is Permanent. The receipt's ProviderID is id.
func (s *Sender) Deliver(ctx context.Context, platform, id string, sc StateChange) (channels.Receipt, error) {
	ep, ok := s.endpoints[platform]
	if !ok {
		return channels.Receipt{}, channels.Fail(channels.Misconfigured, "unknown platform",
			fmt.Errorf("deliver webhook: no endpoint for platform %q", platform))
	}
	if err := checkID(id); err != nil {
		return channels.Receipt{}, channels.Fail(channels.Permanent, "invalid id", fmt.Errorf("deliver webhook to %s: %w", platform, err))
	}
	if err := sc.Validate(); err != nil {
		return channels.Receipt{}, channels.Fail(channels.Permanent, "invalid state change", fmt.Errorf("deliver webhook to %s: %w", platform, err))
	}
	if sc.Platform == platform {
		return channels.Receipt{}, channels.Fail(channels.Permanent, "same platform",
			fmt.Errorf("deliver webhook to %s: the change was made there", platform))
	}
	if err := ctx.Err(); err != nil {
		return channels.Receipt{}, channels.Interrupted(fmt.Errorf("deliver webhook to %s: %w", platform, err))
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	body := Body(sc)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		// The error quotes the URL: leave it out.
		return channels.Receipt{}, channels.Fail(channels.Misconfigured, "request",
			fmt.Errorf("deliver webhook to %s: cannot build the request", platform))
	}
	ts := s.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "postbud")
	req.Header.Set(signature.HeaderID, id)
	req.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(signature.HeaderSignature, signature.Sign(ep.Secret, id, ts, body))

	log := s.logger.With(slog.String("platform", platform), slog.String("message_id", sc.MessageID),
		slog.String("webhook_id", id), slog.Int64("version", sc.Version))
	resp, err := s.client.Do(req)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return channels.Receipt{}, channels.Interrupted(fmt.Errorf("deliver webhook to %s: %w", platform, cerr))
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // *url.Error quotes the URL
		}
		return channels.Receipt{}, channels.Fail(channels.Transient, "network", fmt.Errorf("deliver webhook to %s: %w", platform, err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse)) // lets the connection be reused
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		log.DebugContext(ctx, "webhook delivered", slog.Int("status", resp.StatusCode))
		return channels.Receipt{ProviderID: id}, nil
	}
	err = s.classify(platform, resp)
	if channels.KindOf(err) == channels.Gone {
		log.WarnContext(ctx, "platform answered 410 Gone: disable its webhook endpoint")
	}
	return channels.Receipt{}, err
}

// classify turns a non-2xx answer into a classified error whose code is
// the status ("http_410").
func (s *Sender) classify(platform string, resp *http.Response) error {
	st := resp.StatusCode
	code := channels.HTTPCode(st)
	text := http.StatusText(st)
	if text == "" {
		text = "status " + strconv.Itoa(st)
	}
	err := fmt.Errorf("deliver webhook to %s: %s", platform, text)
	switch {
	case st == http.StatusGone:
		return channels.Fail(channels.Gone, code, err)
	case st == http.StatusTooManyRequests:
		return channels.Throttle(retryAfter(resp.Header.Get("Retry-After"), s.now()), code, err)
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return channels.Fail(channels.Misconfigured, code, err)
	case st >= 300 && st <= 399:
		return channels.Fail(channels.Misconfigured, code, fmt.Errorf("%w (redirects are not followed: update the endpoint URL)", err))
	case st >= 500 || st == http.StatusRequestTimeout:
		return channels.Fail(channels.Transient, code, err)
	case st >= 400:
		return channels.Fail(channels.Permanent, code, err)
	}
	return channels.Fail(channels.Transient, code, err) // 1xx
}

// retryAfter reads a Retry-After header with channels.RetryAfter: a
// missing, unreadable or non-positive value gives DefaultRetryAfter; a
// larger one than MaxRetryAfter is capped.
func retryAfter(v string, now time.Time) time.Duration {
	if d := channels.RetryAfter(v, now); d > 0 {
		return min(d, MaxRetryAfter)
	}
	return DefaultRetryAfter
}

// Close releases idle connections of the Sender's own HTTP client.
func (s *Sender) Close() error {
	if s.ownsHTTP {
		s.client.CloseIdleConnections()
	}
	return nil
}

func checkID(id string) error {
	switch {
	case id == "":
		return errors.New("webhook id is required")
	case len(id) > 256:
		return errors.New("webhook id is longer than 256 characters")
	case !printableASCII(id):
		return errors.New("webhook id must be printable ASCII without spaces")
	case strings.ContainsRune(id, '.'):
		return errors.New("webhook id must not contain '.'")
	}
	return nil
}

// PingResult is one endpoint's reachability.
type PingResult struct {
	Platform string
	Err      error
}

// Ping checks that every endpoint answers (any HTTP status: a HEAD
// request, unsigned, carries no state change and changes nothing), per
// platform in order.
func (s *Sender) Ping(ctx context.Context) []PingResult {
	var out []PingResult
	for _, p := range s.Platforms() {
		ctx, cancel := context.WithTimeout(ctx, s.timeout)
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, s.endpoints[p].URL, nil)
		if err == nil {
			var resp *http.Response
			if resp, err = s.client.Do(req); err == nil {
				_ = resp.Body.Close()
			}
		}
		cancel()
		if err != nil {
			err = fmt.Errorf("webhook %s unreachable: %w", p, err)
		}
		out = append(out, PingResult{Platform: p, Err: err})
	}
	return out
}
