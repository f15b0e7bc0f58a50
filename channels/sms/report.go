package sms

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v4"
)

// The delivery statuses of a GatewayAPI delivery report. A message starts
// UNKNOWN, may be SCHEDULED, then BUFFERED and ENROUTE (transient), and
// ends in one of the final statuses.
const (
	StatusUnknown       = "UNKNOWN"
	StatusScheduled     = "SCHEDULED"
	StatusBuffered      = "BUFFERED"
	StatusEnroute       = "ENROUTE"
	StatusDelivered     = "DELIVERED"
	StatusUndeliverable = "UNDELIVERABLE"
	StatusExpired       = "EXPIRED"
	StatusRejected      = "REJECTED"
	StatusSkipped       = "SKIPPED"
	StatusAccepted      = "ACCEPTED"
	StatusDeleted       = "DELETED"
)

// transientRank orders the transient statuses along the gateway's state
// graph (UNKNOWN → SCHEDULED → BUFFERED → ENROUTE).
var transientRank = map[string]int{
	StatusUnknown:   0,
	StatusScheduled: 1,
	StatusBuffered:  2,
	StatusEnroute:   3,
}

// final holds the statuses GatewayAPI documents as final: after one of
// them the gateway sends no more reports for the message.
var final = map[string]bool{
	StatusDelivered:     true,
	StatusUndeliverable: true,
	StatusExpired:       true,
	StatusRejected:      true,
	StatusSkipped:       true,
	StatusAccepted:      true, // the network accepted it on the user's behalf
	StatusDeleted:       true, // a scheduled message was cancelled
}

// Final reports whether status is final: DELIVERED, UNDELIVERABLE, EXPIRED,
// REJECTED, SKIPPED, ACCEPTED or DELETED.
func Final(status string) bool {
	return final[status]
}

// Supersedes reports whether a report with status next may replace the
// recorded status prev (empty when none is recorded). Reports arrive out of
// order: a final status is never replaced, a transient one only by a final
// one or by a later transient one. An unrecognised next status replaces
// nothing but the empty status.
func Supersedes(prev, next string) bool {
	nextRank, nextTransient := transientRank[next]
	if !Final(next) && !nextTransient {
		return prev == ""
	}
	switch {
	case prev == "":
		return true
	case Final(prev):
		return false
	case Final(next):
		return true
	}
	prevRank, ok := transientRank[prev]
	if !ok {
		prevRank = -1
	}
	return nextRank > prevRank
}

// Report is one verified delivery report, without the recipient's number.
type Report struct {
	// ID is the gateway's message id, as in channels.Receipt.ProviderID.
	ID string
	// Time is when the status was reached, per the gateway.
	Time time.Time
	// Status is one of the Status constants (or a status unknown to this
	// package, which is kept as sent).
	Status string
	// Final is Final(Status).
	Final bool
	// ErrorCode is the gateway's error code ("0x1010"), if any.
	ErrorCode string
	// UserRef is the reference given when sending: the alert's
	// DeliveryID.
	UserRef string
}

// RecipientGone reports whether the report says the number cannot receive
// SMS (a final failure with one of the codes Gone knows).
func (r Report) RecipientGone() bool {
	return r.Final && r.Status != StatusDelivered && Gone(r.ErrorCode)
}

// ErrBadSignature is returned by ParseReport for a report whose
// X-Gwapi-Signature is missing, not an HS256 JWT under the secret, or does
// not match the body.
var ErrBadSignature = errors.New("sms report: missing or bad signature")

// ErrBodyTooLarge is returned by ParseReport for a body over its limit.
var ErrBodyTooLarge = errors.New("sms report: body too large")

// DefaultMaxReportBody is the body limit ParseReport applies when given 0.
const DefaultMaxReportBody = 16 << 10

// SignatureHeader is the header holding the JWT that signs a report.
const SignatureHeader = "X-Gwapi-Signature"

