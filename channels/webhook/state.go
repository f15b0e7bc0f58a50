package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// The four mailbox platforms whose read state postbud keeps the same; they
// are the keys of Config.Endpoints and the values of StateChange.Platform.
const (
	PlatformBorgerDK = "borger.dk"
	PlatformApp      = "digital-post-app"
	PlatformEBoks    = "e-boks"
	PlatformMitDK    = "mit.dk"
)

// Platforms returns the names of the four platforms, sorted.
func Platforms() []string {
	return []string{PlatformBorgerDK, PlatformApp, PlatformEBoks, PlatformMitDK}
}

// KnownPlatform reports whether name is one of the four platforms.
func KnownPlatform(name string) bool {
	return slices.Contains(Platforms(), name)
}

// EventType is the "type" of a state-change webhook.
const EventType = "message.state"

// The values of the body's "state".
const (
	StateRead   = "read"
	StateUnread = "unread"
)

// StateChange is a letter's new read state, as sent to the platforms. It
// holds nothing about the citizen: no CPR, no subject, no sender.
type StateChange struct {
	// MessageID is the letter's id (MeMo messageUUID).
	MessageID string
	// Read is the new state.
	Read bool
	// Version is the state's version; it grows with every change of the
	// letter's state, so a receiver drops a change whose version is lower
	// than one it already applied.
	Version int64
	// ChangedAt is when the change happened on its platform.
	ChangedAt time.Time
	// Platform is the platform where the change happened.
	Platform string
}

// Validate reports what makes sc unfit to send, naming each field.
func (sc StateChange) Validate() error {
	var errs []error
	if sc.MessageID == "" {
		errs = append(errs, errors.New("webhook: state change: MessageID is required"))
	} else if !printableASCII(sc.MessageID) || len(sc.MessageID) > 256 {
		errs = append(errs, errors.New("webhook: state change: MessageID must be 1 to 256 printable ASCII characters"))
	}
	if sc.Version < 0 {
		errs = append(errs, fmt.Errorf("webhook: state change: Version must not be negative, got %d", sc.Version))
	}
	if sc.ChangedAt.IsZero() {
		errs = append(errs, errors.New("webhook: state change: ChangedAt is required"))
	} else if y := sc.ChangedAt.UTC().Year(); y < 1 || y > 9999 {
		errs = append(errs, fmt.Errorf("webhook: state change: ChangedAt year %d is out of range", y))
	}
	if sc.Platform == "" {
		errs = append(errs, errors.New("webhook: state change: Platform is required"))
	} else if !printableASCII(sc.Platform) || len(sc.Platform) > 64 {
		errs = append(errs, errors.New("webhook: state change: Platform must be 1 to 64 printable ASCII characters"))
	}
	return errors.Join(errs...)
}

// wireChange is the JSON body; its field order is the wire order.
type wireChange struct {
	Type      string `json:"type"`
	MessageID string `json:"message_id"`
	State     string `json:"state"`
	Version   int64  `json:"version"`
	ChangedAt string `json:"changed_at"`
	Platform  string `json:"platform"`
}

// Body returns the JSON body that carries sc:
//
//	{"type":"message.state","message_id":"…","state":"read"|"unread",
//	 "version":7,"changed_at":"2025-03-01T09:30:00Z","platform":"e-boks"}
//
// changed_at is RFC 3339 in UTC with as many fractional digits as needed.
// The same sc always gives the same bytes.
func Body(sc StateChange) []byte {
	state := StateUnread
	if sc.Read {
		state = StateRead
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	// Encoding strings and an integer cannot fail.
	_ = enc.Encode(wireChange{
		Type:      EventType,
		MessageID: sc.MessageID,
		State:     state,
		Version:   sc.Version,
		ChangedAt: sc.ChangedAt.UTC().Format(time.RFC3339Nano),
		Platform:  sc.Platform,
	})
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// MaxBodySize bounds a state-change body; real ones are under 300 bytes.
const MaxBodySize = 16 << 10

// ParseBody decodes a state-change body strictly: every field present,
// no other field, type "message.state", state "read" or "unread", a
// non-negative version, an RFC 3339 changed_at, and nothing after the
// object. Errors name fields, never quote values.
func ParseBody(b []byte) (StateChange, error) {
	if len(b) > MaxBodySize {
		return StateChange{}, fmt.Errorf("webhook: body is %d bytes, more than %d", len(b), MaxBodySize)
	}
	var w struct {
		Type      *string `json:"type"`
		MessageID *string `json:"message_id"`
		State     *string `json:"state"`
		Version   *int64  `json:"version"`
		ChangedAt *string `json:"changed_at"`
		Platform  *string `json:"platform"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return StateChange{}, fmt.Errorf("webhook: decode body: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return StateChange{}, errors.New("webhook: decode body: data after the object")
	}
	var missing []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"type", w.Type != nil}, {"message_id", w.MessageID != nil}, {"state", w.State != nil},
		{"version", w.Version != nil}, {"changed_at", w.ChangedAt != nil}, {"platform", w.Platform != nil},
	} {
		if !f.set {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return StateChange{}, fmt.Errorf("webhook: body lacks %s", strings.Join(missing, ", "))
	}
	if *w.Type != EventType {
		return StateChange{}, fmt.Errorf("webhook: body type is not %q", EventType)
	}
	sc := StateChange{MessageID: *w.MessageID, Version: *w.Version, Platform: *w.Platform}
	switch *w.State {
	case StateRead:
		sc.Read = true
	case StateUnread:
	default:
		return StateChange{}, errors.New(`webhook: body state is neither "read" nor "unread"`)
	}
	t, err := time.Parse(time.RFC3339Nano, *w.ChangedAt)
	if err != nil {
		return StateChange{}, errors.New("webhook: body changed_at is not an RFC 3339 time")
	}
	sc.ChangedAt = t.UTC()
	if err := sc.Validate(); err != nil {
		return StateChange{}, err
	}
	return sc, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7E {
			return false
		}
	}
	return true
}
