package dispatcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/semaphore"

	"github.com/digitalpost/postbud/dispatcher/event"
)

// Letters in batches. A batch of events (POST /v1/events/batch) puts its
// normal and bulk letters into a few TypeLetters tasks of up to
// Config.BatchSize letters of one lane each, instead of one task per
// letter: the queue's cost (asynq's scripts, a task's memory) is paid once
// per task, and a task's letters are read and written in one pipeline per
// step. Every promise still holds per letter: its own processed mark, its
// rules, its per-delivery records, a failed delivery's task of its own,
// its trail. A letter the task cannot process is handed over alone (its
// own TypeEvent task, or a TypeRejected one for bad data); the rest of
// the batch goes on. Urgent letters and other events are never batched.

// DefaultBatchSize is the most letters one TypeLetters task carries unless
// configured (POSTBUD_BATCH_SIZE).
const DefaultBatchSize = 200

// DefaultBatchInflight is the most letters of batch tasks one Dispatcher
// processes at once unless configured (POSTBUD_BATCH_INFLIGHT): ten tasks
// of DefaultBatchSize. A letter being processed holds its citizen, its
// plan, its writes and its results (≈ 6 KB of live heap), so every worker
// slot running a full batch task (50 × 200 letters) held ≈ 60 MB, twice
// that in RSS with the collector's headroom.
const DefaultBatchInflight = 2000

// letterBound bounds the letters of batch tasks processed at once across
// a Dispatcher's workers: a weighted semaphore, a task's weight its
// letters.
type letterBound struct {
	sem              *semaphore.Weighted
	max              int
	running, waiting atomic.Int64 // letters admitted, letters waiting
}

func newLetterBound(n int) *letterBound {
	return &letterBound{sem: semaphore.NewWeighted(int64(n)), max: n}
}

// admit waits until n more letters may be processed and returns their
// release. A task of more letters than the bound waits for the whole of
// it, so it runs alone rather than never. It gives up when ctx ends (a
// shutdown): the task runs again later.
func (b *letterBound) admit(ctx context.Context, n int) (release func(), err error) {
	w := int64(min(n, b.max))
	b.waiting.Add(int64(n))
	err = b.sem.Acquire(ctx, w)
	b.waiting.Add(-int64(n))
	if err != nil {
		return nil, fmt.Errorf("waiting for room for %d letters (POSTBUD_BATCH_INFLIGHT): %w", n, err)
	}
	b.running.Add(int64(n))
	return func() {
		b.running.Add(-int64(n))
		b.sem.Release(w)
	}, nil
}

// batchParallel is how many of a batch task's deliveries are sent at once.
const batchParallel = 16

// lettersTask is the payload of a TypeLetters task: pseudonymised
// message.received events of one platform and one lane, compact (short
// keys, times in unix nanoseconds, senders in a table) so a pending letter
// costs Redis little.
type lettersTask struct {
	Source  event.Platform    `json:"s"`
	Senders []batchSender     `json:"sd"`
	Letters []json.RawMessage `json:"l"` // batchLetter each: one bad letter fails alone
}

type batchSender struct {
	ID   string           `json:"i"`
	Name string           `json:"n"`
	Kind event.SenderKind `json:"k"`
}

