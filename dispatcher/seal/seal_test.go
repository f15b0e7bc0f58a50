package seal_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/digitalpost/postbud/dispatcher/seal"
)

var (
	oldKey = []byte("old-seal-key-0123456789-0123456789")
	newKey = []byte("new-seal-key-0123456789-0123456789")
	tagKey = []byte("test-pseudonymisation-key-0123456789")
)

func mustNew(t *testing.T, k seal.Keys) *seal.Sealer {
	t.Helper()
	s, err := seal.New(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const email = "anna.jensen@example.dk"

// forms are the two forms of a sealed value.
var forms = map[string]func(s *seal.Sealer, citizen, field, plain string) string{
	"text":    (*seal.Sealer).Seal,
	"compact": (*seal.Sealer).SealCompact,
}

func TestSealOpensOnlyForItsCitizenAndField(t *testing.T) {
	s := mustNew(t, seal.Keys{Current: newKey, Tag: tagKey})
	for name, sealFn := range forms {
		v := sealFn(s, "cit-a", "email", email)
		if strings.Contains(v, "anna") || !seal.IsSealed(v) || !s.Current(v) {
			t.Fatalf("%s: sealed value %q", name, v)
		}
		if id, _ := seal.KeyIDOf(v); id != s.KeyID() {
			t.Errorf("%s: key id %q, want %q", name, id, s.KeyID())
		}
		if v2 := sealFn(s, "cit-a", "email", email); v2 == v {
			t.Errorf("%s: two seals of one value are equal: the nonce is not random", name)
		}
		if got, err := s.Open("cit-a", "email", v); err != nil || got != email {
			t.Fatalf("%s: Open = %q, %v", name, got, err)
		}
		for _, c := range []struct{ citizen, field string }{{"cit-b", "email"}, {"cit-a", "mobile"}} {
			if got, err := s.Open(c.citizen, c.field, v); !errors.Is(err, seal.ErrOpen) || got != "" {
				t.Errorf("%s: Open as %s of %s = %q, %v; want ErrOpen", name, c.field, c.citizen, got, err)
			}
		}
		if sealFn(s, "cit-a", "email", "") != "" {
			t.Errorf("%s: the empty string is not kept empty", name)
		}
	}
	if c, x := len(s.SealCompact("c", "f", email)), len(s.Seal("c", "f", email)); c >= x {
		t.Errorf("compact form %d bytes, text form %d", c, x)
	}
}

func TestTamperedValueIsAnErrorWithoutData(t *testing.T) {
	s := mustNew(t, seal.Keys{Current: newKey, Tag: tagKey})
	for form, sealFn := range forms {
		v := sealFn(s, "cit-a", "email", email)
		body := []byte(v)
		body[len(body)-3] ^= 1 // a bit of the tag
		flipped := string(body)
		for name, bad := range map[string]string{"flipped": flipped, "truncated": v[:len(v)-10], "short": v[:12],
			"not base64": v[:9] + "!!!!"} {
			got, err := s.Open("cit-a", "email", bad)
			if err == nil || got != "" {
				t.Errorf("%s %s: Open = %q, %v; want an error", form, name, got, err)
				continue
			}
			if strings.Contains(err.Error(), "anna") || strings.Contains(err.Error(), bad[9:]) {
				t.Errorf("%s %s: error %q names the value", form, name, err)
			}
		}
	}
	if _, err := s.Open("cit-a", "email", email); !errors.Is(err, seal.ErrNotSealed) {
		t.Errorf("Open of a plain value: %v, want ErrNotSealed", err)
	}
}

func TestRotation(t *testing.T) {
	old := mustNew(t, seal.Keys{Current: oldKey, Tag: tagKey})
	both := mustNew(t, seal.Keys{Current: newKey, Previous: oldKey, Tag: tagKey})
	only := mustNew(t, seal.Keys{Current: newKey, Tag: tagKey})
	v := old.Seal("cit-a", "mobile", "+4520304050")
	if both.Current(v) {
		t.Fatal("a value under the old key counts as current")
	}
	if got, err := both.Open("cit-a", "mobile", v); err != nil || got != "+4520304050" {
		t.Fatalf("previous key: Open = %q, %v", got, err)
	}
	if _, err := only.Open("cit-a", "mobile", v); !errors.Is(err, seal.ErrUnknownKey) {
		t.Fatalf("without the previous key: %v, want ErrUnknownKey", err)
	}
	if c := old.SealCompact("cit-a", "mobile", "+4520304050"); both.Current(c) {
		t.Fatal("a compact value under the old key counts as current")
	} else if got, err := both.Open("cit-a", "mobile", c); err != nil || got != "+4520304050" {
		t.Fatalf("previous key, compact: Open = %q, %v", got, err)
	}
	if old.Tag("apns", "tok") != only.Tag("apns", "tok") {
		t.Error("tags differ across seal keys")
	}
	if only.Tag("apns", "tok") == only.Tag("fcm", "tok") {
		t.Error("tags of different parts are equal")
	}
	if _, err := seal.New(seal.Keys{Current: newKey, Previous: newKey, Tag: tagKey}); err == nil {
		t.Error("the same key as current and previous accepted")
	}
	if _, err := seal.New(seal.Keys{Current: newKey[:31], Tag: tagKey}); err == nil {
		t.Error("a 31-byte key accepted")
	}
}

// BenchmarkOpen is the sealing's CPU per letter: a letter to a citizen
// with an email, a mobile and two tokens opens four values.
func BenchmarkOpen(b *testing.B) {
	s, _ := seal.New(seal.Keys{Current: newKey, Tag: tagKey})
	fields := []string{"email", "mobile", "dev:apns:x", "dev:fcm:y"}
	plain := []string{"citizen123@example.dk", "+4520123456", strings.Repeat("ab", 32), strings.Repeat("f", 152)}
	vals := make([]string, len(fields))
	for i, f := range fields {
		vals[i] = s.SealCompact("c", f, plain[i])
	}
	b.ReportAllocs()
	for b.Loop() {
		for i, v := range vals {
			if _, err := s.Open("c", fields[i], v); err != nil {
				b.Fatal(err)
			}
		}
	}
}
