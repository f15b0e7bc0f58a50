// Package failover spreads one channel over an ordered list of providers
// (two SMS gateways, two SMTP relays) behind the one channels.Sender
// interface, with a circuit breaker per provider.
//
// Every send goes to the first provider whose circuit lets it through. A
// provider that fails Threshold times in a row (transient or misconfigured
// failures: 5xx, network, timeout, refused credentials) is taken out: its
// circuit opens and the next provider takes the traffic. After OpenFor one
// send probes it (half-open): an answer closes the circuit again, a failure
// opens it for another OpenFor. A throttled provider (429, Retry-After) is
// not a failed one: it is rested until its Retry-After ends while the next
// provider takes the traffic (SpillOnThrottle), or the send waits for it.
// Permanent and gone answers are the provider working: they count as
// successes and are returned as they are, never tried elsewhere.
//
// A send moves on to the next provider only when the one it tried clearly
// did not take the alert: it refused it with an answer, or the connection
// was never made (channels.Unsure). A call interrupted after the request
// went out (a timeout, a reset) may have been taken: the send stops there
// and its error names the provider as unsure (channels.ProviderError), so
// that the caller pins the delivery to it (channels.Alert.Provider). Before
// each provider call the caller's channels.Handoff hook is called with the
// provider's name, so that it can record which provider was handed the
// alert before the call is made.
//
// The package knows nothing of queues or storage. Its state is in memory,
// per process; OnChange reports each change of a provider's state once.
package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/digitalpost/postbud/channels"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultThreshold = 5
	DefaultOpenFor   = 30 * time.Second
)

// State is the state of one provider.
type State int

const (
	// Closed: the provider takes traffic.
	Closed State = iota
	// HalfOpen: the provider was open; one send probes it.
	HalfOpen
	// Open: the provider failed Threshold times in a row and takes no
	// traffic until OpenFor has passed.
	Open
	// Throttled: the provider asked to slow down and is rested until its
	// Retry-After ends (its circuit is closed).
	Throttled
)

var stateNames = [...]string{"closed", "half-open", "open", "throttled"}

// String returns the state's name, as in metrics and the ops API.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// States are all the states, in order.
func States() []State { return []State{Closed, HalfOpen, Open, Throttled} }

// Provider is one provider of the channel.
type Provider struct {
	// Name names the provider in logs, metrics and trails ("sms-1"). It
	// must be unique and hold no personal data.
	Name   string
	Sender channels.Sender
}

// Config configures a Sender.
type Config struct {
	// Channel is the channel's name, for logs.
	Channel channels.Name
	// Providers in order of preference; at least one.
	Providers []Provider
	// Threshold is how many failures in a row open a provider's circuit.
	// Default 5.
	Threshold int
	// OpenFor is how long an open circuit stays open before a probe.
	// Default 30s.
	OpenFor time.Duration
	// SpillOnThrottle sends to the next provider while one is throttled;
	// without it a send to a throttled provider waits (a Throttled error
	// with the rest of its Retry-After).
	SpillOnThrottle bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// OnChange, if set, is called once for each change of a provider's
	// state, in order, outside the lock of the Sender's state (it may
	// call States).
	OnChange func(provider string, from, to State)
	// Logger logs each change of state once (not per message). Nil
	// discards.
	Logger *slog.Logger
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Providers) == 0 {
		errs = append(errs, errors.New("failover: at least one provider is required"))
	}
	seen := map[string]bool{}
	for i, p := range c.Providers {
		switch {
		case p.Name == "":
			errs = append(errs, fmt.Errorf("failover: provider %d has no name", i+1))
		case seen[p.Name]:
			errs = append(errs, fmt.Errorf("failover: provider name %q is used twice", p.Name))
		}
		seen[p.Name] = true
		if p.Sender == nil {
			errs = append(errs, fmt.Errorf("failover: provider %q has no sender", p.Name))
		}
	}
	if c.Threshold < 0 {
		errs = append(errs, fmt.Errorf("failover: Threshold must not be negative, got %d", c.Threshold))
	}
	if c.OpenFor < 0 {
		errs = append(errs, fmt.Errorf("failover: OpenFor must not be negative, got %v", c.OpenFor))
	}
	return errors.Join(errs...)
}

// breaker is one provider's circuit.
type breaker struct {
	p        Provider
	state    State // Closed, HalfOpen or Open; Throttled is derived
	failures int   // in a row, while closed
	openedAt time.Time
	probing  bool      // a half-open probe is in flight
	until    time.Time // throttled until
}

