package event

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseLayeredAgrees runs every row of the tables through the layered
// decode alone (every nested object decoded apart, as before the one-pass
// decode): the same events and the same field errors as Parse, so the
// one-pass decode changes nothing a platform sees.
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
