package paper

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/digitalpost/postbud/channels"
)

// maxResponse bounds how much of a provider's answer is read.
const maxResponse = 64 << 10

// post POSTs job to the provider's URL and classifies the answer. The
// provider's body is never quoted in an error: it may echo the address.
func (s *Sender) post(ctx context.Context, job Job, body []byte) (channels.Receipt, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return channels.Receipt{}, channels.Fail(channels.Misconfigured, "request", errors.New("cannot make a request to URL"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", job.JobID)
	s.authorize(req)
	resp, err := s.client.Do(req)
	if err != nil {
		return channels.Receipt{}, classifyNet(ctx, err)
	}
	defer closeBody(resp.Body)

	code := resp.StatusCode
	switch {
	case code/100 == 2, code == http.StatusConflict:
		rc := channels.Receipt{ProviderID: job.JobID}
		if id := readID(resp.Body); id != "" {
			rc.ProviderID = id
		}
		msg := "print job accepted"
		if code == http.StatusConflict {
			msg = "print job already accepted"
		}
		s.log.DebugContext(ctx, msg, "message_id", job.MessageID, "job_id", job.JobID, "status", code)
		return rc, nil
	case code == http.StatusTooManyRequests:
		return channels.Receipt{}, channels.Throttle(retryAfter(resp.Header.Get("Retry-After"), s.now()),
			channels.HTTPCode(code), statusErr(code))
	case code == http.StatusUnauthorized, code == http.StatusForbidden, code/100 == 3:
		return channels.Receipt{}, channels.Fail(channels.Misconfigured, channels.HTTPCode(code), statusErr(code))
	case code/100 == 4:
		return channels.Receipt{}, channels.Fail(channels.Permanent, channels.HTTPCode(code), statusErr(code))
	}
	return channels.Receipt{}, channels.Fail(channels.Transient, channels.HTTPCode(code), statusErr(code))
}

// pingURL GETs the URL: see Sender.Ping.
func (s *Sender) pingURL(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return channels.Fail(channels.Misconfigured, "request", errors.New("cannot make a request to URL"))
	}
	s.authorize(req)
	resp, err := s.client.Do(req)
	if err != nil {
		return classifyNet(ctx, err)
	}
	closeBody(resp.Body)
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		return channels.Fail(channels.Misconfigured, channels.HTTPCode(code), statusErr(code))
	case code/100 == 5:
		return channels.Fail(channels.Transient, channels.HTTPCode(code), statusErr(code))
	}
	return nil
}

func (s *Sender) authorize(req *http.Request) {
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
}

// classifyNet classifies a failed round trip: certificate problems are
// Misconfigured, everything else (refused, reset, timed out, cancelled)
// Transient. The *url.Error keeps the context error in the chain.
func classifyNet(ctx context.Context, err error) error {
	var (
		unknownCA *x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		host      x509.HostnameError
		verify    *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &invalid), errors.As(err, &host), errors.As(err, &verify):
		return channels.Fail(channels.Misconfigured, "tls", err)
	case ctx.Err() != nil:
		return channels.Interrupted(err)
	}
	return channels.Fail(channels.Transient, "network", err)
}

// readID returns the "id" of a JSON body {"id": "..."}, or "".
func readID(body io.Reader) string {
	var v struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(io.LimitReader(body, maxResponse)).Decode(&v); err != nil {
		return ""
	}
	return strings.TrimSpace(v.ID)
}

// retryAfter reads a Retry-After header with channels.RetryAfter, falling
// back to DefaultRetryAfter when it is absent, unparsable or not in the
// future.
func retryAfter(v string, now time.Time) time.Duration {
	if d := channels.RetryAfter(v, now); d > 0 {
		return d
	}
	return DefaultRetryAfter
}

func statusErr(code int) error {
	return fmt.Errorf("print provider answered %d %s", code, http.StatusText(code))
}

// closeBody drains a little of the body so the connection can be reused.
func closeBody(b io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(b, maxResponse))
	_ = b.Close()
}
