package dispatcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/time/rate"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/publish"
)

// cprN is the i-th test citizen's CPR number.
func cprN(i int) string { return fmt.Sprintf("%02d0190-%04d", i%28+1, 1000+i) }

// msgN is the i-th test letter's message id.
func msgN(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i+0xb000, i) }

// bulkLetter is a message.received of priority p ("" for normal).
func bulkLetter(id, messageID, cpr string, p event.Priority) string {
	data := map[string]any{"message_id": messageID, "recipient": map[string]any{"cpr": cpr},
		"sender": map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"}}
	if p != "" {
		data["priority"] = string(p)
	}
	return wire(id, "message.received", data)
}

// registerEmail registers a citizen with an email address only, here and
// now.
func registerEmail(h *harness, cpr string) {
	h.handle(wire("c-"+cpr, "contact.updated", map[string]any{"cpr": cpr, "email": "c" + strings.ReplaceAll(cpr, "-", "x") + "@example.dk", "confirmed": true}))
}

// acceptBatch accepts wire events as POST /v1/events/batch does.
func (h *harness) acceptBatch(raws ...string) []dispatcher.Accepted {
	h.t.Helper()
	evs := make([]*event.Event, len(raws))
	for i, raw := range raws {
		ev, err := event.Parse([]byte(raw))
		if err != nil {
			h.t.Fatalf("event.Parse: %v", err)
		}
		evs[i] = ev
	}
	res := h.d.AcceptBatch(context.Background(), evs)
	for i, r := range res {
		if r.Err != nil {
			h.t.Fatalf("AcceptBatch: event %d: %v", i, r.Err)
		}
	}
	return res
}

// pendingTypes returns the types of the pending tasks of a queue.
func (h *harness) pendingTypes(q string) []string {
	h.t.Helper()
	tasks, err := h.insp.ListPendingTasks(q, asynq.PageSize(1000))
	if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
		h.t.Fatal(err)
	}
	var out []string
	for _, t := range tasks {
		out = append(out, t.Type)
	}
	return out
}

// emailsTo counts the alerts a channel accepted for each message id.
func alertsByMessage(s *scripted) map[string]int {
	n := map[string]int{}
	for _, a := range s.accepted() {
		n[a.Alert.MessageID]++
	}
	return n
}

// A batch's letters become a few letters tasks of their lane; an urgent
// letter is never batched (it is a task of its own in the urgent lane) and
// every letter is alerted once.
func TestBatchBecomesFewTasksPerLaneUrgentAlone(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(c *dispatcher.Config, _ *harness) { c.BatchSize = 4 }, channels.Email)
	var raws []string
	for i := range 10 {
		registerEmail(h, cprN(i))
		p := event.Bulk
		switch {
		case i == 3, i == 4:
			p = event.Urgent
		case i >= 8:
			p = "" // normal
		}
		raws = append(raws, bulkLetter(fmt.Sprintf("b-%d", i), msgN(i), cprN(i), p))
	}
	res := h.acceptBatch(raws...)
	for i, r := range res {
		if r.Duplicate {
			t.Errorf("event %d: duplicate, want accepted", i)
		}
	}
	// Bulk: 6 letters in tasks of at most 4 (2); normal: 2 letters in one
	// task; urgent: each letter its own event task.
	if got := h.pendingTypes(h.queues.Bulk); len(got) != 2 || got[0] != dispatcher.TypeLetters || got[1] != dispatcher.TypeLetters {
		t.Errorf("bulk lane holds %v, want two letters tasks", got)
	}
	if got := h.pendingTypes(h.queues.Normal); len(got) != 1 || got[0] != dispatcher.TypeLetters {
		t.Errorf("normal lane holds %v, want one letters task", got)
	}
	if got := h.pendingTypes(h.queues.Urgent); len(got) != 2 || got[0] != dispatcher.TypeEvent || got[1] != dispatcher.TypeEvent {
		t.Errorf("urgent lane holds %v, want each urgent letter's own event task", got)
	}
	// The queued letters tasks hold no CPR (TestNoCPRInRedis for batches).
	for i := range 10 {
		h.noCPRInRedis(cprN(i))
	}
	// The same batch again while its tasks are queued: every event a
	// duplicate (the letters tasks' ids, the urgent letter's event task's).
	for i, r := range h.acceptBatch(raws...) {
		if !r.Duplicate {
			t.Errorf("repeated batch, event %d: accepted, want duplicate", i)
		}
	}
	h.start()
	email := h.channels[channels.Email]
	h.waitFor("an email per letter", func() bool { return len(email.accepted()) >= 10 })
	h.idle()
	for i := range 10 {
		if n := alertsByMessage(email)[msgN(i)]; n != 1 {
			t.Errorf("letter %d: %d emails, want 1", i, n)
		}
	}
}

