package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestEmitRedisBatch: emit -redis takes a batch ({"events": [...]}) and
// prints one answer per event, in order, as POST /v1/events/batch does:
// the letters accepted (one batch task), a repeated id a duplicate, an
// invalid event and a platform changing another's consent invalid with
// the field named; nothing of the refused ones is enqueued.
func TestEmitRedisBatch(t *testing.T) {
	rt := redistest.New(t)
	if rt.Embedded {
		t.Skip("asynq's scripts want a real Redis")
	}
	batch := `{"events": [` + strings.Join([]string{
		letterEvent("eb-1", "00000000-0000-4000-8000-000000000001"),
		letterEvent("eb-2", "00000000-0000-4000-8000-000000000002"),
		letterEvent("eb-1", "00000000-0000-4000-8000-000000000001"),
		wireEvent("eb-3", "message.received", "core", map[string]any{"message_id": "not-a-uuid"}),
		wireEvent("eb-4", "consent.granted", "e-boks", map[string]any{"cpr": "010190-1234", "platform": "mit.dk"}),
	}, ",") + `]}`
	var out strings.Builder
	err := run(context.Background(), []string{"emit", "-redis", rt.URL, "-queue-prefix", rt.QueuePrefix, "-"},
		func(string) string { return "" }, strings.NewReader(batch), &out, io.Discard)
	if err != nil {
		t.Fatalf("emit -redis with a batch: %v\n%s", err, out.String())
	}
	var got struct {
		Results []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Errors []struct {
				Field string `json:"field"`
			} `json:"errors"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
		t.Fatalf("emit printed %q: %v", out.String(), err)
	}
	want := []struct{ id, status, field string }{
		{"eb-1", "accepted", ""}, {"eb-2", "accepted", ""}, {"eb-1", "duplicate", ""},
		{"eb-3", "invalid", "data.message_id"}, {"eb-4", "invalid", "data.platform"},
	}
	if len(got.Results) != len(want) {
		t.Fatalf("%d answers, want %d: %s", len(got.Results), len(want), out.String())
	}
	for i, w := range want {
		g := got.Results[i]
		named := w.field == ""
		for _, e := range g.Errors {
			named = named || e.Field == w.field
		}
		if g.ID != w.id || g.Status != w.status || !named {
			t.Errorf("answer %d: %+v, want id %s, status %s, naming %q", i, g, w.id, w.status, w.field)
		}
	}
	insp := asynq.NewInspectorFromRedisClient(rt.Client)
	tasks, err := insp.ListPendingTasks(dispatcher.DefaultQueues(rt.QueuePrefix).Normal)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 1 || tasks[0].Type != dispatcher.TypeInboundLetters {
		t.Errorf("the normal lane holds %d tasks (%v), want the two letters in one %s task", len(tasks), tasks, dispatcher.TypeInboundLetters)
	}
}
