package signature_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/signature"
	"github.com/google/go-cmp/cmp"
)

// The published Standard Webhooks test vector, verbatim from the
// specification's reference libraries (libraries/go/webhook_test.go,
// TestWebhookSign, and the same values in the other languages' tests).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	// vectorOther is the reference tests' non-matching signature.
	vectorOther = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
)

func vectorKey(t *testing.T) []byte {
	t.Helper()
	key, err := signature.ParseSecret(vectorSecret)
	if err != nil {
		t.Fatalf("ParseSecret(vector): %v", err)
	}
	return key
}

func TestSignVector(t *testing.T) {
	got := signature.Sign(vectorKey(t), vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	if got != vectorSignature {
		t.Errorf("Sign(vector) = %q, want %q", got, vectorSignature)
	}
	// Sub-second parts of the time are not signed: the header carries
	// whole seconds.
	got = signature.Sign(vectorKey(t), vectorID, time.Unix(vectorTimestamp, 999_999_999), []byte(vectorBody))
	if got != vectorSignature {
		t.Errorf("Sign(vector + 0.999s) = %q, want %q", got, vectorSignature)
	}
}

func TestVerifyVector(t *testing.T) {
	key := vectorKey(t)
	now := time.Unix(vectorTimestamp, 0)
	tests := []struct {
		name string
		sig  string
	}{
		{"one signature", vectorSignature},
		// The reference tests' "valid multi sig": other v1 and v2 entries
		// around the valid one.
		{"multi sig", strings.Join([]string{vectorOther, "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", vectorSignature, vectorOther}, " ")},
		{"beside an asymmetric signature", "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== " + vectorSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			h.Set(signature.HeaderID, vectorID)
			h.Set(signature.HeaderTimestamp, strconv.Itoa(vectorTimestamp))
			h.Set(signature.HeaderSignature, tt.sig)
			if err := signature.Verify([][]byte{key}, h, []byte(vectorBody), now, 0); err != nil {
				t.Errorf("Verify(vector): %v", err)
			}
		})
	}
}

