package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Fixtures of the event contract tests.
const (
	fxCPR        = "010190-1234"
	fxCPRDigits  = "0101901234"
	fxMsgID      = "6F1C2A8E-3B4D-4E5F-8A9B-0C1D2E3F4A5B"
	fxMsgIDLower = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	fxAPNsToken  = "a1b2c3d4e5f6a7b8c9d0"
)

// Reasons of the contract, spelled out here so that a changed message
// fails a test.
const (
	rsRequired = "required"
	rsUnknown  = "unknown field"
	rsID       = "must be 1 to 128 characters of A-Z a-z 0-9 . _ : - starting with a letter or digit"
	rsTime     = "must be an RFC 3339 time"
	rsSource   = "must be one of core, borger.dk, digital-post-app, e-boks, mit.dk"
	rsType     = "must be one of message.received, message.read, message.unread, contact.updated, " +
		"device.registered, device.unregistered, exemption.granted, exemption.revoked, consent.granted, consent.revoked, " +
		"access.granted, access.updated, access.revoked"
	rsUUID      = "must be a UUID (MeMo messageUUID)"
	rsCPRForm   = "must be 10 digits, DDMMYY-SSSS"
	rsCPRDate   = "does not hold a real birth date"
	rsEmpty     = "must not be empty"
	rsControl   = "must not contain control characters"
	rsKind      = "must be one of public, public-special, private"
	rsPriority  = "must be one of urgent, normal, bulk"
	rsReading   = "must be one of borger.dk, digital-post-app, e-boks, mit.dk"
	rsEmail     = "must be a plain email address (name@example.dk)"
	rsEmailDom  = "must be a plain email address with a domain (name@example.dk)"
	rsEmailLen  = "must be at most 254 characters"
	rsMobChars  = "must be a phone number in E.164 form (+4512345678)"
	rsMobCC     = "must be in E.164 form with country code (+4512345678)"
	rsMobLen    = "must be in E.164 form: + then 8 to 15 digits"
	rsMobDK     = "a Danish number has 8 digits after +45"
	rsLanguage  = "must be one of da, en"
	rsNoContact = "must set at least one of email, mobile, language, address"
	rsApp       = "must be one of digital-post-app, e-boks, mit.dk"
	rsProvider  = "must be one of apns, fcm"
	rsToken     = "must be 8 to 4096 characters of A-Z a-z 0-9 _ : . -"
	rsAPNsHex   = "an APNs device token must be hexadecimal"
	rsEnv       = "must be one of production, sandbox"
	rsGrantOnly = "only allowed in exemption.granted"
	rsConsent   = "must be one of e-boks, mit.dk"
	rsFwdOnly   = "only allowed with forward_unopened: true"
	rsSingle    = "must be a single JSON object"
	rsEnd       = "malformed JSON: unexpected end"
	rsTooLarge  = "event is larger than 65536 bytes"
)

func fxJSONOf(kind string) string { return "must be a JSON " + kind }
func fxAtMost(n int) string       { return fmt.Sprintf("must be at most %d characters", n) }

// fxData returns a complete, valid data object of each event type: every
// field of the contract is set.
func fxData(typ Type) map[string]any {
	switch typ {
	case MessageReceived:
		return map[string]any{
			"message_id":           fxMsgID,
			"recipient":            map[string]any{"cpr": fxCPR},
			"sender":               map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"},
			"notification":         "Du har modtaget ny Digital Post fra Skattestyrelsen",
			"priority":             "urgent",
			"do_not_deliver_until": "2024-03-02T07:00:00+01:00",
			"reply_by":             "2024-04-01T00:00:00Z",
			"legal_notification":   true,
		}
	case MessageRead, MessageUnread:
		return map[string]any{
			"message_id": fxMsgID,
			"recipient":  map[string]any{"cpr": fxCPR},
			"platform":   "e-boks",
			"at":         "2024-03-01T10:00:00.5+01:00",
		}
	case ContactUpdated:
		return map[string]any{
			"cpr":      fxCPR,
			"email":    "Anna.Jensen@Example.DK",
			"mobile":   "87 65 43 21",
			"language": "en",
			"address":  "Vestergade 1, 8000 Aarhus C",
		}
	case DeviceRegistered, DeviceUnregistered:
		return map[string]any{
			"cpr":         fxCPR,
			"app":         "digital-post-app",
			"provider":    "apns",
			"token":       fxAPNsToken,
			"environment": "sandbox",
		}
	case ExemptionGranted:
		return map[string]any{"cpr": fxCPR, "forward_unopened": true, "forward_address": "Postboks 12, 9990 Skagen"}
	case ExemptionRevoked:
		return map[string]any{"cpr": fxCPR}
	case ConsentGranted, ConsentRevoked:
		return map[string]any{"cpr": fxCPR, "platform": "e-boks"}
	case AccessGranted:
		return map[string]any{"cpr": fxCPR, "holder": map[string]any{"cpr": "020285-2345"}, "scope": "read",
			"expires_at": "2025-03-01T00:00:00Z", "notify": true}
	case AccessUpdated:
		return map[string]any{"cpr": fxCPR, "holder": map[string]any{"cpr": "020285-2345"}, "scope": "read", "notify": false}
	case AccessRevoked:
		return map[string]any{"cpr": fxCPR, "holder": map[string]any{"cpr": "020285-2345"}, "scope": "read"}
	}
	panic("no fixture for " + string(typ))
}

// fxEvent returns a complete, valid event of typ in the wire form.
func fxEvent(typ Type) map[string]any {
	source := "core"
	if typ == MessageRead || typ == MessageUnread {
		source = "e-boks"
	}
	return map[string]any{
		"id":          "ev-1",
		"type":        string(typ),
		"occurred_at": "2024-03-01T09:30:00+01:00",
		"source":      source,
		"data":        fxData(typ),
	}
}

