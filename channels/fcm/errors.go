package fcm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"

	"github.com/digitalpost/postbud/channels"
)

// googleError is the error body of Google APIs, FCM's included:
// {"error": {"code", "message", "status", "details": [...]}}.
type googleError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type            string `json:"@type"`
			ErrorCode       string `json:"errorCode"`
			FieldViolations []struct {
				Field       string `json:"field"`
				Description string `json:"description"`
			} `json:"fieldViolations"`
		} `json:"details"`
	} `json:"error"`
}

// fcmErrorType is the @type of the detail carrying FCM's error code.
const fcmErrorType = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

// fcmCode returns the FcmError detail's error code, or "".
func (g *googleError) fcmCode() string {
	for _, d := range g.Error.Details {
		if d.Type == fcmErrorType {
			return d.ErrorCode
		}
	}
	return ""
}

// aboutToken reports whether an INVALID_ARGUMENT speaks of the registration
// token itself. FCM says so only in words ("The registration token is not
// a valid FCM registration token"; its error code is the generic
// INVALID_ARGUMENT), by naming the field ("Invalid value at
// 'message.token'"), or, in the google.rpc.BadRequest form, with a field
// violation on message.token.
func (g *googleError) aboutToken() bool {
	msg := strings.ToLower(g.Error.Message)
	if strings.Contains(msg, "registration token") || strings.Contains(msg, "'message.token'") {
		return true
	}
	for _, d := range g.Error.Details {
		for _, v := range d.FieldViolations {
			if v.Field == "message.token" {
				return true
			}
		}
	}
	return false
}

// classify turns an SDK error into a channels error. ctx is the send's own
// context, st what the guard saw, token the registration token to keep out
// of the error.
func classify(ctx context.Context, err error, st *sendState, token string) error {
	last, tokenStatus, tokenCode := st.status()
	if tokenStatus != 0 {
		msg := fmt.Sprintf("fcm: %v: HTTP %d", errTokenRefused, tokenStatus)
		if tokenCode != "" {
			msg += " " + sanitize(tokenCode, token)
		}
		return channels.Fail(channels.Misconfigured, "TOKEN_EXCHANGE_REFUSED", errors.New(msg))
	}
	if cerr := ctx.Err(); cerr != nil {
		// The deadline or the caller's cancellation ended the send,
		// possibly while the SDK waited to retry a 503.
		if last != 0 {
			return channels.Fail(channels.Transient, statusName(last), fmt.Errorf("fcm: last answer HTTP %d: %w", last, cerr))
		}
		return channels.Interrupted(fmt.Errorf("fcm: %w", cerr))
	}
	resp := errorutils.HTTPResponse(err)
	if resp == nil {
		// A transport failure (the SDK's FirebaseError without a
		// response) or a local one: transient, the default kind.
		code := "network"
		if errorutils.IsDeadlineExceeded(err) {
			code = "timeout"
		}
		return channels.Fail(channels.Transient, code, errors.New("fcm: "+sanitize(err.Error(), token)))
	}
	var g googleError
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		_ = json.Unmarshal(b, &g) // a body that is no Google error leaves g empty
	}
	code := g.fcmCode()
	if code == "" {
		code = g.Error.Status
	}
	if code == "" {
		code = statusName(resp.StatusCode)
	}
	e := fmt.Errorf("fcm: HTTP %d %s: %s", resp.StatusCode, code, sanitize(g.Error.Message, token))
	switch {
	case messaging.IsUnregistered(err), messaging.IsSenderIDMismatch(err):
		return channels.Fail(channels.Gone, code, e)
	case messaging.IsQuotaExceeded(err), errorutils.IsResourceExhausted(err), resp.StatusCode == http.StatusTooManyRequests:
		return channels.Throttle(max(channels.RetryAfter(resp.Header.Get("Retry-After"), time.Now()), MinQuotaRetryAfter), code, e)
	case messaging.IsThirdPartyAuthError(err):
		return channels.Fail(channels.Misconfigured, code, e)
	case messaging.IsInvalidArgument(err), errorutils.IsInvalidArgument(err):
		if g.aboutToken() {
			return channels.Fail(channels.Gone, code, e)
		}
		return channels.Fail(channels.Permanent, code, e)
	case messaging.IsUnavailable(err), messaging.IsInternal(err), resp.StatusCode >= 500:
		return channels.Fail(channels.Transient, code, e)
	case errorutils.IsUnauthenticated(err), errorutils.IsPermissionDenied(err), errorutils.IsNotFound(err):
		// Our access token refused, the service account lacking the
		// permission, or a wrong project: no FCM code names a token.
		return channels.Fail(channels.Misconfigured, code, e)
	case resp.StatusCode >= 400:
		return channels.Fail(channels.Permanent, code, e)
	}
	return channels.Fail(channels.Transient, code, e)
}

// statusName names an HTTP status as the Google RPC status FCM would give.
func statusName(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusInternalServerError:
		return "INTERNAL"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	}
	return channels.HTTPCode(status)
}

// tokenLike matches runs that could be (part of) a registration token.
var tokenLike = regexp.MustCompile(`[A-Za-z0-9_\-:]{32,}`)

// sanitize keeps the registration token, and anything that looks like
// one, out of a provider message, and bounds its length.
func sanitize(s, token string) string {
	if token != "" {
		s = strings.ReplaceAll(s, token, "[token]")
	}
	s = tokenLike.ReplaceAllString(s, "[redacted]")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		cut := 300
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