// Sender sends through the first available provider. It is safe for
// concurrent use.
type Sender struct {
	cfg Config
	log *slog.Logger

	// reportMu orders the reports of changes (OnChange, logs) as the
	// changes were made; it is taken before mu.
	reportMu sync.Mutex
	mu       sync.Mutex
	breakers []*breaker
	// shown is each provider's state as last reported (OnChange, logs).
	shown map[string]State
}

var (
	_ channels.Sender = (*Sender)(nil)
	_ channels.Pinger = (*Sender)(nil)
)

// New validates cfg, applies its defaults and returns a Sender.
func New(cfg Config) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = DefaultThreshold
	}
	if cfg.OpenFor == 0 {
		cfg.OpenFor = DefaultOpenFor
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sender{cfg: cfg, log: log.With("channel", string(cfg.Channel)), shown: map[string]State{}}
	for _, p := range cfg.Providers {
		s.breakers = append(s.breakers, &breaker{p: p})
		s.shown[p.Name] = Closed
	}
	return s, nil
}

// ProviderState is one provider's state for the ops API.
type ProviderState struct {
	Name  string `json:"name"`
	State string `json:"state"`
	// Failures is the number of failures in a row while closed.
	Failures int `json:"failures,omitempty"`
	// Until is when an open circuit may be probed, or a throttled provider
	// takes traffic again.
	Until time.Time `json:"until,omitzero"`
}

// States returns every provider's state, in order.
func (s *Sender) States() []ProviderState {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	out := make([]ProviderState, 0, len(s.breakers))
	for _, b := range s.breakers {
		ps := ProviderState{Name: b.p.Name, State: s.stateOf(b, now).String(), Failures: b.failures}
		switch {
		case b.state == Open:
			ps.Until = b.openedAt.Add(s.cfg.OpenFor)
		case now.Before(b.until):
			ps.Until = b.until
		}
		out = append(out, ps)
	}
	return out
}

// stateOf is b's state as shown; s.mu held.
func (s *Sender) stateOf(b *breaker, now time.Time) State {
	if b.state == Closed && now.Before(b.until) {
		return Throttled
	}
	return b.state
}

// errUnavailable is the failure of a send no provider could take.
var errUnavailable = errors.New("no provider is available: every circuit is open")

// Send sends a through the first provider that lets it through (or only
// through a.Provider when it is set), moving on to the next only when one
// clearly did not take it. The receipt names the provider that took it.
func (s *Sender) Send(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
	rc, err := s.send(ctx, to, a)
	if err != nil && a.Provider != "" {
		// A pinned delivery stays pinned whatever this attempt met: an
		// earlier one may have been taken.
		if p, _ := channels.ProviderOf(err); p != a.Provider {
			err = &channels.ProviderError{Provider: a.Provider, Unsure: true, Err: err}
		} else {
			var pe *channels.ProviderError
			errors.As(err, &pe)
			pe.Unsure = true
		}
	}
	return rc, err
}

func (s *Sender) send(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
	tried := map[int]bool{}
	var last error
	for {
		i, wait, ok := s.acquire(a.Provider, tried)
		if !ok {
			switch {
			case last != nil:
				return channels.Receipt{}, last
			case wait > 0:
				return channels.Receipt{}, channels.Throttle(wait, "throttled",
					errors.New("every available provider is throttled"))
			case a.Provider != "" && s.index(a.Provider) < 0:
				return channels.Receipt{}, channels.Fail(channels.Permanent, "provider unknown",
					errors.New("the delivery is pinned to a provider no longer configured"))
			default:
				return channels.Receipt{}, channels.Fail(channels.Transient, "circuit open", errUnavailable)
			}
		}
		tried[i] = true
		b := s.breakers[i]
		if err := channels.Handoff(ctx, b.p.Name); err != nil {
			s.release(i)
			return channels.Receipt{}, fmt.Errorf("record handoff to %s: %w", b.p.Name, err)
		}
		rc, err := b.p.Sender.Send(ctx, to, a)
		s.done(i, err)
		if err == nil {
			rc.Provider = b.p.Name
			return rc, nil
		}
		unsure := channels.Unsure(err)
		last = &channels.ProviderError{Provider: b.p.Name, Unsure: unsure, Err: err}
		if unsure || a.Provider != "" || ctx.Err() != nil {
			return channels.Receipt{}, last
		}
		switch channels.KindOf(err) {
		case channels.Transient, channels.Misconfigured:
		case channels.Throttled:
			if !s.cfg.SpillOnThrottle {
				return channels.Receipt{}, last
			}
		default: // permanent, gone: the alert's own fault, not the provider's
			return channels.Receipt{}, last
		}
	}
}

