package httpapi

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/time/rate"

	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/rules"
)

// SelfServiceRoute is the one route a self-service system's key opens.
const SelfServiceRoute = "POST /v1/self-service/exemption"

// SelfServiceRole is what the audit log records as a self-service
// system's role.
const SelfServiceRole = "self-service"

// SelfService is one of the authorities' self-service systems, allowed to
// ask whether a citizen is exempt (POST /v1/self-service/exemption) and
// nothing else: the SHA-256 of its key, its context and its rate limit.
type SelfService struct {
	// Name is what the audit log records.
	Name    string
	Context rules.Context
	// KeySHA256 is the SHA-256 of its key; the key is not kept.
	KeySHA256 [32]byte
	// Rate is the queries per second it may ask of one replica (burst:
	// twice that, plus one); 0 means no limit.
	Rate float64
}

// selfService authenticates the request's bearer key as a self-service
// system's, in constant time per system.
func (a *API) selfService(r *http.Request) (SelfService, bool) {
	key, ok := bearer(r)
	if !ok || len(a.cfg.SelfService) == 0 {
		return SelfService{}, false
	}
	sum := HashKey(key)
	var found SelfService
	var hit bool
	for _, s := range a.cfg.SelfService {
		if subtle.ConstantTimeCompare(sum[:], s.KeySHA256[:]) == 1 {
			found, hit = s, true
		}
	}
	return found, hit
}

// selfServiceGate refuses a self-service system's key on every route but
// SelfServiceRoute, with 403, audited: whatever routes mux has or will
// get, that key opens none of them.
func (a *API) selfServiceGate(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := a.selfService(r)
		if !ok {
			mux.ServeHTTP(w, r)
			return
		}
		_, pattern := mux.Handler(r)
		if pattern == SelfServiceRoute {
			mux.ServeHTTP(w, r)
			return
		}
		problem(w, http.StatusForbidden, "forbidden",
			fmt.Sprintf("the key of self-service system %s may only ask %s", s.Name, SelfServiceRoute), nil)
		rr := r.WithContext(r.Context())
		rr.Pattern = pattern
		a.guard.Client(rr, s.Name, SelfServiceRole, http.StatusForbidden, "refused")
	})
}

func newSelfServiceLimiters(systems []SelfService) map[string]*rate.Limiter {
	out := map[string]*rate.Limiter{}
	for _, s := range systems {
		if s.Rate > 0 {
			// Keys being rotated share the system's name, and its budget.
			if out[s.Name] == nil {
				out[s.Name] = rate.NewLimiter(rate.Limit(s.Rate), int(2*s.Rate)+1)
			}
		}
	}
	return out
}

// selfServiceExemption answers POST /v1/self-service/exemption. Only a
// self-service system's key may ask (a platform's or an ops key gets
// 403); each query is audited with the system, the status and the answer,
// never the CPR.
func (a *API) selfServiceExemption(w http.ResponseWriter, r *http.Request) {
	s, ok := a.selfService(r)
	if !ok {
		if p, isPlatform := a.platform(r); isPlatform {
			problem(w, http.StatusForbidden, "forbidden", "only a self-service system's key may ask about exemptions", nil)
			a.guard.Refused(r, string(p), http.StatusForbidden)
			return
		}
		if k, isOps := a.guard.Identify(r, false); isOps {
			problem(w, http.StatusForbidden, "forbidden", "only a self-service system's key may ask about exemptions", nil)
			a.guard.Client(r, k.Name, k.Role.String(), http.StatusForbidden, "refused")
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="postbud"`)
		problem(w, http.StatusUnauthorized, "unauthorized", "a self-service system's key is required as a bearer token", nil)
		a.guard.Refused(r, "", http.StatusUnauthorized)
		return
	}
	a.guard.ServeClient(w, r, s.Name, SelfServiceRole, "self-service query", func(w http.ResponseWriter) []slog.Attr {
		return append([]slog.Attr{slog.String("context", string(s.Context))}, a.answerSelfService(w, r, s)...)
	})
}

// answerSelfService answers one authenticated query and returns, for a
// 200, the answer as audit attributes.
func (a *API) answerSelfService(w http.ResponseWriter, r *http.Request, s SelfService) []slog.Attr {
	body, ok := readBody(w, r, event.MaxQueryBytes)
	if !ok {
		return nil
	}
	if l := a.ssLimiters[s.Name]; l != nil && !l.AllowN(a.cfg.Now(), 1) {
		w.Header().Set("Retry-After", "1")
		problem(w, http.StatusTooManyRequests, "rate limited", fmt.Sprintf("self-service system %s is over its rate", s.Name), nil)
		return nil
	}
	cpr, err := event.ParseExemptionQuery(body)
	if err != nil {
		var ve *event.ValidationError
		errs := []event.FieldError{{Reason: "invalid query"}}
		if errors.As(err, &ve) {
			errs = ve.Errors
		}
		problem(w, http.StatusBadRequest, "invalid query", "the query has invalid fields", errs)
		return nil
	}
	ans, err := a.cfg.Dispatcher.SelfService(r.Context(), cpr, s.Context)
	if err != nil {
		a.log.ErrorContext(r.Context(), "self-service query failed", "system", s.Name, "error", err)
		w.Header().Set("Retry-After", "5")
		problem(w, http.StatusServiceUnavailable, "unavailable", "the store cannot be reached; retry", nil)
		return nil
	}
	var since any
	audited := slog.Any("since", nil)
	if !ans.Since.IsZero() {
		v := ans.Since.UTC().Format(time.RFC3339Nano)
		since, audited = v, slog.String("since", v)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"digital_post_exempt": ans.DigitalPostExempt,
		"self_service_exempt": ans.SelfServiceExempt, "since": since})
	return []slog.Attr{slog.Bool("digital_post_exempt", ans.DigitalPostExempt),
		slog.Bool("self_service_exempt", ans.SelfServiceExempt), audited}
}
