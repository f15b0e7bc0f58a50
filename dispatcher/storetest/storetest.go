// Package storetest is the conformance suite of dispatcher.Store: every
// implementation runs it from a test of its own,
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) dispatcher.Store { return newStore(t) })
//	}
//
// Each case gets a fresh, empty store from open. The cases are indexed by
// the Store method they are about, and every method of the interface has
// at least one: a method added without a case fails the suite.
//
// The suite tests the contract the dispatcher relies on, which is not
// always what a method's doc comment says; where they differ the case's
// comment says so.
package storetest

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Case is one named conformance case about one Store method.
type Case struct {
	// Method is the name of the Store method the case is about.
	Method string
	// Name says what the case checks.
	Name string
	// Test runs the case on a fresh store.
	Test func(t *testing.T, s dispatcher.Store)
}

// Cases returns the suite's cases, grouped by method.
func Cases() []Case {
	var all []Case
	for _, group := range [][]Case{eventCases, letterCases, registryCases, reportCases, stateCases,
		syncCases, coalesceCases, miscCases, exemptionCases, confirmCases, batchCases, accessCases} {
		all = append(all, group...)
	}
	return all
}

// Run runs every case, each on a store of its own from open, in parallel.
func Run(t *testing.T, open func(t *testing.T) dispatcher.Store) {
	t.Helper()
	if missing := Uncovered(); len(missing) > 0 {
		t.Errorf("Store methods without a conformance case: %v", missing)
	}
	for _, c := range Cases() {
		t.Run(c.Method+"/"+c.Name, func(t *testing.T) {
			t.Parallel()
			c.Test(t, open(t))
		})
	}
}

// Uncovered returns the methods of dispatcher.Store that have no case.
func Uncovered() []string {
	have := map[string]bool{}
	for _, c := range Cases() {
		have[c.Method] = true
	}
	var missing []string
	st := reflect.TypeFor[dispatcher.Store]()
	for i := range st.NumMethod() {
		if m := st.Method(i).Name; !have[m] {
			missing = append(missing, m)
		}
	}
	return missing
}

// Pseudonymous citizen keys and letter ids the cases use.
const (
	alice = "cit-alice"
	bob   = "cit-bob"
	msg1  = "msg-1"
	msg2  = "msg-2"
	msg3  = "msg-3"
)

// now is the present at the millisecond, the resolution stores keep.
func now() time.Time { return time.Now().Truncate(time.Millisecond) }

// newLetter returns a letter as a first processing records it, every
// metadata field set.
func newLetter(id string, at time.Time) *dispatcher.Letter {
	return &dispatcher.Letter{MessageID: id, SenderID: "sender-" + id, SenderName: "Skattestyrelsen",
		SenderKind: event.SenderPublic, Priority: event.Normal, Notification: "Ny post fra Skat",
		ReceivedAt: at, Legal: true, NotBefore: at.Add(time.Hour), ReplyBy: at.Add(48 * time.Hour)}
}

// sent is a delivery's final outcome.
func sent(at time.Time, deliveryID string, ch channels.Name) dispatcher.Outcome {
	return dispatcher.Outcome{At: at, DeliveryID: deliveryID, Channel: ch, Result: dispatcher.ResultSent,
		ProviderID: "prov-" + deliveryID, Attempt: 1, DurationMS: 12}
}

// retrying is a delivery's non-final outcome.
func retrying(at time.Time, deliveryID string, ch channels.Name) dispatcher.Outcome {
	return dispatcher.Outcome{At: at, DeliveryID: deliveryID, Channel: ch, Result: dispatcher.ResultRetrying,
		Kind: "transient", Code: "503", Attempt: 1}
}

func ptr(s string) *string { return &s }

// equalTime compares instants, whatever their location.
var equalTime = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

// letterOpts compare letters by what a store keeps of them.
var letterOpts = []cmp.Option{equalTime, cmpopts.IgnoreFields(dispatcher.Letter{}, "Done", "InFlight")}

// inTrail is how an outcome reads back from a trail.
func inTrail(o dispatcher.Outcome) dispatcher.Outcome { return o }