// fxEdited returns the JSON of the complete event of typ after edit.
func fxEdited(typ Type, edit func(ev map[string]any)) []byte {
	ev := fxEvent(typ)
	if edit != nil {
		edit(ev)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

// fxParent returns the object holding the last element of a dotted path.
func fxParent(m map[string]any, path string) (map[string]any, string) {
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		m = m[k].(map[string]any)
	}
	return m, keys[len(keys)-1]
}

func fxSet(path string, v any) func(map[string]any) {
	return func(ev map[string]any) { m, k := fxParent(ev, path); m[k] = v }
}

func fxDel(paths ...string) func(map[string]any) {
	return func(ev map[string]any) {
		for _, p := range paths {
			m, k := fxParent(ev, p)
			delete(m, k)
		}
	}
}

func fxAll(edits ...func(map[string]any)) func(map[string]any) {
	return func(ev map[string]any) {
		for _, e := range edits {
			e(ev)
		}
	}
}

// fxFieldSpec describes one field of the wire form: its dotted path, its JSON
// kind and whether the contract requires it.
type fxFieldSpec struct {
	path     string
	kind     string // "string", "boolean" or "object"
	required bool
}

var fxEnvelopeFields = []fxFieldSpec{
	{"id", "string", true},
	{"type", "string", true},
	{"occurred_at", "string", true},
	{"source", "string", true},
	{"data", "object", true},
}

var fxReadFields = []fxFieldSpec{
	{"data.message_id", "string", true},
	{"data.recipient", "object", true},
	{"data.recipient.cpr", "string", true},
	{"data.platform", "string", true},
	{"data.at", "string", true},
}

var fxDeviceFields = []fxFieldSpec{
	{"data.cpr", "string", true},
	{"data.app", "string", true},
	{"data.provider", "string", true},
	{"data.token", "string", true},
	{"data.environment", "string", false},
}

// fxDataFields lists every field of every event type's data.
var fxDataFields = map[Type][]fxFieldSpec{
	MessageReceived: {
		{"data.message_id", "string", true},
		{"data.recipient", "object", true},
		{"data.recipient.cpr", "string", true},
		{"data.sender", "object", true},
		{"data.sender.id", "string", true},
		{"data.sender.name", "string", true},
		{"data.sender.kind", "string", true},
		{"data.notification", "string", false},
		{"data.priority", "string", false},
		{"data.do_not_deliver_until", "string", false},
		{"data.reply_by", "string", false},
		{"data.legal_notification", "boolean", false},
	},
	MessageRead:   fxReadFields,
	MessageUnread: fxReadFields,
	ContactUpdated: {
		{"data.cpr", "string", true},
		{"data.email", "string", false},
		{"data.mobile", "string", false},
		{"data.language", "string", false},
		{"data.address", "string", false},
		{"data.confirmed", "boolean", false},
	},
	DeviceRegistered:   fxDeviceFields,
	DeviceUnregistered: fxDeviceFields,
	ExemptionGranted: {
		{"data.cpr", "string", true},
		{"data.forward_unopened", "boolean", false},
		{"data.forward_address", "string", false},
	},
	ExemptionRevoked: {
		{"data.cpr", "string", true},
	},
	AccessGranted: {
		{"data.cpr", "string", true},
		{"data.holder", "object", true},
		{"data.holder.cpr", "string", true},
		{"data.scope", "string", true},
		{"data.expires_at", "string", false},
		{"data.notify", "boolean", false},
	},
	AccessUpdated: {
		{"data.cpr", "string", true},
		{"data.holder", "object", true},
		{"data.holder.cpr", "string", true},
		{"data.scope", "string", false},
		{"data.notify", "boolean", true},
	},
	AccessRevoked: {
		{"data.cpr", "string", true},
		{"data.holder", "object", true},
		{"data.holder.cpr", "string", true},
		{"data.scope", "string", false},
	},
	ConsentGranted: fxConsentFields,
	ConsentRevoked: fxConsentFields,
}

var fxConsentFields = []fxFieldSpec{
	{"data.cpr", "string", true},
	{"data.platform", "string", true},
}

// fxObjects lists the JSON objects of each type's wire form ("" is the
// envelope), for the unknown-field rows.
var fxObjects = map[Type][]string{
	MessageReceived:    {"", "data", "data.recipient", "data.sender"},
	MessageRead:        {"", "data", "data.recipient"},
	MessageUnread:      {"", "data", "data.recipient"},
	ContactUpdated:     {"", "data"},
	DeviceRegistered:   {"", "data"},
	DeviceUnregistered: {"", "data"},
	ExemptionGranted:   {"", "data"},
	ExemptionRevoked:   {"", "data"},
	ConsentGranted:     {"", "data"},
	ConsentRevoked:     {"", "data"},
	AccessGranted:      {"", "data", "data.holder"},
	AccessUpdated:      {"", "data", "data.holder"},
	AccessRevoked:      {"", "data", "data.holder"},
}

// fxWrongKind is a value of another JSON type than kind.
func fxWrongKind(kind string) []any {
	switch kind {
	case "string":
		return []any{42, true, []any{"x"}, map[string]any{}}
	case "boolean":
		return []any{"true", 1}
	case "object":
		return []any{"x", 7, []any{}}
	}
	panic(kind)
}

type fxBadEventCase struct {
	name string
	in   []byte
	want []FieldError
}

func fxErrs(field, reason string) []FieldError { return []FieldError{{field, reason}} }

// fxBadValue is an invalid value of a field, for the given event types.
type fxBadValue struct {
	types  []Type
	path   string
	values []any
	reason string
}

var (
	fxMessageTypes  = []Type{MessageReceived}
	fxReadTypes     = []Type{MessageRead, MessageUnread}
	fxLetterTypes   = []Type{MessageReceived, MessageRead, MessageUnread}
	fxDeviceTypes   = []Type{DeviceRegistered, DeviceUnregistered}
	fxPlainCPRTypes = []Type{ContactUpdated, DeviceRegistered, DeviceUnregistered, ExemptionGranted, ExemptionRevoked,
		ConsentGranted, ConsentRevoked, AccessGranted, AccessUpdated, AccessRevoked}
	fxConsentTypes  = []Type{ConsentGranted, ConsentRevoked}
	fxBadCPRForm    = []any{"", "010190123", "01019012345", "010190-12345", "0101-901234", "01019O1234", "010190 1234", "010190–1234", " 0101901234", "+101901234"}
	fxBadCPRDate    = []any{"3104901234", "290201-0234", "290200-0234", "000190-1234", "320190-1234", "010090-1234", "011390-1234"}
	fxBadMessageIDs = []any{"", "not-a-uuid", "6f1c2a8e3b4d4e5f8a9b0c1d2e3f4a5b", "{6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b}", "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5g", " " + fxMsgID}
	fxLongText      = func(n int) string { return strings.Repeat("æ", n) }
	fxBadValues     = []fxBadValue{
		// Envelope, for every type.
		{Types(), "id", []any{"", "-starts-with-hyphen", ".dot", "has space", "æøå", "ev/1", strings.Repeat("a", 129)}, rsID},
		{Types(), "occurred_at", []any{"", "2024-03-01", "2024-03-01 09:30:00+01:00", "2024-03-01T09:30:00", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "yesterday", "1709281800"}, rsTime},
		{Types(), "source", []any{"", "gmail", "Core", "borger.dk "}, rsSource},

		// message.received
		{fxLetterTypes, "data.message_id", fxBadMessageIDs, rsUUID},
		{fxLetterTypes, "data.recipient.cpr", fxBadCPRForm, rsCPRForm},
		{fxLetterTypes, "data.recipient.cpr", fxBadCPRDate, rsCPRDate},
		{fxMessageTypes, "data.sender.id", []any{"", "   "}, rsEmpty},
		{fxMessageTypes, "data.sender.id", []any{strings.Repeat("s", 65)}, fxAtMost(64)},
		{fxMessageTypes, "data.sender.id", []any{"sk\tat", "skat\x00"}, rsControl},
		{fxMessageTypes, "data.sender.name", []any{"", "\n"}, rsEmpty},
		{fxMessageTypes, "data.sender.name", []any{fxLongText(101)}, fxAtMost(100)},
		{fxMessageTypes, "data.sender.name", []any{"Skatte\rstyrelsen"}, rsControl},
		{fxMessageTypes, "data.sender.kind", []any{"", "government", "Public", "public "}, rsKind},
		{fxMessageTypes, "data.notification", []any{fxLongText(151)}, fxAtMost(150)},
		{fxMessageTypes, "data.notification", []any{"Ny post\x1b[31m!"}, rsControl},
		{fxMessageTypes, "data.priority", []any{"", "high", "URGENT"}, rsPriority},
		{fxMessageTypes, "data.do_not_deliver_until", []any{"", "tomorrow", "2024-03-02"}, rsTime},
		{fxMessageTypes, "data.reply_by", []any{"2024-02-30T00:00:00Z", "2024-04-01T00:00:00"}, rsTime},

		// message.read, message.unread
		{fxReadTypes, "data.platform", []any{"", "core", "gmail", "E-Boks"}, rsReading},
		{fxReadTypes, "data.at", []any{"", "10:00", "2024-03-01T25:00:00Z"}, rsTime},

		// The CPR of the other types.
		{fxPlainCPRTypes, "data.cpr", fxBadCPRForm, rsCPRForm},
		{fxPlainCPRTypes, "data.cpr", fxBadCPRDate, rsCPRDate},

		// contact.updated
		{[]Type{ContactUpdated}, "data.email", []any{"anna", "anna@", "@eksempel.dk", "Anna <anna.jensen@example.dk>",
			"<anna.jensen@example.dk>", " anna.jensen@example.dk", "anna.jensen@example..dk", "anna.jensen@example.dk, bo@example.dk"}, rsEmail},
		{[]Type{ContactUpdated}, "data.email", []any{"anna.jensen@localhost"}, rsEmailDom},
		{[]Type{ContactUpdated}, "data.email", []any{strings.Repeat("a", 64) + "@" + strings.Repeat("b", 187) + ".dk"}, rsEmailLen},
		{[]Type{ContactUpdated}, "data.mobile", []any{"call me", "8765x4321", "8765 4321 +", "++4587654321", "８７６５４３２１"}, rsMobChars},
		{[]Type{ContactUpdated}, "data.mobile", []any{"4587654321", "8765432", "987654321"}, rsMobCC},
		{[]Type{ContactUpdated}, "data.mobile", []any{"+1987", "+ 1", "+0987654321", "+9876543210987654", "0045"}, rsMobLen},
		{[]Type{ContactUpdated}, "data.mobile", []any{"+45 8765 432", "+45987654321", "00 45 8765 43"}, rsMobDK},
		{[]Type{ContactUpdated}, "data.language", []any{"de", "DA", "dansk"}, rsLanguage},
		{[]Type{ContactUpdated}, "data.address", []any{strings.Repeat("a", 501)}, fxAtMost(500)},
		{[]Type{ContactUpdated}, "data.address", []any{"Vestergade 1\x07"}, rsControl},

		// consent.granted, consent.revoked: only the platforms that need it.
		{fxConsentTypes, "data.platform", []any{"", "borger.dk", "digital-post-app", "core", "E-Boks", "eboks"}, rsConsent},

		// device.registered, device.unregistered
		{fxDeviceTypes, "data.app", []any{"", "borger.dk", "core", "E-Boks"}, rsApp},
		{fxDeviceTypes, "data.provider", []any{"", "huawei", "APNS"}, rsProvider},
		{fxDeviceTypes, "data.token", []any{"", "a1b2c3d", "a1b2 c3d4 e5f6", "a1b2c3d4/e5f6", "a1b2c3d4e5f6æ", strings.Repeat("a", 4097)}, rsToken},
		{[]Type{DeviceRegistered}, "data.token", []any{"fcm-style:token_1", "a1b2c3d4e5f6a7bg"}, rsAPNsHex},
		{fxDeviceTypes, "data.environment", []any{"", "staging", "Production"}, rsEnv},

		// access.*
		{[]Type{AccessGranted, AccessUpdated, AccessRevoked}, "data.holder.cpr", []any{fxCPR, fxCPRDigits}, "must not be the owner's cpr"},
		{[]Type{AccessGranted, AccessUpdated, AccessRevoked}, "data.holder.cpr", fxBadCPRForm, rsCPRForm},
		{[]Type{AccessGranted, AccessUpdated, AccessRevoked}, "data.scope", []any{"", "write", "Read"}, "must be read"},
		{[]Type{AccessGranted}, "data.expires_at", []any{"", "tomorrow"}, rsTime},
		{[]Type{AccessUpdated, AccessRevoked}, "data.expires_at", []any{"2025-03-01T00:00:00Z"}, "only allowed in access.granted"},
		{[]Type{AccessRevoked}, "data.notify", []any{true, false}, "only allowed in access.granted and access.updated"},
		{[]Type{MessageRead, MessageUnread}, "data.reader", []any{"x", 3}, "must be a JSON object"},

		// exemption.granted
		{[]Type{ExemptionGranted}, "data.forward_address", []any{strings.Repeat("a", 501)}, fxAtMost(500)},
		{[]Type{ExemptionGranted}, "data.forward_address", []any{"Postboks\x0c12"}, rsControl},
	}
)

// fxBadEventCases builds the table of refused events: for each field of each
// type, missing, null, of a wrong JSON type, of an invalid value, and an
// unknown field in each object; then the cases that need a hand-made input.
func fxBadEventCases() []fxBadEventCase {
	var cases []fxBadEventCase
	add := func(name string, in []byte, want []FieldError) {
		cases = append(cases, fxBadEventCase{name, in, want})
	}
	for _, typ := range Types() {
		fields := append(append([]fxFieldSpec(nil), fxEnvelopeFields...), fxDataFields[typ]...)
		for _, f := range fields {
			if f.required {
				add(fmt.Sprintf("%s/%s/missing", typ, f.path), fxEdited(typ, fxDel(f.path)), fxErrs(f.path, rsRequired))
				add(fmt.Sprintf("%s/%s/null", typ, f.path), fxEdited(typ, fxSet(f.path, nil)), fxErrs(f.path, rsRequired))
			}
			for i, v := range fxWrongKind(f.kind) {
				add(fmt.Sprintf("%s/%s/wrong-type-%d", typ, f.path, i), fxEdited(typ, fxSet(f.path, v)), fxErrs(f.path, fxJSONOf(f.kind)))
			}
		}
		for _, obj := range fxObjects[typ] {
			path := "extra"
			if obj != "" {
				path = obj + ".extra"
			}
			add(fmt.Sprintf("%s/%s/unknown-field", typ, path), fxEdited(typ, fxSet(path, "x")), fxErrs(path, rsUnknown))
		}
	}
	for _, bv := range fxBadValues {
		for _, typ := range bv.types {
			for i, v := range bv.values {
				add(fmt.Sprintf("%s/%s/invalid-%d", typ, bv.path, i), fxEdited(typ, fxSet(bv.path, v)), fxErrs(bv.path, bv.reason))
			}
		}
	}

	// type: an invalid value stops validation before the data.
	for i, v := range []string{"", "message.deleted", "Message.Received", "message"} {
		add(fmt.Sprintf("type/invalid-%d", i), fxEdited(MessageReceived, fxSet("type", v)), fxErrs("type", rsType))
	}

	// contact.updated must change something; the CPR alone is not enough.
	add("contact.updated/nothing-set", fxEdited(ContactUpdated, fxDel("data.email", "data.mobile", "data.language", "data.address")),
		fxErrs("data", rsNoContact))
	add("contact.updated/nothing-set-and-no-cpr", fxEdited(ContactUpdated, fxDel("data.cpr", "data.email", "data.mobile", "data.language", "data.address")),
		[]FieldError{{"data.cpr", rsRequired}, {"data", rsNoContact}})
	add("contact.updated/email-null-only", fxEdited(ContactUpdated, fxAll(fxDel("data.mobile", "data.language", "data.address"), fxSet("data.email", nil))),
		fxErrs("data", rsNoContact))

	// exemption.granted: an address only with forward_unopened.
	add("exemption.granted/forward_address-without-forward_unopened", fxEdited(ExemptionGranted, fxDel("data.forward_unopened")),
		fxErrs("data.forward_address", rsFwdOnly))
	add("exemption.granted/forward_address-with-forward_unopened-false", fxEdited(ExemptionGranted, fxSet("data.forward_unopened", false)),
		fxErrs("data.forward_address", rsFwdOnly))

	// data.reader is an object with the reader's cpr.
	add("message.read/reader-bad-cpr", fxEdited(MessageRead, fxSet("data.reader", map[string]any{"cpr": "0101-901234"})),
		fxErrs("data.reader.cpr", rsCPRForm))
	add("message.read/reader-no-cpr", fxEdited(MessageRead, fxSet("data.reader", map[string]any{})),
		fxErrs("data.reader.cpr", rsRequired))
	add("message.read/reader-unknown-field", fxEdited(MessageRead, fxSet("data.reader", map[string]any{"cpr": "020285-2345", "name": "x"})),
		fxErrs("data.reader.name", rsUnknown))
	// exemption.revoked carries no forwarding.
	add("exemption.revoked/forward_unopened", fxEdited(ExemptionRevoked, fxSet("data.forward_unopened", false)),
		fxErrs("data.forward_unopened", rsGrantOnly))
	add("exemption.revoked/forward_address", fxEdited(ExemptionRevoked, fxSet("data.forward_address", "")),
		fxErrs("data.forward_address", rsGrantOnly))
	add("exemption.revoked/both", fxEdited(ExemptionRevoked, fxAll(fxSet("data.forward_unopened", true), fxSet("data.forward_address", "Postboks 12"))),
		[]FieldError{{"data.forward_unopened", rsGrantOnly}, {"data.forward_address", rsGrantOnly}})
	add("exemption.revoked/forward_unopened-wrong-type", fxEdited(ExemptionRevoked, fxSet("data.forward_unopened", "yes")),
		fxErrs("data.forward_unopened", fxJSONOf("boolean")))

	// Several bad fields at once are all reported, envelope first.
	add("several/message.received", fxEdited(MessageReceived, fxAll(
		fxSet("id", ""), fxSet("source", "gmail"), fxSet("data.message_id", "x"), fxSet("data.recipient.cpr", "3104901234"),
		fxDel("data.sender.kind"), fxSet("data.sender.name", " "), fxSet("data.priority", "high"), fxSet("data.reply_by", "soon"))),
		[]FieldError{
			{"id", rsID}, {"source", rsSource}, {"data.message_id", rsUUID}, {"data.recipient.cpr", rsCPRDate},
			{"data.sender.name", rsEmpty}, {"data.sender.kind", rsRequired}, {"data.priority", rsPriority}, {"data.reply_by", rsTime},
		})
	add("several/message.read", fxEdited(MessageRead, fxAll(
		fxSet("occurred_at", "now"), fxDel("data.message_id"), fxSet("data.recipient", map[string]any{}), fxSet("data.platform", "core"), fxDel("data.at"))),
		[]FieldError{{"occurred_at", rsTime}, {"data.message_id", rsRequired}, {"data.recipient.cpr", rsRequired}, {"data.platform", rsReading}, {"data.at", rsRequired}})
	add("several/nested-objects-decoded-apart", fxEdited(MessageReceived, fxAll(
		fxSet("data.recipient.cpr", 101901234), fxSet("data.sender.extra", "x"), fxSet("data.priority", "high"))),
		[]FieldError{{"data.recipient.cpr", fxJSONOf("string")}, {"data.sender.extra", rsUnknown}, {"data.priority", rsPriority}})
	add("several/message.received-no-recipient-no-sender", fxEdited(MessageReceived, fxDel("data.recipient", "data.sender")),
		[]FieldError{{"data.recipient", rsRequired}, {"data.sender", rsRequired}})
	// A nested object's errors stand where the object does among the
	// fields, however the data was decoded.
	add("several/message_id-before-a-missing-recipient", fxEdited(MessageReceived, fxAll(fxSet("data.message_id", "x"), fxDel("data.recipient"))),
		[]FieldError{{"data.message_id", rsUUID}, {"data.recipient", rsRequired}})
	add("several/message.read-platform-before-a-bad-reader", fxEdited(MessageRead, fxAll(fxSet("data.platform", "core"), fxSet("data.reader", 3))),
		[]FieldError{{"data.platform", rsReading}, {"data.reader", fxJSONOf("object")}})
	add("several/access.granted-cpr-before-a-null-holder", fxEdited(AccessGranted, fxAll(fxDel("data.cpr"), fxSet("data.holder", nil))),
		[]FieldError{{"data.cpr", rsRequired}, {"data.holder", rsRequired}})
	add("several/contact.updated", fxEdited(ContactUpdated, fxAll(
		fxSet("data.cpr", "01019O1234"), fxSet("data.email", "anna"), fxSet("data.mobile", "call me"), fxSet("data.language", "de"), fxSet("data.address", strings.Repeat("a", 501)))),
		[]FieldError{{"data.cpr", rsCPRForm}, {"data.email", rsEmail}, {"data.mobile", rsMobChars}, {"data.language", rsLanguage}, {"data.address", fxAtMost(500)}})
	add("several/device.registered", fxEdited(DeviceRegistered, fxAll(
		fxDel("data.cpr"), fxSet("data.app", "borger.dk"), fxDel("data.provider"), fxSet("data.token", "short"), fxSet("data.environment", "staging"))),
		[]FieldError{{"data.cpr", rsRequired}, {"data.app", rsApp}, {"data.provider", rsRequired}, {"data.token", rsToken}, {"data.environment", rsEnv}})
	add("several/envelope", fxEdited(ExemptionRevoked, fxDel("id", "occurred_at", "source", "type")),
		[]FieldError{{"id", rsRequired}, {"occurred_at", rsRequired}, {"source", rsRequired}, {"type", rsRequired}})
	add("several/envelope-and-missing-data", fxEdited(ExemptionRevoked, fxAll(fxSet("id", "ev 1"), fxDel("data"))),
		[]FieldError{{"id", rsID}, {"data", rsRequired}})

	// Not one JSON object.
	valid := fxEdited(MessageReceived, nil)
	add("raw/empty", nil, fxErrs("", rsEnd))
	add("raw/whitespace", []byte(" \n\t"), fxErrs("", rsEnd))
	add("raw/truncated", valid[:len(valid)-1], fxErrs("", rsEnd))
	add("raw/syntax", []byte(`{"id": ev}`), fxErrs("", "malformed JSON at byte 8"))
	add("raw/syntax-key", []byte(`{"id" "ev-1"}`), fxErrs("", "malformed JSON at byte 7"))
	add("raw/array", []byte(`[]`), fxErrs("", fxJSONOf("object")))
	add("raw/string", []byte(`"event"`), fxErrs("", fxJSONOf("object")))
	add("raw/number", []byte(`42`), fxErrs("", fxJSONOf("object")))
	add("raw/null", []byte(`null`),
		[]FieldError{{"id", rsRequired}, {"occurred_at", rsRequired}, {"source", rsRequired}, {"type", rsRequired}})
	add("raw/data-syntax", []byte(`{"id":"ev-1","type":"exemption.revoked","occurred_at":"2024-03-01T09:30:00Z","source":"core","data":{"cpr" 1}}`),
		fxErrs("", "malformed JSON at byte 108")) // the bad byte, counted from 1

	// Trailing data after the object is refused.
	add("trailing/object", append(append([]byte(nil), valid...), "{}"...), fxErrs("", rsSingle))
	add("trailing/second-event", append(append([]byte(nil), valid...), valid...), fxErrs("", rsSingle))
	add("trailing/garbage", append(append([]byte(nil), valid...), " x"...), fxErrs("", rsSingle))
	add("trailing/bracket", append(append([]byte(nil), valid...), "]"...), fxErrs("", rsSingle))
	add("trailing/null", append(append([]byte(nil), valid...), " null"...), fxErrs("", rsSingle))

	// An event over MaxEventBytes is refused before it is decoded.
	add("size/one-byte-over", fxPadded(valid, MaxEventBytes+1), fxErrs("", rsTooLarge))
	add("size/long-notification", fxEdited(MessageReceived, fxSet("data.notification", strings.Repeat("a", MaxEventBytes))), fxErrs("", rsTooLarge))
	return cases
}

// fxPadded returns b followed by spaces up to n bytes.
func fxPadded(b []byte, n int) []byte {
	return append(append([]byte(nil), b...), bytes.Repeat([]byte(" "), n-len(b))...)
}

func TestParseRefusesBadFields(t *testing.T) {
	t.Parallel()
	for _, tc := range fxBadEventCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev, err := Parse(tc.in)
			if ev != nil {
				t.Errorf("Parse returned an event with error %v", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error = %v (%T), want *ValidationError", err, err)
			}
			if diff := cmp.Diff(tc.want, ve.Errors); diff != "" {
				t.Errorf("field errors (-want +got):\n%s\ninput: %.300s", diff, tc.in)
			}
		})
	}
}

