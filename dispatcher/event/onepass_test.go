package event

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseLayeredAgrees runs every row of the tables through the layered
// decode alone (every nested object decoded apart, as before the one-pass
// decode): the same events and the same field errors, in the same order,
// as Parse, so the one-pass decode changes nothing a platform sees on any
// row of the tables (a repeated nested object is read otherwise:
// TestParseRepeatedNestedObject).
func TestParseLayeredAgrees(t *testing.T) {
	t.Parallel()
	for _, tc := range fxGoodEventCases() {
		got, err := parse(tc.in, &validator{layered: true})
		if err != nil {
			t.Errorf("%s: layered: %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: layered event (-want +got):\n%s", tc.name, diff)
		}
	}
	// Events that name message.received without being one: Parse tries
	// the whole-event decode on them and must end where the layered way
	// does.
	msgData := fxData(MessageReceived)
	msgData["notification"] = "message.received"
	for name, in := range map[string][]byte{
		"message.read with a letter's data": fxEdited(MessageRead, fxSet("data", msgData)),
		"type Message.Received":             fxEdited(MessageReceived, fxAll(fxSet("type", "Message.Received"), fxSet("data.notification", "message.received"))),
		"an unknown envelope field":         fxEdited(MessageReceived, fxSet("note", "message.received")),
	} {
		ev, err := Parse(in)
		lev, lerr := parse(in, &validator{layered: true})
		if diff := cmp.Diff(lev, ev); diff != "" || fmt.Sprint(err) != fmt.Sprint(lerr) {
			t.Errorf("%s: Parse %v, layered %v; event (-layered +Parse):\n%s", name, err, lerr, diff)
		}
		if err == nil {
			t.Errorf("%s: accepted, want it refused", name)
		}
	}
	for _, tc := range fxBadEventCases() {
		ev, err := parse(tc.in, &validator{layered: true})
		var ve *ValidationError
		if ev != nil || !errors.As(err, &ve) {
			t.Errorf("%s: layered = %v, %v; want a *ValidationError", tc.name, ev, err)
			continue
		}
		if diff := cmp.Diff(tc.want, ve.Errors); diff != "" {
			t.Errorf("%s: layered field errors (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestParseDecodesWellFormedDataOnce checks that a valid event of each type
// with nested objects takes the one-pass decode: it allocates less than the
// layered one (counted, not timed; not parallel, so no other test's
// allocations are counted). BenchmarkParse has the time.
func TestParseDecodesWellFormedDataOnce(t *testing.T) {
	for _, typ := range []Type{MessageReceived, MessageRead, AccessGranted} {
		in := fxEdited(typ, nil)
		if _, err := Parse(in); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		once := testing.AllocsPerRun(50, func() { _, _ = Parse(in) })
		layered := testing.AllocsPerRun(50, func() { _, _ = parse(in, &validator{layered: true}) })
		if once >= layered {
			t.Errorf("%s: %.0f allocations a parse one-pass, %.0f layered: want fewer one-pass", typ, once, layered)
		}
		t.Logf("%s: %.0f allocations one-pass, %.0f layered", typ, once, layered)
	}
}

// A name repeated in an object (docs/events.md asks for each once): a
// repeated field takes its last value either way; a repeated nested object
// is merged by the one-pass decode, where the layered one keeps the last,
// and what is read is validated either way.
func TestParseRepeatedNestedObject(t *testing.T) {
	t.Parallel()
	const a, b = "010190-1235", "020285-2345"
	valid := string(fxEdited(MessageReceived, fxDel("data.recipient")))
	with := func(extra string) []byte { return []byte(strings.Replace(valid, `"data":{`, `"data":{`+extra+`,`, 1)) }

	in := with(`"recipient":{"cpr":"` + a + `"},"recipient":{"cpr":"` + b + `"}`)
	for _, layered := range []bool{false, true} {
		ev, err := parse(in, &validator{layered: layered})
		if err != nil || ev.Message.CPR != "0202852345" {
			t.Errorf("repeated recipient, layered %v: %v, %v; want the last cpr", layered, ev, err)
		}
	}

	in = with(`"recipient":{"cpr":"` + a + `"},"recipient":{}`)
	if ev, err := Parse(in); err != nil || ev.Message.CPR != "0101901235" {
		t.Errorf("recipient then {}: %v, %v; want the two merged, the first cpr", ev, err)
	}
	_, err := parse(in, &validator{layered: true})
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0] != (FieldError{"data.recipient.cpr", rsRequired}) {
		t.Errorf("recipient then {}, layered: %v; want data.recipient.cpr required (the last kept)", err)
	}

	in = with(`"recipient":{"cpr":"` + a + `"},"recipient":{"cpr":"31049O1234"}`)
	for _, layered := range []bool{false, true} {
		_, err := parse(in, &validator{layered: layered})
		if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0] != (FieldError{"data.recipient.cpr", rsCPRForm}) {
			t.Errorf("a bad repeated recipient, layered %v: %v; want its cpr refused", layered, err)
		}
	}
}

// A complete, well-formed message.received is decoded whole in one pass,
// envelope and data at once; no other type is, nor a message.received
// with a structural fault, which the layered way names.
func TestParseDecodesMessageEventWhole(t *testing.T) {
	t.Parallel()
	for _, tc := range fxGoodEventCases() {
		v := &validator{}
		if _, err := parse(tc.in, v); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if want := tc.want.Type == MessageReceived; v.whole != want {
			t.Errorf("%s: decoded whole %v, want %v", tc.name, v.whole, want)
		}
	}
	v := &validator{}
	if _, err := parse(fxEdited(MessageReceived, fxSet("data.recipient.extra", "x")), v); err == nil || v.whole {
		t.Errorf("an unknown field in data.recipient: %v, decoded whole %v; want it refused the layered way", err, v.whole)
	}
}
