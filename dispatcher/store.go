package dispatcher

import (
	"context"
	"errors"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Citizen is what postbud knows of one citizen, under the pseudonymous key.
// Its addresses are personal data and never logged.
type Citizen struct {
	Key      string
	Email    string
	Mobile   string
	Language string // "da" (default) or "en"
	Address  string // registered postal address, for paper
	Devices  []Device
	// Exempt is set while the citizen is exempt from Digital Post.
	Exempt bool
	// Forward is the address the citizen gave for the paper forwarding of
	// unopened letters on exemption (else Address).
	Forward string
	// Unread is the number of the citizen's unread letters (the badge).
	Unread int
	// Windows are the ends of the channels' open coalescing windows.
	Windows map[channels.Name]time.Time
}

// ReadState is a letter's read state as every platform should show it.
type ReadState struct {
	MessageID string
	Read      bool
	// Version grows by one each time Read changes; receivers drop a state
	// whose version is not above the last they applied.
	Version   int64
	ChangedAt time.Time
	ChangedBy event.Platform
	// Changed says the event that returned this state changed Read: the
	// other platforms must be told.
	Changed bool
	// Correct says the event lost to a newer, different state: its own
	// platform shows the losing state and must be told.
	Correct bool
	// Unread is the citizen's unread count after the change.
	Unread int
	// Received says the letter itself has arrived.
	Received bool
	// Acked is the last version each platform acknowledged (State only).
	Acked map[event.Platform]int64
}

// Device is one registered push token.
type Device struct {
	App          string
	Provider     string // "apns" | "fcm"
	Token        string
	Environment  string
	RegisteredAt time.Time
}

// Letter is what postbud keeps of one letter: who sent it and how it
// stands. Never its subject or content.
type Letter struct {
	MessageID    string
	SenderID     string
	SenderName   string
	SenderKind   event.SenderKind
	Priority     event.Priority
	Notification string // the sender's own alert text, if any
	ReceivedAt   time.Time
	Legal        bool
	// NotBefore holds alerts until then (do_not_deliver_until).
	NotBefore time.Time
	// ReplyBy is the sender's deadline; a reminder goes out before it.
	ReplyBy time.Time

	// Read state (see ReadState).
	Read     bool
	Version  int64
	ChangeAt time.Time
	ChangeBy event.Platform

	// notCounted is 1 on a letter's first processing while it is unread:
	// the citizen's unread count does not include it yet (alert badges).
	notCounted int

	// Tidy asks Record to trim the citizen's unread index of letters past
	// retention and refresh its expiry (set every 16th unread letter, to
	// keep the common letter's writes few).
	Tidy bool

	// Done holds the ids of deliveries that reached a final outcome (sent,
	// skipped, gone, archived): they are never attempted again.
	Done map[string]string
}

// Outcome is one entry of a letter's delivery trail.
type Outcome struct {
	At         time.Time     `json:"at"`
	DeliveryID string        `json:"delivery_id,omitempty"`
	Channel    channels.Name `json:"channel,omitempty"`
	App        string        `json:"app,omitempty"`
	// Result is sent, skipped, failed, retrying, gone, paper or deferred.
	Result     string `json:"result"`
	Reason     string `json:"reason,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Code       string `json:"code,omitempty"`
	ProviderID string `json:"provider_id,omitempty"`
	Attempt    int    `json:"attempt,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`
	// Final marks the delivery done: it is not attempted again.
	Final bool `json:"-"`
	// Track asks the store to remember which letter the delivery belongs
	// to, for the provider's delivery reports (DeliveryRef).
	Track bool `json:"-"`
	// Window, when set on a sent outcome, opens the citizen's coalescing
	// window on its channel until then.
	Window time.Time `json:"-"`
}

// Trail results.
const (
	ResultSent     = "sent"
	ResultSkipped  = "skipped"
	ResultFailed   = "failed"
	ResultRetrying = "retrying"
	ResultGone     = "gone"
	ResultPaper    = "paper"
	ResultReport   = "report"
	ResultDeferred = "deferred"
	ResultNote     = "note"
)

// ErrNotFound is returned for an unknown letter.
var ErrNotFound = errors.New("not found")

// Store is the persistence the dispatcher needs. The Redis implementation is
// in dispatcher/redisstore; every method is one round trip and atomic.
type Store interface {
	// EventSeen reports whether the event was already processed;
	// messageID is the letter a letter event is about, else "".
	EventSeen(ctx context.Context, citizen, messageID, eventID string) (bool, error)
	// Lookup returns the citizen and a letter as stored; a letter not
	// stored yet comes back with its MessageID and any read state that
	// arrived before it. seen is true when eventID was already processed;
	// then nothing else is returned.
	Lookup(ctx context.Context, citizen, messageID, eventID string) (c *Citizen, l *Letter, seen bool, err error)
	// Load returns the citizen and one of their letters; ErrNotFound when
	// the letter is not stored.
	Load(ctx context.Context, citizen, messageID string) (*Citizen, *Letter, error)
	// Record stores the letter's metadata if it is new, appends outcomes to
	// its trail, marks the final ones done and, when eventID is not empty,
	// marks the event processed — atomically.
	Record(ctx context.Context, citizen string, l *Letter, outcomes []Outcome, eventID string) error
	// UpdateContact applies a contact.updated event unless a newer one was
	// applied, and marks the event processed.
	UpdateContact(ctx context.Context, citizen string, c *event.ContactData, at time.Time, eventID string) error
	// RegisterDevice adds or refreshes a push token; UnregisterDevice
	// removes it. Both mark the event processed.
	RegisterDevice(ctx context.Context, citizen string, d Device, eventID string) error
	UnregisterDevice(ctx context.Context, citizen string, d Device, eventID string) error
	// RemoveAddress forgets an address a provider said is gone, unless it
	// was (re-)registered after goneAt. It reports whether it removed it.
	RemoveAddress(ctx context.Context, citizen string, to channels.Address, goneAt time.Time) (bool, error)
	// DeliveryRef returns the citizen and letter of a tracked delivery
	// (Outcome.Track); ErrNotFound when unknown or expired.
	DeliveryRef(ctx context.Context, deliveryID string) (citizen, messageID string, err error)
	// ApplyReport records a provider's delivery report for a delivery: the
	// delivery's report state becomes status unless a final state was
	// already recorded or the status is the same; then nothing changes and
	// applied is false. An applied report appends entry to the trail.
	ApplyReport(ctx context.Context, citizen, messageID, deliveryID, status string, final bool, entry Outcome) (applied bool, err error)
	// ApplyState applies a platform's read or unread, last writer wins by
	// at, and keeps the citizen's unread index in the same atomic step.
	// seen is true when eventID was processed (nothing else is returned).
	ApplyState(ctx context.Context, citizen, messageID string, read bool, at time.Time, platform event.Platform, eventID string) (st ReadState, seen bool, err error)
	// MarkEvent marks a letter's event processed.
	MarkEvent(ctx context.Context, citizen, messageID, eventID string) error
	// State returns a letter's read state; ErrNotFound if unknown.
	State(ctx context.Context, citizen, messageID string) (ReadState, error)
	// CitizenOf returns the citizen key of a tracked letter.
	CitizenOf(ctx context.Context, messageID string) (string, error)
	// LockSync, UnlockSync and AckSync serialise and acknowledge the
	// webhooks of one letter to one platform.
	LockSync(ctx context.Context, citizen, messageID string, platform event.Platform, ttl time.Duration) (bool, error)
	UnlockSync(ctx context.Context, citizen, messageID string, platform event.Platform) error
	AckSync(ctx context.Context, citizen, messageID string, platform event.Platform, version int64) error
	// PlatformDisabled and SetPlatformDisabled keep the platforms whose
	// webhook endpoint answered 410.
	PlatformDisabled(ctx context.Context, platform event.Platform) (bool, error)
	SetPlatformDisabled(ctx context.Context, platform event.Platform, disabled bool) error
	// SetExemption records exemption.granted (exempt, with forward as the
	// forwarding address) or exemption.revoked, unless a newer one was
	// applied, and marks the event processed. It reports whether it
	// applied.
	SetExemption(ctx context.Context, citizen string, exempt bool, forward string, at time.Time, eventID string) (bool, error)
	// UnreadSince returns the ids of the citizen's unread letters received
	// in [from, to].
	UnreadSince(ctx context.Context, citizen string, from, to time.Time) ([]string, error)
	// MarkRegistryEvent marks a citizen-level event processed.
	MarkRegistryEvent(ctx context.Context, citizen, eventID string) error
	// Hold adds a letter to the citizen's held letters on a channel (a
	// coalescing window is open) and reports whether it is the first.
	Hold(ctx context.Context, citizen string, ch channels.Name, messageID string) (first bool, err error)
	// Held returns the held letters of a channel, oldest first;
	// Release forgets the first n of them.
	Held(ctx context.Context, citizen string, ch channels.Name) ([]string, error)
	Release(ctx context.Context, citizen string, ch channels.Name, n int) error
	// Remember records key for ttl and reports whether it was new.
	Remember(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Trail returns a letter's delivery trail, oldest first.
	Trail(ctx context.Context, messageID string) ([]Outcome, error)
	// Ping checks the store is reachable.
	Ping(ctx context.Context) error
}
