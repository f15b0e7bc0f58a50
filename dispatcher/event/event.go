package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Type names an event of the contract (docs/events.md).
type Type string

// The event types of contract v1.
const (
	MessageReceived    Type = "message.received"
	MessageRead        Type = "message.read"
	MessageUnread      Type = "message.unread"
	ContactUpdated     Type = "contact.updated"
	DeviceRegistered   Type = "device.registered"
	DeviceUnregistered Type = "device.unregistered"
	ExemptionGranted   Type = "exemption.granted"
	ExemptionRevoked   Type = "exemption.revoked"
	ConsentGranted     Type = "consent.granted"
	ConsentRevoked     Type = "consent.revoked"
	AccessGranted      Type = "access.granted"
	AccessUpdated      Type = "access.updated"
	AccessRevoked      Type = "access.revoked"
)

// types are the event types, in contract order.
var types = [...]Type{MessageReceived, MessageRead, MessageUnread, ContactUpdated,
	DeviceRegistered, DeviceUnregistered, ExemptionGranted, ExemptionRevoked, ConsentGranted, ConsentRevoked,
	AccessGranted, AccessUpdated, AccessRevoked}

// Types returns every event type, in contract order, in a fresh slice.
func Types() []Type { return append([]Type(nil), types[:]...) }

// Platform is a source of events: the core that stores letters, or one of
// the four platforms citizens read them on.
type Platform string

// The platforms.
const (
	Core           Platform = "core"
	BorgerDK       Platform = "borger.dk"
	DigitalPostApp Platform = "digital-post-app"
	EBoks          Platform = "e-boks"
	MitDK          Platform = "mit.dk"
)

// The one list of the platforms, the reading platforms and the apps. They
// are arrays, so no caller can change them; the functions below hand out
// copies.
var (
	platforms        = [...]Platform{Core, BorgerDK, DigitalPostApp, EBoks, MitDK}
	readingPlatforms = [...]Platform{BorgerDK, DigitalPostApp, EBoks, MitDK}
	apps             = [...]string{string(DigitalPostApp), string(EBoks), string(MitDK)}
	// consentPlatforms show letters from public senders only with the
	// citizen's consent (consent.granted); borger.dk and the Digital Post
	// app need none.
	consentPlatforms = [...]Platform{EBoks, MitDK}
)

// Platforms returns every platform, core first, in a fresh slice.
func Platforms() []Platform { return append([]Platform(nil), platforms[:]...) }

// ReadingPlatforms returns the four places a citizen reads letters, in a
// fresh slice.
func ReadingPlatforms() []Platform { return append([]Platform(nil), readingPlatforms[:]...) }

// Apps returns the citizen apps that register push tokens, in a fresh
// slice.
func Apps() []string { return append([]string(nil), apps[:]...) }

// CoreOnly reports whether only core may send events of type t: the access
// holder events (a platform's key sending one is refused, 403).
func CoreOnly(t Type) bool { return t == AccessGranted || t == AccessUpdated || t == AccessRevoked }

// IsPlatform reports whether p is a platform of the contract.
func IsPlatform(p Platform) bool { return oneOf(p, platforms[:]) }

// IsReadingPlatform reports whether p is one of the four reading platforms.
func IsReadingPlatform(p Platform) bool { return oneOf(p, readingPlatforms[:]) }

// ConsentPlatforms returns the platforms that need the citizen's consent
// to show letters from public senders, in a fresh slice.
func ConsentPlatforms() []Platform { return append([]Platform(nil), consentPlatforms[:]...) }

// NeedsConsent reports whether platform p (or the app of that name) shows
// letters from public senders only with the citizen's consent.
func NeedsConsent(p Platform) bool { return oneOf(p, consentPlatforms[:]) }

// IsApp reports whether name is a citizen app.
func IsApp(name string) bool { return oneOf(name, apps[:]) }

// SenderKind says which exemption rules apply to a letter's sender.
type SenderKind string

// Sender kinds.
const (
	SenderPublic        SenderKind = "public"
	SenderPublicSpecial SenderKind = "public-special"
	SenderPrivate       SenderKind = "private"
)

