package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/apns/apnstest"
	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/channels/fcm/fcmtest"
	"github.com/digitalpost/postbud/channels/sms/smstest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// fakes are a local server for every channel, each speaking its provider's
// protocol to the real client library.
type fakes struct {
	smtp *emailtest.Server
	sms  *smstest.Gateway
	apns *apnstest.Server
	fcm  *fcmtest.Server
	env  map[string]string
}

func newFakes(t *testing.T) *fakes {
	dir := t.TempDir()
	f := &fakes{smtp: emailtest.New(t), sms: smstest.New(t, smstest.Options{}),
		apns: apnstest.New(t, apnstest.Options{}), fcm: fcmtest.New(t)}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.apns.Certificate().Raw})
	f.env = map[string]string{
		"POSTBUD_SMS_TOKEN":                   f.sms.Token(),
		"POSTBUD_SMS_URL":                     f.sms.URL(),
		"POSTBUD_APNS_KEY_ID":                 f.apns.KeyID(),
		"POSTBUD_APNS_TEAM_ID":                f.apns.TeamID(),
		"POSTBUD_APNS_KEY_FILE":               write("apns.p8", f.apns.KeyPEM()),
		"POSTBUD_APNS_CA_FILE":                write("apns-ca.pem", ca),
		"POSTBUD_APNS_PRODUCTION_URL":         f.apns.URL(),
		"POSTBUD_APNS_TOPIC_DIGITAL_POST_APP": apnstest.DefaultTopics()[0],
		"POSTBUD_FCM_ENDPOINT":                f.fcm.Endpoint(),
		"POSTBUD_FCM_PROJECT_E_BOKS":          "e-boks-test",
		"POSTBUD_FCM_CREDENTIALS_E_BOKS_FILE": write("fcm.json", f.fcm.ServiceAccount("e-boks-test")),
		"POSTBUD_SMTP_PORT":                   strconv.Itoa(f.smtp.Port()),
	}
	return f
}

const iosToken = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