// isFinal says whether the suite's record helper writes an outcome as a
// done mark: sent, gone and skipped outcomes of a delivery.
func isFinal(o dispatcher.Outcome) bool {
	switch o.Result {
	case dispatcher.ResultSent, dispatcher.ResultGone, dispatcher.ResultSkipped:
		return o.DeliveryID != ""
	}
	return false
}

// letterWrite is the write a dispatcher makes of a letter and outcomes:
// with an event id, the letter's arrival and the event's mark; final
// outcomes as done marks, others as trail entries.
func letterWrite(citizen string, l *dispatcher.Letter, outs []dispatcher.Outcome, eventID string) dispatcher.LetterWrite {
	w := dispatcher.LetterWrite{Citizen: citizen, MessageID: l.MessageID}
	if eventID != "" {
		w.Arrive = &dispatcher.Arrival{Meta: l}
		w.Mark = dispatcher.EventRef{Citizen: citizen, MessageID: l.MessageID, ID: eventID}
	}
	for _, o := range outs {
		if isFinal(o) {
			w.Done = append(w.Done, o)
		} else {
			w.Trail = append(w.Trail, o)
		}
	}
	return w
}

func write(t *testing.T, s dispatcher.Store, w dispatcher.LetterWrite) dispatcher.WriteResult {
	t.Helper()
	res, err := s.Write(t.Context(), w)
	if err != nil {
		t.Fatalf("Write(%s): %v", w.MessageID, err)
	}
	return res
}

func letterRef(citizen, messageID, eventID string) dispatcher.EventRef {
	return dispatcher.EventRef{Citizen: citizen, MessageID: messageID, ID: eventID}
}

func registryRef(citizen, eventID string) dispatcher.EventRef {
	return dispatcher.EventRef{Citizen: citizen, ID: eventID}
}

// lookup is Lookup in the shape the cases were written in.
func lookup(ctx context.Context, s dispatcher.Store, citizen, messageID, eventID string) (*dispatcher.Citizen, *dispatcher.Letter, bool, error) {
	v, err := s.Lookup(ctx, letterRef(citizen, messageID, eventID))
	return v.Citizen, v.Letter, v.Seen, err
}

// loadView is Load with ErrNotFound for a letter not Stored (the view is
// returned with it).
func loadView(ctx context.Context, s dispatcher.Store, citizen, messageID string) (*dispatcher.Citizen, *dispatcher.Letter, error) {
	v, err := s.Load(ctx, citizen, messageID)
	if err == nil && !v.Stored {
		err = dispatcher.ErrNotFound
	}
	return v.Citizen, v.Letter, err
}

func updateContact(ctx context.Context, s dispatcher.Store, citizen string, c *event.ContactData, at time.Time, eventID string) error {
	_, err := s.UpdateContact(ctx, dispatcher.ContactWrite{Citizen: citizen, Contact: c, At: at, Mark: registryRef(citizen, eventID)})
	return err
}

func registerDevice(ctx context.Context, s dispatcher.Store, citizen string, d dispatcher.Device, eventID string) error {
	_, err := s.SetDevice(ctx, dispatcher.DeviceWrite{Citizen: citizen, Device: d, Mark: registryRef(citizen, eventID)})
	return err
}

func unregisterDevice(ctx context.Context, s dispatcher.Store, citizen string, d dispatcher.Device, eventID string) error {
	_, err := s.SetDevice(ctx, dispatcher.DeviceWrite{Citizen: citizen, Device: d, Remove: true, Mark: registryRef(citizen, eventID)})
	return err
}

func setExemption(ctx context.Context, s dispatcher.Store, citizen string, exempt bool, forward string, at time.Time, eventID string) (bool, error) {
	return s.SetExemption(ctx, dispatcher.ExemptionWrite{Citizen: citizen, Exempt: exempt, Forward: forward, At: at,
		Mark: registryRef(citizen, eventID)})
}

func setConsent(ctx context.Context, s dispatcher.Store, citizen string, p event.Platform, granted bool, at time.Time, eventID string) (bool, error) {
	return s.SetConsent(ctx, dispatcher.ConsentWrite{Citizen: citizen, Platform: p, Granted: granted, At: at,
		Mark: registryRef(citizen, eventID)})
}

