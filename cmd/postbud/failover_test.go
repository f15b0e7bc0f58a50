package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/channels/sms/smstest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// twoGateways is newFakes with a second SMS gateway, its own token and
// report secret, configured as POSTBUD_SMS_*_2.
func twoGateways(t *testing.T, extra map[string]string) (*fakes, *smstest.Gateway, *redistest.Env, func(string) string) {
	t.Helper()
	rt := redistest.New(t)
	f := newFakes(t)
	gw2 := smstest.New(t, smstest.Options{Token: "second-gateway-token", Secret: []byte("second-gateway-secret")})
	f.env["POSTBUD_SMS_TOKEN_2"] = gw2.Token()
	f.env["POSTBUD_SMS_URL_2"] = gw2.URL()
	for k, v := range extra {
		f.env[k] = v
	}
	return f, gw2, rt, testEnv(rt, f.smtp, f.env)
}

// sentOnce checks that each SMS delivery (userref) went out exactly once
// across both gateways, and returns how many went through each.
func sentOnce(t *testing.T, gw1, gw2 *smstest.Gateway) (n1, n2 int) {
	t.Helper()
	count := map[string]int{}
	for _, m := range gw1.Messages() {
		count[m.UserRef]++
		n1++
	}
	for _, m := range gw2.Messages() {
		count[m.UserRef]++
		n2++
	}
	for ref, n := range count {
		if n != 1 {
			t.Errorf("delivery %s went out %d times across the two gateways, want once", ref, n)
		}
	}
	return n1, n2
}

// providerStates reads the SMS providers' states from /readyz?verbose.
func providerStates(t *testing.T, base string) string {
	t.Helper()
	return providerStates2(t, base, "sms")
}