// Priority is a letter's lane.
type Priority string

// Priorities, highest first.
const (
	Urgent Priority = "urgent"
	Normal Priority = "normal"
	Bulk   Priority = "bulk"
)

// Limits of the contract.
const (
	MaxEventBytes        = 64 << 10
	MaxNotificationRunes = 150
)

// Event is one validated event. Exactly one of the typed data fields is set,
// according to Type. Raw keeps the wire form for task payloads.
//
// Its JSON form is postbud's internal task payload: the CPR fields are
// never serialised (json:"-"); Pseudonymize moves the CPR into CitizenKey
// and Birth first.
type Event struct {
	ID         string    `json:"id"`
	Type       Type      `json:"type"`
	OccurredAt time.Time `json:"occurred_at"`
	Source     Platform  `json:"source"`
	// CitizenKey is the pseudonymous key of the citizen (Keyer.CitizenKey).
	CitizenKey string `json:"c,omitempty"`
	// Birth is the citizen's birth date (for the age rule), from the CPR.
	Birth string `json:"b,omitempty"`
	// Sealed says the contact data fields (email, mobile, address, push
	// token, forward address) hold sealed values (dispatcher/seal): the
	// dispatcher seals them before it enqueues the event and opens them
	// when the task runs.
	Sealed bool `json:"sealed,omitempty"`

	Message   *MessageData   `json:"message,omitempty"`   // message.received
	Read      *ReadData      `json:"read,omitempty"`      // message.read, message.unread
	Contact   *ContactData   `json:"contact,omitempty"`   // contact.updated
	Device    *DeviceData    `json:"device,omitempty"`    // device.registered, device.unregistered
	Exemption *ExemptionData `json:"exemption,omitempty"` // exemption.granted, exemption.revoked
	Consent   *ConsentData   `json:"consent,omitempty"`   // consent.granted, consent.revoked
	Access    *AccessData    `json:"access,omitempty"`    // access.granted, access.updated, access.revoked
}

// MessageData is the data of message.received.
type MessageData struct {
	MessageID         string     `json:"message_id"`
	CPR               CPR        `json:"-"`
	SenderID          string     `json:"sender_id"`
	SenderName        string     `json:"sender_name"`
	SenderKind        SenderKind `json:"sender_kind"`
	Notification      string     `json:"notification,omitempty"`
	Priority          Priority   `json:"priority"`
	DoNotDeliverUntil time.Time  `json:"do_not_deliver_until,omitzero"`
	ReplyBy           time.Time  `json:"reply_by,omitzero"`
	LegalNotification bool       `json:"legal_notification,omitempty"`
}

// ReadData is the data of message.read and message.unread.
type ReadData struct {
	MessageID string    `json:"message_id"`
	CPR       CPR       `json:"-"`
	Platform  Platform  `json:"platform"`
	At        time.Time `json:"at"`
	// ReaderCPR is who read, when it was not the recipient (data.reader.cpr:
	// an access holder reading the recipient's mailbox); Pseudonymize moves
	// it into ReaderKey.
	ReaderCPR CPR    `json:"-"`
	ReaderKey string `json:"rk,omitempty"`
}

// Access scopes.
const ScopeRead = "read"

// AccessData is the data of access.granted, access.updated and
// access.revoked: the owner (CPR) gives the holder access to read the
// owner's Digital Post. Pseudonymize moves the holder's CPR into
// HolderKey.
type AccessData struct {
	CPR       CPR    `json:"-"`
	HolderCPR CPR    `json:"-"`
	HolderKey string `json:"h,omitempty"`
	Scope     string `json:"scope,omitempty"`
	// ExpiresAt ends the access (granted only); zero: until revoked.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Notify says the holder wants alerts for the owner's letters
	// (granted and updated).
	Notify bool `json:"notify,omitempty"`
}

