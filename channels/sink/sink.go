// Package sink is a channel that records alerts instead of sending them:
// the local sinks of `postbud dev`, and the instant-accepting channels of
// the benchmark. It renders each alert's text as the real channel would say
// it, so a newcomer can see what a citizen would get.
package sink

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/digitalpost/postbud/channels"
)

// Alert is one recorded alert. To is masked: the dev page shows which kind
// of address got the alert, not the address.
type Alert struct {
	At         time.Time     `json:"at"`
	Channel    channels.Name `json:"channel"`
	To         string        `json:"to"`
	App        string        `json:"app,omitempty"`
	MessageID  string        `json:"message_id"`
	DeliveryID string        `json:"delivery_id"`
	Title      string        `json:"title"`
	Text       string        `json:"text"`
	Silent     bool          `json:"silent,omitempty"`
	// Code is the confirmation code the alert carried, if it was one: dev
	// shows it, so a newcomer can try the confirmation.
	Code       string `json:"code,omitempty"`
	Badge      int    `json:"badge"`
	ProviderID string `json:"provider_id"`
}

// Sink records alerts of one channel. Keep bounds memory: only the newest
// Keep alerts are kept (0 keeps none, only the count).
type Sink struct {
	name  channels.Name
	keep  int
	n     atomic.Int64
	mu    sync.Mutex
	alert []Alert
}

var _ channels.Sender = (*Sink)(nil)

// New returns a sink for channel name keeping the newest keep alerts.
func New(name channels.Name, keep int) *Sink { return &Sink{name: name, keep: keep} }

// Send records the alert and accepts it at once.
func (s *Sink) Send(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return channels.Receipt{}, err
	}
	n := s.n.Add(1)
	id := string(s.name) + "-" + strconv.FormatInt(n, 10)
	if s.keep == 0 {
		return channels.Receipt{ProviderID: id}, nil
	}
	rec := Alert{At: time.Now(), Channel: s.name, To: Mask(to), App: to.App, MessageID: a.MessageID,
		DeliveryID: a.DeliveryID, Title: channels.Title(a), Text: channels.Headline(a) + " " + channels.ReadAt(a),
		Silent: a.Silent, Badge: a.Badge, ProviderID: id, Code: a.Code}
	if a.Silent {
		rec.Title, rec.Text = "", ""
	}
	s.mu.Lock()
	s.alert = append(s.alert, rec)
	if len(s.alert) > s.keep {
		s.alert = s.alert[len(s.alert)-s.keep:]
	}
	s.mu.Unlock()
	return channels.Receipt{ProviderID: id}, nil
}

// Count returns how many alerts the sink accepted.
func (s *Sink) Count() int64 { return s.n.Load() }

// Alerts returns the kept alerts, oldest first.
func (s *Sink) Alerts() []Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Alert(nil), s.alert...)
}

// Mask shows the shape of an address without the address: "a…@example.dk",
// "+45…78", "token …9f3a".
func Mask(to channels.Address) string {
	v := to.Value
	switch to.Channel {
	case channels.Email:
		for i := len(v) - 1; i >= 0; i-- {
			if v[i] == '@' && i > 0 {
				return v[:1] + "…" + v[i:]
			}
		}
	case channels.SMS:
		if len(v) > 5 {
			return v[:3] + "…" + v[len(v)-2:]
		}
	case channels.APNs, channels.FCM:
		if len(v) > 4 {
			return "token …" + v[len(v)-4:]
		}
	}
	return "…"
}
