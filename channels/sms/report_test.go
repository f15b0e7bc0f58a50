package sms_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/digitalpost/postbud/channels/channeltest"
	"github.com/digitalpost/postbud/channels/sms"
	"github.com/digitalpost/postbud/channels/sms/smstest"
)

type parsed struct {
	rep sms.Report
	err error
}

// receiver is a callback endpoint that parses each report with secret and
// passes the result on.
func receiver(t *testing.T, secret []byte) (string, <-chan parsed) {
	t.Helper()
	ch := make(chan parsed, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep, err := sms.ParseReport(r, secret, 0)
		ch <- parsed{rep, err}
		switch {
		case errors.Is(err, sms.ErrBadSignature):
			w.WriteHeader(http.StatusUnauthorized)
		case err != nil:
			w.WriteHeader(http.StatusBadRequest)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/sms/reports", ch
}

// TestReportRoundTrip sends a message whose callback_url is a local
// receiver, has the fake post reports for it, and checks what ParseReport
// makes of them.
func TestReportRoundTrip(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 5, 0, time.UTC)
	tests := []struct {
		name       string
		rep        smstest.Report
		wantStatus int
		want       sms.Report // ID and UserRef are filled in
		wantErr    error      // instead of want
		wantGone   bool
	}{
		{name: "delivered", rep: smstest.Report{Status: "DELIVERED", Time: at}, wantStatus: 204,
			want: sms.Report{Time: at, Status: "DELIVERED", Final: true}},
		{name: "enroute", rep: smstest.Report{Status: "ENROUTE", Time: at}, wantStatus: 204,
			want: sms.Report{Time: at, Status: "ENROUTE"}},
		{name: "undeliverable unknown subscriber", wantStatus: 204, wantGone: true,
			rep:  smstest.Report{Status: "UNDELIVERABLE", Code: "0x1010", Error: "Unknown subscriber", Time: at},
			want: sms.Report{Time: at, Status: "UNDELIVERABLE", Final: true, ErrorCode: "0x1010"}},
		{name: "expired absent subscriber", wantStatus: 204,
			rep:  smstest.Report{Status: "EXPIRED", Code: "0x1013", Time: at},
			want: sms.Report{Time: at, Status: "EXPIRED", Final: true, ErrorCode: "0x1013"}},
		{name: "unsigned", rep: smstest.Report{Status: "DELIVERED", Unsigned: true}, wantStatus: 401, wantErr: sms.ErrBadSignature},
		{name: "wrong secret", rep: smstest.Report{Status: "DELIVERED", Secret: []byte("guess")}, wantStatus: 401, wantErr: sms.ErrBadSignature},
		{name: "body does not match token", rep: smstest.Report{Status: "DELIVERED", Tamper: true}, wantStatus: 401, wantErr: sms.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			g := smstest.New(t, smstest.Options{})
			cb, got := receiver(t, g.Secret())
			s := newSender(t, g, nil, func(c *sms.Config) { c.CallbackURL = cb })
			a := channeltest.Alert()
			rc, err := s.Send(ctx, to, a)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			id, err := strconv.ParseInt(rc.ProviderID, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			status, err := g.SendReportWith(ctx, id, tt.rep)
			if err != nil {
				t.Fatalf("SendReportWith: %v", err)
			}
			if status != tt.wantStatus {
				t.Errorf("receiver answered %d, want %d", status, tt.wantStatus)
			}
			p := <-got
			if tt.wantErr != nil {
				if !errors.Is(p.err, tt.wantErr) {
					t.Fatalf("ParseReport error = %v, want %v", p.err, tt.wantErr)
				}
				return
			}
			if p.err != nil {
				t.Fatalf("ParseReport: %v", p.err)
			}
			want := tt.want
			want.ID, want.UserRef = rc.ProviderID, a.DeliveryID
			if d := cmp.Diff(want, p.rep); d != "" {
				t.Errorf("report (-want +got):\n%s", d)
			}
			if p.rep.RecipientGone() != tt.wantGone {
				t.Errorf("RecipientGone = %v, want %v", p.rep.RecipientGone(), tt.wantGone)
			}
		})
	}
}

func TestSendReportHelpers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g := smstest.New(t, smstest.Options{Secret: []byte("custom-secret")})
	cb, got := receiver(t, []byte("custom-secret"))
	s := newSender(t, g, nil, func(c *sms.Config) { c.CallbackURL = cb })
	rc, err := s.Send(ctx, to, channeltest.Alert())
	if err != nil {
		t.Fatal(err)
	}
	id, _ := strconv.ParseInt(rc.ProviderID, 10, 64)
	if st, err := g.SendReport(ctx, id, sms.StatusDelivered); err != nil || st != 204 {
		t.Fatalf("SendReport = %d, %v", st, err)
	}
	if p := <-got; p.err != nil || p.rep.Status != sms.StatusDelivered {
		t.Errorf("report = %+v, %v", p.rep, p.err)
	}
	if st, err := g.SendReportBadSignature(ctx, id, sms.StatusDelivered); err != nil || st != 401 {
		t.Fatalf("SendReportBadSignature = %d, %v", st, err)
	}
	if p := <-got; !errors.Is(p.err, sms.ErrBadSignature) {
		t.Errorf("bad signature parsed as %+v, %v", p.rep, p.err)
	}
	if _, err := g.SendReport(ctx, id+1, sms.StatusDelivered); err == nil {
		t.Error("SendReport for an unknown id succeeded")
	}
}

