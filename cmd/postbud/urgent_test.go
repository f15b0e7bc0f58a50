package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
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

// TestEndToEndUrgentServerWaitsForWakeUpTokens: as the daemon wires it,
// the urgent worker server waits on the urgent lane's wake list (BLPOP)
// and posting an urgent letter pushes a token there (LPUSH); the letter is
// alerted, and the enqueue marks the urgent lane flowing (SET of its flow
// key, which batch tasks yield to). On a redis-server of the test's own,
// watched with MONITOR.
// That a token starts a waiting server's task before its next poll is
// dispatcher/wake's test (TestIdleServerStartsAWokenTaskBeforeItsNextPoll).
func TestEndToEndUrgentServerWaitsForWakeUpTokens(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { c.Close() })
	rt := &redistest.Env{Client: c, URL: srv.URL, Prefix: "w", QueuePrefix: "wq"}
	key, flow := `"asynq:{wq.urgent}:postbud-wake"`, `"asynq:{wq.urgent}:postbud-flow"`

	// MONITOR on a plain connection: each command Redis runs comes as one
	// status reply ("+<time> [<db> <client>] "cmd" "arg" …").
	mon, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mon.Close() })
	if _, err := mon.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(mon)
	if l, err := r.ReadString('\n'); err != nil || l != "+OK\r\n" {
		t.Fatalf("MONITOR: %q %v", l, err)
	}
	var mu sync.Mutex
	var seen []string // MONITOR lines naming the wake list or the flow key, lower case (BLPOP is sent as such)
	go func() {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.Contains(l, key) || strings.Contains(l, flow) {
				mu.Lock()
				seen = append(seen, strings.ToLower(l))
				mu.Unlock()
			}
		}
	}()
	sawOn := func(cmd, key string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range seen {
			if strings.Contains(l, `"`+cmd+`" `+key) {
				return true
			}
		}
		return false
	}
	saw := func(cmd string) bool { return sawOn(cmd, key) }

	smtp := emailtest.New(t)
	sms := smstest.New(t, smstest.Options{})
	logs := &syncBuffer{}
	d := start(t, testEnv(rt, smtp, map[string]string{"POSTBUD_SMS_TOKEN": sms.Token(), "POSTBUD_SMS_URL": sms.URL()}), logs)
	post(t, d.base+"/v1/events", testCoreKey, wireEvent("c-urgent", "contact.updated", "core",
		map[string]any{"cpr": "040490-1234", "mobile": "20123456", "confirmed": true}))
	waitIdle(t, rt)
	eventually(t, "the urgent server to wait on the urgent lane's wake list (BLPOP)", 30*time.Second, func() bool { return saw("blpop") })
	if saw("lpush") || sawOn("set", flow) {
		t.Fatal("a wake-up token or the flow mark before any urgent letter")
	}
	if code, body := post(t, d.base+"/v1/events", testCoreKey, wireEvent("urgent-1", "message.received", "core",
		map[string]any{"message_id": "9a1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "recipient": map[string]any{"cpr": "040490-1234"},
			"priority": "urgent", "sender": map[string]any{"id": "rh", "name": "Rigshospitalet", "kind": "public"}})); code != http.StatusAccepted {
		t.Fatalf("urgent letter: %d %v", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sms.WaitMessages(ctx, 1); err != nil {
		t.Fatalf("the urgent letter's SMS did not go out: %v", err)
	}
	eventually(t, "the urgent letter's enqueue to push a wake-up token (LPUSH)", 30*time.Second, func() bool { return saw("lpush") })
	eventually(t, "the urgent letter's enqueue to mark the urgent lane flowing (SET)", 30*time.Second, func() bool { return sawOn("set", flow) })
	d.stop(t)
	assertNoPersonalData(t, logs.String())
}

// TestEndToEndBatchYieldsWhileUrgentLettersFlow: as the daemon wires it,
// a batch task that finds the urgent lane flowing (its flow key set, as an
// urgent enqueue sets it) yields: it logs so and shows it in
// postbud_batch_yielding, takes its letters at the rate
// POSTBUD_BATCH_YIELD_RATE gives in a pace shared in Redis
// (<prefix>:yield), and every letter is still alerted once.
func TestEndToEndBatchYieldsWhileUrgentLettersFlow(t *testing.T) {
	rt := redistest.New(t)
	smtp := emailtest.New(t)
	logs := &syncBuffer{}
	d := start(t, testEnv(rt, smtp, map[string]string{"POSTBUD_BATCH_YIELD_RATE": "5"}), logs)
	const n = 30
	var contacts, letters []string
	for i := range n {
		cpr := fmt.Sprintf("%02d0190-%04d", i%28+1, 2000+i)
		contacts = append(contacts, wireEvent(fmt.Sprintf("c-%d", i), "contact.updated", "core",
			map[string]any{"cpr": cpr, "email": fmt.Sprintf("c%d@example.dk", i), "confirmed": true}))
		letters = append(letters, wireEvent(fmt.Sprintf("l-%d", i), "message.received", "core", map[string]any{
			"message_id": fmt.Sprintf("%08x-0000-4000-8000-%012x", i+0xc000, i), "recipient": map[string]any{"cpr": cpr},
			"sender": map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"}}))
	}
	if code, body := post(t, d.base+"/v1/events/batch", testCoreKey, `{"events":[`+strings.Join(contacts, ",")+`]}`); code != http.StatusAccepted {
		t.Fatalf("contacts: %d %v", code, body)
	}
	waitIdle(t, rt)
	ctx := context.Background()
	if err := rt.Client.Set(ctx, "asynq:{"+rt.QueuePrefix+".urgent}:postbud-flow", "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if code, body := post(t, d.base+"/v1/events/batch", testCoreKey, `{"events":[`+strings.Join(letters, ",")+`]}`); code != http.StatusAccepted {
		t.Fatalf("letters: %d %v", code, body)
	}
	eventually(t, "the batch task to take from the shared yield pace (<prefix>:yield)", 20*time.Second, func() bool {
		return rt.Client.Exists(ctx, rt.Prefix+":yield").Val() == 1
	})
	waitMessages(t, smtp, n)
	waitIdle(t, rt)
	if got := len(smtp.Messages()); got != n {
		t.Errorf("%d emails, want %d", got, n)
	}
	if !strings.Contains(logs.String(), "urgent-lane tasks are flowing: batch tasks yield") {
		t.Error("no log line saying the batch tasks yield")
	}
	if got := metric(t, d.base, "postbud_batch_yielding"); got != "1" {
		t.Errorf("postbud_batch_yielding = %q, want 1 (the flow key still set at the batch task's last look)", got)
	}
}
