package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/sms/smstest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestEndToEndThrottledSendSpendsNoRetry: a gateway that answers 429 with
// Retry-After three times is waited for without spending a retry, through
// the asynq server serve builds (its IsFailure and RetryDelayFunc): the SMS
// that finally goes out is the delivery task's first counted attempt
// (attempt 2: attempt 1 was inside the letter's task). With throttling
// counted as a failure it would be attempt 4.
func TestEndToEndThrottledSendSpendsNoRetry(t *testing.T) {
	rt := redistest.New(t)
	f := newFakes(t)
	getenv := testEnv(rt, f.smtp, f.env)
	d := start(t, getenv, &syncBuffer{})
	post(t, d.base+"/v1/events", testCoreKey, wireEvent("c1", "contact.updated", "core",
		map[string]any{"cpr": "010190-1234", "mobile": "20123456", "confirmed": true}))
	waitIdle(t, rt)

	before := f.sms.Requests() // serve's start check asks the gateway too
	f.sms.FailNext(3, smstest.Failure{Status: http.StatusTooManyRequests, Code: "0x0429",
		Message: "slow down", RetryAfter: "1"})
	const msg = "9a1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	post(t, d.base+"/v1/events", testCoreKey, letterEvent("l-throttled", msg))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.sms.WaitMessages(ctx, 1); err != nil {
		t.Fatalf("the throttled SMS never went out: %v", err)
	}
	waitIdle(t, rt)
	if n := f.sms.Requests() - before; n != 4 {
		t.Errorf("%d requests to the gateway, want 4 (three 429s, then the send)", n)
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"trace", "-json", "-url", d.base, "-key", testOpsKey, msg}, getenv, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var tr struct {
		Trail []struct {
			Channel, Result string
			Attempt         int
		}
	}
	if err := json.Unmarshal(out.Bytes(), &tr); err != nil {
		t.Fatalf("trace -json: %v\n%s", err, out.String())
	}
	sent := 0
	for _, o := range tr.Trail {
		if o.Channel == "sms" && o.Result == "sent" {
			sent++
			if o.Attempt != 2 {
				t.Errorf("the SMS went out at attempt %d, want 2: throttled answers spent retries", o.Attempt)
			}
		}
	}
	if sent != 1 {
		t.Errorf("%d sent SMS outcomes in the trail, want 1:\n%s", sent, out.String())
	}
}
