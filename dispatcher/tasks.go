package dispatcher

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/dispatcher/event"
)

// Task types. Their options are in one place, the table tasks below.
const (
	// TypeInbound is an event a platform enqueued straight into asynq
	// (package publish): its payload is the wire event, CPR included, until
	// its first handling.
	TypeInbound = "postbud:inbound"
	// TypeEvent is an event postbud accepted over HTTP: its payload is the
	// pseudonymised Event (no CPR).
	TypeEvent = "postbud:event"
	// TypeLetters is many message.received events of one lane accepted in
	// one batch (NewLettersTask): pseudonymised, each letter processed on
	// its own within the task (HandleLetters).
	TypeLetters = "postbud:letters"
	// TypeInboundLetters is many letters a platform published in one
	// batch straight into asynq (package publish): wire events, CPR
	// included until its first handling, like TypeInbound.
	TypeInboundLetters = "postbud:inbound-letters"
	// TypeDelivery is one delivery's retry after its first attempt failed,
	// or a delivery held until a time.
	TypeDelivery = "postbud:delivery"
	// TypeRejected holds an invalid inbound event for ops: its handler
	// always refuses it, so it lands in the archive with its reasons.
	TypeRejected = "postbud:rejected"
	// TypeFlush sends the alert for a channel's held letters.
	TypeFlush = "postbud:flush"
	// TypeReminder is a reply_by reminder for a still unread letter.
	TypeReminder = "postbud:reminder"
	// TypeSync sends a letter's read state to one platform.
	TypeSync = "postbud:sync"
	// TypeBadge sends a citizen's unread count to their devices.
	TypeBadge = "postbud:badge"
	// TypeConfirm makes and sends a confirmation code for a citizen's
	// email or mobile: its payload names the citizen and the channel,
	// never the address or the code.
	TypeConfirm = "postbud:confirm"
)

// Lane says which queue a task type goes to.
type Lane int

// The lanes.
const (
	// LaneOfEvent: by the event (Queues.EventQueue).
	LaneOfEvent Lane = iota + 1
	// LaneOfLetter: by the letter's priority (Queues.For).
	LaneOfLetter
	// LaneUrgent and LaneNormal: always that lane.
	LaneUrgent
	LaneNormal
	// LaneOfParent: the queue of the task that enqueues it.
	LaneOfParent
)

// TaskKind is one task type and the asynq options every task of it gets.
type TaskKind struct {
	Type     string
	Lane     Lane
	MaxRetry int
	// Timeout bounds one run; 0 leaves asynq's default (30 minutes).
	Timeout time.Duration
	// PlusSendTimeout adds the dispatcher's SendTimeout to Timeout (a
	// task that makes one send).
	PlusSendTimeout bool
}

// tasks is the one table of postbud's task types. Task ids are given at
// each enqueue site (they are what makes a task exist once) and keep their
// prefixes: ev: (inbound, event), lt: (letters), dl:, rejected:, flush:,
// rem:, sync:, badge:, cc: (confirm).
var tasks = [...]TaskKind{
	{Type: TypeInbound, Lane: LaneOfEvent, MaxRetry: 25},
	{Type: TypeEvent, Lane: LaneOfEvent, MaxRetry: 25, Timeout: 2 * time.Minute},
	{Type: TypeLetters, Lane: LaneOfLetter, MaxRetry: 25, Timeout: 15 * time.Minute},
	{Type: TypeInboundLetters, Lane: LaneOfLetter, MaxRetry: 25, Timeout: 15 * time.Minute},
	{Type: TypeDelivery, Lane: LaneOfLetter, MaxRetry: 30, Timeout: 30 * time.Second, PlusSendTimeout: true},
	{Type: TypeRejected, Lane: LaneOfParent, MaxRetry: 0},
	{Type: TypeFlush, Lane: LaneNormal, MaxRetry: 30},
	{Type: TypeReminder, Lane: LaneNormal, MaxRetry: 10},
	{Type: TypeSync, Lane: LaneUrgent, MaxRetry: 30, Timeout: time.Minute},
	{Type: TypeBadge, Lane: LaneUrgent, MaxRetry: 10, Timeout: time.Minute},
	// The citizen waits for the code at the platform's UI.
	{Type: TypeConfirm, Lane: LaneUrgent, MaxRetry: 5, Timeout: 30 * time.Second, PlusSendTimeout: true},
}

// TaskKinds returns the table of task types, in a fresh slice.
func TaskKinds() []TaskKind { return append([]TaskKind(nil), tasks[:]...) }

func kindOf(typ string) TaskKind {
	for _, k := range tasks {
		if k.Type == typ {
			return k
		}
	}
	panic("dispatcher: task type " + typ + " is not in the table") // a programming error
}

// taskArgs are what an enqueue site knows of one task: its id, what its
// lane depends on, and when it runs.
type taskArgs struct {
	id          string
	ev          *event.Event   // LaneOfEvent
	priority    event.Priority // LaneOfLetter
	parent      string         // LaneOfParent: the enqueuing task's queue
	sendTimeout time.Duration  // PlusSendTimeout
	at          []asynq.Option // ProcessAt, ProcessIn
}