const secret = "report-secret"

// validBody is a report body; the token signs the same fields.
func validBody() map[string]any {
	return map[string]any{
		"id": 1000001, "msisdn": 4512345678, "time": 1740830405, "status": "DELIVERED",
		"error": nil, "code": nil, "userref": "d7c4f1c0a1b2c3d4e5f60718293a4b5c",
	}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, fields map[string]any) string {
	t.Helper()
	claims := jwt.MapClaims{"callback_url": "https://postbud.example/sms/reports", "api": 4}
	for k, v := range fields {
		claims[k] = v
	}
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestParseReport(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	hs := func(t *testing.T, f map[string]any) string { return sign(t, jwt.SigningMethodHS256, []byte(secret), f) }
	with := func(k string, v any) map[string]any { b := validBody(); b[k] = v; return b }
	without := func(k string) map[string]any { b := validBody(); delete(b, k); return b }
	tests := []struct {
		name    string
		body    func() []byte
		token   func(t *testing.T) string // "" leaves the header out
		secret  string
		maxBody int64
		wantErr error // nil: a valid report; errAny: any other error
	}{
		{name: "valid", token: func(t *testing.T) string { return hs(t, validBody()) }},
		{name: "unsigned", token: func(*testing.T) string { return "" }, wantErr: sms.ErrBadSignature},
		{name: "not a jwt", token: func(*testing.T) string { return "abc.def" }, wantErr: sms.ErrBadSignature},
		{name: "wrong secret", token: func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, []byte("other"), validBody()) },
			wantErr: sms.ErrBadSignature},
		{name: "alg none", token: func(t *testing.T) string {
			return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validBody())
		}, wantErr: sms.ErrBadSignature},
		{name: "alg RS256", token: func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, rsaKey, validBody()) },
			wantErr: sms.ErrBadSignature},
		{name: "alg HS384 under the right secret", token: func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS384, []byte(secret), validBody())
		}, wantErr: sms.ErrBadSignature},
		{name: "expired token", token: func(t *testing.T) string { return hs(t, with("exp", time.Now().Add(-time.Minute).Unix())) },
			wantErr: sms.ErrBadSignature},
		{name: "status differs from token", body: func() []byte { return mustJSON(with("status", "EXPIRED")) },
			token: func(t *testing.T) string { return hs(t, validBody()) }, wantErr: sms.ErrBadSignature},
		{name: "msisdn differs from token", body: func() []byte { return mustJSON(with("msisdn", 4587654321)) },
			token: func(t *testing.T) string { return hs(t, validBody()) }, wantErr: sms.ErrBadSignature},
		{name: "unknown field", body: func() []byte { return mustJSON(with("charge", "yes")) },
			token: func(t *testing.T) string { return hs(t, with("charge", "yes")) }, wantErr: errAny},
		{name: "trailing data", body: func() []byte { return append(mustJSON(validBody()), []byte(` {}`)...) },
			token: func(t *testing.T) string { return hs(t, validBody()) }, wantErr: errAny},
		{name: "missing id", body: func() []byte { return mustJSON(without("id")) },
			token: func(t *testing.T) string { return hs(t, without("id")) }, wantErr: errAny},
		{name: "missing status", body: func() []byte { return mustJSON(without("status")) },
			token: func(t *testing.T) string { return hs(t, without("status")) }, wantErr: errAny},
		{name: "msisdn as a string", body: func() []byte { return mustJSON(with("msisdn", "4512345678")) },
			token: func(t *testing.T) string { return hs(t, validBody()) }, wantErr: errAny},
		{name: "msisdn as a string in the token", token: func(t *testing.T) string { return hs(t, with("msisdn", "4512345678")) },
			wantErr: sms.ErrBadSignature},
		{name: "body too large", maxBody: 32, token: func(t *testing.T) string { return hs(t, validBody()) },
			wantErr: sms.ErrBodyTooLarge},
		{name: "no secret configured", secret: "-", token: func(t *testing.T) string { return hs(t, validBody()) },
			wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := mustJSON(validBody())
			if tt.body != nil {
				body = tt.body()
			}
			r := httptest.NewRequest(http.MethodPost, "/sms/reports", bytes.NewReader(body))
			if tok := tt.token(t); tok != "" {
				r.Header.Set("X-Gwapi-Signature", tok)
			}
			key := []byte(secret)
			if tt.secret == "-" {
				key = nil
			}
			rep, err := sms.ParseReport(r, key, tt.maxBody)
			switch {
			case tt.wantErr == nil:
				if err != nil {
					t.Fatalf("ParseReport: %v", err)
				}
				want := sms.Report{ID: "1000001", Time: time.Unix(1740830405, 0).UTC(), Status: "DELIVERED", Final: true,
					UserRef: "d7c4f1c0a1b2c3d4e5f60718293a4b5c"}
				if d := cmp.Diff(want, rep); d != "" {
					t.Errorf("report (-want +got):\n%s", d)
				}
			case err == nil:
				t.Fatalf("ParseReport accepted it: %+v", rep)
			case tt.wantErr == errAny:
				if errors.Is(err, sms.ErrBadSignature) {
					t.Errorf("error %v is ErrBadSignature, want another", err)
				}
			case !errors.Is(err, tt.wantErr):
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "12345678") {
				t.Errorf("error %q holds the number", err)
			}
		})
	}
}