// ContactData is the data of contact.updated. A nil field leaves the stored
// value alone; an empty string removes it.
type ContactData struct {
	CPR      CPR     `json:"-"`
	Email    *string `json:"email,omitempty"`
	Mobile   *string `json:"mobile,omitempty"`
	Language *string `json:"language,omitempty"`
	Address  *string `json:"address,omitempty"`
	// Confirmed says the email and mobile this event sets were confirmed
	// by the citizen in an earlier system: they need no new confirmation
	// code. Only core may say so (a migration).
	Confirmed bool `json:"confirmed,omitempty"`
}

// DeviceData is the data of device.registered and device.unregistered.
type DeviceData struct {
	CPR         CPR    `json:"-"`
	App         string `json:"app"`
	Provider    string `json:"provider"` // "apns" | "fcm"
	Token       string `json:"token"`
	Environment string `json:"environment"` // "production" | "sandbox" (APNs)
}

// ExemptionData is the data of exemption.granted and exemption.revoked.
type ExemptionData struct {
	CPR             CPR    `json:"-"`
	ForwardUnopened bool   `json:"forward_unopened,omitempty"`
	ForwardAddress  string `json:"forward_address,omitempty"`
}

// ConsentData is the data of consent.granted and consent.revoked: the
// citizen's consent that Platform (e-boks or mit.dk) shows them letters
// from public senders.
type ConsentData struct {
	CPR      CPR      `json:"-"`
	Platform Platform `json:"platform"`
}

// Citizen returns the CPR number the event concerns.
func (e *Event) Citizen() CPR {
	switch {
	case e.Message != nil:
		return e.Message.CPR
	case e.Read != nil:
		return e.Read.CPR
	case e.Contact != nil:
		return e.Contact.CPR
	case e.Device != nil:
		return e.Device.CPR
	case e.Exemption != nil:
		return e.Exemption.CPR
	case e.Consent != nil:
		return e.Consent.CPR
	case e.Access != nil:
		return e.Access.CPR
	}
	return ""
}

// Forbidden names what its source may not send in a valid event, or is
// nil: a platform may change only its own consent (core may change any).
// It is the authorisation rule of the contract that Parse cannot apply
// alone, since a caller knows who sent the event (the HTTP API answers it
// with 403; an event enqueued straight into asynq is rejected).
func (e *Event) Forbidden() *FieldError {
	if e.Consent != nil && e.Source != Core && e.Source != e.Consent.Platform {
		return &FieldError{Field: "data.platform", Reason: fmt.Sprintf("platform %s may change only its own consent (or core any)", e.Source)}
	}
	return nil
}

// FieldError names one bad field of an event and why it is bad. Reason
// never quotes personal data.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// ValidationError lists every problem found in an event.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, f := range e.Errors {
		parts[i] = f.Field + ": " + f.Reason
	}
	return "invalid event: " + strings.Join(parts, "; ")
}

type validator struct {
	errs []FieldError
	// layered turns decodeOnce off: every nested object is decoded apart
	// (tests compare the two ways).
	layered bool
	// whole says the event was decoded whole in one pass (tests).
	whole bool
}

func (v *validator) add(field, reason string) { v.errs = append(v.errs, FieldError{field, reason}) }

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Errors: v.errs}
}

// Wire forms. Pointers tell "absent" from zero where the contract needs it.
type wireEvent struct {
	ID         *string         `json:"id"`
	Type       *string         `json:"type"`
	OccurredAt *string         `json:"occurred_at"`
	Source     *string         `json:"source"`
	Data       json.RawMessage `json:"data"`
}

type wireRecipient struct {
	CPR *string `json:"cpr"`
}

type wireSender struct {
	ID   *string `json:"id"`
	Name *string `json:"name"`
	Kind *string `json:"kind"`
}