// One letter's delivery fails: only that delivery gets a task of its own
// and is sent again; no neighbour in the batch is sent twice, and the
// batch task is not retried.
func TestBatchFailedDeliveryRetriesAlone(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(c *dispatcher.Config, _ *harness) { c.BatchSize = 10 }, channels.Email, channels.SMS)
	var raws []string
	for i := range 6 {
		registerEmail(h, cprN(i))
		raws = append(raws, bulkLetter(fmt.Sprintf("f-%d", i), msgN(i), cprN(i), event.Bulk))
	}
	// Letter 2's citizen also has a mobile; its SMS fails once.
	h.handle(wire("m-2", "contact.updated", map[string]any{"cpr": cprN(2), "mobile": "20123456", "confirmed": true}))
	sms := h.channels[channels.SMS]
	sms.failNext(channels.Fail(channels.Transient, "http 503", errors.New("gateway busy")))
	h.acceptBatch(raws...)
	h.start()
	h.waitFor("the SMS sent on its retry", func() bool { return len(sms.accepted()) == 1 })
	h.idle()
	if sms.attempts() != 2 {
		t.Errorf("SMS attempts %d, want 2 (the failure and its retry)", sms.attempts())
	}
	email := h.channels[channels.Email]
	if email.attempts() != 6 {
		t.Errorf("email attempts %d, want 6: a neighbour's failure re-sent nothing", email.attempts())
	}
	for i := range 6 {
		if n := alertsByMessage(email)[msgN(i)]; n != 1 {
			t.Errorf("letter %d: %d emails, want 1", i, n)
		}
	}
	trail := h.trail(msgN(2))
	if !hasEntry(trail, channels.SMS, dispatcher.ResultRetrying, "") || !hasEntry(trail, channels.SMS, dispatcher.ResultSent, "") {
		t.Errorf("trail of letter 2: %+v; want its SMS retrying, then sent", trail)
	}
	// The batch task succeeded at once: no letters task was retried.
	for _, q := range []string{h.queues.Bulk} {
		info, err := h.insp.GetQueueInfo(q)
		if err != nil {
			t.Fatalf("queue %s: %v", q, err)
		}
		if info.Retry > 0 || info.Archived > 0 || info.Failed > 0 {
			t.Errorf("queue %s: %d failed, %d retry, %d archived; want none", q, info.Failed, info.Retry, info.Archived)
		}
	}
}

// halfCrashStore is the real store whose WriteAll of the batch's marks
// writes the first half and then "crashes".
type halfCrashStore struct {
	dispatcher.Store
	crashed atomic.Bool
}

func (s *halfCrashStore) WriteAll(ctx context.Context, ws []dispatcher.LetterWrite) ([]dispatcher.WriteResult, error) {
	if len(ws) > 1 && !ws[0].Mark.IsZero() && s.crashed.CompareAndSwap(false, true) {
		if _, err := s.Store.WriteAll(ctx, ws[:len(ws)/2]); err != nil {
			return nil, err
		}
		return nil, errCrash
	}
	return s.Store.WriteAll(ctx, ws)
}

// lettersTaskOf returns the letters task of wire letters, as AcceptBatch
// makes it.
func (h *harness) lettersTaskOf(raws ...string) *asynq.Task {
	h.t.Helper()
	var evs []*event.Event
	for _, raw := range raws {
		ev, err := event.Parse([]byte(raw))
		if err != nil {
			h.t.Fatal(err)
		}
		evs = append(evs, h.keyer.Pseudonymize(ev))
	}
	task, err := dispatcher.NewLettersTask(evs, h.queues)
	if err != nil {
		h.t.Fatal(err)
	}
	return task
}

// replyBy returns a wire letter with a reply_by a month ahead: its
// reminder follows the sends, so the letter is not settled and its mark
// has a write of its own after them.
func replyBy(raw string) string {
	var m map[string]any
	_ = json.Unmarshal([]byte(raw), &m)
	m["data"].(map[string]any)["reply_by"] = time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	b, _ := json.Marshal(m)
	return string(b)
}

