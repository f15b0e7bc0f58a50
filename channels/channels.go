// Package channels is the neutral contract between the dispatcher and the
// adapters that deliver alerts: email, SMS, push (APNs, FCM), paper and
// platform webhooks.
//
// An adapter implements Sender. It knows its provider's protocol and nothing
// of queues or storage: it never imports asynq or Redis. When a send fails it
// says what kind of failure it met (see Kind) and the dispatcher alone decides
// what happens next.
package channels

import (
	"context"
	"log/slog"
	"time"
)

// Name names a channel.
type Name string

// The channels postbud knows.
const (
	Email Name = "email"
	SMS   Name = "sms"
	APNs  Name = "apns"
	FCM   Name = "fcm"
	Paper Name = "paper"
)

// Address is where one alert goes: an email address, an E.164 mobile number,
// a push token, or a postal address for paper. It is personal data: it
// redacts itself in logs.
type Address struct {
	Channel Name
	// Value is the email address, the E.164 number ("+4512345678"), the
	// push token, or the postal address (paper).
	Value string
	// App names the citizen's app for push tokens ("digital-post-app",
	// "e-boks", "mit.dk"); empty otherwise.
	App string
	// Environment is "production" or "sandbox" for APNs tokens.
	Environment string
}

// LogValue redacts the address: only the channel and app are logged.
func (a Address) LogValue() slog.Value {
	return slog.GroupValue(slog.String("channel", string(a.Channel)), slog.String("app", a.App), slog.String("value", "[redacted]"))
}

// Alert is the content of one notification. By construction it holds no
// personal data and nothing of the letter but who sent it: no CPR, no
// subject, no body. Adapters render it with their own templates.
type Alert struct {
	// DeliveryID is the deterministic id of this delivery (message ×
	// channel × address). Adapters use it where the provider takes a
	// reference (SMTP Message-ID, SMS userref, print job name).
	DeliveryID string
	// MessageID is the letter's id (MeMo messageUUID), used as the
	// provider's collapse key (apns-collapse-id, FCM tag / collapse_key).
	MessageID string
	// Language is "da" (default) or "en".
	Language string
	// Senders are the display names of the senders the alert speaks of;
	// one for an ordinary alert, several for a coalesced one.
	Senders []string
	// Count is the number of letters the alert speaks of (≥ 1).
	Count int
	// Notification is a sender-supplied text that passed the dispatcher's
	// privacy check; empty means the generic text.
	Notification string
	// MailboxURL is the one fixed link alerts may carry.
	MailboxURL string
	// Badge is the citizen's unread count, for push badges; -1 leaves the
	// badge alone.
	Badge int
	// Silent marks a badge-only push with no visible text.
	Silent bool
	// Urgent raises the provider priority where there is one.
	Urgent bool
	// Expires is when the alert is no longer worth delivering; zero means
	// the provider's default.
	Expires time.Time
	// Code, when set, makes this no letter alert but a confirmation code
	// for the address it goes to: the fixed text with the code and the
	// mailbox URL (Title, Headline, ReadAt). Adapters never log it.
	Code string
	// Provider, when set, pins the alert to one provider of a channel that
	// has several (channels/failover): an earlier attempt was handed to it
	// and may have been taken, so no other provider may send it. Channels
	// of one provider ignore it.
	Provider string
}

// Receipt is what a provider said when it accepted an alert.
type Receipt struct {
	// ProviderID is the provider's id for the accepted alert (SMTP queue
	// id or Message-ID, APNs apns-id, FCM message name, gateway id).
	ProviderID string
	// Provider names which of a channel's several providers took it
	// (channels/failover); empty for a channel of one provider.
	Provider string
}

// Sender delivers alerts on one channel. Implementations are safe for
// concurrent use and honour ctx.
type Sender interface {
	Send(ctx context.Context, to Address, a Alert) (Receipt, error)
}

// SenderFunc adapts a function to Sender.
type SenderFunc func(ctx context.Context, to Address, a Alert) (Receipt, error)

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, to Address, a Alert) (Receipt, error) {
	return f(ctx, to, a)
}

// Pinger is implemented by senders that can check their provider is
// reachable and their credentials are accepted, for readiness.
type Pinger interface {
	Ping(ctx context.Context) error
}
