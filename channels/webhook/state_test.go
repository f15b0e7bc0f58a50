package webhook_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func change() webhook.StateChange {
	return webhook.StateChange{
		MessageID: "8f2c1a4e-3b6d-4c1e-9a7f-2d5b8e0c6f13",
		Read:      true,
		Version:   7,
		ChangedAt: time.Date(2025, 3, 1, 10, 30, 15, 250_000_000, time.FixedZone("CET", 3600)),
		Platform:  webhook.PlatformEBoks,
	}
}

func TestBodyGolden(t *testing.T) {
	unread := change()
	unread.Read = false
	unread.Version = 8
	unread.Platform = webhook.PlatformMitDK
	unread.ChangedAt = time.Date(2025, 3, 1, 9, 45, 0, 0, time.UTC)
	tests := []struct {
		name string
		sc   webhook.StateChange
	}{
		{"state_read", change()},
		{"state_unread", unread},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := webhook.Body(tt.sc)
			golden := filepath.Join("testdata", tt.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("Body differs from %s (-want +got):\n%s", golden, diff)
			}
			if again := webhook.Body(tt.sc); string(again) != string(got) {
				t.Errorf("Body is not deterministic: %s then %s", got, again)
			}
		})
	}
}

// The body holds the six agreed fields and nothing about the citizen.
func TestBodyHoldsNoPersonalData(t *testing.T) {
	body := webhook.Body(change())
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"changed_at", "message_id", "platform", "state", "type", "version"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("body fields (-want +got):\n%s", diff)
	}
	cpr := regexp.MustCompile(`\b[0-3]\d[01]\d\d\d-?\d{4}\b`)
	if loc := cpr.FindIndex(body); loc != nil {
		t.Errorf("body holds a CPR-like number %q: %s", body[loc[0]:loc[1]], body)
	}
	for _, word := range []string{"cpr", "subject", "sender", "name", "email", "phone", "address"} {
		if strings.Contains(strings.ToLower(string(body)), word) {
			t.Errorf("body mentions %q: %s", word, body)
		}
	}
}

func TestParseBody(t *testing.T) {
	valid := string(webhook.Body(change()))
	tests := []struct {
		name    string
		body    string
		want    webhook.StateChange
		wantErr string
	}{
		{name: "round trip", body: valid, want: func() webhook.StateChange {
			sc := change()
			sc.ChangedAt = sc.ChangedAt.UTC()
			return sc
		}()},
		{name: "unread, offset time", body: `{"type":"message.state","message_id":"m1","state":"unread","version":0,"changed_at":"2025-03-01T10:00:00+01:00","platform":"borger.dk"}`,
			want: webhook.StateChange{MessageID: "m1", Version: 0, ChangedAt: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC), Platform: "borger.dk"}},
		{name: "unknown field", body: strings.Replace(valid, `"platform"`, `"cpr":"0101901234","platform"`, 1), wantErr: "unknown field"},
		{name: "missing field", body: strings.Replace(valid, `,"platform":"e-boks"`, ``, 1), wantErr: "lacks platform"},
		{name: "null field", body: strings.Replace(valid, `"version":7`, `"version":null`, 1), wantErr: "lacks version"},
		{name: "other type", body: strings.Replace(valid, `message.state`, `message.deleted`, 1), wantErr: "type"},
		{name: "bad state", body: strings.Replace(valid, `"read"`, `"opened"`, 1), wantErr: "state"},
		{name: "version as string", body: strings.Replace(valid, `"version":7`, `"version":"7"`, 1), wantErr: "version"},
		{name: "negative version", body: strings.Replace(valid, `"version":7`, `"version":-1`, 1), wantErr: "Version"},
		{name: "bad time", body: strings.Replace(valid, `2025-03-01T09:30:15.25Z`, `1 March 2025`, 1), wantErr: "changed_at"},
		{name: "empty message id", body: strings.Replace(valid, `"8f2c1a4e-3b6d-4c1e-9a7f-2d5b8e0c6f13"`, `""`, 1), wantErr: "MessageID"},
		{name: "trailing data", body: valid + `{}`, wantErr: "after the object"},
		{name: "two objects", body: valid + "\n" + valid, wantErr: "after the object"},
		{name: "array", body: `[` + valid + `]`, wantErr: "decode"},
		{name: "empty", body: ``, wantErr: "decode"},
		{name: "too large", body: valid + strings.Repeat(" ", webhook.MaxBodySize), wantErr: "bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := webhook.ParseBody([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseBody = %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "0101901234") {
					t.Errorf("error quotes a value: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBody: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseBody (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStateChangeValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*webhook.StateChange)
		wants []string
	}{
		{name: "valid", edit: func(*webhook.StateChange) {}},
		{name: "empty", edit: func(sc *webhook.StateChange) { *sc = webhook.StateChange{} },
			wants: []string{"MessageID is required", "ChangedAt is required", "Platform is required"}},
		{name: "bad values", edit: func(sc *webhook.StateChange) {
			sc.MessageID = "has space"
			sc.Version = -3
			sc.Platform = "e boks"
		}, wants: []string{"MessageID must be", "Version must not be negative", "Platform must be"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := change()
			tt.edit(&sc)
			err := sc.Validate()
			if len(tt.wants) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate = nil, want errors")
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v; missing %q", err, w)
				}
			}
		})
	}
}

// Whatever ParseBody accepts, Body writes back to something that parses to
// the same change.
func FuzzParseBody(f *testing.F) {
	f.Add(webhook.Body(change()))
	f.Add([]byte(`{"type":"message.state","message_id":"m","state":"unread","version":0,"changed_at":"0001-01-01T00:00:01+01:00","platform":"p"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := webhook.ParseBody(b)
		if err != nil {
			return
		}
		again, err := webhook.ParseBody(webhook.Body(sc))
		if err != nil {
			t.Fatalf("Body(%+v) does not parse: %v", sc, err)
		}
		if diff := cmp.Diff(sc, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