var errAny = errors.New("any error")

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestFinal(t *testing.T) {
	for status, want := range map[string]bool{
		"DELIVERED": true, "UNDELIVERABLE": true, "EXPIRED": true, "REJECTED": true, "SKIPPED": true,
		"ACCEPTED": true, "DELETED": true,
		"UNKNOWN": false, "SCHEDULED": false, "BUFFERED": false, "ENROUTE": false, "": false, "delivered": false, "READ": false,
	} {
		if got := sms.Final(status); got != want {
			t.Errorf("Final(%q) = %v, want %v", status, got, want)
		}
	}
}

func TestSupersedes(t *testing.T) {
	tests := []struct {
		prev, next string
		want       bool
	}{
		{"", "ENROUTE", true},
		{"", "DELIVERED", true},
		{"", "SOMETHING_NEW", true},
		{"UNKNOWN", "BUFFERED", true},
		{"BUFFERED", "ENROUTE", true},
		{"SCHEDULED", "BUFFERED", true},
		{"ENROUTE", "BUFFERED", false},
		{"ENROUTE", "ENROUTE", false},
		{"ENROUTE", "UNKNOWN", false},
		{"ENROUTE", "DELIVERED", true},
		{"BUFFERED", "UNDELIVERABLE", true},
		{"ENROUTE", "EXPIRED", true},
		{"DELIVERED", "ENROUTE", false},
		{"DELIVERED", "BUFFERED", false},
		{"UNDELIVERABLE", "ENROUTE", false},
		{"DELIVERED", "DELIVERED", false},
		{"DELIVERED", "UNDELIVERABLE", false},
		{"EXPIRED", "DELIVERED", false},
		{"ENROUTE", "SOMETHING_NEW", false},
		{"SOMETHING_NEW", "ENROUTE", true},
		{"SOMETHING_NEW", "DELIVERED", true},
	}
	for _, tt := range tests {
		if got := sms.Supersedes(tt.prev, tt.next); got != tt.want {
			t.Errorf("Supersedes(%q, %q) = %v, want %v", tt.prev, tt.next, got, tt.want)
		}
	}
}