func TestEndToEndEveryChannel(t *testing.T) {
	rt := redistest.New(t)
	f := newFakes(t)
	logs := &syncBuffer{}
	getenv := testEnv(rt, f.smtp, f.env)
	d := start(t, getenv, logs)

	for _, ev := range []string{
		wireEvent("c1", "contact.updated", "core", map[string]any{"cpr": "010190-1234", "email": "anna@example.dk", "mobile": "20123456", "confirmed": true}),
		wireEvent("d1", "device.registered", "core", map[string]any{"cpr": "010190-1234", "app": "digital-post-app", "provider": "apns", "token": iosToken}),
		wireEvent("d2", "device.registered", "core", map[string]any{"cpr": "010190-1234", "app": "e-boks", "provider": "fcm", "token": "fcm-token-anna-0001"}),
		// e-Boks shows public post (and alerts through its app) only with consent.
		wireEvent("cs1", "consent.granted", "core", map[string]any{"cpr": "010190-1234", "platform": "e-boks"}),
	} {
		if code, body := post(t, d.base+"/v1/events", testCoreKey, ev); code != http.StatusAccepted {
			t.Fatalf("%d %v", code, body)
		}
	}
	waitIdle(t, rt)

	post(t, d.base+"/v1/events", testCoreKey, letterEvent("l1", "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := f.smtp.WaitMessages(ctx, 1); err != nil {
		t.Fatal("email:", err)
	}
	if _, err := f.sms.WaitMessages(ctx, 1); err != nil {
		t.Fatal("sms:", err)
	}
	if _, err := f.apns.WaitNotifications(ctx, 1); err != nil {
		t.Fatal("apns:", err)
	}
	if _, err := f.fcm.WaitMessages(ctx, 1); err != nil {
		t.Fatal("fcm:", err)
	}
	waitIdle(t, rt)
	counts := func() [4]int {
		return [4]int{len(f.smtp.Messages()), len(f.sms.Messages()), len(f.apns.Notifications()), len(f.fcm.Messages())}
	}
	if got := counts(); got != [4]int{1, 1, 1, 1} {
		t.Fatalf("alerts per channel (email, sms, apns, fcm) = %v, want one each", got)
	}
	n := f.apns.Notifications()[0]
	if n.CollapseID != "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b" || n.Topic != apnstest.DefaultTopics()[0] {
		t.Errorf("apns notification %+v", n)
	}
	if m := f.sms.Messages()[0]; len(m.MSISDNs) != 1 || m.MSISDNs[0] != 4520123456 {
		t.Errorf("sms recipients %v", m.MSISDNs)
	}

	// APNs says the iOS token is gone: the next letter does not try it.
	f.apns.Unregister(iosToken, time.Now())
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("l2", "7f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"))
	waitIdle(t, rt)
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("l3", "8f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"))
	if _, err := f.fcm.WaitMessages(ctx, 3); err != nil {
		t.Fatal("fcm:", err)
	}
	waitIdle(t, rt)
	if got := counts(); got != [4]int{3, 3, 1, 3} {
		t.Errorf("alerts per channel after the 410 = %v, want email, sms, fcm 3 and apns still 1", got)
	}
	if r := f.apns.Requests(); r != 3 {
		t.Errorf("APNs got %d requests, want 3: the start check and two pushes (the third letter must not try the gone token)", r)
	}

	// The metrics after the run.
	resp, err := http.Get(d.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`postbud_alerts_total{channel="email",kind="none",result="sent"} 3`,
		`postbud_alerts_total{channel="sms",kind="none",result="sent"} 3`,
		`postbud_alerts_total{channel="apns",kind="gone",result="gone"} 1`,
		`postbud_addresses_removed_total{channel="apns"} 1`,
		`postbud_events_total{status="accepted",type="message.received"} 3`,
		`postbud_event_to_alert_seconds_count{channel="fcm"} 3`,
		`asynq_queue_size{queue="` + rt.QueuePrefix + `.normal"} 0`,
	} {
		if !strings.Contains(string(scrape), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(scrape), "0101901234") || strings.Contains(string(scrape), "anna@") {
		t.Error("/metrics holds personal data")
	}
	// The dashboard needs the ops key.
	resp, err = http.Get(d.base + "/monitoring/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("dashboard without credentials: %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, d.base+"/monitoring/", nil)
	req.SetBasicAuth("ops", testOpsKey)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("dashboard with the ops key: %d, want 200", resp.StatusCode)
	}
	d.stop(t)
	assertNoPersonalData(t, logs.String())
	for _, l := range rt.Leaks(t, personalData...) {
		t.Errorf("Redis: %s", l)
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestEndToEndSMSDeliveryReports(t *testing.T) {
	rt := redistest.New(t)
	f := newFakes(t)
	addr := freeAddr(t)
	f.env["POSTBUD_HTTP_ADDR"] = addr
	f.env["POSTBUD_SMS_CALLBACK_URL"] = "http://" + addr + "/v1/sms/reports"
	f.env["POSTBUD_SMS_REPORT_SECRET"] = smstest.DefaultSecret
	logs := &syncBuffer{}
	getenv := testEnv(rt, f.smtp, f.env)
	getenvAddr := func(k string) string {
		if v, ok := f.env[k]; ok {
			return v
		}
		return getenv(k)
	}
	d := start(t, getenvAddr, logs)
	post(t, d.base+"/v1/events", testCoreKey, wireEvent("c1", "contact.updated", "core",
		map[string]any{"cpr": "010190-1234", "mobile": "20123456", "confirmed": true}))
	waitIdle(t, rt)

	const msg1 = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("l1", msg1))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs, err := f.sms.WaitMessages(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	waitIdle(t, rt)
	id := msgs[0].ID
	reports := func(msgID string) []string {
		var out bytes.Buffer
		if err := run(ctx, []string{"trace", "-json", "-url", d.base, "-key", testOpsKey, msgID}, getenv, nil, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		var tr struct {
			Trail []struct{ Result, Reason string }
		}
		_ = json.Unmarshal(out.Bytes(), &tr)
		var got []string
		for _, o := range tr.Trail {
			if o.Result == "report" {
				got = append(got, o.Reason)
			}
		}
		return got
	}
	for _, step := range []struct {
		status string
		bad    bool
		want   int
	}{
		{"ENROUTE", false, http.StatusOK},
		{"DELIVERED", true, http.StatusUnauthorized}, // signed under the wrong secret
		{"DELIVERED", false, http.StatusOK},
		{"DELIVERED", false, http.StatusOK}, // a repeat
		{"ENROUTE", false, http.StatusOK},   // late and transient: ignored
	} {
		send := f.sms.SendReport
		if step.bad {
			send = f.sms.SendReportBadSignature
		}
		code, err := send(ctx, id, step.status)
		if err != nil || code != step.want {
			t.Fatalf("report %s: %d %v, want %d", step.status, code, err, step.want)
		}
	}
	if got := reports(msg1); !slices.Equal(got, []string{"ENROUTE", "DELIVERED"}) {
		t.Errorf("reports in the trail = %v, want [ENROUTE DELIVERED]", got)
	}

	// UNDELIVERABLE: the number is dead until registered again.
	const msg2 = "7f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("l2", msg2))
	msgs, err = f.sms.WaitMessages(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	waitIdle(t, rt)
	if code, err := f.sms.SendReport(ctx, msgs[1].ID, "UNDELIVERABLE"); err != nil || code != http.StatusOK {
		t.Fatalf("UNDELIVERABLE report: %d %v", code, err)
	}
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("l3", "8f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"))
	waitIdle(t, rt)
	if n := len(f.sms.Messages()); n != 2 {
		t.Errorf("%d SMS, want 2: the dead number must not get the third letter", n)
	}
	// Registered again: SMS again.
	post(t, d.base+"/v1/events", testCoreKey, wireEvent("c2", "contact.updated", "core",
		map[string]any{"cpr": "010190-1234", "mobile": "20123456", "confirmed": true}))
	waitIdle(t, rt)
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("l4", "9f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"))
	if _, err := f.sms.WaitMessages(ctx, 3); err != nil {
		t.Errorf("no SMS after the number was registered again: %v", err)
	}
	d.stop(t)
	assertNoPersonalData(t, logs.String())
}