// newTask returns a task of type typ with the table's options.
func newTask(typ string, payload []byte, q Queues, a taskArgs) *asynq.Task {
	k := kindOf(typ)
	var queue string
	switch k.Lane {
	case LaneOfEvent:
		queue = q.EventQueue(a.ev)
	case LaneOfLetter:
		queue = q.For(a.priority)
	case LaneUrgent:
		queue = q.Urgent
	case LaneNormal:
		queue = q.Normal
	case LaneOfParent:
		queue = a.parent
	}
	opts := []asynq.Option{asynq.TaskID(a.id), asynq.Queue(queue), asynq.MaxRetry(k.MaxRetry)}
	if t := k.Timeout; t > 0 || k.PlusSendTimeout {
		if k.PlusSendTimeout {
			t += a.sendTimeout
		}
		opts = append(opts, asynq.Timeout(t))
	}
	return asynq.NewTask(typ, payload, append(opts, a.at...)...)
}

// Queues names the asynq queues of the three priority lanes.
type Queues struct {
	Urgent, Normal, Bulk string
}

// DefaultQueues returns the lanes named prefix.urgent, prefix.normal and
// prefix.bulk.
func DefaultQueues(prefix string) Queues {
	if prefix == "" {
		prefix = "postbud"
	}
	return Queues{Urgent: prefix + ".urgent", Normal: prefix + ".normal", Bulk: prefix + ".bulk"}
}

// Weights returns the asynq queue weights of postbud's main worker
// server: normal 6, bulk 2, urgent 1. The urgent lane has a server of its
// own (UrgentWeights); the main server takes an urgent task only when it
// is at hand, which shortens an urgent letter's wait while the main server
// is busy. The weights also set the Redis cost of a task: asynq tries the
// lanes one script call each, in a weighted random order, until one gives
// a task, so a lane that is usually empty but weighted high (urgent 6 of
// 10, as before) costs most tasks a wasted call. Normal before bulk stays
// 3 to 1.
func (q Queues) Weights() map[string]int {
	return map[string]int{q.Normal: 6, q.Bulk: 2, q.Urgent: 1}
}

// MainOnlyWeights are the main worker server's queues on a replica that
// runs it alone (POSTBUD_WORKERS=main): normal 6, bulk 2, no urgent lane.
// Urgent letters are then the urgent replicas' alone, so a replica whose
// cores a release keeps busy, or whose CPU is given lower priority, never
// starts one.
func (q Queues) MainOnlyWeights() map[string]int {
	return map[string]int{q.Normal: 6, q.Bulk: 2}
}

// UrgentWeights are the queues of the urgent worker server: the urgent
// lane alone (urgent letters, read state, its sync and badges), in worker
// slots no other lane can take, polled more often.
func (q Queues) UrgentWeights() map[string]int {
	return map[string]int{q.Urgent: 1}
}

// For returns the lane of a priority.
func (q Queues) For(p event.Priority) string {
	switch p {
	case event.Urgent:
		return q.Urgent
	case event.Bulk:
		return q.Bulk
	}
	return q.Normal
}

// EventQueue returns the lane an event goes to: letters by priority, read
// state changes urgent (they stop pending alerts), the rest normal.
func (q Queues) EventQueue(e *event.Event) string {
	switch {
	case e.Message != nil:
		return q.For(e.Message.Priority)
	case e.Read != nil:
		return q.Urgent
	}
	return q.Normal
}

// EventTaskID is the asynq task id of an event, from its parts (source,
// citizen, event id): the same event enqueued twice while the first is
// still queued is refused by asynq. It is a hash, so whatever a platform
// put in its event id stays out of Redis keys.
func EventTaskID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "ev:" + hex.EncodeToString(h.Sum(nil)[:16])
}

// NewEventTask returns the task for an accepted, pseudonymised event.
func NewEventTask(e *event.Event, q Queues) (*asynq.Task, error) {
	if e.CitizenKey == "" {
		return nil, fmt.Errorf("event %s is not pseudonymised", e.ID)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return newTask(TypeEvent, b, q, taskArgs{id: EventTaskID(e.CitizenKey, e.ID), ev: e}), nil
}

// NewInboundTask returns the task of a wire event a platform publishes
// straight into asynq (package publish): raw is the payload as it is, ev
// the parsed event. Its id hashes the CPR, which stays out of the id.
func NewInboundTask(raw []byte, ev *event.Event, q Queues) *asynq.Task {
	return newTask(TypeInbound, raw, q, taskArgs{id: EventTaskID(string(ev.Source), ev.Citizen().Digits(), ev.ID), ev: ev})
}

// deliveryTask is the payload of a TypeDelivery task. It names the delivery
// but holds no address: the address is looked up again, so a changed or
// removed address is honoured and no personal data sits in the queue.
type deliveryTask struct {
	Citizen    string `json:"c"`
	MessageID  string `json:"m"`
	DeliveryID string `json:"d"`
	Channel    string `json:"ch"`
	Expires    int64  `json:"x"` // unix seconds
	// Holder is the access holder's key for a holder's delivery of the
	// letter: the relation and the holder's addresses are looked up again.
	Holder string `json:"h,omitempty"`
	// Events are the event ids that were folded into this delivery.
}
