package fcmtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/google/go-cmp/cmp"
)

type keyFile struct {
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

func parseKeyFile(t *testing.T, b []byte) (keyFile, *rsa.PrivateKey) {
	t.Helper()
	var kf keyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(kf.PrivateKey))
	if blk == nil {
		t.Fatal("private_key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return kf, k.(*rsa.PrivateKey)
}

func assertion(t *testing.T, key *rsa.PrivateKey, kid, iss, aud, scope string) string {
	t.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": iss, "aud": aud, "scope": scope, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func postToken(t *testing.T, s *Server, grant, assertion string) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(s.TokenURL(), url.Values{"grant_type": {grant}, "assertion": {assertion}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// TestTokenEndpoint checks that the fake verifies the JWT-bearer grant, so
// tests that pass through it prove the client really authenticated.
func TestTokenEndpoint(t *testing.T) {
	s := New(t)
	kf, key := parseKeyFile(t, s.ServiceAccount("proj"))
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	const grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	tests := []struct {
		name      string
		grant     string
		assertion string
		want      int
	}{
		{"valid", grant, assertion(t, key, kf.PrivateKeyID, kf.ClientEmail, kf.TokenURI, ScopeMessaging), 200},
		{"cloud-platform scope", grant, assertion(t, key, kf.PrivateKeyID, kf.ClientEmail, kf.TokenURI, "openid "+ScopeCloudPlatform), 200},
		{"wrong grant", "client_credentials", assertion(t, key, kf.PrivateKeyID, kf.ClientEmail, kf.TokenURI, ScopeMessaging), 400},
		{"signed by another key", grant, assertion(t, other, kf.PrivateKeyID, kf.ClientEmail, kf.TokenURI, ScopeMessaging), 400},
		{"unknown key id", grant, assertion(t, key, "nope", kf.ClientEmail, kf.TokenURI, ScopeMessaging), 400},
		{"unknown issuer", grant, assertion(t, key, kf.PrivateKeyID, "x@y.iam.gserviceaccount.com", kf.TokenURI, ScopeMessaging), 400},
		{"wrong audience", grant, assertion(t, key, kf.PrivateKeyID, kf.ClientEmail, "https://oauth2.googleapis.com/token", ScopeMessaging), 400},
		{"no messaging scope", grant, assertion(t, key, kf.PrivateKeyID, kf.ClientEmail, kf.TokenURI, "https://www.googleapis.com/auth/datastore"), 400},
		{"not a jwt", grant, "abc.def.ghi", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := postToken(t, s, tt.grant, tt.assertion)
			if status != tt.want {
				t.Errorf("status = %d (%v), want %d", status, body, tt.want)
			}
			if status == 200 && body["access_token"] == "" {
				t.Errorf("no access token in %v", body)
			}
		})
	}
	if n := s.TokenExchanges(); n != 2 {
		t.Errorf("TokenExchanges = %d, want 2", n)
	}
}

// TestSendEndpoint checks bearer, project binding, strict decoding and the
// error shape.
func TestSendEndpoint(t *testing.T) {
	s := New(t)
	kf, key := parseKeyFile(t, s.ServiceAccount("proj"))
	_, body := postToken(t, s, "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion(t, key, kf.PrivateKeyID, kf.ClientEmail, kf.TokenURI, ScopeMessaging))
	bearer := body["access_token"].(string)
	send := func(project, auth, payload string) (int, string, http.Header) {
		req, _ := http.NewRequest("POST", s.Endpoint()+"/projects/"+project+"/messages:send", strings.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	good := `{"message":{"token":"tok","data":{"message_id":"m1"},"android":{"collapse_key":"m1","priority":"high","ttl":"60s","notification":{"tag":"m1"}}}}`
	tests := []struct {
		name, project, auth, payload string
		arm                          func()
		want                         int
		wantBody                     string
	}{
		{"accepted", "proj", bearer, good, nil, 200, `"name":"projects/proj/messages/`},
		{"no bearer", "proj", "", good, nil, 401, `"status":"UNAUTHENTICATED"`},
		{"forged bearer", "proj", "ya29.forged", good, nil, 401, `"status":"UNAUTHENTICATED"`},
		{"another project", "other", bearer, good, nil, 403, `"status":"PERMISSION_DENIED"`},
		{"unknown field", "proj", bearer, `{"message":{"token":"tok","priority":"high"}}`, nil, 400, `"status":"INVALID_ARGUMENT"`},
		{"no target", "proj", bearer, `{"message":{"data":{"a":"b"}}}`, nil, 400, `"errorCode":"INVALID_ARGUMENT"`},
		{"unregistered", "proj", bearer, good, func() { s.Unregister("tok") }, 404, `{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`},
		{"quota", "proj", bearer, good, func() { s.FailNext(1, QuotaExceeded) }, 429, `"errorCode":"QUOTA_EXCEEDED"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.arm != nil {
				tt.arm()
			}
			status, body, h := send(tt.project, tt.auth, tt.payload)
			if status != tt.want || !strings.Contains(body, tt.wantBody) {
				t.Errorf("got %d %s, want %d containing %s", status, body, tt.want, tt.wantBody)
			}
			if tt.name == "quota" && h.Get("Retry-After") != "10" {
				t.Errorf("Retry-After = %q, want 10", h.Get("Retry-After"))
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	msgs, err := s.WaitMessages(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	msgs[0].Raw = nil
	want := Message{Project: "proj", Token: "tok", Data: map[string]string{"message_id": "m1"}, CollapseKey: "m1", Priority: "high", TTL: "60s", Tag: "m1"}
	if diff := cmp.Diff([]Message{want}, msgs); diff != "" {
		t.Errorf("recorded (-want +got):\n%s", diff)
	}
}