// Nested objects stay raw and are decoded on their own (nested), so that
// an unknown field inside one is named with its full path: encoding/json's
// unknown-field error gives the bare name only. That reads each nested
// byte twice per level, so a well-formed event (nearly all of them) is
// decoded once instead, into the wire struct's ...Once form whose nested
// objects are typed (decodeOnce), and only data that fails it takes the
// layered way, which names the fault, each error where the field stands.
// A nested object given twice (input RFC 8259 leaves undefined; docs/
// events.md asks for unique names) is merged by the one-pass decode where
// the layered one keeps the last; either way every field decoded is
// validated (TestParseRepeatedNestedObject). A message.received is decoded
// whole in one pass, envelope and data (wireMessageEventOnce).
type wireMessage struct {
	MessageID         *string         `json:"message_id"`
	Recipient         json.RawMessage `json:"recipient"` // wireRecipient
	Sender            json.RawMessage `json:"sender"`    // wireSender
	Notification      *string         `json:"notification"`
	Priority          *string         `json:"priority"`
	DoNotDeliverUntil *string         `json:"do_not_deliver_until"`
	ReplyBy           *string         `json:"reply_by"`
	LegalNotification *bool           `json:"legal_notification"`
}

type wireRead struct {
	MessageID *string         `json:"message_id"`
	Recipient json.RawMessage `json:"recipient"` // wireRecipient
	Platform  *string         `json:"platform"`
	At        *string         `json:"at"`
	Reader    json.RawMessage `json:"reader"` // wireRecipient, optional
}

type wireAccess struct {
	CPR       *string         `json:"cpr"`
	Holder    json.RawMessage `json:"holder"` // wireRecipient
	Scope     *string         `json:"scope"`
	ExpiresAt *string         `json:"expires_at"`
	Notify    *bool           `json:"notify"`
}

// The one-pass forms: the shallower typed field hides the raw one of the
// same name. A message.received event, the most common by far, is decoded
// whole: envelope and data at once.
type wireMessageEventOnce struct {
	wireEvent
	Data *wireMessageOnce `json:"data"`
}

type wireMessageOnce struct {
	wireMessage
	Recipient *wireRecipient `json:"recipient"`
	Sender    *wireSender    `json:"sender"`
}

type wireReadOnce struct {
	wireRead
	Recipient *wireRecipient `json:"recipient"`
	Reader    *wireRecipient `json:"reader"`
}

type wireAccessOnce struct {
	wireAccess
	Holder *wireRecipient `json:"holder"`
}

type wireContact struct {
	CPR       *string `json:"cpr"`
	Email     *string `json:"email"`
	Mobile    *string `json:"mobile"`
	Language  *string `json:"language"`
	Address   *string `json:"address"`
	Confirmed *bool   `json:"confirmed"`
}

type wireDevice struct {
	CPR         *string `json:"cpr"`
	App         *string `json:"app"`
	Provider    *string `json:"provider"`
	Token       *string `json:"token"`
	Environment *string `json:"environment"`
}

type wireConsent struct {
	CPR      *string `json:"cpr"`
	Platform *string `json:"platform"`
}

type wireExemption struct {
	CPR             *string `json:"cpr"`
	ForwardUnopened *bool   `json:"forward_unopened"`
	ForwardAddress  *string `json:"forward_address"`
}

var (
	idPattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	tokenChars  = regexp.MustCompile(`^[A-Za-z0-9_:.\-]+$`)
)

// Parse decodes and validates one event in the wire form of contract
// v1. Unknown fields are refused. The returned error is a *ValidationError
// naming every bad field.
func Parse(b []byte) (*Event, error) { return parse(b, &validator{}) }

