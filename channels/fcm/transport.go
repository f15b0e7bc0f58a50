package fcm

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"cloud.google.com/go/auth"
	"golang.org/x/oauth2"
)

// errTokenRefused is the cause a send is cancelled with when the OAuth2
// token endpoint refused the service account.
var errTokenRefused = errors.New("oauth2 token exchange refused")

// sendStateKey keys the *sendState of one send in its context.
type sendStateKey struct{}

// sendState is what the guard saw during one send, across the SDK's
// retries.
type sendState struct {
	stop context.CancelCauseFunc

	mu sync.Mutex
	// lastStatus is the HTTP status of FCM's last answer, 0 if none.
	lastStatus int
	// tokenStatus and tokenCode describe a refused token exchange: the
	// token endpoint's HTTP status and OAuth2 error ("invalid_grant").
	tokenStatus int
	tokenCode   string
}

func (st *sendState) status() (last, tokenStatus int, tokenCode string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.lastStatus, st.tokenStatus, st.tokenCode
}

// guard sits between the SDK's retrying client and the authenticated
// transport.
type guard struct {
	next http.RoundTripper
}

type roundTrip struct {
	resp *http.Response
	err  error
}

// RoundTrip runs the request and returns as soon as the request's context
// ends, even when the transport under it is still waiting for an OAuth2
// token (the token exchange runs on its own context). It records FCM's
// status, and on a refused token exchange it cancels the send so the SDK
// does not retry it.
func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	done := make(chan roundTrip, 1)
	go func() {
		resp, err := g.next.RoundTrip(req)
		done <- roundTrip{resp, err}
	}()
	var rt roundTrip
	select {
	case rt = <-done:
	case <-ctx.Done():
		go func() {
			if rt := <-done; rt.resp != nil {
				rt.resp.Body.Close()
			}
		}()
		return nil, ctx.Err()
	}
	if st, ok := ctx.Value(sendStateKey{}).(*sendState); ok {
		st.observe(rt.resp, rt.err)
	}
	return rt.resp, rt.err
}

func (st *sendState) observe(resp *http.Response, err error) {
	if err == nil {
		st.mu.Lock()
		st.lastStatus = resp.StatusCode
		st.mu.Unlock()
		return
	}
	status, body, ok := tokenEndpointAnswer(err)
	if !ok || !refusal(status) {
		return // a network error, or the token endpoint down or busy: transient, let the SDK retry
	}
	var answer struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &answer) // the OAuth2 error code is a nicety
	st.mu.Lock()
	st.tokenStatus, st.tokenCode = status, answer.Error
	st.mu.Unlock()
	st.stop(errTokenRefused)
}

// tokenEndpointAnswer finds the token endpoint's answer in a transport
// error: an *auth.Error from cloud.google.com/go/auth (the credentials New
// builds), or an *oauth2.RetrieveError from golang.org/x/oauth2 (older
// token sources).
func tokenEndpointAnswer(err error) (status int, body []byte, ok bool) {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.StatusCode, re.Body, true
	}
	var ae *auth.Error
	if errors.As(err, &ae) && ae.Response != nil {
		return ae.Response.StatusCode, ae.Body, true
	}
	return 0, nil, false
}

// refusal reports whether a token endpoint status means the credentials
// were refused rather than the endpoint being unwell.
func refusal(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}
