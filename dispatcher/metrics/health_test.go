package metrics_test

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/metrics"
)

// TestChannelUp: a channel answering misconfigured is down (0) and listed
// with its last error kind; a success brings it up (1); a failed start
// check takes it down.
func TestChannelUp(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.ChannelConfigured(channels.Email, nil)
	m.ChannelConfigured(channels.SMS, errors.New("gateway unreachable"))
	up := func(ch string) float64 {
		return channelUp(t, reg, ch)
	}
	if up("email") != 1 || up("sms") != 0 {
		t.Fatalf("after the start checks: email %v sms %v, want 1 and 0", up("email"), up("sms"))
	}
	m.Delivered(channels.Email, dispatcher.ResultFailed, channels.Misconfigured.String(), time.Millisecond)
	if up("email") != 0 {
		t.Errorf("after a misconfigured send: email %v, want 0", up("email"))
	}
	st := m.Channels()
	if len(st) != 2 || st[0].Channel != "email" || st[0].Up || st[0].LastErrorKind != "misconfigured" ||
		st[1].Channel != "sms" || st[1].LastErrorKind != "check" {
		t.Errorf("Channels() = %+v", st)
	}
	m.Delivered(channels.Email, dispatcher.ResultRetrying, channels.Transient.String(), time.Millisecond)
	if up("email") != 0 {
		t.Errorf("a transient failure brought email up")
	}
	m.Delivered(channels.Email, dispatcher.ResultSent, "", time.Millisecond)
	if up("email") != 1 || !m.Channels()[0].Up {
		t.Errorf("after a success: email %v, want 1", up("email"))
	}
}

func channelUp(t *testing.T, g prometheus.Gatherer, ch string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "postbud_channel_up" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "channel" && l.GetValue() == ch {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no postbud_channel_up{channel=%q}", ch)
	return 0
}
