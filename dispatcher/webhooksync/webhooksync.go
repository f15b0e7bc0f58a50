// Package webhooksync adapts the webhook channel to the dispatcher's
// Syncer, so that package dispatcher itself imports no concrete channel:
// cmd/postbud wires it, and the dispatcher's tests use the same adapter.
package webhooksync

import (
	"context"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Syncer sends the dispatcher's read-state changes as signed webhooks.
type Syncer struct{ s *webhook.Sender }

var _ dispatcher.Syncer = Syncer{}

// New returns the Syncer on s.
func New(s *webhook.Sender) Syncer { return Syncer{s: s} }

// Sync sends one letter's state to one platform.
func (w Syncer) Sync(ctx context.Context, p event.Platform, id string, st dispatcher.PlatformState) (channels.Receipt, error) {
	return w.s.Deliver(ctx, string(p), id, webhook.StateChange{MessageID: st.MessageID, Read: st.Read,
		Version: st.Version, ChangedAt: st.ChangedAt, Platform: string(st.ChangedBy)})
}

// Targets returns the platforms the webhook channel has endpoints for.
func (w Syncer) Targets() []event.Platform {
	var out []event.Platform
	for _, p := range w.s.Platforms() {
		out = append(out, event.Platform(p))
	}
	return out
}
