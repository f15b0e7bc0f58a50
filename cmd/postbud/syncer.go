package main

import (
	"context"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// webhookSyncer adapts the webhook channel to the dispatcher's Syncer, so
// that the dispatcher does not import a concrete channel.
type webhookSyncer struct{ s *webhook.Sender }

var _ dispatcher.Syncer = webhookSyncer{}

func (w webhookSyncer) Sync(ctx context.Context, p event.Platform, id string, st dispatcher.PlatformState) (channels.Receipt, error) {
	return w.s.Deliver(ctx, string(p), id, webhook.StateChange{MessageID: st.MessageID, Read: st.Read,
		Version: st.Version, ChangedAt: st.ChangedAt, Platform: string(st.ChangedBy)})
}

func (w webhookSyncer) Targets() []event.Platform {
	var out []event.Platform
	for _, p := range w.s.Platforms() {
		out = append(out, event.Platform(p))
	}
	return out
}