// The worker dies after half the batch's letters were marked (letters
// with a reminder, whose marks have their own write): the whole task runs
// again and sends nothing twice. Settled letters, whose marks go in their
// outcome writes: TestBatchSettledLettersMarkedInTheirLastWrite.
func TestBatchRerunAfterCrashSendsNothingTwice(t *testing.T) {
	t.Parallel()
	var st *halfCrashStore
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		st = &halfCrashStore{Store: h.store}
		c.Store = st
	}, channels.Email, channels.SMS, channels.APNs, channels.FCM)
	var raws []string
	for i := range 8 {
		registerNow(h, cprN(i))
		raws = append(raws, replyBy(bulkLetter(fmt.Sprintf("r-%d", i), msgN(i), cprN(i), event.Bulk)))
	}
	task := h.lettersTaskOf(raws...)
	if err := h.d.HandleLetters(context.Background(), task); !errors.Is(err, errCrash) || !st.crashed.Load() {
		t.Fatalf("first run: %v, want the simulated crash", err)
	}
	if err := h.d.HandleLetters(context.Background(), task); err != nil {
		t.Fatalf("second run: %v", err)
	}
	for _, ch := range []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM} {
		if n := h.channels[ch].attempts(); n != 8 {
			t.Errorf("%s: %d attempts, want 8 (one per letter)", ch, n)
		}
	}
	for i := range 8 {
		if !h.seen(cprN(i), msgN(i), fmt.Sprintf("r-%d", i)) {
			t.Errorf("letter %d: event not marked processed", i)
		}
	}
}

// seen reports whether a wire letter event was marked processed.
func (h *harness) seen(cpr, messageID, id string) bool {
	h.t.Helper()
	ev, err := event.Parse([]byte(bulkLetter(id, messageID, cpr, event.Bulk)))
	if err != nil {
		h.t.Fatal(err)
	}
	p := h.keyer.Pseudonymize(ev)
	ok, err := h.store.Seen(context.Background(), dispatcher.EventRef{Citizen: p.CitizenKey, MessageID: messageID, ID: p.ID})
	if err != nil {
		h.t.Fatal(err)
	}
	return ok
}

// A letter with bad data in a letters task enqueued straight into Redis is
// archived alone, with its reasons and no personal data; its neighbours
// are processed.
func TestBatchBadLetterArchivedAlone(t *testing.T) {
	t.Parallel()
	// A letter of the right shape with bad values (its task decoded in one
	// pass) and one of another shape (its task decoded letter by letter).
	for _, tc := range []struct {
		name   string
		spoil  func(letter map[string]any)
		fields []string
	}{
		{"bad values", func(l map[string]any) {
			delete(l, "c")                            // no citizen
			l["b"] = "0101901234 is not a birth date" // CPR-shaped, never kept
		}, []string{"l[1].c", "l[1].b"}},
		{"another shape", func(l map[string]any) {
			l["t"] = "0101901234" // a string where the time's number goes: CPR-shaped, never kept
		}, []string{"l[1].", "not a letter of a letters task"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, channels.Email)
			var raws []string
			for i := range 3 {
				registerEmail(h, cprN(i))
				raws = append(raws, bulkLetter(fmt.Sprintf("x-%d", i), msgN(i), cprN(i), event.Bulk))
			}
			good := h.lettersTaskOf(raws...)
			var p map[string]any
			if err := json.Unmarshal(good.Payload(), &p); err != nil {
				t.Fatal(err)
			}
			tc.spoil(p["l"].([]any)[1].(map[string]any))
			b, _ := json.Marshal(p)
			if _, err := h.client.Enqueue(asynq.NewTask(dispatcher.TypeLetters, b), asynq.Queue(h.queues.Bulk), asynq.MaxRetry(0)); err != nil {
				t.Fatal(err)
			}
			h.start()
			email := h.channels[channels.Email]
			h.waitFor("the good letters' emails", func() bool { return len(email.accepted()) == 2 })
			h.idle()
			if n := alertsByMessage(email); n[msgN(0)] != 1 || n[msgN(2)] != 1 || n[msgN(1)] != 0 {
				t.Errorf("emails by letter %v, want letters 0 and 2 once, 1 never", n)
			}
			arch, err := h.insp.ListArchivedTasks(h.queues.Bulk)
			if err != nil {
				t.Fatal(err)
			}
			if len(arch) != 1 || arch[0].Type != dispatcher.TypeRejected {
				t.Fatalf("archived %d tasks (%v), want the bad letter alone as a rejected task", len(arch), arch)
			}
			s := string(arch[0].Payload) + arch[0].LastErr
			// The record names the letter's own fields as enqueued.
			for _, f := range append(tc.fields, "letter_fields", `\"m\"`, `\"s\"`) {
				if !strings.Contains(s, f) {
					t.Errorf("rejected letter %s: want %q in it", s, f)
				}
			}
			if strings.Contains(s, "0101901234") || event.HasCPRLike(s) {
				t.Errorf("rejected letter %s: want no CPR", s)
			}
		})
	}
}

