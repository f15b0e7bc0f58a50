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

// Task types.
const (
	// TypeInbound is an event a platform enqueued straight into asynq
	// (package publish): its payload is the wire event, CPR included, until
	// its first handling.
	TypeInbound = "postbud:inbound"
	// TypeEvent is an event postbud accepted over HTTP: its payload is the
	// pseudonymised Event (no CPR).
	TypeEvent = "postbud:event"
	// TypeDelivery is one delivery's retry after its first attempt failed.
	TypeDelivery = "postbud:delivery"
)

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

// Weights returns the asynq queue weights: urgent 6, normal 3, bulk 1.
func (q Queues) Weights() map[string]int {
	return map[string]int{q.Urgent: 6, q.Normal: 3, q.Bulk: 1}
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
	return asynq.NewTask(TypeEvent, b, asynq.TaskID(EventTaskID(e.CitizenKey, e.ID)), asynq.Queue(q.EventQueue(e)),
		asynq.MaxRetry(25), asynq.Timeout(2*time.Minute)), nil
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
	// Events are the event ids that were folded into this delivery.
}
