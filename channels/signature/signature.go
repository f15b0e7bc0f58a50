// Package signature is the Standard Webhooks signature scheme
// (https://www.standardwebhooks.com, version 1.0.0) on its own: postbud's
// outbound read-state webhooks are signed with Sign, and its inbound API
// checks signed platform events with Verify, so both sides and the test
// fakes agree on one implementation. Each signed request carries
//
//	webhook-id         the message's id; the same on every retry, so the
//	                   receiver can drop duplicates
//	webhook-timestamp  when this attempt was made, in unix seconds
//	webhook-signature  "v1," + base64(HMAC-SHA256(key, id "." timestamp "." body)),
//	                   space-separated when there are several
//
// Secrets are serialized as "whsec_" followed by the base64 of the key
// (ParseSecret, FormatSecret). Errors never quote a secret or a body.
package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix marks a serialized symmetric Standard Webhooks secret:
// "whsec_" followed by the base64 of the key bytes.
const SecretPrefix = "whsec_"

// Secret sizes the specification allows for HMAC-SHA256 keys.
const (
	MinSecretLen = 24 // 192 bits
	MaxSecretLen = 64 // 512 bits
)

// DefaultTolerance is how far a webhook-timestamp may be from the
// verifier's clock, either way, when Verify is given no tolerance.
const DefaultTolerance = 5 * time.Minute

// Verification failures. Verify wraps one of them with details that hold
// neither the secret nor the body.
var (
	// ErrMissingHeaders means webhook-id, webhook-timestamp or
	// webhook-signature is absent or empty.
	ErrMissingHeaders = errors.New("webhook signature: missing signature headers")
	// ErrBadSignature means no v1 signature in webhook-signature matches
	// the body under any of the secrets, or a signature is not base64.
	ErrBadSignature = errors.New("webhook signature: bad signature")
	// ErrTimestamp means webhook-timestamp is not an integer or is further
	// than the tolerance from now (a replay or a wrong clock).
	ErrTimestamp = errors.New("webhook signature: timestamp out of tolerance")
)

// Sign returns the Standard Webhooks signature "v1,<base64>" of body sent
// with id at ts, under secret. ts is truncated to whole seconds, as the
// webhook-timestamp header carries it.
func Sign(secret []byte, id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(secret, id, ts.Unix(), body))
}

// mac is HMAC-SHA256 under secret of "id.ts.body".
func mac(secret []byte, id string, ts int64, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, ts, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks that h (the request headers) and body make a webhook
// signed under one of secrets and sent within tolerance of now. Several
// secrets allow a rotation: the receiver accepts the old and the new key
// for a while. Of the signatures in webhook-signature only "v1," ones are
// considered; one match is enough. A tolerance of zero or less means
// DefaultTolerance.
//
// The error wraps ErrMissingHeaders, ErrTimestamp or ErrBadSignature.
// Signatures are compared in constant time.
func Verify(secrets [][]byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id := h.Get(HeaderID)
	stamp := h.Get(HeaderTimestamp)
	sigs := strings.Join(h.Values(HeaderSignature), " ")
	var missing []string
	if id == "" {
		missing = append(missing, HeaderID)
	}
	if stamp == "" {
		missing = append(missing, HeaderTimestamp)
	}
	if strings.TrimSpace(sigs) == "" {
		missing = append(missing, HeaderSignature)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingHeaders, strings.Join(missing, ", "))
	}

	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	sec, err := strconv.ParseInt(stamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s is not an integer", ErrTimestamp, HeaderTimestamp)
	}
	ts := time.Unix(sec, 0)
	if age := now.Sub(ts); age > tolerance {
		return fmt.Errorf("%w: sent %v ago, tolerance %v", ErrTimestamp, age.Truncate(time.Second), tolerance)
	}
	if ahead := ts.Sub(now); ahead > tolerance {
		return fmt.Errorf("%w: %v in the future, tolerance %v", ErrTimestamp, ahead.Truncate(time.Second), tolerance)
	}

	want := make([][]byte, 0, len(secrets))
	for _, s := range secrets {
		if len(s) > 0 {
			want = append(want, mac(s, id, sec, body))
		}
	}
	if len(want) == 0 {
		return fmt.Errorf("%w: no secret to verify with", ErrBadSignature)
	}
	var v1, malformed int
	for _, field := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(field, ",")
		if !ok || version != "v1" {
			continue // another scheme (v1a) or a future version
		}
		v1++
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			malformed++
			continue
		}
		for _, w := range want {
			if hmac.Equal(got, w) {
				return nil
			}
		}
	}
	switch {
	case v1 == 0:
		return fmt.Errorf("%w: no v1 signature", ErrBadSignature)
	case malformed > 0:
		return fmt.Errorf("%w: %d of %d v1 signatures are not base64, none of the others matches", ErrBadSignature, malformed, v1)
	}
	return fmt.Errorf("%w: none of %d v1 signatures matches", ErrBadSignature, v1)
}

// ParseSecret decodes a serialized secret: "whsec_" followed by base64 of
// the key, or the base64 alone. The error never quotes s.
func ParseSecret(s string) ([]byte, error) {
	b64 := strings.TrimPrefix(strings.TrimSpace(s), SecretPrefix)
	if b64 == "" {
		return nil, errors.New("webhook signature: secret is empty")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("webhook signature: secret is not valid base64 (want whsec_ followed by standard base64)")
	}
	if len(key) == 0 {
		return nil, errors.New("webhook signature: secret is empty")
	}
	return key, nil
}

// FormatSecret serializes key as the specification presents secrets:
// "whsec_" followed by its base64.
func FormatSecret(key []byte) string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}
