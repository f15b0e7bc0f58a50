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

func TestSealOpensOnlyForItsCitizenAndField(t *testing.T) {
	s := mustNew(t, seal.Keys{Current: newKey, Tag: tagKey})
	v := s.Seal("cit-a", "email", email)
	if strings.Contains(v, "anna") || !seal.IsSealed(v) || !s.Current(v) {
		t.Fatalf("sealed value %q", v)
	}
	if v2 := s.Seal("cit-a", "email", email); v2 == v {
		t.Error("two seals of one value are equal: the nonce is not random")
	}
	if got, err := s.Open("cit-a", "email", v); err != nil || got != email {
		t.Fatalf("Open = %q, %v", got, err)
	}
	for _, c := range []struct{ citizen, field string }{{"cit-b", "email"}, {"cit-a", "mobile"}} {
		if got, err := s.Open(c.citizen, c.field, v); !errors.Is(err, seal.ErrOpen) || got != "" {
			t.Errorf("Open as %s of %s = %q, %v; want ErrOpen", c.field, c.citizen, got, err)
		}
	}
	if s.Seal("cit-a", "email", "") != "" {
		t.Error("the empty string is not kept empty")
	}
}

func TestTamperedValueIsAnErrorWithoutData(t *testing.T) {
	s := mustNew(t, seal.Keys{Current: newKey, Tag: tagKey})
	v := s.Seal("cit-a", "email", email)
	body := []byte(v)
	body[len(body)-3] ^= 1 // a bit of the tag
	flipped := string(body)
	if flipped == v {
		body[len(body)-3] ^= 3
		flipped = string(body)
	}
	for name, bad := range map[string]string{"flipped": flipped, "truncated": v[:len(v)-10], "short": v[:12],
		"not base64": v[:9] + "!!!!"} {
		got, err := s.Open("cit-a", "email", bad)
		if err == nil || got != "" {
			t.Errorf("%s: Open = %q, %v; want an error", name, got, err)
			continue
		}
		if strings.Contains(err.Error(), "anna") || strings.Contains(err.Error(), bad[9:]) {
			t.Errorf("%s: error %q names the value", name, err)
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
	r, changed, err := both.Reseal("cit-a", "mobile", v)
	if err != nil || !changed || !both.Current(r) {
		t.Fatalf("Reseal = %q, %v, %v", r, changed, err)
	}
	if got, err := only.Open("cit-a", "mobile", r); err != nil || got != "+4520304050" {
		t.Fatalf("resealed value under the new key alone: %q, %v", got, err)
	}
	if again, changed, _ := both.Reseal("cit-a", "mobile", r); changed || again != r {
		t.Error("Reseal changed a value already under the current key")
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