// index returns the position of the named provider, or -1.
func (s *Sender) index(name string) int {
	for i, b := range s.breakers {
		if b.p.Name == name {
			return i
		}
	}
	return -1
}

// acquire picks the provider for the next call: pinned if set, else the
// first not tried yet whose circuit lets the call through. ok is false when
// there is none; wait is then the shortest rest of a throttled provider
// skipped.
func (s *Sender) acquire(pinned string, tried map[int]bool) (i int, wait time.Duration, ok bool) {
	s.reportMu.Lock()
	defer s.reportMu.Unlock()
	var changes []change
	defer func() { s.report(changes) }()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	for j, b := range s.breakers {
		if tried[j] || (pinned != "" && b.p.Name != pinned) {
			continue
		}
		if b.state == Open && !now.Before(b.openedAt.Add(s.cfg.OpenFor)) {
			b.state = HalfOpen
			changes = s.note(changes, b, now)
		}
		switch {
		case b.state == Open, b.state == HalfOpen && b.probing:
			continue
		case now.Before(b.until) && (s.cfg.SpillOnThrottle || pinned != ""):
			if w := b.until.Sub(now); wait == 0 || w < wait {
				wait = w
			}
			continue
		}
		if b.state == HalfOpen {
			b.probing = true
		}
		changes = s.note(changes, b, now) // a rest that ended
		return j, 0, true
	}
	return 0, wait, false
}

// release gives back a call that was never made.
func (s *Sender) release(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.breakers[i].probing = false
}

// done records the outcome of a call to provider i.
func (s *Sender) done(i int, err error) {
	s.reportMu.Lock()
	defer s.reportMu.Unlock()
	var changes []change
	defer func() { s.report(changes) }()
	s.mu.Lock()
	defer s.mu.Unlock()
	b, now := s.breakers[i], s.cfg.Now()
	b.probing = false
	switch channels.KindOf(err) {
	case channels.Transient, channels.Misconfigured:
		if err == nil {
			break
		}
		b.failures++
		if b.state == HalfOpen || b.failures >= s.cfg.Threshold {
			b.state, b.openedAt, b.failures = Open, now, 0
		}
		changes = s.note(changes, b, now)
		return
	case channels.Throttled:
		b.until = now.Add(max(channels.RetryAfterOf(err), time.Second))
	}
	// An answer: sent, throttled, permanent or gone — the provider works.
	b.state, b.failures = Closed, 0
	changes = s.note(changes, b, now)
}

// change is one change of a provider's shown state.
type change struct {
	provider string
	from, to State
}

// note appends b's change of shown state, if any; s.mu held.
func (s *Sender) note(changes []change, b *breaker, now time.Time) []change {
	st := s.stateOf(b, now)
	if old := s.shown[b.p.Name]; old != st {
		s.shown[b.p.Name] = st
		changes = append(changes, change{provider: b.p.Name, from: old, to: st})
	}
	return changes
}

// report logs and reports changes, outside the lock.
func (s *Sender) report(changes []change) {
	for _, c := range changes {
		level := slog.LevelInfo
		if c.to == Open {
			level = slog.LevelWarn
		}
		s.log.Log(context.Background(), level, "provider state changed", "provider", c.provider,
			"from", c.from.String(), "to", c.to.String())
		if s.cfg.OnChange != nil {
			s.cfg.OnChange(c.provider, c.from, c.to)
		}
	}
}

// PingResult is one provider's check.
type PingResult struct {
	Provider string
	Err      error
}

// PingEach checks every provider that can ping (channels.Pinger), in
// order, at once.
func (s *Sender) PingEach(ctx context.Context) []PingResult {
	out := make([]PingResult, len(s.breakers))
	var wg sync.WaitGroup
	for i, b := range s.breakers {
		out[i].Provider = b.p.Name
		if p, ok := b.p.Sender.(channels.Pinger); ok {
			wg.Go(func() { out[i].Err = p.Ping(ctx) })
		}
	}
	wg.Wait()
	return out
}

// Ping checks every provider; it fails only when none answers, naming
// each failure (PingEach tells them apart).
func (s *Sender) Ping(ctx context.Context) error {
	var errs []error
	for _, r := range s.PingEach(ctx) {
		if r.Err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", r.Provider, r.Err))
	}
	return errors.Join(errs...)
}