// A letters task's payload is decoded in one pass, its letters with it,
// unless a letter is of another shape: then letter by letter, so that one
// is archived alone (TestBatchBadLetterArchivedAlone).
func TestBatchLettersDecodedOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email)
	good := h.lettersTaskOf(bulkLetter("x-0", msgN(0), cprN(0), event.Bulk), bulkLetter("x-1", msgN(1), cprN(1), event.Bulk))
	for _, tc := range []struct {
		name    string
		payload string
		once    bool
	}{
		{"good", string(good.Payload()), true},
		{"a letter of another shape", strings.Replace(string(good.Payload()), `"t":`, `"t":"x","u":`, 1), false},
		{"a letter that is not an object", strings.Replace(string(good.Payload()), `"l":[`, `"l":["x",`, 1), false},
	} {
		once, n, err := dispatcher.DecodeLetters([]byte(tc.payload))
		if err != nil || once != tc.once || n < 2 {
			t.Errorf("%s: one pass %v, %d letters, %v; want one pass %v, 2 or more letters", tc.name, once, n, err, tc.once)
		}
	}
}

// Idempotency holds per event id and per message id across the batch and
// the single path: an event repeated in one batch, in a later batch, or
// sent singly is a duplicate; the same letter under another event id is
// not alerted again.
func TestBatchIdempotencyAcrossPaths(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(c *dispatcher.Config, _ *harness) { c.BatchSize = 10 }, channels.Email)
	for i := range 4 {
		registerEmail(h, cprN(i))
	}
	h.start()
	email := h.channels[channels.Email]
	// Letter 0 singly first.
	if h.accept(bulkLetter("e-0", msgN(0), cprN(0), event.Bulk)) {
		t.Fatal("first single accept: duplicate")
	}
	h.waitFor("letter 0's email", func() bool { return len(email.accepted()) == 1 })
	h.idle()
	batch := []string{
		bulkLetter("e-0", msgN(0), cprN(0), event.Bulk),   // processed singly: duplicate
		bulkLetter("e-1", msgN(1), cprN(1), event.Bulk),   // new
		bulkLetter("e-1", msgN(1), cprN(1), event.Bulk),   // twice in the batch: duplicate
		bulkLetter("e-0b", msgN(0), cprN(0), event.Bulk),  // letter 0 again, another event id: accepted, not alerted
		bulkLetter("e-2", msgN(2), cprN(2), event.Bulk),   // new
		bulkLetter("e-3", msgN(3), cprN(3), event.Normal), // new, alone in its lane
	}
	res := h.acceptBatch(batch...)
	want := []bool{true, false, true, false, false, false}
	for i, r := range res {
		if r.Duplicate != want[i] {
			t.Errorf("batch event %d: duplicate %v, want %v", i, r.Duplicate, want[i])
		}
	}
	// The same batch again while its tasks may still be queued, and again
	// once processed: every event a duplicate either way.
	for round := range 2 {
		if round == 1 {
			h.waitFor("the batch's emails", func() bool { return len(email.accepted()) >= 4 })
			h.idle()
		}
		for i, r := range h.acceptBatch(batch...) {
			if round == 1 && !r.Duplicate {
				t.Errorf("round %d, event %d: accepted again, want duplicate", round, i)
			}
		}
	}
	h.idle()
	// Letter 1 singly after the batch: a duplicate.
	if !h.accept(bulkLetter("e-1", msgN(1), cprN(1), event.Bulk)) {
		t.Error("single accept of an event processed in a batch: not a duplicate")
	}
	h.idle()
	for i := range 4 {
		if n := alertsByMessage(email)[msgN(i)]; n != 1 {
			t.Errorf("letter %d: %d emails, want 1", i, n)
		}
	}
}

// Letters to one citizen in one batch go in turns: the second sees the
// coalescing window the first opened, and is held for the coalesced
// alert, as it would be if sent singly.
func TestBatchLettersOfOneCitizenInTurns(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(c *dispatcher.Config, _ *harness) {
		c.Coalesce = map[channels.Name]time.Duration{channels.Email: time.Hour}
	}, channels.Email)
	registerEmail(h, cprN(0))
	task := h.lettersTaskOf(bulkLetter("t-0", msgN(0), cprN(0), event.Bulk), bulkLetter("t-1", msgN(1), cprN(0), event.Bulk))
	if err := h.d.HandleLetters(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	email := h.channels[channels.Email]
	if got := alertsByMessage(email); len(email.accepted()) != 1 || got[msgN(0)] != 1 {
		t.Errorf("emails %v, want the first letter's alone (the second held in its window)", got)
	}
}

