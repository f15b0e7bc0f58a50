package opsauth_test

import (
	"strings"
	"testing"

	"github.com/digitalpost/postbud/dispatcher/opsauth"
)

func TestNewRefusesAmbiguousKeys(t *testing.T) {
	k := opsauth.HashKey("a-key-of-sixteen-chars")
	for _, tc := range []struct {
		name string
		keys []opsauth.Key
		want string
	}{
		{"bad name", []opsauth.Key{{Name: "Anna Ek", Role: opsauth.Admin, SHA256: k}}, "key name"},
		{"no role", []opsauth.Key{{Name: "anna", SHA256: k}}, "no role"},
		{"no hash", []opsauth.Key{{Name: "anna", Role: opsauth.Support}}, "no hash"},
		{"same name", []opsauth.Key{{Name: "anna", Role: opsauth.Support, SHA256: k},
			{Name: "anna", Role: opsauth.Admin, SHA256: opsauth.HashKey("other")}}, "two keys are named"},
		{"same key", []opsauth.Key{{Name: "anna", Role: opsauth.Support, SHA256: k},
			{Name: "bo", Role: opsauth.Admin, SHA256: k}}, "the same key"},
	} {
		if _, err := opsauth.New(tc.keys, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
		}
	}
	if _, err := opsauth.New([]opsauth.Key{{Name: "anna", Role: opsauth.Support, SHA256: k}}, nil); err != nil {
		t.Errorf("one good key: %v", err)
	}
}

func TestParseRole(t *testing.T) {
	for s, want := range map[string]opsauth.Role{"support": opsauth.Support, "admin": opsauth.Admin} {
		if r, err := opsauth.ParseRole(s); err != nil || r != want || r.String() != s {
			t.Errorf("ParseRole(%q) = %v, %v", s, r, err)
		}
	}
	if _, err := opsauth.ParseRole("root"); err == nil {
		t.Error("ParseRole(root) succeeded")
	}
}