// TestParseReasonsHoldNoPersonalData checks, over every row of the
// tables, that no Reason quotes a CPR number, email address or phone number
// given in the event.
func TestParseReasonsHoldNoPersonalData(t *testing.T) {
	t.Parallel()
	var inputs [][]byte
	for _, tc := range fxBadEventCases() {
		inputs = append(inputs, tc.in)
	}
	for _, tc := range fxGoodEventCases() {
		inputs = append(inputs, tc.in)
	}
	checked := 0
	for _, in := range inputs {
		secrets := fxPersonalValues(in)
		_, err := Parse(in)
		var ve *ValidationError
		if !errors.As(err, &ve) {
			continue
		}
		for _, f := range ve.Errors {
			for _, s := range secrets {
				checked++
				if strings.Contains(f.Reason, s) {
					t.Errorf("%s: reason %q quotes the personal value %q", f.Field, f.Reason, s)
				}
			}
		}
	}
	// Guard against a vacuous pass: the tables do give personal data with
	// refused events.
	if checked < 500 {
		t.Fatalf("only %d reason/value pairs checked", checked)
	}
}

// fxPersonalValues returns the CPR numbers, email addresses and phone
// numbers given in an event, with their digits alone where that is a
// different form.
func fxPersonalValues(in []byte) []string {
	var v any
	if json.Unmarshal(in, &v) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "cpr" || k == "email" || k == "mobile") && s != "" {
					out = append(out, s)
					if d := fxDigitsOnly(s); len(d) >= 8 && d != s {
						out = append(out, d)
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return out
}

func fxDigitsOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

type fxGoodEventCase struct {
	name string
	in   []byte
	want *Event
}

func fxPtr[T any](v T) *T { return &v }

func fxTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// fxGoodEventCases are valid events of every type with the event each parses
// to: values normalised and defaults filled in.
func fxGoodEventCases() []fxGoodEventCase {
	occurred := fxTime("2024-03-01T09:30:00+01:00")
	envelope := func(typ Type, source Platform) Event {
		return Event{ID: "ev-1", Type: typ, OccurredAt: occurred, Source: source}
	}
	fullMessage := envelope(MessageReceived, Core)
	fullMessage.Message = &MessageData{
		MessageID:         fxMsgIDLower,
		CPR:               fxCPRDigits,
		SenderID:          "skat",
		SenderName:        "Skattestyrelsen",
		SenderKind:        SenderPublic,
		Notification:      "Du har modtaget ny Digital Post fra Skattestyrelsen",
		Priority:          Urgent,
		DoNotDeliverUntil: fxTime("2024-03-02T06:00:00Z"),
		ReplyBy:           fxTime("2024-04-01T00:00:00Z"),
		LegalNotification: true,
	}
	minimalMessage := envelope(MessageReceived, Core)
	minimalMessage.Message = &MessageData{
		MessageID: fxMsgIDLower, CPR: fxCPRDigits,
		SenderID: "skat", SenderName: "Skattestyrelsen", SenderKind: SenderPublic,
		Priority: Normal,
	}
	with := func(e Event, f func(*Event)) *Event { f(&e); return &e }
	msg := func(f func(*MessageData)) *Event {
		return with(minimalMessage, func(e *Event) {
			m := *e.Message
			f(&m)
			e.Message = &m
		})
	}
	minimal := fxDel("data.notification", "data.priority", "data.do_not_deliver_until", "data.reply_by", "data.legal_notification")

	read := func(typ Type) *Event {
		e := envelope(typ, EBoks)
		e.Read = &ReadData{MessageID: fxMsgIDLower, CPR: fxCPRDigits, Platform: EBoks, At: fxTime("2024-03-01T09:00:00.5Z")}
		return &e
	}
	contact := func(c ContactData) *Event {
		e := envelope(ContactUpdated, Core)
		c.CPR = fxCPRDigits
		e.Contact = &c
		return &e
	}
	device := func(typ Type, d DeviceData) *Event {
		e := envelope(typ, Core)
		d.CPR = fxCPRDigits
		e.Device = &d
		return &e
	}
	exemption := func(typ Type, x ExemptionData) *Event {
		e := envelope(typ, Core)
		x.CPR = fxCPRDigits
		e.Exemption = &x
		return &e
	}
	consent := func(typ Type, p Platform) *Event {
		e := envelope(typ, Core)
		e.Consent = &ConsentData{CPR: fxCPRDigits, Platform: p}
		return &e
	}
	access := func(typ Type, a AccessData) *Event {
		e := envelope(typ, Core)
		a.CPR, a.HolderCPR = fxCPRDigits, "0202852345"
		e.Access = &a
		return &e
	}
	onlyContact := func(field string, v any) []byte {
		return fxEdited(ContactUpdated, fxAll(fxDel("data.email", "data.mobile", "data.language", "data.address"), fxSet(field, v)))
	}

	cases := []fxGoodEventCase{
		{"message.received/full", fxEdited(MessageReceived, nil), &fullMessage},
		{"message.received/minimal-defaults", fxEdited(MessageReceived, minimal), &minimalMessage},
		{"message.received/cpr-without-hyphen", fxEdited(MessageReceived, fxAll(minimal, fxSet("data.recipient.cpr", fxCPRDigits))), &minimalMessage},
		{"message.received/message_id-lower-cased", fxEdited(MessageReceived, fxAll(minimal, fxSet("data.message_id", "6F1c2A8e-3b4D-4E5F-8a9B-0C1D2E3F4A5B"))), &minimalMessage},
		{"message.received/texts-trimmed", fxEdited(MessageReceived, fxAll(minimal,
			fxSet("data.sender", map[string]any{"id": " skat ", "name": "\tSkattestyrelsen\n", "kind": "public"}),
			fxSet("data.notification", "  Ny post\nfra Skat  "))),
			msg(func(m *MessageData) { m.Notification = "Ny post\nfra Skat" })},
		{"message.received/notification-150-runes", fxEdited(MessageReceived, fxAll(minimal, fxSet("data.notification", fxLongText(150)))),
			msg(func(m *MessageData) { m.Notification = fxLongText(150) })},
		{"message.received/notification-empty", fxEdited(MessageReceived, fxAll(minimal, fxSet("data.notification", ""))), &minimalMessage},
		{"message.received/notification-null", fxEdited(MessageReceived, fxAll(minimal, fxSet("data.notification", nil))), &minimalMessage},
		{"message.received/priority-bulk", fxEdited(MessageReceived, fxAll(minimal, fxSet("data.priority", "bulk"))),
			msg(func(m *MessageData) { m.Priority = Bulk })},
		{"message.received/priority-normal", fxEdited(MessageReceived, fxAll(minimal, fxSet("data.priority", "normal"))), &minimalMessage},
		{"message.received/public-special", fxEdited(MessageReceived, fxAll(minimal, fxSet("data.sender.kind", "public-special"))),
			msg(func(m *MessageData) { m.SenderKind = SenderPublicSpecial })},
		{"message.received/private", fxEdited(MessageReceived, fxAll(minimal, fxSet("data.sender.kind", "private"))),
			msg(func(m *MessageData) { m.SenderKind = SenderPrivate })},
		{"message.received/legal_notification-false", fxEdited(MessageReceived, fxAll(minimal, fxSet("data.legal_notification", false))), &minimalMessage},
		{"message.received/sender-64-and-100", fxEdited(MessageReceived, fxAll(minimal,
			fxSet("data.sender.id", strings.Repeat("s", 64)), fxSet("data.sender.name", fxLongText(100)))),
			msg(func(m *MessageData) { m.SenderID = strings.Repeat("s", 64); m.SenderName = fxLongText(100) })},
		{"message.received/cpr-2000s", fxEdited(MessageReceived, fxAll(minimal, fxSet("data.recipient.cpr", "290200-4234"))),
			msg(func(m *MessageData) { m.CPR = "2902004234" })},
		{"message.received/cpr-failing-modulus-11", fxEdited(MessageReceived, fxAll(minimal, fxSet("data.recipient.cpr", "010190-1235"))),
			msg(func(m *MessageData) { m.CPR = "0101901235" })},

		{"message.read", fxEdited(MessageRead, nil), read(MessageRead)},
		{"message.unread", fxEdited(MessageUnread, nil), read(MessageUnread)},
		{"message.read/source-other-than-platform", fxEdited(MessageRead, fxAll(fxSet("source", "core"), fxSet("data.platform", "mit.dk"))),
			with(*read(MessageRead), func(e *Event) {
				e.Source = Core
				e.Read = &ReadData{MessageID: fxMsgIDLower, CPR: fxCPRDigits, Platform: MitDK, At: e.Read.At}
			})},

		{"contact.updated/full", fxEdited(ContactUpdated, nil), contact(ContactData{
			Email: fxPtr("Anna.Jensen@example.dk"), Mobile: fxPtr("+4587654321"), Language: fxPtr("en"), Address: fxPtr("Vestergade 1, 8000 Aarhus C")})},
		{"contact.updated/mobile-spaced", onlyContact("data.mobile", "20 12 34 56"), contact(ContactData{Mobile: fxPtr("+4520123456")})},
		{"contact.updated/mobile-0045", onlyContact("data.mobile", "004520123456"), contact(ContactData{Mobile: fxPtr("+4520123456")})},
		{"contact.updated/mobile-e164", onlyContact("data.mobile", "+45 20 12 34 56"), contact(ContactData{Mobile: fxPtr("+4520123456")})},
		{"contact.updated/mobile-foreign", onlyContact("data.mobile", "+46 70-123 45 67"), contact(ContactData{Mobile: fxPtr("+46701234567")})},
		{"contact.updated/mobile-removed", onlyContact("data.mobile", ""), contact(ContactData{Mobile: fxPtr("")})},
		{"contact.updated/email-domain-lower-cased", onlyContact("data.email", "ANNA@EXAMPLE.DK"), contact(ContactData{Email: fxPtr("ANNA@example.dk")})},
		{"contact.updated/email-removed", onlyContact("data.email", ""), contact(ContactData{Email: fxPtr("")})},
		{"contact.updated/language-da", onlyContact("data.language", "da"), contact(ContactData{Language: fxPtr("da")})},
		{"contact.updated/language-removed", onlyContact("data.language", ""), contact(ContactData{Language: fxPtr("")})},
		{"contact.updated/address-trimmed", onlyContact("data.address", "  Vestergade 1\n8000 Aarhus C "), contact(ContactData{Address: fxPtr("Vestergade 1\n8000 Aarhus C")})},
		{"contact.updated/address-removed", onlyContact("data.address", ""), contact(ContactData{Address: fxPtr("")})},
		{"contact.updated/null-fields-left-alone", fxEdited(ContactUpdated, fxAll(fxSet("data.email", nil), fxSet("data.mobile", nil), fxSet("data.address", nil))),
			contact(ContactData{Language: fxPtr("en")})},

		{"device.registered/apns", fxEdited(DeviceRegistered, nil), device(DeviceRegistered,
			DeviceData{App: "digital-post-app", Provider: "apns", Token: fxAPNsToken, Environment: "sandbox"})},
		{"device.registered/environment-default", fxEdited(DeviceRegistered, fxDel("data.environment")), device(DeviceRegistered,
			DeviceData{App: "digital-post-app", Provider: "apns", Token: fxAPNsToken, Environment: "production"})},
		{"device.registered/apns-upper-hex", fxEdited(DeviceRegistered, fxSet("data.token", "A1B2C3D4E5F6A7B8")), device(DeviceRegistered,
			DeviceData{App: "digital-post-app", Provider: "apns", Token: "A1B2C3D4E5F6A7B8", Environment: "sandbox"})},
		{"device.registered/fcm", fxEdited(DeviceRegistered, fxAll(fxSet("data.app", "e-boks"), fxSet("data.provider", "fcm"),
			fxSet("data.token", "fcm-token:AbC_12.3"), fxSet("data.environment", "production"))), device(DeviceRegistered,
			DeviceData{App: "e-boks", Provider: "fcm", Token: "fcm-token:AbC_12.3", Environment: "production"})},
		{"device.registered/token-4096", fxEdited(DeviceRegistered, fxAll(fxSet("data.app", "mit.dk"), fxSet("data.token", strings.Repeat("f", 4096)))),
			device(DeviceRegistered, DeviceData{App: "mit.dk", Provider: "apns", Token: strings.Repeat("f", 4096), Environment: "sandbox"})},
		{"device.unregistered/apns-non-hex", fxEdited(DeviceUnregistered, fxSet("data.token", "old:token-1")), device(DeviceUnregistered,
			DeviceData{App: "digital-post-app", Provider: "apns", Token: "old:token-1", Environment: "sandbox"})},
		{"device.unregistered/environment-default", fxEdited(DeviceUnregistered, fxDel("data.environment")), device(DeviceUnregistered,
			DeviceData{App: "digital-post-app", Provider: "apns", Token: fxAPNsToken, Environment: "production"})},

		{"exemption.granted/forward-to-address", fxEdited(ExemptionGranted, nil), exemption(ExemptionGranted,
			ExemptionData{ForwardUnopened: true, ForwardAddress: "Postboks 12, 9990 Skagen"})},
		{"exemption.granted/forward-to-registered-address", fxEdited(ExemptionGranted, fxDel("data.forward_address")), exemption(ExemptionGranted,
			ExemptionData{ForwardUnopened: true})},
		{"exemption.granted/minimal", fxEdited(ExemptionGranted, fxDel("data.forward_unopened", "data.forward_address")), exemption(ExemptionGranted,
			ExemptionData{})},
		{"exemption.granted/empty-address", fxEdited(ExemptionGranted, fxAll(fxSet("data.forward_unopened", false), fxSet("data.forward_address", " "))), exemption(ExemptionGranted,
			ExemptionData{})},
		{"exemption.revoked", fxEdited(ExemptionRevoked, nil), exemption(ExemptionRevoked, ExemptionData{})},
		{"access.granted", fxEdited(AccessGranted, nil), access(AccessGranted, AccessData{Scope: ScopeRead,
			ExpiresAt: fxTime("2025-03-01T00:00:00Z"), Notify: true})},
		{"access.granted/minimal", fxEdited(AccessGranted, fxDel("data.expires_at", "data.notify")), access(AccessGranted, AccessData{Scope: ScopeRead})},
		{"access.updated", fxEdited(AccessUpdated, nil), access(AccessUpdated, AccessData{Scope: ScopeRead})},
		{"access.updated/notify", fxEdited(AccessUpdated, fxAll(fxDel("data.scope"), fxSet("data.notify", true))), access(AccessUpdated, AccessData{Notify: true})},
		{"access.revoked", fxEdited(AccessRevoked, nil), access(AccessRevoked, AccessData{Scope: ScopeRead})},
		{"message.read/reader", fxEdited(MessageRead, fxSet("data.reader", map[string]any{"cpr": "020285-2345"})),
			with(*read(MessageRead), func(e *Event) { r := *e.Read; r.ReaderCPR = "0202852345"; e.Read = &r })},
		{"message.read/reader-is-recipient", fxEdited(MessageRead, fxSet("data.reader", map[string]any{"cpr": fxCPR})), read(MessageRead)},
		{"exemption.revoked/null-forwarding", fxEdited(ExemptionRevoked, fxAll(fxSet("data.forward_unopened", nil), fxSet("data.forward_address", nil))),
			exemption(ExemptionRevoked, ExemptionData{})},

		{"consent.granted", fxEdited(ConsentGranted, nil), consent(ConsentGranted, EBoks)},
		{"consent.granted/mit.dk", fxEdited(ConsentGranted, fxSet("data.platform", "mit.dk")), consent(ConsentGranted, MitDK)},
		{"consent.revoked", fxEdited(ConsentRevoked, nil), consent(ConsentRevoked, EBoks)},
		{"consent.revoked/from-the-platform", fxEdited(ConsentRevoked, fxSet("source", "e-boks")),
			with(*consent(ConsentRevoked, EBoks), func(e *Event) { e.Source = EBoks })},

		{"envelope/id-128", fxEdited(ExemptionRevoked, fxSet("id", strings.Repeat("a", 128))),
			with(*exemption(ExemptionRevoked, ExemptionData{}), func(e *Event) { e.ID = strings.Repeat("a", 128) })},
		{"envelope/id-charset", fxEdited(ExemptionRevoked, fxSet("id", "9a.b_c:d-E")),
			with(*exemption(ExemptionRevoked, ExemptionData{}), func(e *Event) { e.ID = "9a.b_c:d-E" })},
		{"envelope/occurred_at-utc-nanos", fxEdited(ExemptionRevoked, fxSet("occurred_at", "2024-03-01T08:30:00.123456789Z")),
			with(*exemption(ExemptionRevoked, ExemptionData{}), func(e *Event) { e.OccurredAt = time.Date(2024, 3, 1, 8, 30, 0, 123456789, time.UTC) })},
		{"envelope/key-order", []byte(`{"data":{"cpr":"0101901234"},"source":"core","occurred_at":"2024-03-01T09:30:00+01:00","type":"exemption.revoked","id":"ev-1"}`),
			exemption(ExemptionRevoked, ExemptionData{})},
		{"envelope/trailing-whitespace", append(fxEdited(ExemptionRevoked, nil), " \r\n\t"...), exemption(ExemptionRevoked, ExemptionData{})},
		{"envelope/exactly-MaxEventBytes", fxPadded(fxEdited(ExemptionRevoked, nil), MaxEventBytes), exemption(ExemptionRevoked, ExemptionData{})},
	}
	for _, p := range Platforms() {
		cases = append(cases, fxGoodEventCase{"envelope/source-" + string(p), fxEdited(ExemptionRevoked, fxSet("source", string(p))),
			with(*exemption(ExemptionRevoked, ExemptionData{}), func(e *Event) { e.Source = p })})
	}
	for _, p := range ReadingPlatforms() {
		cases = append(cases, fxGoodEventCase{"message.unread/platform-" + string(p), fxEdited(MessageUnread, fxSet("data.platform", string(p))),
			with(*read(MessageUnread), func(e *Event) {
				e.Read = &ReadData{MessageID: fxMsgIDLower, CPR: fxCPRDigits, Platform: p, At: e.Read.At}
			})})
	}
	for _, app := range []string{"digital-post-app", "e-boks", "mit.dk"} {
		cases = append(cases, fxGoodEventCase{"device.unregistered/app-" + app, fxEdited(DeviceUnregistered, fxSet("data.app", app)),
			device(DeviceUnregistered, DeviceData{App: app, Provider: "apns", Token: fxAPNsToken, Environment: "sandbox"})})
	}
	return cases
}

func TestParseAcceptsValidEvents(t *testing.T) {
	t.Parallel()
	covered := map[Type]bool{}
	for _, tc := range fxGoodEventCases() {
		covered[tc.want.Type] = true
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse: %v\ninput: %.300s", err, tc.in)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
	for _, typ := range Types() {
		if !covered[typ] {
			t.Errorf("no valid %s event in the table", typ)
		}
	}
}

func TestParseTableCoversEveryField(t *testing.T) {
	t.Parallel()
	// Every field of the complete fixtures has a spec, so a field added to
	// a fixture without rows fails here.
	for _, typ := range Types() {
		specs := map[string]bool{}
		for _, f := range append(append([]fxFieldSpec(nil), fxEnvelopeFields...), fxDataFields[typ]...) {
			specs[f.path] = true
		}
		var walk func(prefix string, m map[string]any)
		walk = func(prefix string, m map[string]any) {
			for k, v := range m {
				path := k
				if prefix != "" {
					path = prefix + "." + k
				}
				if !specs[path] {
					t.Errorf("%s: field %s has no spec", typ, path)
				}
				if sub, ok := v.(map[string]any); ok {
					walk(path, sub)
				}
			}
		}
		walk("", fxEvent(typ))
	}
}

func TestParseErrorNamesEveryField(t *testing.T) {
	t.Parallel()
	_, err := Parse(fxEdited(DeviceRegistered, fxAll(fxSet("data.app", "x"), fxSet("data.provider", "y"))))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T), want *ValidationError", err, err)
	}
	want := "invalid event: data.app: " + rsApp + "; data.provider: " + rsProvider
	if got := err.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestParseCitizen(t *testing.T) {
	t.Parallel()
	for _, typ := range Types() {
		ev, err := Parse(fxEdited(typ, nil))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if got := ev.Citizen(); got != CPR(fxCPRDigits) {
			t.Errorf("%s: Citizen() = %s (%q), want the parsed CPR", typ, got, got.Digits())
		}
	}
	if got := (&Event{}).Citizen(); got != "" {
		t.Errorf("Citizen() of an empty event = %q, want empty", got.Digits())
	}
}

// TestEventFormatsRedactCPR checks that printing a parsed event's data
// with %v or %+v does not show the CPR.
func TestEventFormatsRedactCPR(t *testing.T) {
	t.Parallel()
	ev, err := Parse(fxEdited(MessageReceived, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprintf("%v", *ev.Message), fmt.Sprintf("%+v", *ev.Message), fmt.Sprint(ev.Citizen())} {
		if strings.Contains(s, fxCPRDigits) {
			t.Errorf("formatted data holds the CPR: %s", s)
		}
		if !strings.Contains(s, "[cpr]") {
			t.Errorf("formatted data has no [cpr] placeholder: %s", s)
		}
	}
}

// fxFuzzSeeds are the seed corpus of FuzzParse: one valid event of each
// type and some broken ones.
func fxFuzzSeeds() [][]byte {
	var seeds [][]byte
	for _, typ := range Types() {
		seeds = append(seeds, fxEdited(typ, nil))
	}
	seeds = append(seeds,
		fxEdited(MessageReceived, fxSet("id", fxCPRDigits)),
		fxEdited(MessageReceived, fxSet("data.notification", "CPR "+fxCPR)),
		fxEdited(ContactUpdated, fxSet("data.mobile", "004520123456")),
		fxEdited(ContactUpdated, fxDel("data.email", "data.mobile", "data.language", "data.address")),
		fxEdited(DeviceRegistered, fxSet("data.token", "not hex")),
		fxEdited(ExemptionRevoked, fxSet("data.forward_unopened", true)),
		fxEdited(MessageRead, fxSet("data.recipient", "x")),
		fxEdited(MessageReceived, fxSet("data.sender.extra", 1)),
		fxEdited(MessageUnread, fxDel("type")),
		[]byte(`{"id":"ev-1","type":"exemption.revoked","occurred_at":"2024-03-01T09:30:00Z","source":"core","data":{"cpr":"0101901234"}} {}`),
		[]byte(`{"id": ev}`),
		[]byte(`null`),
		[]byte(`[]`),
		[]byte(``),
	)
	return seeds
}

// FuzzParse checks that Parse never panics; that it returns an
// event or a *ValidationError with at least one reasoned FieldError; and
// that a parsed event's internal JSON form holds no CPR field.
func FuzzParse(f *testing.F) {
	for _, s := range fxFuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ev, err := Parse(in)
		if err != nil {
			if ev != nil {
				t.Fatalf("Parse returned both an event and error %v", err)
			}
			ve, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("error %v is a %T, want *ValidationError", err, err)
			}
			if len(ve.Errors) == 0 {
				t.Fatal("ValidationError with no FieldError")
			}
			for _, fErr := range ve.Errors {
				if fErr.Reason == "" {
					t.Fatalf("FieldError for %q has no Reason", fErr.Field)
				}
			}
			return
		}
		if ev == nil {
			t.Fatal("Parse returned neither event nor error")
		}
		n := 0
		for _, p := range []bool{ev.Message != nil, ev.Read != nil, ev.Contact != nil, ev.Device != nil, ev.Exemption != nil, ev.Consent != nil,
			ev.Access != nil} {
			if p {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s event with %d data fields set, want 1", ev.Type, n)
		}
		cpr := ev.Citizen()
		if _, err := ParseCPR(cpr.Digits()); err != nil {
			t.Fatalf("parsed event holds an invalid CPR: %v", err)
		}
		// The internal form never carries the CPR fields (json:"-"): only
		// the platform's own text (the id, a notification, an address, a
		// token) may hold the same digits.
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var back Event
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		if c := back.Citizen(); c != "" {
			t.Fatal("the JSON form of an event carries its CPR")
		}
	})
}

