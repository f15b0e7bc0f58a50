package dispatcher

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher/event"
)

var (
	fxKeyA = []byte("keyer-test-key-A-0123456789abcdef")
	fxKeyB = []byte("keyer-test-key-B-0123456789abcdef")
)

func fxKeyer(t *testing.T, key []byte) *Keyer {
	t.Helper()
	k, err := NewKeyer(key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func fxMustCPR(t *testing.T, s string) event.CPR {
	t.Helper()
	c, err := event.ParseCPR(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fxCPRForms are the ways a CPR could show up in text.
func fxCPRForms(c event.CPR) []string {
	d := c.Digits()
	return []string{d, d[:6] + "-" + d[6:]}
}

func TestKeyerNeedsLongKey(t *testing.T) {
	t.Parallel()
	if _, err := NewKeyer(bytes.Repeat([]byte("k"), MinKeyBytes-1)); err == nil {
		t.Errorf("NewKeyer accepted a %d-byte key", MinKeyBytes-1)
	}
	if _, err := NewKeyer(nil); err == nil {
		t.Error("NewKeyer accepted no key")
	}
	if _, err := NewKeyer(bytes.Repeat([]byte("k"), MinKeyBytes)); err != nil {
		t.Errorf("NewKeyer with a %d-byte key: %v", MinKeyBytes, err)
	}
}

func TestKeyerCopiesKey(t *testing.T) {
	t.Parallel()
	key := append([]byte(nil), fxKeyA...)
	k := fxKeyer(t, key)
	// The caller reuses its slice before the Keyer is first used.
	for i := range key {
		key[i] = 'x'
	}
	c := fxMustCPR(t, fxCPR)
	if got, want := k.CitizenKey(c), fxKeyer(t, fxKeyA).CitizenKey(c); got != want {
		t.Errorf("CitizenKey = %s after the caller changed its key slice, want %s", got, want)
	}
}

var fxCitizenKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

func TestKeyerCitizenKey(t *testing.T) {
	t.Parallel()
	a1, a2, b := fxKeyer(t, fxKeyA), fxKeyer(t, fxKeyA), fxKeyer(t, fxKeyB)
	cprs := []event.CPR{fxMustCPR(t, "010190-1234"), fxMustCPR(t, "010190-1235"), fxMustCPR(t, "020190-1234"), fxMustCPR(t, "010190-4234"), fxMustCPR(t, "311299-9999")}
	seen := map[string]event.CPR{}
	for _, c := range cprs {
		ka := a1.CitizenKey(c)
		if !fxCitizenKeyPattern.MatchString(ka) {
			t.Errorf("CitizenKey = %q, want 22 characters of unpadded base64url", ka)
		}
		if again := a1.CitizenKey(c); again != ka {
			t.Errorf("CitizenKey not deterministic: %s then %s", ka, again)
		}
		if other := a2.CitizenKey(c); other != ka {
			t.Errorf("two Keyers with the same key disagree: %s and %s", ka, other)
		}
		if kb := b.CitizenKey(c); kb == ka {
			t.Errorf("CitizenKey is the same under two keys: %s", ka)
		}
		if prev, dup := seen[ka]; dup {
			t.Errorf("CitizenKey %s for two CPRs (%q and %q)", ka, prev.Digits(), c.Digits())
		}
		seen[ka] = c
		for _, form := range fxCPRForms(c) {
			if strings.Contains(ka, form) {
				t.Errorf("CitizenKey %s contains the CPR", ka)
			}
		}
	}
	// With or without the hyphen, it is the same citizen.
	if x, y := a1.CitizenKey(fxMustCPR(t, "010190-1234")), a1.CitizenKey(fxMustCPR(t, "0101901234")); x != y {
		t.Errorf("CitizenKey differs with the hyphen: %s and %s", x, y)
	}
}

func TestKeyerDeliveryID(t *testing.T) {
	t.Parallel()
	k, other := fxKeyer(t, fxKeyA), fxKeyer(t, fxKeyB)
	const msg2 = "7a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	type delivery struct {
		msg  string
		ch   channels.Name
		addr string
	}
	deliveries := []delivery{
		{fxMsgIDLower, channels.Email, "anna@eksempel.dk"},
		{fxMsgIDLower, channels.Email, "bo@eksempel.dk"},
		{fxMsgIDLower, channels.SMS, "+4512345678"},
		{fxMsgIDLower, channels.APNs, fxAPNsToken},
		{fxMsgIDLower, channels.FCM, fxAPNsToken},  // same address, other channel
		{msg2, channels.Email, "anna@eksempel.dk"}, // same address, other letter
		{msg2, channels.SMS, "+4512345678"},
		{fxMsgIDLower, channels.Paper, ""},
		{fxMsgIDLower, channels.Email, ""},
	}
	hexID := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]delivery{}
	for _, d := range deliveries {
		id := k.DeliveryID(d.msg, d.ch, d.addr)
		if !hexID.MatchString(id) {
			t.Errorf("DeliveryID%v = %q, want 32 hex digits", d, id)
		}
		if again := k.DeliveryID(d.msg, d.ch, d.addr); again != id {
			t.Errorf("DeliveryID%v not deterministic: %s then %s", d, id, again)
		}
		if o := other.DeliveryID(d.msg, d.ch, d.addr); o == id {
			t.Errorf("DeliveryID%v is the same under two keys", d)
		}
		if prev, dup := seen[id]; dup {
			t.Errorf("DeliveryID %s for %v and %v", id, prev, d)
		}
		seen[id] = d
		if d.addr != "" && strings.Contains(id, d.addr) {
			t.Errorf("DeliveryID%v holds the address", d)
		}
	}
}

func TestKeyerEventID(t *testing.T) {
	t.Parallel()
	k, other := fxKeyer(t, fxKeyA), fxKeyer(t, fxKeyB)
	pattern := regexp.MustCompile(`^h[A-Za-z0-9_-]{20}$`)
	seen := map[string]string{}
	for _, id := range []string{"ev-1", "ev-2", "Ev-1", fxCPRDigits, "a", strings.Repeat("z", 128)} {
		got := k.EventID(id)
		if !pattern.MatchString(got) {
			t.Errorf("EventID(%q) = %q, want h and 20 base64url characters", id, got)
		}
		if again := k.EventID(id); again != got {
			t.Errorf("EventID(%q) not deterministic", id)
		}
		if o := other.EventID(id); o == got {
			t.Errorf("EventID(%q) is the same under two keys", id)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("EventID %s for %q and %q", got, prev, id)
		}
		seen[got] = id
		if len(id) >= 8 && strings.Contains(got, id) {
			t.Errorf("EventID(%q) = %q holds the id", id, got)
		}
	}
	// The citizen key and the event id of the same string differ: the
	// derivations are kept apart.
	if k.EventID(fxCPRDigits)[1:] == k.CitizenKey(fxCPRDigits)[:20] {
		t.Error("EventID and CitizenKey share a derivation")
	}
}

// TestKeyerConcurrent runs the Keyer from many goroutines, for the race
// detector and the shared hash pool.
func TestKeyerConcurrent(t *testing.T) {
	t.Parallel()
	k := fxKeyer(t, fxKeyA)
	c := fxMustCPR(t, fxCPR)
	want := k.CitizenKey(c)
	wantID := k.DeliveryID(fxMsgIDLower, channels.SMS, "+4512345678")
	var wg sync.WaitGroup
	errs := make(chan string, 16*200)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if got := k.CitizenKey(c); got != want {
					errs <- "CitizenKey " + got
				}
				if got := k.DeliveryID(fxMsgIDLower, channels.SMS, "+4512345678"); got != wantID {
					errs <- "DeliveryID " + got
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent use gave another %s", e)
	}
}

func TestPseudonymize(t *testing.T) {
	t.Parallel()
	k := fxKeyer(t, fxKeyA)
	c := fxMustCPR(t, fxCPR)
	for _, typ := range event.Types() {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			ev, err := event.Parse(fxEdited(typ, fxAll(fxSet("id", "ev-"+fxCPRDigits))))
			if err != nil {
				t.Fatal(err)
			}
			want := *ev
			want.ID = k.EventID(string(ev.Source) + "|ev-" + fxCPRDigits)
			want.CitizenKey = k.CitizenKey(c)
			switch typ {
			case event.MessageReceived:
				want.Birth = "1990-01-01"
				m := *ev.Message
				m.CPR = ""
				want.Message = &m
			case event.MessageRead, event.MessageUnread:
				r := *ev.Read
				r.CPR = ""
				want.Read = &r
			case event.ContactUpdated:
				x := *ev.Contact
				x.CPR = ""
				want.Contact = &x
			case event.DeviceRegistered, event.DeviceUnregistered:
				d := *ev.Device
				d.CPR = ""
				want.Device = &d
			case event.ExemptionGranted, event.ExemptionRevoked:
				x := *ev.Exemption
				x.CPR = ""
				want.Exemption = &x
			case event.ConsentGranted, event.ConsentRevoked:
				x := *ev.Consent
				x.CPR = ""
				want.Consent = &x
			case event.AccessGranted, event.AccessUpdated, event.AccessRevoked:
				a := *ev.Access
				a.CPR, a.HolderCPR = "", ""
				a.HolderKey = k.CitizenKey(fxMustCPR(t, "020285-2345"))
				want.Access = &a
			}

			orig := fxDeepCopy(t, ev)
			p := k.Pseudonymize(ev)
			if diff := cmp.Diff(&want, p); diff != "" {
				t.Errorf("pseudonymised event (-want +got):\n%s", diff)
			}
			if got := p.Citizen(); got != "" {
				t.Errorf("Citizen() after Pseudonymize = %q, want empty", got.Digits())
			}
			// The platform's event is left as it was: its id and CPR.
			if diff := cmp.Diff(orig, ev); diff != "" {
				t.Errorf("Pseudonymize changed its argument (-before +after):\n%s", diff)
			}

			// Idempotent: pseudonymising the payload again changes nothing.
			if diff := cmp.Diff(p, k.Pseudonymize(p)); diff != "" {
				t.Errorf("second Pseudonymize changed the event (-once +twice):\n%s", diff)
			}
			ev = p

			b, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			for _, form := range append(fxCPRForms(c), "ev-"+fxCPRDigits) {
				if bytes.Contains(b, []byte(form)) {
					t.Errorf("JSON of the pseudonymised event holds %q: %s", form, b)
				}
			}
			if !bytes.Contains(b, []byte(`"c":"`+want.CitizenKey+`"`)) {
				t.Errorf("JSON of the pseudonymised event lacks the citizen key: %s", b)
			}
			// The internal form round-trips (the task payload).
			var back event.Event
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ev, &back); diff != "" {
				t.Errorf("internal form does not round-trip (-event +decoded):\n%s", diff)
			}
		})
	}
}

