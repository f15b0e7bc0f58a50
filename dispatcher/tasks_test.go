package dispatcher

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// TestTaskTable checks the table of task types: every type once, every one
// handled by Register, and a task made from it carries the table's queue,
// retries and timeout into Redis with its id and payload as given.
func TestTaskTable(t *testing.T) {
	t.Parallel()
	want := []string{TypeInbound, TypeEvent, TypeLetters, TypeInboundLetters, TypeDelivery, TypeRejected, TypeFlush, TypeReminder, TypeSync, TypeBadge, TypeConfirm}
	kinds := TaskKinds()
	if len(kinds) != len(want) {
		t.Fatalf("%d task kinds, want %d", len(kinds), len(want))
	}
	seen := map[string]bool{}
	for _, k := range kinds {
		seen[k.Type] = true
	}
	for _, typ := range want {
		if !seen[typ] {
			t.Errorf("task type %s is not in the table", typ)
		}
	}

	k, err := NewKeyer([]byte("task-table-test-key-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Store: nopStore{}, Keyer: k, Enqueuer: &asynq.Client{}, MailboxURL: "https://x.example"}); err == nil ||
		!strings.Contains(err.Error(), "Sealer is required") {
		t.Errorf("New without a Sealer: %v, want an error naming it", err)
	}
	d, err := New(Config{Store: nopStore{}, Keyer: k, Sealer: seal.Ephemeral(), Enqueuer: &asynq.Client{}, MailboxURL: "https://x.example"})
	if err != nil {
		t.Fatal(err)
	}
	mux := asynq.NewServeMux()
	d.Register(mux)
	for _, typ := range want {
		if _, pattern := mux.Handler(asynq.NewTask(typ, nil)); pattern != typ {
			t.Errorf("Register does not handle %s (pattern %q)", typ, pattern)
		}
	}

	env := redistest.New(t)
	client := asynq.NewClientFromRedisClient(env.Client)
	insp := asynq.NewInspectorFromRedisClient(env.Client)
	q := DefaultQueues(env.QueuePrefix)
	ev := &event.Event{Message: &event.MessageData{Priority: event.Bulk}}
	const send = 7 * time.Second
	const asynqDefault = 30 * time.Minute // TaskKind.Timeout 0
	tests := []struct {
		typ          string
		args         taskArgs
		queue        string
		retry        int
		timeout      time.Duration
		scheduledFor time.Duration
	}{
		{TypeInbound, taskArgs{id: "ev:1", ev: ev}, q.Bulk, 25, asynqDefault, 0},
		{TypeEvent, taskArgs{id: "ev:2", ev: &event.Event{Read: &event.ReadData{}}}, q.Urgent, 25, 2 * time.Minute, 0},
		{TypeLetters, taskArgs{id: "lt:1", priority: event.Bulk}, q.Bulk, 25, 15 * time.Minute, 0},
		{TypeInboundLetters, taskArgs{id: "lt:2", priority: event.Normal}, q.Normal, 25, 15 * time.Minute, 0},
		{TypeDelivery, taskArgs{id: "dl:1", priority: event.Urgent, sendTimeout: send, at: []asynq.Option{asynq.ProcessIn(time.Hour)}}, q.Urgent, 30, send + 30*time.Second, time.Hour},
		{TypeRejected, taskArgs{id: "rejected:1", parent: q.Bulk}, q.Bulk, 0, asynqDefault, 0},
		{TypeFlush, taskArgs{id: "flush:1"}, q.Normal, 30, asynqDefault, 0},
		{TypeReminder, taskArgs{id: "rem:1"}, q.Normal, 10, asynqDefault, 0},
		{TypeSync, taskArgs{id: "sync:1"}, q.Urgent, 30, time.Minute, 0},
		{TypeBadge, taskArgs{id: "badge:1"}, q.Urgent, 10, time.Minute, 0},
		{TypeConfirm, taskArgs{id: "cc:1", sendTimeout: send}, q.Urgent, 5, send + 30*time.Second, 0},
	}
	for _, tc := range tests {
		payload := []byte(`{"x":"` + tc.typ + `"}`)
		info, err := client.EnqueueContext(context.Background(), newTask(tc.typ, payload, q, tc.args))
		if err != nil {
			t.Fatalf("%s: %v", tc.typ, err)
		}
		got, err := insp.GetTaskInfo(info.Queue, info.ID)
		if err != nil {
			t.Fatalf("%s: %v", tc.typ, err)
		}
		if got.ID != tc.args.id || string(got.Payload) != string(payload) || got.Type != tc.typ {
			t.Errorf("%s: id %q payload %s type %s, want %q %s %s", tc.typ, got.ID, got.Payload, got.Type, tc.args.id, payload, tc.typ)
		}
		if got.Queue != tc.queue || got.MaxRetry != tc.retry || got.Timeout != tc.timeout {
			t.Errorf("%s: queue %s, max retry %d, timeout %s; want %s, %d, %s", tc.typ, got.Queue, got.MaxRetry, got.Timeout,
				tc.queue, tc.retry, tc.timeout)
		}
		if scheduled := got.State == asynq.TaskStateScheduled; scheduled != (tc.scheduledFor > 0) {
			t.Errorf("%s: state %s, want scheduled %v", tc.typ, got.State, tc.scheduledFor > 0)
		}
	}
}

// nopStore is a Store for tests that never reach it.
type nopStore struct{ Store }