// TestParseConfirmedOnlyFromCore: "confirmed" migrates addresses confirmed
// in an earlier system, so only core may send it, and only with an address.
func TestParseConfirmedOnlyFromCore(t *testing.T) {
	t.Parallel()
	ev, err := Parse(fxEdited(ContactUpdated, fxAll(fxSet("source", "core"), fxSet("data.confirmed", true))))
	if err != nil || !ev.Contact.Confirmed {
		t.Fatalf("core's confirmed: %v, %v", ev, err)
	}
	for _, p := range ReadingPlatforms() {
		for _, v := range []bool{true, false} {
			_, err := Parse(fxEdited(ContactUpdated, fxAll(fxSet("source", string(p)), fxSet("data.confirmed", v))))
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != "data.confirmed" ||
				!strings.Contains(ve.Errors[0].Reason, "only source core") {
				t.Errorf("confirmed %v from %s: %v; want refused naming data.confirmed", v, p, err)
			}
		}
	}
	_, err = Parse(fxEdited(ContactUpdated, fxAll(fxDel("data.email", "data.mobile"), fxSet("data.confirmed", true))))
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Errors[0].Field != "data.confirmed" {
		t.Errorf("confirmed without an address: %v; want refused naming data.confirmed", err)
	}
}

// TestForbiddenConsentOfAnotherPlatform: a platform may change only its
// own consent; core may change any; other events are never forbidden.
func TestForbiddenConsentOfAnotherPlatform(t *testing.T) {
	t.Parallel()
	for _, typ := range fxConsentTypes {
		for _, source := range Platforms() {
			for _, target := range ConsentPlatforms() {
				ev, err := Parse(fxEdited(typ, fxAll(fxSet("source", string(source)), fxSet("data.platform", string(target)))))
				if err != nil {
					t.Fatalf("%s from %s about %s: %v", typ, source, target, err)
				}
				got := ev.Forbidden()
				if want := source != Core && source != target; (got != nil) != want {
					t.Errorf("%s from %s about %s: Forbidden() = %v, want forbidden %v", typ, source, target, got, want)
				}
				if got != nil && (got.Field != "data.platform" || !strings.Contains(got.Reason, "only its own consent")) {
					t.Errorf("Forbidden() = %+v, want data.platform: ... only its own consent", got)
				}
			}
		}
	}
	for _, typ := range Types() {
		if slices.Contains(fxConsentTypes, typ) {
			continue
		}
		ev, err := Parse(fxEdited(typ, fxSet("source", "mit.dk")))
		if err != nil {
			t.Fatal(err)
		}
		if f := ev.Forbidden(); f != nil {
			t.Errorf("%s from mit.dk: Forbidden() = %+v, want nil", typ, f)
		}
	}
}