// batchLetter is one letter of a lettersTask. No CPR: the citizen is its
// pseudonymous key, the event id its pseudonymous form.
type batchLetter struct {
	ID           string         `json:"i"`
	At           int64          `json:"t"` // occurred_at
	Citizen      string         `json:"c"`
	Birth        string         `json:"b,omitempty"`
	MessageID    string         `json:"m"`
	Sender       int            `json:"s"` // index into Senders
	Priority     event.Priority `json:"p,omitempty"`
	Notification string         `json:"n,omitempty"`
	NotBefore    int64          `json:"nb,omitempty"`
	ReplyBy      int64          `json:"rb,omitempty"`
	Legal        bool           `json:"lg,omitempty"`
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// SharesTask reports whether an event may share a task with other
// letters (a batch's, a group's): a letter that is not urgent, since
// urgent letters are never held back. package publish asks it of wire
// events.
func SharesTask(e *event.Event) bool {
	return e.Message != nil && e.Message.Priority != event.Urgent
}

// batchable reports whether a pseudonymised event may go in a TypeLetters
// task (SharesTask).
func batchable(e *event.Event) bool { return SharesTask(e) && e.CitizenKey != "" }

// NewLettersTask returns the task carrying letters, pseudonymised letters of
// one platform and one lane (batchable). Its id hashes the letters' event
// ids, so the same batch enqueued twice while queued exists once.
func NewLettersTask(letters []*event.Event, q Queues) (*asynq.Task, error) {
	if len(letters) == 0 {
		return nil, errors.New("a letters task needs letters")
	}
	p := lettersTask{Source: letters[0].Source}
	senders := map[batchSender]int{}
	h := sha256.New()
	queue := q.For(letters[0].Message.Priority)
	for _, e := range letters {
		if !batchable(e) || e.Source != p.Source || q.For(e.Message.Priority) != queue {
			return nil, fmt.Errorf("event %s cannot go in this letters task", e.ID)
		}
		m := e.Message
		s := batchSender{ID: m.SenderID, Name: m.SenderName, Kind: m.SenderKind}
		i, ok := senders[s]
		if !ok {
			i = len(p.Senders)
			senders[s] = i
			p.Senders = append(p.Senders, s)
		}
		b, err := json.Marshal(batchLetter{ID: e.ID, At: unixNano(e.OccurredAt), Citizen: e.CitizenKey, Birth: e.Birth,
			MessageID: m.MessageID, Sender: i, Priority: m.Priority, Notification: m.Notification,
			NotBefore: unixNano(m.DoNotDeliverUntil), ReplyBy: unixNano(m.ReplyBy), Legal: m.LegalNotification})
		if err != nil {
			return nil, err
		}
		p.Letters = append(p.Letters, b)
		h.Write([]byte(e.CitizenKey + "|" + e.ID + "\x00"))
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	id := "lt:" + hex.EncodeToString(h.Sum(nil)[:16])
	return newTask(TypeLetters, b, q, taskArgs{id: id, priority: letters[0].Message.Priority}), nil
}

// lettersOnce is a lettersTask with its letters decoded with it, in one
// pass: the shallower Letters hides the raw ones. A payload one letter of
// which is of another shape fails it and is decoded letter by letter
// (lettersTask.letter), so that letter alone is archived. (A payload
// naming "l" twice, which NewLettersTask never writes, may have its
// letters merged here where the raw decode keeps the last list.)
type lettersOnce struct {
	lettersTask
	Letters []batchLetter `json:"l"`
}

// decodeLetters decodes a TypeLetters task's payload: in one pass when it
// can (once), else with each letter raw. It fails when the payload is not
// a letters task or holds no letter.
func decodeLetters(payload []byte) (p lettersOnce, once bool, err error) {
	if json.Unmarshal(payload, &p) == nil && len(p.Letters) > 0 {
		return p, true, nil
	}
	p = lettersOnce{}
	if err := json.Unmarshal(payload, &p.lettersTask); err != nil {
		return p, false, err
	}
	if len(p.lettersTask.Letters) == 0 {
		return p, false, errors.New("no letters")
	}
	return p, false, nil
}

// letter returns the event of the task's i-th raw letter, or what is
// wrong with it.
func (p *lettersTask) letter(i int) (*event.Event, []event.FieldError) {
	var l batchLetter
	if err := json.Unmarshal(p.Letters[i], &l); err != nil {
		return nil, []event.FieldError{{Field: "l[" + strconv.Itoa(i) + "].", Reason: "not a letter of a letters task"}}
	}
	return p.check(i, l)
}

// check returns the event of the task's i-th letter l, or what is wrong
// with it.
func (p *lettersTask) check(i int, l batchLetter) (*event.Event, []event.FieldError) {
	field := func(name string) string { return "l[" + strconv.Itoa(i) + "]." + name }
	var errs []event.FieldError
	bad := func(name, reason string) { errs = append(errs, event.FieldError{Field: field(name), Reason: reason}) }
	if l.ID == "" {
		bad("i", "the event id is missing")
	}
	if l.Citizen == "" {
		bad("c", "the citizen key is missing")
	}
	if l.MessageID == "" {
		bad("m", "the message id is missing")
	}
	if l.At <= 0 {
		bad("t", "the event time is missing")
	}
	if l.Sender < 0 || l.Sender >= len(p.Senders) || p.Senders[l.Sender].Name == "" {
		bad("s", "no such sender in the task")
	}
	if l.Birth != "" {
		if _, err := time.Parse("2006-01-02", l.Birth); err != nil {
			bad("b", "must be a date (YYYY-MM-DD)")
		}
	}
	switch l.Priority {
	case "", event.Normal, event.Bulk:
	default:
		bad("p", "must be normal or bulk")
	}
	if errs != nil {
		return nil, errs
	}
	s := p.Senders[l.Sender]
	pr := l.Priority
	if pr == "" {
		pr = event.Normal
	}
	return &event.Event{ID: l.ID, Type: event.MessageReceived, OccurredAt: fromUnixNano(l.At), Source: p.Source,
		CitizenKey: l.Citizen, Birth: l.Birth, Message: &event.MessageData{MessageID: l.MessageID, SenderID: s.ID,
			SenderName: s.Name, SenderKind: s.Kind, Notification: l.Notification, Priority: pr,
			DoNotDeliverUntil: fromUnixNano(l.NotBefore), ReplyBy: fromUnixNano(l.ReplyBy), LegalNotification: l.Legal}}, nil
}

// describeLetter keeps of a bad letter what identifies it without personal
// data: its event id (CPR-shaped runs masked) and its field names.
func describeLetter(raw json.RawMessage, source event.Platform) string {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	var id any
	_ = json.Unmarshal(m["i"], &id)
	fields := make([]string, 0, len(m))
	for k := range m {
		fields = append(fields, k)
	}
	slices.Sort(fields)
	b, _ := json.Marshal(map[string]any{"id": id, "type": event.MessageReceived, "source": source, "letter_fields": fields})
	return event.MaskCPRLike(string(b))
}

// HandleLetters handles a TypeLetters task: each letter as a
// message.received task would, the store reads and writes of all its
// letters in one pipeline per step. Letters to one citizen go in turns, so
// each sees the one before it (its unread count, a coalescing window).
func (d *Dispatcher) HandleLetters(ctx context.Context, t *asynq.Task) error {
	p, once, err := decodeLetters(t.Payload())
	if err != nil {
		return fmt.Errorf("letters task payload: %w", errors.Join(err, asynq.SkipRetry))
	}
	n := len(p.lettersTask.Letters)
	if once {
		n = len(p.Letters)
	}
	release, err := d.letters.admit(ctx, n)
	if err != nil {
		return err
	}
	defer release()
	evs := make([]*event.Event, 0, n)
	var raw []json.RawMessage // the letters as enqueued, for a bad one's record
	for i := range n {
		var ev *event.Event
		var errs []event.FieldError
		if once {
			ev, errs = p.check(i, p.Letters[i])
		} else {
			ev, errs = p.letter(i)
		}
		if errs == nil {
			evs = append(evs, ev)
			continue
		}
		// Bad data (a task enqueued straight into Redis): this letter
		// alone is archived, with its reasons, as it was enqueued.
		if raw == nil {
			raw = p.lettersTask.Letters
			if once {
				var rp lettersTask
				_ = json.Unmarshal(t.Payload(), &rp)
				raw = rp.Letters
			}
		}
		var rl json.RawMessage
		if i < len(raw) {
			rl = raw[i]
		}
		d.log.WarnContext(ctx, "letter of a letters task refused", "task_id", taskID(ctx), "index", i, "errors", len(errs))
		b, _ := json.Marshal(rejectedTask{Errors: errs, Event: describeLetter(rl, p.Source)})
		q, _ := asynq.GetQueueName(ctx)
		rt := newTask(TypeRejected, b, d.cfg.Queues, taskArgs{id: "rejected:" + taskID(ctx) + ":" + strconv.Itoa(i), parent: q})
		if err := d.enqueue(ctx, rt); err != nil {
			return err
		}
	}
	return d.receiveBatch(ctx, evs)
}

// receiveBatch processes pseudonymised letters of distinct or repeated
// citizens: the k-th letter of each citizen goes in turn k. While the
// urgent lane's tasks flow, a turn is taken in parts of at most YieldTurn
// letters, each when the pace allows it (yield.go); a part is a whole
// receiveAll, its letters marked before the next part starts.
func (d *Dispatcher) receiveBatch(ctx context.Context, evs []*event.Event) error {
	var turns [][]*event.Event
	nth := map[string]int{}
	for _, ev := range evs {
		k := nth[ev.CitizenKey]
		nth[ev.CitizenKey] = k + 1
		if k == len(turns) {
			turns = append(turns, nil)
		}
		turns[k] = append(turns[k], ev)
	}
	for _, turn := range turns {
		for len(turn) > 0 {
			n, err := d.yield.take(ctx, d.log, len(turn))
			if err != nil {
				return err
			}
			if err := d.receiveAll(ctx, turn[:n]); err != nil {
				return err
			}
			turn = turn[n:]
		}
	}
	return nil
}

// receiveAll is receive for letters of distinct citizens: one look-up and
// one write before the sends (LookupWriter: one optimistic step where the
// store can), the sends (each outcome recorded as its
// provider answers), one WriteAll of the marks of the letters not settled
// (a settled letter's mark goes in its last outcome write, or with
// nothing to send in its write before the sends, as receive's does: the
// bulk letter's usual case). A letter that fails is
// handed to a task of its own once the others are marked; an error
// returned is one of the whole step (the store), and the task runs again:
// letters marked are skipped, deliveries done are not sent again.
func (d *Dispatcher) receiveAll(ctx context.Context, evs []*event.Event) error {
	refs := make([]EventRef, len(evs))
	for i, ev := range evs {
		refs[i] = EventRef{Citizen: ev.CitizenKey, MessageID: ev.Message.MessageID, ID: ev.ID}
	}
	var runs, preRuns []*letterRun
	var failed []*event.Event
	var failures []error
	fail := func(ev *event.Event, err error) {
		failed, failures = append(failed, ev), append(failures, err)
	}
	plan := func(views []LetterView) ([]LetterWrite, error) {
		runs, preRuns, failed, failures = nil, nil, nil, nil // were it to run twice
		for i, ev := range evs {
			if views[i].Seen {
				continue
			}
			r, err := d.prepare(ctx, ev, views[i])
			if err != nil {
				fail(ev, err)
				continue
			}
			runs = append(runs, r)
		}
		var pres []LetterWrite
		for _, r := range runs {
			pre := d.withInFlight(r.w, r.todo)
			if len(r.todo) == 0 && d.settled(r) {
				// Nothing to send and nothing to follow: the mark goes in
				// this write, as receive's does.
				r.markLast(nil, &pre)
			}
			if !pre.empty() {
				pres, preRuns = append(pres, pre), append(preRuns, r)
			}
		}
		return pres, nil
	}
	res, err := lookupWriteAll(ctx, d.cfg.Store, refs, plan)
	if err != nil {
		return err
	}
	for i, r := range preRuns {
		r.filed(res[i])
		r.todo = d.untaken(ctx, r.stored.MessageID, r.todo, res[i].Taken)
	}
	results, errs := d.sendLetters(ctx, runs)
	d.finishAll(ctx, runs, results, errs)
	var marks []LetterWrite
	for i, r := range runs {
		if errs[i] != nil {
			fail(r.ev, errs[i])
			continue
		}
		if !r.marked {
			marks = append(marks, r.markWrite())
		}
	}
	if len(marks) > 0 {
		if _, err := d.cfg.Store.WriteAll(ctx, marks); err != nil {
			return err
		}
	}
	for i, ev := range failed {
		d.log.WarnContext(ctx, "letter of a letters task failed: handed to a task of its own", "task_id", taskID(ctx),
			"message_id", ev.Message.MessageID, "error", failures[i])
		t, err := NewEventTask(ev, d.cfg.Queues)
		if err != nil {
			return err
		}
		if err := d.enqueue(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// inboundLetters is the payload of a TypeInboundLetters task: wire events
// as a platform published them (package publish), CPR included until the
// task's first handling, like TypeInbound.
type inboundLetters struct {
	Events []json.RawMessage `json:"events"`
}

// NewInboundLettersTask returns the task of wire letters a platform
// publishes straight into asynq in one batch (package publish): raws as
// they are, evs parsed, every one batchable once pseudonymised (a letter
// that is not urgent) and of one lane. Its id hashes the letters' ids and
// CPR numbers, which stay out of the id.
func NewInboundLettersTask(raws [][]byte, evs []*event.Event, q Queues) (*asynq.Task, error) {
	if len(evs) == 0 || len(raws) != len(evs) {
		return nil, errors.New("an inbound letters task needs letters")
	}
	queue := q.For(evs[0].Message.Priority)
	h := sha256.New()
	p := inboundLetters{Events: make([]json.RawMessage, len(raws))}
	for i, ev := range evs {
		if !SharesTask(ev) || q.For(ev.Message.Priority) != queue {
			return nil, fmt.Errorf("event %d cannot go in this letters task", i)
		}
		h.Write([]byte(string(ev.Source) + "|" + ev.Citizen().Digits() + "|" + ev.ID + "\x00"))
		p.Events[i] = raws[i]
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return newTask(TypeInboundLetters, b, q, taskArgs{id: "lt:" + hex.EncodeToString(h.Sum(nil)[:16]),
		priority: evs[0].Message.Priority}), nil
}

// HandleInboundLetters handles letters a platform published in one batch:
// each is validated alone (an invalid one is replaced by its own
// postbud:rejected task, as HandleInbound does), pseudonymised, and the
// letters processed as HandleLetters does; an event that may not be
// batched goes to a task of its own.
func (d *Dispatcher) HandleInboundLetters(ctx context.Context, t *asynq.Task) error {
	var p inboundLetters
	if err := json.Unmarshal(t.Payload(), &p); err != nil || len(p.Events) == 0 {
		if err == nil {
			err = errors.New("no events")
		}
		return fmt.Errorf("inbound letters task payload: %w", errors.Join(err, asynq.SkipRetry))
	}
	release, err := d.letters.admit(ctx, len(p.Events))
	if err != nil {
		return err
	}
	defer release()
	var evs []*event.Event
	for i, raw := range p.Events {
		ev, err := event.Parse(raw)
		if err != nil {
			d.log.WarnContext(ctx, "inbound letter refused", "task_id", taskID(ctx), "index", i, "error", err)
			var ve *event.ValidationError
			errors.As(err, &ve)
			var errs []event.FieldError
			if ve != nil {
				errs = ve.Errors
			}
			b, _ := json.Marshal(rejectedTask{Errors: errs, Event: describeEvent(raw)})
			q, _ := asynq.GetQueueName(ctx)
			rt := newTask(TypeRejected, b, d.cfg.Queues, taskArgs{id: "rejected:" + taskID(ctx) + ":" + strconv.Itoa(i), parent: q})
			if err := d.enqueue(ctx, rt); err != nil {
				return err
			}
			continue
		}
		pe := d.cfg.Keyer.Pseudonymize(ev)
		if !batchable(pe) {
			et, err := NewEventTask(pe, d.cfg.Queues)
			if err != nil {
				return err
			}
			if err := d.enqueue(ctx, et); err != nil {
				return err
			}
			continue
		}
		evs = append(evs, pe)
	}
	return d.receiveBatch(ctx, evs)
}

// sendLetters makes one attempt at every delivery of runs, at most
// batchParallel at once, and records each outcome as its provider
// answers: one recorder takes the first answer, adds every other answer
// already in (merged per letter), and writes them with one WriteAll — the
// batch's group commit, as sendAll is a letter's. A settled letter's mark
// goes in the write of its last answer (markLast). errs[i] is the record
// error of runs[i], which fails that letter alone.
func (d *Dispatcher) sendLetters(ctx context.Context, runs []*letterRun) ([][]result, []error) {
	type job struct{ run, i int }
	results := make([][]result, len(runs))
	errs := make([]error, len(runs))
	// left[ri] counts runs[ri]'s answers not yet taken; fold[ri] says its
	// mark goes in the write of its last answer (settled, markLast).
	left, fold := make([]int, len(runs)), make([]bool, len(runs))
	var jobs []job
	for ri, r := range runs {
		results[ri] = make([]result, len(r.todo))
		left[ri], fold[ri] = len(r.todo), len(r.todo) > 0 && d.settled(r)
		for i := range r.todo {
			jobs = append(jobs, job{ri, i})
		}
	}
	if len(jobs) == 0 {
		return results, errs
	}
	writes := make([]LetterWrite, len(jobs))
	answered := make(chan int, len(jobs)) // never blocks a sender
	next := make(chan int, len(jobs))
	for j := range jobs {
		next <- j
	}
	close(next)
	var wg sync.WaitGroup
	for range min(batchParallel, len(jobs)) {
		wg.Go(func() {
			for j := range next {
				jb := jobs[j]
				r := runs[jb.run]
				res := d.send(ctx, r.c, r.stored, r.todo[jb.i], 1)
				// A letter that arrived in this task has its expiry: the
				// outcome write adds none (a PEXPIRE fewer a letter).
				w := LetterWrite{Citizen: r.ev.CitizenKey, MessageID: r.stored.MessageID, Follows: r.w.Arrive != nil}
				d.decorateRun(r)(&res, &w)
				w.add(res)
				results[jb.run][jb.i], writes[j] = res, w
				answered <- j
			}
		})
	}
	for unanswered := len(jobs); unanswered > 0; {
		byRun := map[int]*LetterWrite{}
		var order []int
		take := func(j int) {
			unanswered--
			ri := jobs[j].run
			left[ri]--
			if w, ok := byRun[ri]; ok {
				w.merge(writes[j])
				return
			}
			w := writes[j]
			byRun[ri] = &w
			order = append(order, ri)
		}
		take(<-answered)
		// Let senders that have their answer hand it in: one yield, no
		// waiting for a provider.
		runtime.Gosched()
	drain:
		for unanswered > 0 {
			select {
			case j := <-answered:
				take(j)
			default:
				break drain
			}
		}
		ws := make([]LetterWrite, len(order))
		for k, ri := range order {
			if left[ri] == 0 && fold[ri] && errs[ri] == nil {
				// A settled letter's last answer: its mark goes in this
				// write if every send came to a final outcome (each
				// result was stored before its answer was taken).
				runs[ri].markLast(results[ri], byRun[ri])
			}
			ws[k] = *byRun[ri]
		}
		for k, err := range d.recordAll(ctx, ws) {
			if err != nil {
				errs[order[k]] = errors.Join(errs[order[k]], fmt.Errorf("record outcomes: %w", err))
			}
		}
	}
	wg.Wait()
	return results, errs
}

// finishAll is finish for every run whose answers were recorded (errs[i]
// nil; its error goes there), at most batchParallel at once: the calls of
// one letter's finish (the tasks of its waiting deliveries, its reminder,
// its access holders' look-ups and alerts) share the store's and asynq's
// round trips with the other letters' instead of waiting one after
// another, so a task's letters cost few round trips however few tasks run
// beside it (Config.BatchInflight). A letter of a citizen without holders
// and with nothing waiting makes no call there.
func (d *Dispatcher) finishAll(ctx context.Context, runs []*letterRun, results [][]result, errs []error) {
	next := make(chan int, len(runs))
	for i := range runs {
		if errs[i] == nil {
			next <- i
		}
	}
	close(next)
	var wg sync.WaitGroup
	for range min(batchParallel, len(next)) {
		wg.Go(func() {
			for i := range next {
				errs[i] = d.finish(ctx, runs[i], results[i])
			}
		})
	}
	wg.Wait()
}

// recordAll is record for the answers of many letters: one WriteAll,
// retried on a transient store error for up to RecordRetry. A write the
// store refuses otherwise is made again letter by letter (record), so one
// letter's bad write fails that letter alone (a trail entry the refused
// pipeline did write may then show twice).
func (d *Dispatcher) recordAll(ctx context.Context, ws []LetterWrite) []error {
	errs := make([]error, len(ws))
	if len(ws) > 1 {
		wctx := context.WithoutCancel(ctx)
		// Wall time, not the configured clock: this bounds real waiting.
		deadline := time.Now().Add(d.cfg.RecordRetry)
		wait := 50 * time.Millisecond
		for {
			_, err := d.cfg.Store.WriteAll(wctx, ws)
			if err == nil {
				return errs
			}
			if !errors.Is(err, ErrTransient) || time.Now().Add(wait).After(deadline) {
				d.log.WarnContext(ctx, "recording a batch's answers failed: recording them letter by letter", "letters", len(ws), "error", err)
				break
			}
			d.log.WarnContext(ctx, "recording a batch's answers failed: retrying", "letters", len(ws), "error", err)
			t := time.NewTimer(wait)
			<-t.C
			wait = min(2*wait, 2*time.Second)
		}
	}
	for i, w := range ws {
		errs[i] = d.record(ctx, w)
	}
	return errs
}

// Accepted is AcceptBatch's answer for one event.
type Accepted struct {
	// Duplicate says the event was processed before, is still queued, or
	// came earlier in the same batch.
	Duplicate bool
	// Err is set when the event could not be enqueued (ErrUnavailable).
	Err error
}

// AcceptBatch is Accept for the validated events of one batch, in a
// bounded number of Redis round trips: one read of every event's
// processed mark, then one enqueue per TypeLetters task (up to BatchSize
// letters of one lane each) and one per event that is not batched
// (urgent letters, first, and events other than letters).
func (d *Dispatcher) AcceptBatch(ctx context.Context, platformEvents []*event.Event) []Accepted {
	evs := make([]*event.Event, len(platformEvents))
	for i, pe := range platformEvents {
		evs[i] = d.cfg.Keyer.Pseudonymize(pe)
	}
	return d.acceptAll(ctx, evs, false)
}

// acceptAll is AcceptBatch for pseudonymised events. queue marks the
// letters it enqueued (Store.Queue) once their tasks are in Redis, so
// that a copy sent while they wait is answered duplicate: a group of
// single letters (acceptGrouped) does, where Accept's own task id would
// have answered it. A batch's letters are not marked (a write more for
// every bulk letter: events.md §6 says a batch letter sent again on its
// own may be answered accepted).
func (d *Dispatcher) acceptAll(ctx context.Context, evs []*event.Event, queue bool) []Accepted {
	out := make([]Accepted, len(evs))
	refs := make([]EventRef, len(evs))
	for i, ev := range evs {
		refs[i] = eventRef(ev)
	}
	seen, err := d.cfg.Store.SeenAll(ctx, refs)
	if err != nil {
		for i := range out {
			out[i].Err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return out
	}
	type key struct{ citizen, id string }
	first := map[key]bool{}
	var singles []int
	lanes := map[string][]int{}
	var laneOrder []string
	for i, ev := range evs {
		k := key{ev.CitizenKey, ev.ID}
		if seen[i] || first[k] {
			out[i].Duplicate = true
			continue
		}
		first[k] = true
		if !batchable(ev) {
			singles = append(singles, i)
			continue
		}
		q := d.cfg.Queues.For(ev.Message.Priority) + "|" + string(ev.Source)
		if _, ok := lanes[q]; !ok {
			laneOrder = append(laneOrder, q)
		}
		lanes[q] = append(lanes[q], i)
	}
	// Urgent letters first: they are never held back by the batch.
	slices.SortStableFunc(singles, func(a, b int) int {
		return boolInt(d.cfg.Queues.EventQueue(evs[b]) == d.cfg.Queues.Urgent) - boolInt(d.cfg.Queues.EventQueue(evs[a]) == d.cfg.Queues.Urgent)
	})
	enqueued := func(idx []int, t *asynq.Task, err error) {
		if err == nil {
			_, err = d.cfg.Enqueuer.EnqueueContext(ctx, t)
		}
		for _, i := range idx {
			switch {
			case errors.Is(err, asynq.ErrTaskIDConflict), errors.Is(err, asynq.ErrDuplicateTask):
				out[i].Duplicate = true
			case err != nil:
				out[i].Err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
		}
	}
	for _, i := range singles {
		// As Accept: a read without consent is refused, contact data
		// sealed.
		if err := d.refuseRead(ctx, evs[i], refs[i].MessageID); err != nil {
			out[i].Err = err
			continue
		}
		t, err := NewEventTask(d.sealEvent(evs[i]), d.cfg.Queues)
		enqueued([]int{i}, t, err)
	}
	for _, q := range laneOrder {
		idx := lanes[q]
		for len(idx) > 0 {
			n := min(len(idx), d.cfg.BatchSize)
			chunk := idx[:n]
			idx = idx[n:]
			if n == 1 {
				t, err := NewEventTask(evs[chunk[0]], d.cfg.Queues)
				enqueued(chunk, t, err)
				continue
			}
			letters := make([]*event.Event, n)
			for j, i := range chunk {
				letters[j] = evs[i]
			}
			t, err := NewLettersTask(letters, d.cfg.Queues)
			enqueued(chunk, t, err)
		}
	}
	if queue {
		d.markQueued(ctx, refs, out)
	}
	return out
}

// QueuedTTL is how long a letter queued in a group's task is marked so
// (Store.Queue; publish.Publish's marks too): a copy sent within it is
// answered duplicate. Longer than a task normally waits; one whose task
// waits longer (retried after an outage, or archived), or was deleted
// unprocessed, is accepted again and processed once (the processed marks,
// the arrival's claims), never answered duplicate and lost.
const QueuedTTL = time.Hour

// markQueued marks the letters acceptAll enqueued (not refused, not
// duplicates). It runs after their enqueue, never before: a mark without
// its task would answer a letter that is nowhere duplicate. Should it
// fail, the letters are still queued and answered accepted; only a copy
// sent meanwhile is answered accepted too (and processed once).
func (d *Dispatcher) markQueued(ctx context.Context, refs []EventRef, out []Accepted) {
	var queued []EventRef
	for i, r := range refs {
		if !out[i].Duplicate && out[i].Err == nil {
			queued = append(queued, r)
		}
	}
	if err := d.cfg.Store.Queue(ctx, queued, QueuedTTL); err != nil {
		d.log.WarnContext(ctx, "marking accepted letters queued failed: a copy sent while they wait is answered accepted", "letters", len(queued), "error", err)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
