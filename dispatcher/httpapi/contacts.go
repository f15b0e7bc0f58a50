package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// The confirmation of contact addresses: a platform's UI submits the code
// the citizen typed (POST /v1/contacts/confirm) or asks for a new one (POST
// /v1/contacts/resend). The CPR and the code travel in the body, never in
// the URL, and are never logged.

// maxContactBody bounds a confirm or resend body.
const maxContactBody = 4 << 10

// contactRequest is the body of both routes; code only for confirm.
type contactRequest struct {
	cpr  event.CPR
	ch   channels.Name
	code string
}

// readContactRequest reads and checks a confirm (withCode) or resend body,
// answering 400 naming every bad field.
func (a *API) readContactRequest(w http.ResponseWriter, r *http.Request, withCode bool) (contactRequest, bool) {
	var out contactRequest
	body, ok := readBody(w, r, maxContactBody)
	if !ok {
		return out, false
	}
	var in struct {
		CPR     *string `json:"cpr"`
		Channel *string `json:"channel"`
		Code    *string `json:"code"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		fields := "cpr and channel"
		if withCode {
			fields = "cpr, channel and code"
		}
		problem(w, http.StatusBadRequest, "invalid request", "the body must be a JSON object with "+fields,
			[]event.FieldError{{Reason: "malformed JSON or an unknown field"}})
		return out, false
	}
	var errs []event.FieldError
	if in.CPR == nil {
		errs = append(errs, event.FieldError{Field: "cpr", Reason: "required"})
	} else if c, err := event.ParseCPR(*in.CPR); err != nil {
		errs = append(errs, event.FieldError{Field: "cpr", Reason: err.Error()})
	} else {
		out.cpr = c
	}
	switch {
	case in.Channel == nil:
		errs = append(errs, event.FieldError{Field: "channel", Reason: "required"})
	case !dispatcher.IsCodeChannel(channels.Name(*in.Channel)):
		errs = append(errs, event.FieldError{Field: "channel", Reason: "must be one of email, sms"})
	default:
		out.ch = channels.Name(*in.Channel)
	}
	switch {
	case !withCode && in.Code != nil:
		errs = append(errs, event.FieldError{Field: "code", Reason: "not allowed: a resend makes a new code"})
	case !withCode:
	case in.Code == nil:
		errs = append(errs, event.FieldError{Field: "code", Reason: "required"})
	case !isCode(*in.Code):
		errs = append(errs, event.FieldError{Field: "code", Reason: fmt.Sprintf("must be %d digits", dispatcher.CodeDigits)})
	default:
		out.code = *in.Code
	}
	if len(errs) > 0 {
		problem(w, http.StatusBadRequest, "invalid request", "the request has invalid fields", errs)
		return out, false
	}
	return out, true
}

func isCode(s string) bool {
	if len(s) != dispatcher.CodeDigits {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// confirmContact answers a submitted code at once: 200 confirmed, 400 wrong
// code, 410 expired or no code pending, 429 too many attempts.
func (a *API) confirmContact(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorize(w, r)
	if !ok || !a.allow(w, p, 1) {
		return
	}
	req, ok := a.readContactRequest(w, r, true)
	if !ok {
		return
	}
	ans, left, err := a.cfg.Dispatcher.ConfirmAddress(r.Context(), req.cpr, req.ch, req.code)
	if err != nil {
		a.log.ErrorContext(r.Context(), "checking a confirmation code failed", "channel", req.ch, "error", err)
		w.Header().Set("Retry-After", "5")
		problem(w, http.StatusServiceUnavailable, "unavailable", "the store cannot be reached; retry", nil)
		return
	}
	codeErr := func(reason string) []event.FieldError { return []event.FieldError{{Field: "code", Reason: reason}} }
	switch ans {
	case dispatcher.AnswerConfirmed:
		writeJSON(w, http.StatusOK, map[string]string{"status": "confirmed", "channel": string(req.ch)})
	case dispatcher.AnswerWrong:
		problem(w, http.StatusBadRequest, "wrong code", fmt.Sprintf("the code is wrong; %d attempts left", left),
			codeErr(fmt.Sprintf("wrong code: %d attempts left", left)))
	case dispatcher.AnswerExpired:
		problem(w, http.StatusGone, "expired", fmt.Sprintf("the code was valid for %v; ask for a new one (POST /v1/contacts/resend)",
			dispatcher.CodeTTL), codeErr("expired"))
	case dispatcher.AnswerTooMany:
		problem(w, http.StatusTooManyRequests, "too many attempts",
			fmt.Sprintf("%d attempts were made at this code; ask for a new one (POST /v1/contacts/resend)", dispatcher.CodeAttempts),
			codeErr("too many attempts"))
	default:
		problem(w, http.StatusGone, "no code", "no code is pending for the registered address: none was sent, it was used, "+
			"or the address changed since; ask for a new one (POST /v1/contacts/resend)", codeErr("no code pending"))
	}
}

// resendCode sends a new code: 202, 404 with no address on the channel, 409
// when it is confirmed already, 429 past the hourly limit.
func (a *API) resendCode(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authorize(w, r)
	if !ok || !a.allow(w, p, 1) {
		return
	}
	req, ok := a.readContactRequest(w, r, false)
	if !ok {
		return
	}
	ans, err := a.cfg.Dispatcher.ResendCode(r.Context(), req.cpr, req.ch)
	if err != nil {
		if !errors.Is(err, dispatcher.ErrUnavailable) {
			a.log.ErrorContext(r.Context(), "resending a confirmation code failed", "channel", req.ch, "error", err)
		}
		w.Header().Set("Retry-After", "5")
		problem(w, http.StatusServiceUnavailable, "unavailable", "the store cannot be reached; retry", nil)
		return
	}
	chErr := func(reason string) []event.FieldError { return []event.FieldError{{Field: "channel", Reason: reason}} }
	switch ans {
	case dispatcher.ResendQueued:
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "sending", "channel": string(req.ch)})
	case dispatcher.ResendNoAddress:
		problem(w, http.StatusNotFound, "no address", "no "+string(req.ch)+" address is registered for the citizen",
			chErr("no address registered"))
	case dispatcher.ResendConfirmed:
		problem(w, http.StatusConflict, "confirmed", "the "+string(req.ch)+" address is confirmed already",
			chErr("confirmed already"))
	default:
		w.Header().Set("Retry-After", strconv.Itoa(3600))
		problem(w, http.StatusTooManyRequests, "too many codes",
			fmt.Sprintf("%d codes were sent to this address in the last hour", dispatcher.CodesPerHour), chErr("too many codes"))
	}
}