// A letter whose processing fails inside a batch (its outcome cannot be
// written) is handed to a task of its own; the batch task succeeds and
// its other letters are sent once.
func TestBatchFailedLetterHandedOverAlone(t *testing.T) {
	t.Parallel()
	var target atomic.Value
	// Twice: the batch's WriteAll, then the letter's own Write.
	var refusals atomic.Int32
	refusals.Store(2)
	var failed atomic.Bool
	fail := func(w dispatcher.LetterWrite) error {
		if w.Arrive == nil && len(w.Done) > 0 && w.MessageID == target.Load() && refusals.Add(-1) >= 0 {
			failed.Store(true)
			return errors.New("the store refused this letter's write")
		}
		return nil
	}
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		c.Store = &crashingStore{Store: h.store, fail: fail}
	}, channels.Email)
	target.Store(msgN(1))
	var raws []string
	for i := range 4 {
		registerEmail(h, cprN(i))
		raws = append(raws, bulkLetter(fmt.Sprintf("h-%d", i), msgN(i), cprN(i), event.Bulk))
	}
	if err := h.d.HandleLetters(context.Background(), h.lettersTaskOf(raws...)); err != nil || !failed.Load() {
		t.Fatalf("batch task: %v (write failed: %v), want success with letter 1 handed over", err, failed.Load())
	}
	if got := h.pendingTypes(h.queues.Bulk); len(got) != 1 || got[0] != dispatcher.TypeEvent {
		t.Fatalf("bulk lane holds %v, want letter 1's own event task", got)
	}
	h.start()
	h.idle()
	email := h.channels[channels.Email]
	for i := range 4 {
		if n, want := alertsByMessage(email)[msgN(i)], 1; n < want || (i != 1 && n != want) {
			t.Errorf("letter %d: %d emails, want 1", i, n)
		}
	}
	if !h.seen(cprN(1), msgN(1), "h-1") {
		t.Error("letter 1: its own task did not mark it processed")
	}
	// Its own task finished what the batch could not record: its email
	// has a final outcome (re-sent, marked so, as an interrupted send).
	if trail := h.trail(msgN(1)); !hasEntry(trail, channels.Email, dispatcher.ResultSent, "") {
		t.Errorf("letter 1's trail %+v: no email sent", trail)
	}
}

// noCPRInRedis fails the test if a key or value of the test's Redis holds
// the CPR number, with or without its dash.
func (h *harness) noCPRInRedis(cpr string) {
	h.t.Helper()
	for _, l := range h.env.Leaks(h.t, cpr, strings.ReplaceAll(cpr, "-", "")) {
		h.t.Errorf("a CPR number in Redis: %s", l)
	}
}

// The Go client's batch call: each event validated and answered alone,
// the letters published in a few inbound letters tasks (CPR until their
// first handling), an urgent letter alone; a bad event enqueued straight
// into such a task is archived alone.
func TestPublishBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email)
	pub := publish.NewFromRedisClient(h.env.Client, h.env.QueuePrefix)
	var raws [][]byte
	for i := range 5 {
		registerEmail(h, cprN(i))
		p := event.Bulk
		if i == 4 {
			p = event.Urgent
		}
		raws = append(raws, []byte(bulkLetter(fmt.Sprintf("p-%d", i), msgN(i), cprN(i), p)))
	}
	raws = append(raws, raws[0], []byte(`{"id":"bad","type":"message.received"}`))
	res := pub.PublishBatch(context.Background(), raws)
	for i, r := range res {
		want := i < 5
		if (r.Err == nil && !r.Duplicate) != want {
			t.Errorf("event %d: %+v, want accepted %v", i, r, want)
		}
	}
	var ve *event.ValidationError
	if !res[5].Duplicate || !errors.As(res[6].Err, &ve) {
		t.Errorf("repeated event %+v, want duplicate; invalid event %v, want a validation error", res[5], res[6].Err)
	}
	if got := h.pendingTypes(h.queues.Bulk); len(got) != 1 || got[0] != dispatcher.TypeInboundLetters {
		t.Errorf("bulk lane holds %v, want one inbound letters task", got)
	}
	if got := h.pendingTypes(h.queues.Urgent); len(got) != 1 || got[0] != dispatcher.TypeInbound {
		t.Errorf("urgent lane holds %v, want the urgent letter's own inbound task", got)
	}
	// Straight into Redis: a task with a bad event between good ones.
	bad, _ := json.Marshal(map[string]any{"events": []json.RawMessage{
		json.RawMessage(bulkLetter("s-5", msgN(5), cprN(0), event.Bulk)),
		json.RawMessage(`{"id":"s-6","type":"message.received","source":"core","data":{"recipient":{"cpr":"0101901000"}}}`),
		json.RawMessage(bulkLetter("s-7", msgN(7), cprN(1), event.Bulk))}})
	if _, err := h.client.Enqueue(asynq.NewTask(dispatcher.TypeInboundLetters, bad), asynq.Queue(h.queues.Bulk), asynq.MaxRetry(0)); err != nil {
		t.Fatal(err)
	}
	h.start()
	email := h.channels[channels.Email]
	h.waitFor("every good letter's email", func() bool { return len(email.accepted()) == 7 })
	h.idle()
	for _, i := range []int{0, 1, 2, 3, 4, 5, 7} {
		if n := alertsByMessage(email)[msgN(i)]; n != 1 {
			t.Errorf("letter %d: %d emails, want 1", i, n)
		}
	}
	arch, err := h.insp.ListArchivedTasks(h.queues.Bulk)
	if err != nil {
		t.Fatal(err)
	}
	if len(arch) != 1 || arch[0].Type != dispatcher.TypeRejected || strings.Contains(string(arch[0].Payload), "0101901000") {
		t.Errorf("archived %v, want the bad event alone as a rejected task without its CPR", arch)
	}
	h.noCPRInRedis(cprN(0))
}