// dsn is the body of a delivery report. Fields are pointers so that a
// missing field can be told from a zero one.
type dsn struct {
	ID      *uint64 `json:"id"`
	MSISDN  *uint64 `json:"msisdn"` // checked against the JWT, then dropped
	Time    *int64  `json:"time"`
	Status  *string `json:"status"`
	Error   *string `json:"error"` // free text: dropped
	Code    *string `json:"code"`
	UserRef *string `json:"userref"`
	// The gateway's token also carries these; they are accepted and
	// ignored.
	CallbackURL *string `json:"callback_url"`
	API         *int64  `json:"api"`
}

// claims is the payload of the X-Gwapi-Signature JWT: the report's fields,
// and optionally the registered time claims.
type claims struct {
	dsn
	ExpiresAt *int64 `json:"exp"`
	NotBefore *int64 `json:"nbf"`
	IssuedAt  *int64 `json:"iat"`
}

// Valid checks exp and nbf when the token has them.
func (c *claims) Valid() error {
	now := time.Now().Unix()
	if c.ExpiresAt != nil && now >= *c.ExpiresAt {
		return errors.New("token is expired")
	}
	if c.NotBefore != nil && now < *c.NotBefore {
		return errors.New("token is not valid yet")
	}
	return nil
}

// ParseReport reads and verifies one delivery report posted by the gateway
// to a callback URL. The X-Gwapi-Signature header must be a JWT signed with
// HS256 (no other algorithm is accepted) under secret, whose claims match
// the body; else the error is ErrBadSignature. The body, at most maxBody
// bytes (0 means DefaultMaxReportBody), is decoded strictly: unknown
// fields, trailing data and a missing id, time or status are refused. The
// recipient's number is verified but not kept.
func ParseReport(r *http.Request, secret []byte, maxBody int64) (Report, error) {
	if len(secret) == 0 {
		return Report{}, errors.New("sms report: no secret configured")
	}
	if maxBody <= 0 {
		maxBody = DefaultMaxReportBody
	}
	token := r.Header.Get(SignatureHeader)
	if token == "" {
		return Report{}, ErrBadSignature
	}
	var signed claims
	parser := jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}))
	_, err := parser.ParseWithClaims(token, &signed, func(t *jwt.Token) (any, error) {
		if t.Method != jwt.SigningMethodHS256 {
			return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
		}
		return secret, nil
	})
	if err != nil {
		return Report{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}

	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return Report{}, fmt.Errorf("sms report: read body: %w", err)
	}
	if int64(len(raw)) > maxBody {
		return Report{}, ErrBodyTooLarge
	}
	var body dsn
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return Report{}, fmt.Errorf("sms report: decode body: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Report{}, errors.New("sms report: trailing data after the body")
	}
	switch {
	case body.ID == nil:
		return Report{}, errors.New("sms report: id is missing")
	case body.Time == nil:
		return Report{}, errors.New("sms report: time is missing")
	case body.Status == nil || *body.Status == "":
		return Report{}, errors.New("sms report: status is missing")
	}
	if !same(body.ID, signed.ID) || !same(body.MSISDN, signed.MSISDN) || !same(body.Time, signed.Time) ||
		!same(body.Status, signed.Status) || !same(body.Code, signed.Code) || !same(body.UserRef, signed.UserRef) {
		return Report{}, fmt.Errorf("%w: body does not match the signed claims", ErrBadSignature)
	}
	rep := Report{
		ID:     strconv.FormatUint(*body.ID, 10),
		Time:   time.Unix(*body.Time, 0).UTC(),
		Status: *body.Status,
		Final:  Final(*body.Status),
	}
	if body.Code != nil {
		rep.ErrorCode = *body.Code
	}
	if body.UserRef != nil {
		rep.UserRef = *body.UserRef
	}
	return rep, nil
}

// same reports whether two optional values are both absent or equal.
func same[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}
