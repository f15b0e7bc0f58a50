package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/channels/sms/smstest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestEndToEndUrgentLaneWhileBulkProviderHangs: every slot of the main
// worker server is held by a bulk letter's send to an SMTP server that
// never answers (a provider hanging to its timeout, a minute here), and
// another bulk letter waits behind them; an urgent letter is still alerted
// (by SMS): the urgent lane has a worker server of its own. With one server
// for all lanes the urgent task would wait for a slot, past the test's
// wait.
func TestEndToEndUrgentLaneWhileBulkProviderHangs(t *testing.T) {
	rt := redistest.New(t)
	smtp := emailtest.New(t)
	sms := smstest.New(t, smstest.Options{})
	logs := &syncBuffer{}
	const bulkSlots = 2
	d := start(t, testEnv(rt, smtp, map[string]string{
		"POSTBUD_CONCURRENCY":        fmt.Sprint(bulkSlots),
		"POSTBUD_URGENT_CONCURRENCY": "2",
		"POSTBUD_SMTP_TIMEOUT":       "1m",
		"POSTBUD_SMS_TOKEN":          sms.Token(),
		"POSTBUD_SMS_URL":            sms.URL(),
	}), logs)

	bulkCitizens := []string{"010190-1234", "020290-1234", "030390-1234"}
	for i, cpr := range bulkCitizens {
		post(t, d.base+"/v1/events", testCoreKey, wireEvent(fmt.Sprintf("c%d", i), "contact.updated", "core",
			map[string]any{"cpr": cpr, "email": fmt.Sprintf("citizen%d@example.dk", i), "confirmed": true}))
	}
	post(t, d.base+"/v1/events", testCoreKey, wireEvent("c-urgent", "contact.updated", "core",
		map[string]any{"cpr": "040490-1234", "mobile": "20123456", "confirmed": true}))
	waitIdle(t, rt)

	letter := func(id, messageID, cpr, priority string) string {
		return wireEvent(id, "message.received", "core", map[string]any{"message_id": messageID,
			"recipient": map[string]any{"cpr": cpr}, "priority": priority,
			"sender": map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"}})
	}
	smtp.Stall(emailtest.StallAfterGreeting)
	for i, cpr := range bulkCitizens {
		if code, body := post(t, d.base+"/v1/events", testCoreKey,
			letter(fmt.Sprintf("bulk-%d", i), fmt.Sprintf("%08d-3b4d-4e5f-8a9b-0c1d2e3f4a5b", i), cpr, "bulk")); code != http.StatusAccepted {
			t.Fatalf("bulk letter: %d %v", code, body)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := smtp.WaitStalled(ctx, bulkSlots); err != nil {
		t.Fatalf("the bulk sends did not reach the hanging SMTP server: %v", err)
	}
	if got := metric(t, d.base, `postbud_workers_busy{server="main"}`); got != fmt.Sprint(bulkSlots) {
		t.Fatalf(`postbud_workers_busy{server="main"} = %s, want %d: every slot held`, got, bulkSlots)
	}

	const urgentID = "9a1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	if code, body := post(t, d.base+"/v1/events", testCoreKey, letter("urgent-1", urgentID, "040490-1234", "urgent")); code != http.StatusAccepted {
		t.Fatalf("urgent letter: %d %v", code, body)
	}
	if _, err := sms.WaitMessages(ctx, 1); err != nil {
		t.Fatalf("the urgent letter's SMS did not go out while the bulk lane hangs: %v", err)
	}
	if m := sms.Messages()[0]; len(m.MSISDNs) != 1 || m.MSISDNs[0] != 4520123456 {
		t.Errorf("sms recipients %v", m.MSISDNs)
	}
	if n := len(smtp.Messages()); n != 0 {
		t.Errorf("%d bulk emails went out, want 0 (the SMTP server hangs)", n)
	}
	if got := metric(t, d.base, `postbud_workers{server="urgent"}`); got != "2" {
		t.Errorf(`postbud_workers{server="urgent"} = %s, want 2`, got)
	}
	d.stop(t)
	assertNoPersonalData(t, logs.String())
}

// metric returns the value of one series of the daemon's /metrics, "" if
// absent.
func metric(t *testing.T, base, series string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// TestEndToEndIdleUrgentServerIsWokenByTheEnqueue: the urgent worker
// server polls every 6 s here (asynq sleeps 3–9 s between empty polls),
// the main server's one slot hangs on a bulk send, so only the urgent
// server can take an urgent letter, and only a wake-up can start it before
// the urgent server's next poll. The letter is posted while the urgent
// server waits for a token (BLPOP, POSTBUD_URGENT_WAKE_WAIT); its SMS goes
// out before that poll could have come. On a redis-server of the test's
// own, so the BLPOP in CLIENT LIST is this daemon's.
func TestEndToEndIdleUrgentServerIsWokenByTheEnqueue(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { c.Close() })
	rt := &redistest.Env{Client: c, URL: srv.URL, Prefix: "w", QueuePrefix: "wq"}
	smtp := emailtest.New(t)
	sms := smstest.New(t, smstest.Options{})
	logs := &syncBuffer{}
	const urgentPoll = 6 * time.Second
	d := start(t, testEnv(rt, smtp, map[string]string{
		"POSTBUD_CONCURRENCY":                "1",
		"POSTBUD_URGENT_CONCURRENCY":         "1",
		"POSTBUD_URGENT_TASK_CHECK_INTERVAL": urgentPoll.String(),
		"POSTBUD_URGENT_WAKE_WAIT":           "2s",
		"POSTBUD_SMTP_TIMEOUT":               "1m",
		"POSTBUD_SMS_TOKEN":                  sms.Token(),
		"POSTBUD_SMS_URL":                    sms.URL(),
	}), logs)
	post(t, d.base+"/v1/events", testCoreKey, wireEvent("c-bulk", "contact.updated", "core",
		map[string]any{"cpr": "010190-1234", "email": "citizen@example.dk", "confirmed": true}))
	post(t, d.base+"/v1/events", testCoreKey, wireEvent("c-urgent", "contact.updated", "core",
		map[string]any{"cpr": "040490-1234", "mobile": "20123456", "confirmed": true}))
	waitIdle(t, rt)
	letter := func(id, messageID, cpr, priority string) string {
		return wireEvent(id, "message.received", "core", map[string]any{"message_id": messageID,
			"recipient": map[string]any{"cpr": cpr}, "priority": priority,
			"sender": map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"}})
	}
	smtp.Stall(emailtest.StallAfterGreeting)
	if code, body := post(t, d.base+"/v1/events", testCoreKey, letter("bulk-1", "00000001-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "010190-1234", "bulk")); code != http.StatusAccepted {
		t.Fatalf("bulk letter: %d %v", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := smtp.WaitStalled(ctx, 1); err != nil {
		t.Fatalf("the bulk send did not reach the hanging SMTP server: %v", err)
	}

	// The urgent server has waited for a token for less than a second:
	// without one it dequeues again after the rest of its wait and
	// asynq's sleep of at least urgentPoll/2.
	var t0 time.Time
	eventually(t, "the urgent server to wait for a wake-up token", 30*time.Second, func() bool {
		list, err := c.ClientList(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, " cmd=blpop") && strings.Contains(line, " idle=0 ") {
				t0 = time.Now()
				return true
			}
		}
		return false
	})
	if code, body := post(t, d.base+"/v1/events", testCoreKey, letter("urgent-1", "9a1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "040490-1234", "urgent")); code != http.StatusAccepted {
		t.Fatalf("urgent letter: %d %v", code, body)
	}
	if _, err := sms.WaitMessages(ctx, 1); err != nil {
		t.Fatalf("the urgent letter's SMS did not go out: %v", err)
	}
	if took := time.Since(t0); took >= urgentPoll/2 {
		t.Errorf("the urgent SMS went out %v after the urgent server began to wait, not before its next poll (%v): "+
			"the enqueue did not wake it", took.Round(time.Millisecond), urgentPoll/2)
	}
	d.stop(t)
	assertNoPersonalData(t, logs.String())
}