// A letters task whose payload is not one (no letters, not JSON) can never
// succeed: it is archived at once, not retried.
func TestBatchMalformedTaskIsNotRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email)
	for _, payload := range []string{`{}`, `{"l":[]}`, `not json`} {
		for _, typ := range []string{dispatcher.TypeLetters, dispatcher.TypeInboundLetters} {
			var err error
			if typ == dispatcher.TypeLetters {
				err = h.d.HandleLetters(context.Background(), asynq.NewTask(typ, []byte(payload)))
			} else {
				err = h.d.HandleInboundLetters(context.Background(), asynq.NewTask(typ, []byte(payload)))
			}
			if !errors.Is(err, asynq.SkipRetry) {
				t.Errorf("%s %s: %v, want SkipRetry", typ, payload, err)
			}
		}
	}
}

// markWatch is the real store counting, per letter, the writes that carry
// its event mark alone (a write of its own after the sends) and those
// that carry it with outcomes.
type markWatch struct {
	writeHook
	mu             sync.Mutex
	alone, withOut map[string]int
	// stale counts outcome writes of a letter that arrived in the task
	// without Arrived (they renew an expiry the arrival set).
	stale map[string]int
}

func (s *markWatch) watch(ws ...dispatcher.LetterWrite) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range ws {
		if len(w.Done) > 0 && w.Arrive == nil && !w.Follows {
			s.stale[w.MessageID]++
		}
		switch {
		case w.Mark.IsZero():
		case w.Arrive == nil && len(w.Done) == 0 && len(w.Trail) == 0 && len(w.InFlight) == 0:
			s.alone[w.MessageID]++
		default:
			s.withOut[w.MessageID]++
		}
	}
}