func applyReport(ctx context.Context, s dispatcher.Store, citizen, messageID, deliveryID, status string, final bool, entry dispatcher.Outcome) (bool, error) {
	return s.ApplyReport(ctx, dispatcher.ReportWrite{Citizen: citizen, MessageID: messageID, DeliveryID: deliveryID,
		Status: status, Final: final, Entry: entry})
}

// applied is a StateResult flattened the way the cases compare it.
type applied struct {
	dispatcher.ReadState
	Changed, Correct bool
}

func applyState(ctx context.Context, s dispatcher.Store, citizen, messageID string, read bool, at time.Time, p event.Platform, eventID string) (applied, bool, error) {
	res, err := s.ApplyState(ctx, dispatcher.StateWrite{Citizen: citizen, MessageID: messageID, Read: read, At: at,
		Platform: p, Guard: letterRef(citizen, messageID, eventID)})
	return applied{ReadState: res.State, Changed: res.Changed, Correct: res.Correct}, res.Seen, err
}

func syncKey(citizen, messageID string, p event.Platform) dispatcher.SyncKey {
	return dispatcher.SyncKey{Citizen: citizen, MessageID: messageID, Platform: p}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func record(t *testing.T, s dispatcher.Store, citizen string, l *dispatcher.Letter, outs []dispatcher.Outcome, eventID string) {
	t.Helper()
	if _, err := s.Write(t.Context(), letterWrite(citizen, l, outs, eventID)); err != nil {
		t.Fatalf("Write(%s, %s): %v", l.MessageID, eventID, err)
	}
}

func load(t *testing.T, s dispatcher.Store, citizen, messageID string) (*dispatcher.Citizen, *dispatcher.Letter) {
	t.Helper()
	c, l, err := loadView(t.Context(), s, citizen, messageID)
	if err != nil {
		t.Fatalf("Load(%s): %v", messageID, err)
	}
	return c, l
}

func apply(t *testing.T, s dispatcher.Store, citizen, messageID string, read bool, at time.Time, p event.Platform, eventID string) applied {
	t.Helper()
	st, seen, err := applyState(t.Context(), s, citizen, messageID, read, at, p, eventID)
	if err != nil {
		t.Fatalf("ApplyState(%s, read=%v, %s): %v", messageID, read, eventID, err)
	}
	if seen {
		t.Fatalf("ApplyState(%s, %s): seen, want a fresh event", messageID, eventID)
	}
	return st
}

func state(t *testing.T, s dispatcher.Store, citizen, messageID string) dispatcher.ReadState {
	t.Helper()
	st, err := s.State(t.Context(), citizen, messageID)
	if err != nil {
		t.Fatalf("State(%s): %v", messageID, err)
	}
	return st
}

func seen(t *testing.T, s dispatcher.Store, citizen, messageID, eventID string) bool {
	t.Helper()
	ok, err := s.Seen(t.Context(), letterRef(citizen, messageID, eventID))
	if err != nil {
		t.Fatalf("Seen(%s, %q, %s): %v", citizen, messageID, eventID, err)
	}
	return ok
}

// registered returns the citizen as stored (through Load of a letter that
// does not exist).
func registered(t *testing.T, s dispatcher.Store, citizen string) *dispatcher.Citizen {
	t.Helper()
	v, _ := s.Load(t.Context(), citizen, "no-such-letter")
	c := v.Citizen
	if c == nil {
		t.Fatalf("Load(%s, unknown letter) returned no citizen", citizen)
	}
	return c
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, dispatcher.ErrNotFound) {
		t.Fatalf("%s: error %v, want ErrNotFound", what, err)
	}
}

// eventually waits until cond holds, polling; it fails the test after
// within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("after %v: %s", within, what)
		}
	}
}

// together runs f(i) for i in [0, n) on n goroutines released at once,
// and returns when all returned.
func together(n int, f func(i int)) {
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Go(func() {
			start.Wait()
			f(i)
		})
	}
	start.Done()
	done.Wait()
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