// providerStates2 reads a channel's providers' states from /readyz?verbose.
func providerStates2(t *testing.T, base, channel string) string {
	t.Helper()
	resp, err := http.Get(base + "/readyz?verbose")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Channels []struct {
			Channel   string
			Providers []struct{ Name, State string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range got.Channels {
		if c.Channel == channel {
			for _, p := range c.Providers {
				out = append(out, p.Name+"="+p.State)
			}
		}
	}
	return strings.Join(out, " ")
}

// TestEndToEndSMSFailover: through `run`, with two SMS gateway fakes. The
// first answers 503: within the configured threshold (2) the traffic moves
// to the second, and the first is no longer asked; no alert goes out
// twice. Once the first answers again it is probed and takes the traffic
// back. The delivery reports of both gateways are accepted, each under its
// own secret. The switch is logged once per change, shows in
// /readyz?verbose and in postbud_provider_state.
func TestEndToEndSMSFailover(t *testing.T) {
	addr := freeAddr(t)
	f, gw2, rt, getenv := twoGateways(t, map[string]string{
		"POSTBUD_HTTP_ADDR":            addr,
		"POSTBUD_SMS_CALLBACK_URL":     "http://" + addr + "/v1/sms/reports",
		"POSTBUD_SMS_REPORT_SECRET":    smstest.DefaultSecret,
		"POSTBUD_SMS_REPORT_SECRET_2":  "second-gateway-secret",
		"POSTBUD_FAILOVER_THRESHOLD":   "2",
		"POSTBUD_FAILOVER_OPEN_FOR":    "300ms",
		"POSTBUD_FAILOVER_ON_THROTTLE": "true",
	})
	gw1 := f.sms
	logs := &syncBuffer{}
	d := start(t, getenv, logs)
	if got := providerStates(t, d.base); got != "sms-1=closed sms-2=closed" {
		t.Fatalf("providers at start: %q, want both closed", got)
	}
	post(t, d.base+"/v1/events", testCoreKey, wireEvent("c1", "contact.updated", "core",
		map[string]any{"cpr": "010190-1234", "mobile": "20123456", "confirmed": true}))
	waitIdle(t, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	letter := 0
	send := func() {
		t.Helper()
		letter++
		post(t, d.base+"/v1/events", testCoreKey, letterEvent(fmt.Sprintf("l%d", letter),
			fmt.Sprintf("%08x-3b4d-4e5f-8a9b-0c1d2e3f4a5b", letter)))
		waitIdle(t, rt)
	}

	// The first gateway fails: each failed send moves on to the second at
	// once; after two in a row the first is out and not asked.
	gw1.FailNext(100, smstest.Failure{Status: http.StatusServiceUnavailable, Code: "0x0000", Message: "down"})
	asked := gw1.Requests()
	send()
	send()
	if n := gw1.Requests() - asked; n != 2 {
		t.Errorf("the failing gateway was asked %d times for two letters, want 2", n)
	}
	if got := providerStates(t, d.base); !strings.HasPrefix(got, "sms-1=open") {
		t.Errorf("after two failures in a row: %q, want sms-1 open", got)
	}
	send()
	if n := gw1.Requests() - asked; n != 2 {
		t.Errorf("the gateway taken out was asked again (%d requests, want 2)", n)
	}
	if n1, n2 := sentOnce(t, gw1, gw2); n1 != 0 || n2 != 3 {
		t.Fatalf("SMS through the gateways: %d and %d, want 0 and 3", n1, n2)
	}

	// Both gateways' reports are accepted, each under its own secret; one
	// under the other gateway's secret is not.
	m2 := gw2.Messages()[0]
	if code, err := gw2.SendReport(ctx, m2.ID, "DELIVERED"); err != nil || code != http.StatusOK {
		t.Errorf("the second gateway's report: %d %v, want 200", code, err)
	}
	if code, err := gw2.SendReportWith(ctx, m2.ID, smstest.Report{Status: "DELIVERED", Secret: []byte(smstest.DefaultSecret + "x")}); err != nil || code != http.StatusUnauthorized {
		t.Errorf("a report under a third secret: %d %v, want 401", code, err)
	}

	// The first answers again: after OPEN_FOR a send probes it and it takes
	// the traffic back.
	gw1.ClearFailures()
	eventually(t, "the first gateway to be probed and take the traffic back", 20*time.Second, func() bool {
		send()
		return len(gw1.Messages()) > 0
	})
	send()
	n1, n2 := sentOnce(t, gw1, gw2)
	if n1 != 2 || n1+n2 != letter {
		t.Errorf("SMS through the gateways: %d and %d for %d letters, want the last 2 through the first", n1, n2, letter)
	}
	if got := providerStates(t, d.base); got != "sms-1=closed sms-2=closed" {
		t.Errorf("after the first recovered: %q, want both closed", got)
	}
	m1 := gw1.Messages()[0]
	if code, err := gw1.SendReport(ctx, m1.ID, "DELIVERED"); err != nil || code != http.StatusOK {
		t.Errorf("the first gateway's report: %d %v, want 200", code, err)
	}

	// The trail names the provider of each send and holds both reports.
	var out bytes.Buffer
	if err := run(ctx, []string{"trace", "-json", "-url", d.base, "-key", testOpsKey, "00000001-3b4d-4e5f-8a9b-0c1d2e3f4a5b"},
		getenv, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var tr struct {
		Trail []struct{ Result, Provider, Reason string }
	}
	_ = json.Unmarshal(out.Bytes(), &tr)
	found := false
	for _, o := range tr.Trail {
		if o.Result == "sent" && o.Provider == "sms-2" {
			found = true
		}
	}
	if !found {
		t.Errorf("the trail of the first letter has no send through sms-2:\n%s", out.String())
	}

	// Logged once per change, not per message.
	l := logs.String()
	for _, change := range []string{`"from":"closed","to":"open"`, `"from":"open","to":"half-open"`, `"from":"half-open","to":"closed"`} {
		if n := strings.Count(l, change); n != 1 {
			t.Errorf("the change %s logged %d times, want once", change, n)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, d.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testOpsKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`postbud_provider_state{channel="sms",provider="sms-1",state="closed"} 1`,
		`postbud_provider_state{channel="sms",provider="sms-1",state="open"} 0`,
		`postbud_provider_state{channel="sms",provider="sms-2",state="closed"} 1`,
	} {
		if !strings.Contains(string(scrape), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	d.stop(t)
	assertNoPersonalData(t, l)
	assertNoPersonalDataInRedis(t, rt)
}

// assertNoPersonalDataInRedis scans every key and value of the test's
// Redis (letters with their in-flight marks and pinned providers, trails,
// delivery references, the sealed registry, task payloads) for the
// citizen's CPR number and mobile number.
func assertNoPersonalDataInRedis(t *testing.T, rt *redistest.Env) {
	t.Helper()
	for _, l := range rt.Leaks(t, "0101901234", "010190-1234", "20123456", "4520123456") {
		t.Errorf("personal data in Redis: %s", l)
	}
}

// TestEndToEndSMSFailoverInterruptedStaysOnItsGateway: a send whose call
// to the first gateway timed out after the request went out may have been
// taken: it is never handed to the second gateway, not even once the
// timeouts have taken the first out. Its retries go to the first only,
// which takes it once it answers.
func TestEndToEndSMSFailoverInterruptedStaysOnItsGateway(t *testing.T) {
	f, gw2, rt, getenv := twoGateways(t, map[string]string{
		"POSTBUD_SMS_TIMEOUT":        "200ms",
		"POSTBUD_FAILOVER_THRESHOLD": "2",
		"POSTBUD_FAILOVER_OPEN_FOR":  "500ms",
	})
	gw1 := f.sms
	d := start(t, getenv, &syncBuffer{})
	post(t, d.base+"/v1/events", testCoreKey, wireEvent("c1", "contact.updated", "core",
		map[string]any{"cpr": "010190-1234", "mobile": "20123456", "confirmed": true}))
	waitIdle(t, rt)

	gw1.Stall()
	asked := gw1.Requests()
	const msg = "5a1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("l-stalled", msg))
	eventually(t, "two timed-out attempts at the first gateway, and a retry while it is out", 20*time.Second, func() bool {
		if n := len(gw2.Messages()); n != 0 {
			t.Fatalf("the second gateway took %d SMS: an attempt that may have been taken was failed over", n)
		}
		return gw1.Requests()-asked >= 2 && strings.Contains(traceJSON(t, d.base, getenv, msg), "circuit open")
	})
	if n := len(gw2.Messages()); n != 0 {
		t.Fatalf("the second gateway took %d SMS: an attempt that may have been taken was failed over", n)
	}
	assertNoPersonalDataInRedis(t, rt) // the pinned in-flight mark included
	gw1.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := gw1.WaitMessages(ctx, 1); err != nil {
		t.Fatalf("the first gateway never took the SMS: %v", err)
	}
	waitIdle(t, rt)
	// The first gateway may have taken it more than once (an interrupted
	// attempt it took after all, the same as with one gateway; with
	// delivery reports the retry waits for the report): never the second.
	if n := len(gw2.Messages()); n != 0 {
		t.Errorf("the second gateway took %d SMS, want none", n)
	}
	if tr := traceJSON(t, d.base, getenv, msg); !strings.Contains(tr, `"provider":"sms-1"`) || strings.Contains(tr, `"provider":"sms-2"`) {
		t.Errorf("the trail does not name sms-1 only:\n%s", tr)
	}
}

// traceJSON returns `postbud trace -json` of a letter, compacted.
func traceJSON(t *testing.T, base string, getenv func(string) string, msg string) string {
	t.Helper()
	var out, compact bytes.Buffer
	if err := run(context.Background(), []string{"trace", "-json", "-url", base, "-key", testOpsKey, msg}, getenv, nil, &out, io.Discard); err != nil {
		return ""
	}
	_ = json.Compact(&compact, out.Bytes())
	return compact.String()
}

// TestConfigCheckEachProvider: `postbud config check` checks each provider
// of a channel of two, and fails when one fails, although the channel
// works through the other.
func TestConfigCheckEachProvider(t *testing.T) {
	_, _, _, getenv := twoGateways(t, map[string]string{"POSTBUD_SMS_TOKEN_2": "a-token-the-gateway-refuses"})
	var out bytes.Buffer
	err := run(context.Background(), []string{"config", "check"}, getenv, nil, &out, io.Discard)
	if err == nil {
		t.Errorf("config check passed with the second gateway refusing its token:\n%s", out.String())
	}
	for _, want := range []string{"sms            ok", "sms-1          ok", "sms-2          FAILED: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("config check output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "a-token-the-gateway-refuses") {
		t.Error("config check prints the token")
	}
}

// TestEndToEndSMTPFailover: with a second SMTP relay (POSTBUD_SMTP_HOST_2),
// a first relay that refuses with 4xx after the message is taken out within
// the threshold and the second carries the email; each email goes out once.
func TestEndToEndSMTPFailover(t *testing.T) {
	rt := redistest.New(t)
	smtp1, smtp2 := emailtest.New(t), emailtest.New(t)
	getenv := testEnv(rt, smtp1, map[string]string{
		"POSTBUD_SMTP_HOST_2": smtp2.Host(), "POSTBUD_SMTP_PORT_2": strconv.Itoa(smtp2.Port()),
		"POSTBUD_FAILOVER_THRESHOLD": "2", "POSTBUD_FAILOVER_OPEN_FOR": "1h",
	})
	d := start(t, getenv, &syncBuffer{})
	post(t, d.base+"/v1/events", testCoreKey, wireEvent("c1", "contact.updated", "core",
		map[string]any{"cpr": "010190-1234", "email": "anna@example.dk", "confirmed": true}))
	waitIdle(t, rt)
	smtp1.FailNext(emailtest.Failure{Stage: emailtest.StageMessage, Code: 451, Enhanced: "4.3.0", Text: "try later", Times: 100})
	for i := range 4 {
		post(t, d.base+"/v1/events", testCoreKey, letterEvent(fmt.Sprintf("l%d", i), fmt.Sprintf("%08x-3b4d-4e5f-8a9b-0c1d2e3f4a5b", i+1)))
	}
	waitIdle(t, rt)
	if n := len(smtp1.Messages()); n != 0 {
		t.Errorf("the refusing relay delivered %d emails", n)
	}
	seen := map[string]int{}
	for _, m := range smtp2.Messages() {
		seen[m.Header.Get("Message-Id")]++
	}
	if len(seen) != 4 {
		t.Errorf("the second relay carried %d distinct emails, want 4", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("email %s went out %d times", id, n)
		}
	}
	if got := providerStates2(t, d.base, "email"); got != "smtp-1=open smtp-2=closed" {
		t.Errorf("email providers: %q, want smtp-1 open", got)
	}
}
