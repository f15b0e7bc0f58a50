package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// uniqueKeys fails the test if a JSON line is not one object or repeats
// a key (a token walk: json.Unmarshal would keep the last silently).
func uniqueKeys(t *testing.T, line string) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	var walk func(depth int)
	walk = func(depth int) {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return
		}
		if d == '[' {
			for dec.More() {
				walk(depth + 1)
			}
			_, _ = dec.Token()
			return
		}
		seen := map[string]bool{}
		for dec.More() {
			k, _ := dec.Token()
			if seen[k.(string)] {
				t.Errorf("duplicate key %q in %s", k, line)
			}
			seen[k.(string)] = true
			walk(depth + 1)
		}
		_, _ = dec.Token()
	}
	walk(0)
	if _, err := dec.Token(); err != io.EOF {
		t.Errorf("%q: more than one JSON value", line)
	}
}

func TestLoggerUniqueKeysAndKeptIDs(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, "json", "debug")
	log.With("channel", "email").Error("send failed", "channel", "email", "message_id", "<abc.123@digitalpost.dk>",
		"to", "anna@example.dk")
	line := strings.TrimSpace(buf.String())
	uniqueKeys(t, line)
	if !strings.Contains(line, `"message_id":"<abc.123@digitalpost.dk>"`) || strings.Contains(line, "anna@example.dk") {
		t.Errorf("message id not kept or address not redacted: %s", line)
	}
}

func TestLoggerRateLimitsRepeats(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	h := newRepeatHandler(slog.NewJSONHandler(&buf, nil), 30*time.Second)
	h.now = func() time.Time { return now }
	log := slog.New(&uniqueHandler{next: h})
	for i := 0; i < 10; i++ {
		log.Error("redis down", "error", errors.New("dial tcp: connection refused"))
		now = now.Add(time.Second)
	}
	log.Error("other", "error", errors.New("x"))
	now = now.Add(30 * time.Second)
	log.Error("redis down", "error", errors.New("dial tcp: connection refused"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines (first, other, one with the count), got %d:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[2], `"repeated":9`) {
		t.Errorf("the line after the interval does not count the 9 held back: %s", lines[2])
	}
}

func TestHumanTime(t *testing.T) {
	for in, want := range map[string]string{
		"2025-01-15T06:00:00Z": "2025-01-15 07:00:00 CET",
		"2025-07-15T06:00:00Z": "2025-07-15 08:00:00 CEST",
	} {
		at, _ := time.Parse(time.RFC3339, in)
		if got := humanTime(at); got != want {
			t.Errorf("humanTime(%s) = %q, want %q", in, got, want)
		}
	}
}