func parse(b []byte, v *validator) (*Event, error) {
	if len(b) > MaxEventBytes {
		v.add("", fmt.Sprintf("event is larger than %d bytes", MaxEventBytes))
		return nil, v.err()
	}
	var w wireEvent
	var msg *wireMessageOnce // a message.received's data, decoded with the event
	if m, ok := decodeMessageEvent(b, v); ok {
		w, msg, v.whole = m.wireEvent, m.Data, true
	} else if !strictDecode(b, &w, "", v) {
		return nil, v.err()
	}
	ev := &Event{}
	if w.ID == nil {
		v.add("id", "required")
	} else if !idPattern.MatchString(*w.ID) {
		v.add("id", "must be 1 to 128 characters of A-Z a-z 0-9 . _ : - starting with a letter or digit")
	} else {
		ev.ID = *w.ID
	}
	if w.OccurredAt == nil {
		v.add("occurred_at", "required")
	} else if t, ok := parseTime(*w.OccurredAt); !ok {
		v.add("occurred_at", "must be an RFC 3339 time")
	} else {
		ev.OccurredAt = t
	}
	if w.Source == nil {
		v.add("source", "required")
	} else if !IsPlatform(Platform(*w.Source)) {
		v.add("source", "must be one of "+list(platforms[:]))
	} else {
		ev.Source = Platform(*w.Source)
	}
	if w.Type == nil {
		v.add("type", "required")
		return nil, v.err()
	}
	ev.Type = Type(*w.Type)
	if !oneOf(ev.Type, types[:]) {
		v.add("type", "must be one of "+list(types[:]))
		return nil, v.err()
	}
	if msg == nil && (len(w.Data) == 0 || string(w.Data) == "null") {
		v.add("data", "required")
		return nil, v.err()
	}
	switch ev.Type {
	case MessageReceived:
		ev.Message = parseMessage(w.Data, msg, v)
	case MessageRead, MessageUnread:
		ev.Read = parseRead(w.Data, v)
	case ContactUpdated:
		ev.Contact = parseContact(w.Data, v, ev.Source)
	case DeviceRegistered, DeviceUnregistered:
		ev.Device = parseDevice(w.Data, v, ev.Type == DeviceRegistered)
	case ExemptionGranted, ExemptionRevoked:
		ev.Exemption = parseExemption(w.Data, v, ev.Type == ExemptionGranted)
	case ConsentGranted, ConsentRevoked:
		ev.Consent = parseConsent(w.Data, v)
	case AccessGranted, AccessUpdated, AccessRevoked:
		ev.Access = parseAccess(w.Data, v, ev.Type)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	return ev, nil
}

// strictDecode decodes one JSON object into dst, refusing unknown fields and
// trailing data, and reports problems under prefix.
func strictDecode(b []byte, dst any, prefix string, v *validator) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			v.add(prefix, "must be a single JSON object")
			return false
		}
		return true
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		v.add(join(prefix, te.Field), "must be a JSON "+jsonKind(te.Type.String()))
	case errors.As(err, &se):
		v.add(prefix, fmt.Sprintf("malformed JSON at byte %d", se.Offset))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		v.add(join(prefix, name), "unknown field")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		v.add(prefix, "malformed JSON: unexpected end")
	default:
		v.add(prefix, "malformed JSON")
	}
	return false
}

// decodeOnce decodes well-formed JSON b (an event, or its data) into dst
// in one pass, refusing unknown fields and trailing data. It reports
// nothing: what it refuses takes the layered way (strictDecode, nested),
// which names the fault.
func decodeOnce(b []byte, dst any, v *validator) bool {
	if v.layered {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if dec.Decode(dst) != nil {
		return false
	}
	_, err := dec.Token()
	return err == io.EOF
}

// messageReceived is the type as it stands in a message.received event.
var messageReceived = []byte(`"` + MessageReceived + `"`)

// decodeMessageEvent decodes a well-formed, complete message.received
// event whole in one pass; ok false sends it the layered way. Only an event
// holding the type's name is tried: any other type fails it at its first
// data field, a decode wasted.
func decodeMessageEvent(b []byte, v *validator) (*wireMessageEventOnce, bool) {
	if !bytes.Contains(b, messageReceived) {
		return nil, false
	}
	w := new(wireMessageEventOnce)
	if !decodeOnce(b, w, v) {
		return nil, false
	}
	return w, w.Type != nil && *w.Type == string(MessageReceived) && w.Data != nil &&
		w.Data.Recipient != nil && w.Data.Sender != nil
}

// nested decodes the raw nested object of field into a new value. It
// reports field as required when raw is absent or null, and returns nil
// then and when the object is refused (reported too).
func nested[T any](raw json.RawMessage, field string, v *validator) *T {
	if len(raw) == 0 || string(raw) == "null" {
		v.add(field, "required")
		return nil
	}
	dst := new(T)
	if !strictDecode(raw, dst, field, v) {
		return nil
	}
	return dst
}

func jsonKind(goType string) string {
	switch {
	case strings.Contains(goType, "string"):
		return "string"
	case strings.Contains(goType, "bool"):
		return "boolean"
	case strings.Contains(goType, "wire"), strings.Contains(goType, "struct"):
		return "object"
	}
	return "value of another type"
}

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	if field == "" {
		return prefix
	}
	return prefix + "." + field
}