// A settled letter of a batch (nothing waits, no reminder, no holder to
// alert, every send final) is marked in the write of its last outcomes,
// as a single letter is: no write of its own for the mark. A letter whose
// send failed, or with a reminder to schedule, is marked after, alone.
// Either way every letter is marked, and the task run again (the worker
// died before asynq heard it finished) sends nothing and writes no mark.
// The outcome writes of letters that arrived in the task say so
// (Arrived): they send no expiry.
func TestBatchSettledLettersMarkedInTheirLastWrite(t *testing.T) {
	t.Parallel()
	const n = 9
	// Letter 3's SMS fails once; letter 5 has a reply_by; letter 8's
	// citizen has no address (nothing to send: marked with its arrival).
	const failing, reminded, unknown = 3, 5, 8
	var st *markWatch
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		st = &markWatch{writeHook: writeHook{Store: h.store}, alone: map[string]int{}, withOut: map[string]int{}, stale: map[string]int{}}
		st.before = st.watch
		c.Store = st
		failSMSOnce(c, msgN(failing))
	}, channels.Email, channels.SMS, channels.APNs, channels.FCM)
	var raws []string
	for i := range n {
		if i != unknown {
			registerNow(h, cprN(i))
		}
		raw := bulkLetter(fmt.Sprintf("s-%d", i), msgN(i), cprN(i), event.Bulk)
		if i == reminded {
			raw = replyBy(raw)
		}
		raws = append(raws, raw)
	}
	task := h.lettersTaskOf(raws...)
	if err := h.d.HandleLetters(context.Background(), task); err != nil {
		t.Fatalf("first run: %v", err)
	}
	check := func(run string) {
		t.Helper()
		for i := range n {
			if !h.seen(cprN(i), msgN(i), fmt.Sprintf("s-%d", i)) {
				t.Errorf("%s: letter %d not marked processed", run, i)
			}
			wantAlone, wantWith := 0, 1
			if i == failing || i == reminded {
				wantAlone, wantWith = 1, 0
			}
			st.mu.Lock()
			alone, with, stale := st.alone[msgN(i)], st.withOut[msgN(i)], st.stale[msgN(i)]
			st.mu.Unlock()
			if stale > 0 {
				t.Errorf("%s: letter %d: %d outcome writes renew the expiry its arrival in the task set (not Follows)", run, i, stale)
			}
			if alone != wantAlone || with != wantWith {
				t.Errorf("%s: letter %d: its mark in %d writes of its own and %d outcome writes; want %d and %d",
					run, i, alone, with, wantAlone, wantWith)
			}
		}
		for _, ch := range []channels.Name{channels.Email, channels.APNs, channels.FCM} {
			if a := h.channels[ch].attempts(); a != n-1 {
				t.Errorf("%s: %s: %d attempts, want %d (one per letter with an address)", run, ch, a, n-1)
			}
		}
		if a := h.channels[channels.SMS].attempts(); a != n-2 {
			t.Errorf("%s: SMS: %d accepted attempts, want %d (the failed one is its own task's)", run, a, n-2)
		}
	}
	check("first run")
	if got := h.pendingTypes(h.queues.Bulk); len(got) != 1 || got[0] != dispatcher.TypeDelivery {
		t.Errorf("bulk lane holds %v, want the failed SMS's delivery task alone", got)
	}
	if err := h.d.HandleLetters(context.Background(), task); err != nil {
		t.Fatalf("second run: %v", err)
	}
	check("second run")
}

// A batch letter's event is marked only once every delivery that failed
// has its task, as a single letter's is: here letter 1's SMS fails and
// enqueueing its task fails. The letter must stay unmarked (a mark in its
// outcome write would lose the SMS for good) and goes to a task of its
// own, which sends the SMS; the other letters are marked by the batch and
// nothing else is sent twice.
func TestBatchLetterNotMarkedBeforeItsFailedDeliveryHasItsTask(t *testing.T) {
	t.Parallel()
	const n, failing = 4, 1
	var enq *failingEnqueuer
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		enq = &failingEnqueuer{Enqueuer: c.Enqueuer, typ: dispatcher.TypeDelivery}
		c.Enqueuer = enq
		failSMSOnce(c, msgN(failing))
	}, channels.Email, channels.SMS)
	var raws []string
	for i := range n {
		registerNow(h, cprN(i))
		raws = append(raws, bulkLetter(fmt.Sprintf("u-%d", i), msgN(i), cprN(i), event.Bulk))
	}
	if err := h.d.HandleLetters(context.Background(), h.lettersTaskOf(raws...)); err != nil || !enq.failed.Load() {
		t.Fatalf("batch task: %v (delivery enqueue failed: %v), want success with letter %d handed over", err, enq.failed.Load(), failing)
	}
	for i := range n {
		if got, want := h.seen(cprN(i), msgN(i), fmt.Sprintf("u-%d", i)), i != failing; got != want {
			t.Errorf("after the batch: letter %d marked %v, want %v", i, got, want)
		}
	}
	h.start()
	h.idle()
	if !h.seen(cprN(failing), msgN(failing), fmt.Sprintf("u-%d", failing)) {
		t.Errorf("letter %d: its own task did not mark it", failing)
	}
	email, sms := alertsByMessage(h.channels[channels.Email]), alertsByMessage(h.channels[channels.SMS])
	for i := range n {
		if email[msgN(i)] != 1 || sms[msgN(i)] != 1 {
			t.Errorf("letter %d: %d emails and %d SMS accepted, want 1 each", i, email[msgN(i)], sms[msgN(i)])
		}
	}
}

// failSMSOnce makes the first SMS of letter messageID fail transiently
// (the gateway busy); every other send goes through.
func failSMSOnce(c *dispatcher.Config, messageID string) {
	next := c.Senders[channels.SMS]
	var failed atomic.Bool
	c.Senders[channels.SMS] = channels.SenderFunc(func(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
		if a.MessageID == messageID && failed.CompareAndSwap(false, true) {
			return channels.Receipt{}, channels.Fail(channels.Transient, "http 503", errors.New("gateway busy"))
		}
		return next.Send(ctx, to, a)
	})
}

