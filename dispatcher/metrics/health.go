package metrics

import (
	"regexp"
	"slices"
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
	// Providers are the states of a channel of several providers, in
	// order (channels/failover); empty for a channel of one.
	Providers []ProviderState `json:"providers,omitempty"`
}

// ProviderState is one provider's circuit: closed (takes traffic),
// open (taken out after failures), half-open (being probed) or throttled
// (rested for its Retry-After).
type ProviderState struct {
	Name  string    `json:"name"`
	State string    `json:"state"`
	Since time.Time `json:"since"`
}

// health keeps the channels' states and the postbud_channel_up and
// postbud_provider_state gauges.
type health struct {
	up        *prometheus.GaugeVec
	providers *prometheus.GaugeVec
	mu        sync.Mutex
	state     map[string]ChannelState
	// provs are the providers' states per channel, in the order first set.
	provs map[string][]ProviderState
}

func newHealth() *health {
	return &health{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "postbud_channel_up",
			Help: "1 while a configured channel works, 0 while its last sends failed as misconfigured or its start check failed.",
		}, []string{"channel"}),
		providers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "postbud_provider_state",
			Help: "1 for the state each provider of a channel of several is in (closed, half-open, open, throttled), 0 for the others.",
		}, []string{"channel", "provider", "state"}),
		state: map[string]ChannelState{},
		provs: map[string][]ProviderState{},
	}
}

// ProviderStates are the states a provider's circuit may be in, as
// channels/failover names them.
var ProviderStates = []string{"closed", "half-open", "open", "throttled"}

// providerRE is the form of a provider name: its channel's provider kind
// and its place ("sms-1", "smtp-2"); anything else is recorded as Other.
var providerRE = regexp.MustCompile(`^[a-z]{2,8}-[1-9]$`)

// ProviderState records a provider's state (a change reported by
// channels/failover, or its first state at start), for the
// postbud_provider_state gauge and the channel health of the ops API.
func (m *Metrics) ProviderState(ch channels.Name, provider, state string) {
	c := oneOf(string(ch), channelNames)
	if !providerRE.MatchString(provider) {
		provider = Other
	}
	state = oneOf(state, ProviderStates)
	h := m.health
	h.mu.Lock()
	defer h.mu.Unlock()
	list := h.provs[c]
	i := slices.IndexFunc(list, func(p ProviderState) bool { return p.Name == provider })
	if i < 0 {
		list = append(list, ProviderState{Name: provider})
		i = len(list) - 1
	}
	if list[i].State == state {
		return
	}
	list[i].State, list[i].Since = state, time.Now().UTC()
	h.provs[c] = list
	for _, s := range ProviderStates {
		v := 0.0
		if s == state {
			v = 1
		}
		h.providers.WithLabelValues(c, provider, s).Set(v)
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
			s.Providers = slices.Clone(m.health.provs[c])
			out = append(out, s)
		}
	}
	return out
}
