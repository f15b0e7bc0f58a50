package dispatcher_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
)

// logLines decodes a JSON log, one record a line.
func logLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// Each send is logged once with the letter, channel, delivery and attempt
// (and a retried failure with its kind), at its level; below the logger's
// level nothing is written. No line holds the CPR number or an address.
func TestSendLogLines(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
		t.Run(level.String(), func(t *testing.T) {
			var buf syncBuf
			h := newHarnessWith(t, func(c *dispatcher.Config, _ *harness) {
				c.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level}))
			}, channels.Email, channels.SMS)
			registerNow(h, annaCPR)
			h.channels[channels.SMS].failNext(channels.Fail(channels.Transient, "http 503", errors.New("gateway busy")))
			const msg = "66666666-7777-4888-8999-000000000001"
			h.handle(letter("ev-log", msg, annaCPR))
			byMsg := map[string][]map[string]any{}
			for _, m := range logLines(t, buf.String()) {
				if s, _ := m["msg"].(string); strings.HasPrefix(s, "alert ") {
					byMsg[s] = append(byMsg[s], m)
				}
			}
			wantSent := 1
			if level > slog.LevelInfo {
				wantSent = 0
			}
			if len(byMsg["alert sent"]) != wantSent || len(byMsg["alert failed: will be retried"]) != 1 {
				t.Fatalf("send lines %v, want %d \"alert sent\" and 1 \"alert failed: will be retried\"", byMsg, wantSent)
			}
			for _, m := range append(byMsg["alert sent"], byMsg["alert failed: will be retried"]...) {
				if m["message_id"] != msg || m["delivery_id"] == "" || m["delivery_id"] == nil || m["attempt"] != float64(1) {
					t.Errorf("send line %v: want message_id, delivery_id and attempt 1", m)
				}
			}
			if sent := byMsg["alert sent"]; len(sent) == 1 && sent[0]["channel"] != string(channels.Email) {
				t.Errorf("sent line %v, want channel email", sent[0])
			}
			if f := byMsg["alert failed: will be retried"][0]; f["channel"] != string(channels.SMS) || f["kind"] != channels.Transient.String() {
				t.Errorf("failed line %v, want channel sms, kind %s", f, channels.Transient)
			}
			all := buf.String()
			for _, secret := range []string{"0101901234", "010190-1234", "@example", "+45"} {
				if strings.Contains(all, secret) {
					t.Errorf("the log holds %q", secret)
				}
			}
		})
	}
}
