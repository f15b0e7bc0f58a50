package metrics_test

import (
	"errors"
	"strings"
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

// TestProviderState: each provider's state is one series set to 1 per
// state label, listed with its channel's health; a name that is not a
// provider name is recorded as other.
func TestProviderState(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.ChannelConfigured(channels.SMS, nil)
	m.ProviderState(channels.SMS, "sms-1", "closed")
	m.ProviderState(channels.SMS, "sms-2", "closed")
	m.ProviderState(channels.SMS, "sms-1", "open")
	m.ProviderState(channels.SMS, "+4520123456", "open")
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "postbud_provider_state" {
			continue
		}
		for _, s := range mf.GetMetric() {
			key := ""
			for _, l := range s.GetLabel() {
				key += l.GetValue() + "/"
			}
			got[key] = s.GetGauge().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"sms/sms-1/open/": 1, "sms/sms-1/closed/": 0, "sms/sms-1/half-open/": 0,
		"sms/sms-2/closed/": 1, "sms/other/open/": 1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v (all: %v)", key, got[key], want, got)
		}
	}
	for key := range got {
		if strings.Contains(key, "+45") {
			t.Errorf("a number in a label: %s", key)
		}
	}
	st := m.Channels()
	if len(st) != 1 || len(st[0].Providers) != 3 || st[0].Providers[0].Name != "sms-1" || st[0].Providers[0].State != "open" ||
		st[0].Providers[1].State != "closed" {
		t.Errorf("Channels() = %+v", st)
	}
}