func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

func oneOf[T ~string](s T, set []T) bool {
	for _, x := range set {
		if x == s {
			return true
		}
	}
	return false
}

func list[T ~string](set []T) string {
	parts := make([]string, len(set))
	for i, x := range set {
		parts[i] = string(x)
	}
	return strings.Join(parts, ", ")
}

func (v *validator) cpr(field string, s *string) CPR {
	if s == nil {
		v.add(field, "required")
		return ""
	}
	c, err := ParseCPR(*s)
	if err != nil {
		v.add(field, err.Error())
	}
	return c
}

func (v *validator) messageID(field string, s *string) string {
	if s == nil {
		v.add(field, "required")
		return ""
	}
	if !uuidPattern.MatchString(*s) {
		v.add(field, "must be a UUID (MeMo messageUUID)")
		return ""
	}
	return strings.ToLower(*s)
}

func (v *validator) text(field string, s *string, required bool, max int) string {
	if s == nil {
		if required {
			v.add(field, "required")
		}
		return ""
	}
	t := strings.TrimSpace(*s)
	switch {
	case !utf8.ValidString(t):
		v.add(field, "must be valid UTF-8")
	case required && t == "":
		v.add(field, "must not be empty")
	case utf8.RuneCountInString(t) > max:
		v.add(field, fmt.Sprintf("must be at most %d characters", max))
	case strings.ContainsFunc(t, func(r rune) bool { return r < 0x20 && r != '\n' }):
		v.add(field, "must not contain control characters")
	default:
		return t
	}
	return ""
}

func (v *validator) time(field string, s *string, required bool) time.Time {
	if s == nil {
		if required {
			v.add(field, "required")
		}
		return time.Time{}
	}
	t, ok := parseTime(*s)
	if !ok {
		v.add(field, "must be an RFC 3339 time")
	}
	return t
}

// parseMessage validates a message.received's data: pre when the whole
// event was decoded in one pass, else the raw data b.
func parseMessage(b []byte, pre *wireMessageOnce, v *validator) *MessageData {
	var w wireMessageOnce
	once := pre != nil
	if once {
		w = *pre
	} else {
		once = decodeOnce(b, &w, v) && w.Recipient != nil && w.Sender != nil
	}
	if !once {
		w = wireMessageOnce{}
		if !strictDecode(b, &w.wireMessage, "data", v) {
			return nil
		}
	}
	m := &MessageData{}
	m.MessageID = v.messageID("data.message_id", w.MessageID)
	if !once { // each nested object where its errors go, in field order
		w.Recipient = nested[wireRecipient](w.wireMessage.Recipient, "data.recipient", v)
	}
	if rcpt := w.Recipient; rcpt != nil {
		m.CPR = v.cpr("data.recipient.cpr", rcpt.CPR)
	}
	if !once {
		w.Sender = nested[wireSender](w.wireMessage.Sender, "data.sender", v)
	}
	if sender := w.Sender; sender != nil {
		m.SenderID = v.text("data.sender.id", sender.ID, true, 64)
		m.SenderName = v.text("data.sender.name", sender.Name, true, 100)
		if sender.Kind == nil {
			v.add("data.sender.kind", "required")
		} else if k := SenderKind(*sender.Kind); !oneOf(k, []SenderKind{SenderPublic, SenderPublicSpecial, SenderPrivate}) {
			v.add("data.sender.kind", "must be one of public, public-special, private")
		} else {
			m.SenderKind = k
		}
	}
	m.Notification = v.text("data.notification", w.Notification, false, MaxNotificationRunes)
	m.Priority = Normal
	if w.Priority != nil {
		if p := Priority(*w.Priority); oneOf(p, []Priority{Urgent, Normal, Bulk}) {
			m.Priority = p
		} else {
			v.add("data.priority", "must be one of urgent, normal, bulk")
		}
	}
	m.DoNotDeliverUntil = v.time("data.do_not_deliver_until", w.DoNotDeliverUntil, false)
	m.ReplyBy = v.time("data.reply_by", w.ReplyBy, false)
	if w.LegalNotification != nil {
		m.LegalNotification = *w.LegalNotification
	}
	return m
}

