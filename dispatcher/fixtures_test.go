package dispatcher

import (
	"encoding/json"
	"strings"

	"github.com/digitalpost/postbud/dispatcher/event"
)

// Fixtures shared by the dispatcher's tests: a valid wire event of each
// type, as the event contract's tests build them (package event).
const (
	fxCPR        = "010190-1234"
	fxCPRDigits  = "0101901234"
	fxMsgID      = "6F1C2A8E-3B4D-4E5F-8A9B-0C1D2E3F4A5B"
	fxMsgIDLower = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	fxAPNsToken  = "a1b2c3d4e5f6a7b8c9d0"
)

// fxData returns a complete, valid data object of each event type: every
// field of the contract is set.
func fxData(typ event.Type) map[string]any {
	switch typ {
	case event.MessageReceived:
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
	case event.MessageRead, event.MessageUnread:
		return map[string]any{
			"message_id": fxMsgID,
			"recipient":  map[string]any{"cpr": fxCPR},
			"platform":   "e-boks",
			"at":         "2024-03-01T10:00:00.5+01:00",
		}
	case event.ContactUpdated:
		return map[string]any{
			"cpr":      fxCPR,
			"email":    "Anna.Jensen@Example.DK",
			"mobile":   "87 65 43 21",
			"language": "en",
			"address":  "Vestergade 1, 8000 Aarhus C",
		}
	case event.DeviceRegistered, event.DeviceUnregistered:
		return map[string]any{
			"cpr":         fxCPR,
			"app":         "digital-post-app",
			"provider":    "apns",
			"token":       fxAPNsToken,
			"environment": "sandbox",
		}
	case event.ExemptionGranted:
		return map[string]any{"cpr": fxCPR, "forward_unopened": true, "forward_address": "Postboks 12, 9990 Skagen"}
	case event.ExemptionRevoked:
		return map[string]any{"cpr": fxCPR}
	case event.ConsentGranted, event.ConsentRevoked:
		return map[string]any{"cpr": fxCPR, "platform": "e-boks"}
	case event.AccessGranted:
		return map[string]any{"cpr": fxCPR, "holder": map[string]any{"cpr": "020285-2345"}, "scope": "read",
			"expires_at": "2025-03-01T00:00:00Z", "notify": true}
	case event.AccessUpdated:
		return map[string]any{"cpr": fxCPR, "holder": map[string]any{"cpr": "020285-2345"}, "scope": "read", "notify": false}
	case event.AccessRevoked:
		return map[string]any{"cpr": fxCPR, "holder": map[string]any{"cpr": "020285-2345"}, "scope": "read"}
	}
	panic("no fixture for " + string(typ))
}

// fxEvent returns a complete, valid event of typ in the wire form.
func fxEvent(typ event.Type) map[string]any {
	source := "core"
	if typ == event.MessageRead || typ == event.MessageUnread {
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
func fxEdited(typ event.Type, edit func(ev map[string]any)) []byte {
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

func fxAll(edits ...func(map[string]any)) func(map[string]any) {
	return func(ev map[string]any) {
		for _, e := range edits {
			e(ev)
		}
	}
}