func TestParseSecret(t *testing.T) {
	want := []byte{
		0x31, 0xf2, 0x90, 0xf6, 0xbf, 0x06, 0x29, 0x8a, 0xab, 0x4f, 0x08, 0xd4,
		0x3c, 0x3f, 0x08, 0x2c, 0xf6, 0x48, 0xa3, 0x62, 0xda, 0x2d, 0xa4, 0xb0,
	}
	tests := []struct {
		name    string
		in      string
		want    []byte
		wantErr bool
	}{
		{name: "whsec prefix", in: vectorSecret, want: want},
		{name: "raw base64", in: strings.TrimPrefix(vectorSecret, "whsec_"), want: want},
		{name: "surrounding space", in: " " + vectorSecret + "\n", want: want},
		{name: "empty", in: "", wantErr: true},
		{name: "prefix only", in: "whsec_", wantErr: true},
		{name: "not base64", in: "whsec_not*base64!sekrit", wantErr: true},
		{name: "url alphabet", in: "whsec_-_-_", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := signature.ParseSecret(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseSecret(%q) = %x, want an error", tt.in, got)
				}
				if strings.Contains(err.Error(), "sekrit") {
					t.Errorf("error quotes the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSecret: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseSecret (-want +got):\n%s", diff)
			}
			if len(got) != signature.MinSecretLen {
				t.Errorf("vector key is %d bytes, want %d", len(got), signature.MinSecretLen)
			}
			if f := signature.FormatSecret(got); f != vectorSecret {
				t.Errorf("FormatSecret = %q, want %q", f, vectorSecret)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	now := time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)
	oldKey := []byte("old-key-old-key-old-key-old-key!")
	newKey := []byte("new-key-new-key-new-key-new-key!")
	body := []byte(`{"type":"message.state","message_id":"m1","state":"read","version":2,"changed_at":"2025-03-01T09:29:00Z","platform":"e-boks"}`)
	const id = "msg_01"

	// signed returns the headers of body signed at ts under keys.
	signed := func(ts time.Time, keys ...[]byte) http.Header {
		h := http.Header{}
		h.Set(signature.HeaderID, id)
		h.Set(signature.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		var sigs []string
		for _, k := range keys {
			sigs = append(sigs, signature.Sign(k, id, ts, body))
		}
		h.Set(signature.HeaderSignature, strings.Join(sigs, " "))
		return h
	}
	without := func(name string) http.Header {
		h := signed(now, newKey)
		h.Del(name)
		return h
	}
	with := func(name, value string) http.Header {
		h := signed(now, newKey)
		h.Set(name, value)
		return h
	}
	tampered := append([]byte(nil), body...)
	tampered[len(tampered)-3] = 'X'

	tests := []struct {
		name      string
		secrets   [][]byte
		header    http.Header
		body      []byte
		tolerance time.Duration
		want      error
	}{
		{name: "valid", header: signed(now, newKey)},
		{name: "missing id", header: without(signature.HeaderID), want: signature.ErrMissingHeaders},
		{name: "missing timestamp", header: without(signature.HeaderTimestamp), want: signature.ErrMissingHeaders},
		{name: "missing signature", header: without(signature.HeaderSignature), want: signature.ErrMissingHeaders},
		{name: "blank signature", header: with(signature.HeaderSignature, "   "), want: signature.ErrMissingHeaders},
		{name: "no headers", header: http.Header{}, want: signature.ErrMissingHeaders},
		{name: "tampered body", header: signed(now, newKey), body: tampered, want: signature.ErrBadSignature},
		{name: "empty body", header: signed(now, newKey), body: []byte{}, want: signature.ErrBadSignature},
		{name: "tampered id", header: with(signature.HeaderID, "msg_02"), want: signature.ErrBadSignature},
		{name: "wrong secret", header: signed(now, []byte("someone-else's-key-32-bytes-long")), want: signature.ErrBadSignature},
		{name: "bad base64", header: with(signature.HeaderSignature, "v1,not*base64!"), want: signature.ErrBadSignature},
		{name: "bad base64 then valid", header: with(signature.HeaderSignature, "v1,not*base64! "+signature.Sign(newKey, id, now, body))},
		{name: "no v1 signature", header: with(signature.HeaderSignature, "v1a,AAAA v2,"+strings.TrimPrefix(signature.Sign(newKey, id, now, body), "v1,")), want: signature.ErrBadSignature},
		{name: "no comma", header: with(signature.HeaderSignature, strings.TrimPrefix(signature.Sign(newKey, id, now, body), "v1,")), want: signature.ErrBadSignature},
		{name: "multiple signatures one valid", header: with(signature.HeaderSignature, vectorOther+" "+signature.Sign(newKey, id, now, body)+" "+vectorOther)},
		{name: "signatures over several header lines", header: func() http.Header {
			h := with(signature.HeaderSignature, vectorOther)
			h.Add(signature.HeaderSignature, signature.Sign(newKey, id, now, body))
			return h
		}()},
		{name: "no secrets", secrets: [][]byte{}, header: signed(now, newKey), want: signature.ErrBadSignature},
		{name: "rotation: old and new key accepted, signed with new", secrets: [][]byte{oldKey, newKey}, header: signed(now, newKey)},
		{name: "rotation: old and new key accepted, signed with old", secrets: [][]byte{oldKey, newKey}, header: signed(now, oldKey)},
		{name: "rotation: sender signs with both", header: signed(now, oldKey, newKey)},
		{name: "rotation over: only old signature", header: signed(now, oldKey), want: signature.ErrBadSignature},
		{name: "old timestamp", header: signed(now.Add(-signature.DefaultTolerance-time.Second), newKey), want: signature.ErrTimestamp},
		{name: "future timestamp", header: signed(now.Add(signature.DefaultTolerance+time.Second), newKey), want: signature.ErrTimestamp},
		{name: "old timestamp at the edge", header: signed(now.Add(-signature.DefaultTolerance), newKey)},
		{name: "future timestamp at the edge", header: signed(now.Add(signature.DefaultTolerance), newKey)},
		{name: "old timestamp within a longer tolerance", header: signed(now.Add(-time.Hour), newKey), tolerance: 2 * time.Hour},
		{name: "within a shorter tolerance", header: signed(now.Add(-30*time.Second), newKey), tolerance: 10 * time.Second, want: signature.ErrTimestamp},
		{name: "timestamp in milliseconds", header: with(signature.HeaderTimestamp, strconv.FormatInt(now.UnixMilli(), 10)), want: signature.ErrTimestamp},
		{name: "timestamp not an integer", header: with(signature.HeaderTimestamp, "1614265330.5"), want: signature.ErrTimestamp},
		{name: "timestamp as a date", header: with(signature.HeaderTimestamp, now.Format(http.TimeFormat)), want: signature.ErrTimestamp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secrets := tt.secrets
			if secrets == nil {
				secrets = [][]byte{newKey}
			}
			b := tt.body
			if b == nil {
				b = body
			}
			err := signature.Verify(secrets, tt.header, b, now, tt.tolerance)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if err != nil {
				for _, k := range secrets {
					if strings.Contains(err.Error(), string(k)) {
						t.Errorf("error quotes a secret: %v", err)
					}
				}
			}
		})
	}
}

// The sentinels are distinct, so a receiver can answer each differently.
func TestVerifySentinelsDistinct(t *testing.T) {
	errs := []error{signature.ErrMissingHeaders, signature.ErrBadSignature, signature.ErrTimestamp}
	for i, a := range errs {
		for j, b := range errs {
			if (i == j) != errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = %v", a, b, errors.Is(a, b))
			}
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(vectorID, strconv.Itoa(vectorTimestamp), vectorSignature, []byte(vectorBody))
	f.Add("", "", "", []byte{})
	f.Add("id", "-1", "v1,,, v1 v1,=", []byte("{}"))
	key := []byte("fuzz-key-fuzz-key-fuzz-key-fuzz!")
	now := time.Unix(vectorTimestamp, 0)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(signature.HeaderID, id)
		h.Set(signature.HeaderTimestamp, ts)
		h.Set(signature.HeaderSignature, sig)
		err := signature.Verify([][]byte{key}, h, body, now, 0)
		if err == nil {
			// Accepted only when it carries the real signature.
			sec, perr := strconv.ParseInt(ts, 10, 64)
			if perr != nil || !strings.Contains(sig, signature.Sign(key, id, time.Unix(sec, 0), body)) {
				t.Fatalf("Verify accepted a forged webhook: id %q ts %q sig %q", id, ts, sig)
			}
			return
		}
		if !errors.Is(err, signature.ErrMissingHeaders) && !errors.Is(err, signature.ErrBadSignature) && !errors.Is(err, signature.ErrTimestamp) {
			t.Fatalf("Verify error %v wraps no sentinel", err)
		}
	})
}