func parseRead(b []byte, v *validator) *ReadData {
	var w wireReadOnce
	once := decodeOnce(b, &w, v) && w.Recipient != nil
	if !once {
		w = wireReadOnce{}
		if !strictDecode(b, &w.wireRead, "data", v) {
			return nil
		}
	}
	r := &ReadData{}
	r.MessageID = v.messageID("data.message_id", w.MessageID)
	if !once { // each nested object where its errors go, in field order
		w.Recipient = nested[wireRecipient](w.wireRead.Recipient, "data.recipient", v)
	}
	if rcpt := w.Recipient; rcpt != nil {
		r.CPR = v.cpr("data.recipient.cpr", rcpt.CPR)
	}
	if w.Platform == nil {
		v.add("data.platform", "required")
	} else if !IsReadingPlatform(Platform(*w.Platform)) {
		v.add("data.platform", "must be one of "+list(readingPlatforms[:]))
	} else {
		r.Platform = Platform(*w.Platform)
	}
	r.At = v.time("data.at", w.At, true)
	if raw := w.wireRead.Reader; !once && len(raw) > 0 && string(raw) != "null" {
		w.Reader = nested[wireRecipient](raw, "data.reader", v)
	}
	if rd := w.Reader; rd != nil {
		if c := v.cpr("data.reader.cpr", rd.CPR); c != r.CPR {
			r.ReaderCPR = c // the recipient reading is no other reader
		}
	}
	return r
}

func parseContact(b []byte, v *validator, source Platform) *ContactData {
	var w wireContact
	if !strictDecode(b, &w, "data", v) {
		return nil
	}
	c := &ContactData{CPR: v.cpr("data.cpr", w.CPR)}
	if w.Email != nil {
		e := ""
		if *w.Email != "" {
			var err error
			if e, err = NormalizeEmail(*w.Email); err != nil {
				v.add("data.email", err.Error())
			}
		}
		c.Email = &e
	}
	if w.Mobile != nil {
		m := ""
		if *w.Mobile != "" {
			var err error
			if m, err = NormalizeMobile(*w.Mobile); err != nil {
				v.add("data.mobile", err.Error())
			}
		}
		c.Mobile = &m
	}
	if w.Language != nil {
		if *w.Language != "da" && *w.Language != "en" && *w.Language != "" {
			v.add("data.language", "must be one of da, en")
		}
		c.Language = w.Language
	}
	if w.Address != nil {
		a := v.text("data.address", w.Address, false, 500)
		c.Address = &a
	}
	if w.Email == nil && w.Mobile == nil && w.Language == nil && w.Address == nil {
		v.add("data", "must set at least one of email, mobile, language, address")
	}
	if w.Confirmed != nil {
		switch {
		case source != Core:
			// A platform confirms an address only through the code
			// postbud sends to it (POST /v1/contacts/confirm).
			v.add("data.confirmed", "only source core may mark addresses confirmed (migration); "+
				"other platforms confirm them with the code postbud sends")
		case !nonEmpty(w.Email) && !nonEmpty(w.Mobile):
			v.add("data.confirmed", "only allowed with an email or mobile to confirm")
		default:
			c.Confirmed = *w.Confirmed
		}
	}
	return c
}

func nonEmpty(s *string) bool { return s != nil && *s != "" }

