package paper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/digitalpost/postbud/channels"
)

// DefaultTimeout bounds one POST to the print provider.
const DefaultTimeout = 10 * time.Second

// DefaultRetryAfter is the wait asked for when a 429 carries no usable
// Retry-After.
const DefaultRetryAfter = 5 * time.Second

// Config configures the paper channel. Exactly one of SpoolDir and URL is
// set.
type Config struct {
	// SpoolDir selects spool mode: the absolute path of the directory
	// print jobs are written to, one file each. It is created (0750) when
	// missing. No default.
	SpoolDir string
	// URL selects URL mode: the print provider's http(s) endpoint jobs
	// are POSTed to. No default.
	URL string
	// Token is the bearer token sent to URL; empty sends none. Only used
	// with URL.
	Token string
	// Timeout bounds each POST to URL. Default DefaultTimeout (10 s).
	Timeout time.Duration
	// HTTPClient is the client for URL mode, for tests. Default: a client
	// of its own on a clone of http.DefaultTransport. Redirects are never
	// followed, whichever client is given.
	HTTPClient *http.Client
	// NowFunc stamps jobs' created_at. Default time.Now.
	NowFunc func() time.Time
}

// Validate reports every problem of c at once, each naming its field.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.SpoolDir != "" && c.URL != "":
		errs = append(errs, errors.New("paper: SpoolDir and URL are both set: set exactly one"))
	case c.SpoolDir == "" && c.URL == "":
		errs = append(errs, errors.New("paper: neither SpoolDir nor URL is set: set exactly one"))
	}
	if c.SpoolDir != "" && !filepath.IsAbs(c.SpoolDir) {
		errs = append(errs, fmt.Errorf("paper: SpoolDir %q is not an absolute path", c.SpoolDir))
	}
	if c.URL != "" {
		// The URL is not quoted: it may carry credentials.
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, errors.New("paper: URL is not an absolute http or https URL"))
		}
	}
	if c.Token != "" && c.URL == "" {
		errs = append(errs, errors.New("paper: Token is set but only used with URL"))
	}
	if strings.ContainsFunc(c.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		errs = append(errs, errors.New("paper: Token holds spaces or control characters"))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("paper: Timeout %v is negative", c.Timeout))
	}
	return errors.Join(errs...)
}

// Sender sends alerts as print jobs. It is safe for concurrent use.
type Sender struct {
	log     *slog.Logger
	now     func() time.Time
	dir     string // spool mode
	url     string // URL mode
	token   string
	timeout time.Duration
	client  *http.Client
	ownHTTP bool // client made here, closed by Close
}

var (
	_ channels.Sender = (*Sender)(nil)
	_ channels.Pinger = (*Sender)(nil)
)

// New returns a Sender for cfg. In spool mode it creates the spool
// directory when missing. A nil logger logs nothing.
func New(cfg Config, logger *slog.Logger) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sender{
		log:     logger.With("channel", string(channels.Paper)),
		now:     cfg.NowFunc,
		dir:     filepath.Clean(cfg.SpoolDir),
		url:     cfg.URL,
		token:   cfg.Token,
		timeout: cfg.Timeout,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if cfg.SpoolDir == "" {
		s.dir = ""
		if cfg.HTTPClient != nil {
			c := *cfg.HTTPClient
			s.client = &c
		} else {
			s.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
			s.ownHTTP = true
		}
		s.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return s, nil
	}
	if err := makeSpoolDir(s.dir); err != nil {
		return nil, fmt.Errorf("paper: SpoolDir: %w", err)
	}
	return s, nil
}

// Send makes the print job for a and hands it to the print provider: it
// writes it to the spool directory or POSTs it to the provider's URL. to is
// the postal address; a job that cannot be printed (no address, a coalesced
// alert) is refused as Permanent.
func (s *Sender) Send(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return channels.Receipt{}, fmt.Errorf("send paper: %w", channels.Interrupted(err))
	}
	job, err := newJob(to, a, s.now())
	if err != nil {
		return channels.Receipt{}, fmt.Errorf("send paper: %w", err)
	}
	body, err := encode(job)
	if err != nil {
		return channels.Receipt{}, fmt.Errorf("send paper: %w", err)
	}
	var rc channels.Receipt
	if s.dir != "" {
		rc, err = s.spool(ctx, job, body)
	} else {
		rc, err = s.post(ctx, job, body)
	}
	if err != nil {
		s.log.DebugContext(ctx, "print job not handed over", "message_id", job.MessageID, "job_id", job.JobID,
			"kind", channels.KindOf(err).String(), "code", channels.CodeOf(err))
		return channels.Receipt{}, fmt.Errorf("send paper: %w", err)
	}
	return rc, nil
}

// Ping checks the provider can take jobs. In spool mode it writes and
// removes a probe file in the spool directory. In URL mode it GETs the URL
// with the token: 401 or 403 is Misconfigured, 5xx or no answer Transient,
// any other answer (405 included) means the provider is there.
func (s *Sender) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ping paper: %w", channels.Interrupted(err))
	}
	var err error
	if s.dir != "" {
		err = s.pingSpool()
	} else {
		err = s.pingURL(ctx)
	}
	if err != nil {
		return fmt.Errorf("ping paper: %w", err)
	}
	return nil
}

// Close releases idle connections of a client New made; it never fails.
func (s *Sender) Close() error {
	if s.ownHTTP {
		s.client.CloseIdleConnections()
	}
	return nil
}