// meanwhileStore is the real store whose LookupWriteAll records how many
// letters each call reads, and runs during once, between its look-up and
// its writes: another run of a letter at that moment.
type meanwhileStore struct {
	dispatcher.Store
	lw     dispatcher.LookupWriter
	during func()
	mu     sync.Mutex
	parts  []int
}

func (s *meanwhileStore) LookupWriteAll(ctx context.Context, evs []dispatcher.EventRef,
	plan func([]dispatcher.LetterView) ([]dispatcher.LetterWrite, error)) ([]dispatcher.WriteResult, error) {
	s.mu.Lock()
	s.parts = append(s.parts, len(evs))
	s.mu.Unlock()
	return s.lw.LookupWriteAll(ctx, evs, func(v []dispatcher.LetterView) ([]dispatcher.LetterWrite, error) {
		ws, err := plan(v)
		if f := s.during; f != nil {
			s.during = nil
			f()
		}
		return ws, err
	})
}

// A letter of a batch task processed by another event's run between the
// batch's look-up and its write (the same letter sent again on its own)
// is alerted once: the batch's transaction finds the letter changed, its
// writes go through the scripts, which find the delivery done, and the
// batch leaves it. Its neighbours are alerted once each.
func TestBatchLetterRunMeanwhileAlertedOnce(t *testing.T) {
	t.Parallel()
	var st *meanwhileStore
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		st = &meanwhileStore{Store: h.store, lw: h.store}
		c.Store = st
	}, channels.Email)
	var raws []string
	for i := range 4 {
		registerEmail(h, cprN(i))
		raws = append(raws, bulkLetter(fmt.Sprintf("b-%d", i), msgN(i), cprN(i), event.Bulk))
	}
	st.during = func() { h.handle(bulkLetter("other-1", msgN(1), cprN(1), event.Bulk)) }
	if err := h.d.HandleLetters(context.Background(), h.lettersTaskOf(raws...)); err != nil {
		t.Fatal(err)
	}
	if st.during != nil {
		t.Fatal("the other run never ran: the test measured nothing")
	}
	got := alertsByMessage(h.channels[channels.Email])
	for i := range 4 {
		if got[msgN(i)] != 1 {
			t.Errorf("letter %d: %d emails, want 1", i, got[msgN(i)])
		}
		if !h.seen(cprN(i), msgN(i), fmt.Sprintf("b-%d", i)) {
			t.Errorf("letter %d: batch event not marked processed", i)
		}
	}
	if n := h.store.TxConflicts(); n != 1 {
		t.Errorf("%d transactions aborted, want 1 (the letter changed meanwhile)", n)
	}
}

// While the urgent lane's tasks flow, a batch task takes its letters in parts of
// at most YieldTurn (each when the yield rate allows it), and every
// letter is alerted once and marked; while they do not, in one turn.
func TestBatchYieldsInPartsWhileUrgentLettersFlow(t *testing.T) {
	t.Parallel()
	for _, flowing := range []bool{true, false} {
		t.Run(fmt.Sprintf("flowing=%v", flowing), func(t *testing.T) {
			t.Parallel()
			var st *meanwhileStore
			h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
				st = &meanwhileStore{Store: h.store, lw: h.store}
				c.Store = st
				c.UrgentFlowing = func(context.Context) bool { return flowing }
				c.YieldPace = rate.NewLimiter(1000, 2*dispatcher.YieldTurn) // two parts at once, the third within 25 ms
			}, channels.Email)
			const n = 60
			var raws []string
			for i := range n {
				registerEmail(h, cprN(i))
				raws = append(raws, bulkLetter(fmt.Sprintf("y-%d", i), msgN(i), cprN(i), event.Bulk))
			}
			if err := h.d.HandleLetters(context.Background(), h.lettersTaskOf(raws...)); err != nil {
				t.Fatal(err)
			}
			want := []int{n}
			if flowing {
				want = []int{dispatcher.YieldTurn, dispatcher.YieldTurn, n - 2*dispatcher.YieldTurn}
			}
			if fmt.Sprint(st.parts) != fmt.Sprint(want) {
				t.Errorf("look-ups of %v letters, want %v", st.parts, want)
			}
			got := alertsByMessage(h.channels[channels.Email])
			for i := range n {
				if got[msgN(i)] != 1 {
					t.Errorf("letter %d: %d emails, want 1", i, got[msgN(i)])
				}
				if !h.seen(cprN(i), msgN(i), fmt.Sprintf("y-%d", i)) {
					t.Errorf("letter %d: not marked processed", i)
				}
			}
		})
	}
}