// fxDeepCopy copies an event through its Go values.
func fxDeepCopy(t *testing.T, e *event.Event) *event.Event {
	t.Helper()
	c := *e
	if e.Message != nil {
		m := *e.Message
		c.Message = &m
	}
	if e.Read != nil {
		r := *e.Read
		c.Read = &r
	}
	if e.Contact != nil {
		x := *e.Contact
		c.Contact = &x
	}
	if e.Device != nil {
		d := *e.Device
		c.Device = &d
	}
	if e.Exemption != nil {
		x := *e.Exemption
		c.Exemption = &x
	}
	return &c
}

// TestPseudonymizeWithoutCitizen checks that an event with no CPR is left
// as it is.
func TestPseudonymizeWithoutCitizen(t *testing.T) {
	t.Parallel()
	k := fxKeyer(t, fxKeyA)
	ev := &event.Event{ID: "ev-1", Type: event.ExemptionRevoked, Exemption: &event.ExemptionData{}}
	want := &event.Event{ID: "ev-1", Type: event.ExemptionRevoked, Exemption: &event.ExemptionData{}}
	if diff := cmp.Diff(want, k.Pseudonymize(ev)); diff != "" {
		t.Errorf("event without CPR changed (-want +got):\n%s", diff)
	}
}

// TestEventJSONNeverHoldsCPR checks that the internal form omits the CPR
// even before Pseudonymize.
func TestEventJSONNeverHoldsCPR(t *testing.T) {
	t.Parallel()
	c := fxMustCPR(t, fxCPR)
	for _, typ := range event.Types() {
		ev, err := event.Parse(fxEdited(typ, nil))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if ev.Citizen() != c {
			t.Fatalf("%s: parsed event has no CPR", typ)
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		// The holder's CPR (access events) too.
		for _, form := range append(fxCPRForms(c), fxCPRForms(fxMustCPR(t, "020285-2345"))...) {
			if bytes.Contains(b, []byte(form)) {
				t.Errorf("%s: JSON holds a CPR: %s", typ, b)
			}
		}
	}
	// A read by another reader than the recipient (data.reader): neither
	// the parsed event's JSON nor its pseudonymised form holds the
	// reader's CPR; the pseudonymised form names the reader by key.
	ev, err := event.Parse(fxEdited(event.MessageRead, fxSet("data.reader", map[string]any{"cpr": "020285-2345"})))
	if err != nil {
		t.Fatal(err)
	}
	k := fxKeyer(t, fxKeyA)
	for _, e := range []*event.Event{ev, k.Pseudonymize(ev)} {
		b, _ := json.Marshal(e)
		for _, form := range fxCPRForms(fxMustCPR(t, "020285-2345")) {
			if bytes.Contains(b, []byte(form)) {
				t.Errorf("message.read with a reader: JSON holds the reader's CPR: %s", b)
			}
		}
	}
	if p := k.Pseudonymize(ev); p.Read.ReaderKey != k.CitizenKey(fxMustCPR(t, "020285-2345")) || p.Read.ReaderCPR != "" {
		t.Errorf("pseudonymised reader: key %q, cpr %q", p.Read.ReaderKey, p.Read.ReaderCPR.Digits())
	}
}

// FuzzPseudonymize checks that any event Parse accepts, pseudonymised and
// marshalled to the internal form (the task payload), holds no CPR, and
// that Pseudonymize leaves the parsed event alone.
func FuzzPseudonymize(f *testing.F) {
	for _, typ := range event.Types() {
		f.Add(fxEdited(typ, nil))
	}
	f.Add(fxEdited(event.MessageReceived, fxSet("id", fxCPRDigits)))
	f.Add(fxEdited(event.MessageReceived, fxSet("data.notification", "CPR "+fxCPR)))
	k, err := NewKeyer([]byte("fuzz-pseudonymisation-key-0123456789"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ev, err := event.Parse(in)
		if err != nil {
			return
		}
		cpr := ev.Citizen()
		// The platform's own text (a notification, an address, a token) may
		// hold the same digits; that is not a leak of the CPR field, so it is
		// allowed. The id is not: Pseudonymize replaces it.
		plain := *ev
		plain.ID = ""
		allowed, err := json.Marshal(&plain)
		if err != nil {
			t.Fatal(err)
		}
		p := k.Pseudonymize(ev)
		if p.Citizen() != "" {
			t.Fatal("Pseudonymize left a CPR in the payload")
		}
		if ev.Citizen() != cpr {
			t.Fatal("Pseudonymize cleared the CPR of its argument")
		}
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		d := cpr.Digits()
		for _, form := range []string{d, d[:6] + "-" + d[6:]} {
			if bytes.Contains(out, []byte(form)) && !bytes.Contains(allowed, []byte(form)) {
				t.Fatalf("pseudonymised event holds the CPR: %s", out)
			}
		}
	})
}