func parseDevice(b []byte, v *validator, register bool) *DeviceData {
	var w wireDevice
	if !strictDecode(b, &w, "data", v) {
		return nil
	}
	d := &DeviceData{CPR: v.cpr("data.cpr", w.CPR)}
	if w.App == nil {
		v.add("data.app", "required")
	} else if !IsApp(*w.App) {
		v.add("data.app", "must be one of "+list(apps[:]))
	} else {
		d.App = *w.App
	}
	if w.Provider == nil {
		v.add("data.provider", "required")
	} else if *w.Provider != "apns" && *w.Provider != "fcm" {
		v.add("data.provider", "must be one of apns, fcm")
	} else {
		d.Provider = *w.Provider
	}
	if w.Token == nil {
		v.add("data.token", "required")
	} else if len(*w.Token) < 8 || len(*w.Token) > 4096 || !tokenChars.MatchString(*w.Token) {
		v.add("data.token", "must be 8 to 4096 characters of A-Z a-z 0-9 _ : . -")
	} else {
		d.Token = *w.Token
	}
	d.Environment = "production"
	if w.Environment != nil {
		switch *w.Environment {
		case "production", "sandbox":
			d.Environment = *w.Environment
		default:
			v.add("data.environment", "must be one of production, sandbox")
		}
	}
	if register && d.Provider == "apns" && d.Token != "" && !isHex(d.Token) {
		v.add("data.token", "an APNs device token must be hexadecimal")
	}
	return d
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func parseExemption(b []byte, v *validator, granted bool) *ExemptionData {
	var w wireExemption
	if !strictDecode(b, &w, "data", v) {
		return nil
	}
	x := &ExemptionData{CPR: v.cpr("data.cpr", w.CPR)}
	if !granted {
		if w.ForwardUnopened != nil {
			v.add("data.forward_unopened", "only allowed in exemption.granted")
		}
		if w.ForwardAddress != nil {
			v.add("data.forward_address", "only allowed in exemption.granted")
		}
		return x
	}
	if w.ForwardUnopened != nil {
		x.ForwardUnopened = *w.ForwardUnopened
	}
	x.ForwardAddress = v.text("data.forward_address", w.ForwardAddress, false, 500)
	if x.ForwardAddress != "" && !x.ForwardUnopened {
		v.add("data.forward_address", "only allowed with forward_unopened: true")
	}
	return x
}

func parseConsent(b []byte, v *validator) *ConsentData {
	var w wireConsent
	if !strictDecode(b, &w, "data", v) {
		return nil
	}
	c := &ConsentData{CPR: v.cpr("data.cpr", w.CPR)}
	if w.Platform == nil {
		v.add("data.platform", "required")
	} else if !NeedsConsent(Platform(*w.Platform)) {
		v.add("data.platform", "must be one of "+list(consentPlatforms[:]))
	} else {
		c.Platform = Platform(*w.Platform)
	}
	return c
}

func parseAccess(b []byte, v *validator, typ Type) *AccessData {
	var w wireAccessOnce
	once := decodeOnce(b, &w, v) && w.Holder != nil
	if !once {
		w = wireAccessOnce{}
		if !strictDecode(b, &w.wireAccess, "data", v) {
			return nil
		}
	}
	a := &AccessData{CPR: v.cpr("data.cpr", w.CPR)}
	if !once { // the nested object where its errors go, in field order
		w.Holder = nested[wireRecipient](w.wireAccess.Holder, "data.holder", v)
	}
	if h := w.Holder; h != nil {
		a.HolderCPR = v.cpr("data.holder.cpr", h.CPR)
		if a.HolderCPR != "" && a.HolderCPR == a.CPR {
			v.add("data.holder.cpr", "must not be the owner's cpr")
		}
	}
	switch {
	case w.Scope == nil && typ == AccessGranted:
		v.add("data.scope", "required")
	case w.Scope == nil:
	case *w.Scope != ScopeRead:
		v.add("data.scope", "must be read")
	default:
		a.Scope = ScopeRead
	}
	if typ == AccessGranted {
		a.ExpiresAt = v.time("data.expires_at", w.ExpiresAt, false)
	} else if w.ExpiresAt != nil {
		v.add("data.expires_at", "only allowed in access.granted")
	}
	switch {
	case typ == AccessRevoked && w.Notify != nil:
		v.add("data.notify", "only allowed in access.granted and access.updated")
	case typ == AccessUpdated && w.Notify == nil:
		v.add("data.notify", "required")
	case w.Notify != nil:
		a.Notify = *w.Notify
	}
	return a
}
