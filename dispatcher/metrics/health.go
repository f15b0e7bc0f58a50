package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
)

// ChannelState is what postbud knows of one channel's health.
type ChannelState struct {
	Channel string `json:"channel"`
	// Up is false while the channel's last sends failed as misconfigured
	// or its start check failed, true after a success.
	Up bool `json:"up"`
	// LastErrorKind is the kind of the last failure that took it down
	// ("misconfigured", or "check" for a failed start check); empty when
	// up.
	LastErrorKind string `json:"last_error_kind,omitempty"`
	// Since is when the state last changed.
	Since time.Time `json:"since"`
}

// health keeps the channels' states and the postbud_channel_up gauge.
type health struct {
	up    *prometheus.GaugeVec
	mu    sync.Mutex
	state map[string]ChannelState
}

func newHealth() *health {
	return &health{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "postbud_channel_up",
			Help: "1 while a configured channel works, 0 while its last sends failed as misconfigured or its start check failed.",
		}, []string{"channel"}),
		state: map[string]ChannelState{},
	}
}

func (h *health) set(ch string, up bool, kind string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old, ok := h.state[ch]
	if ok && old.Up == up && old.LastErrorKind == kind {
		return
	}
	h.state[ch] = ChannelState{Channel: ch, Up: up, LastErrorKind: kind, Since: time.Now().UTC()}
	v := 0.0
	if up {
		v = 1
	}
	h.up.WithLabelValues(ch).Set(v)
}

// delivered updates a channel's health from one attempt: a send that was
// handed over makes it up, one refused as misconfigured down. Other
// failures (the citizen's address, the provider's load) say nothing about
// the channel's setup.
func (h *health) delivered(ch, result, kind string) {
	switch {
	case kind == channels.Misconfigured.String():
		h.set(ch, false, kind)
	case result == dispatcher.ResultSent:
		h.set(ch, true, "")
	}
}

// ChannelConfigured marks a channel as configured and, with its start
// check's result, up (err nil) or down. Only configured channels are
// listed and exported.
func (m *Metrics) ChannelConfigured(ch channels.Name, checkErr error) {
	c := oneOf(string(ch), channelNames)
	if checkErr != nil {
		m.health.set(c, false, "check")
		return
	}
	m.health.set(c, true, "")
}

// Channels returns the configured channels' states, in a fixed order.
func (m *Metrics) Channels() []ChannelState {
	m.health.mu.Lock()
	defer m.health.mu.Unlock()
	var out []ChannelState
	for _, c := range append(channelNames, Other) {
		if s, ok := m.health.state[c]; ok {
			out = append(out, s)
		}
	}
	return out
}
