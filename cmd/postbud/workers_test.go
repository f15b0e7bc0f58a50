package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestEndToEndWorkerRoles: replicas that split the work (POSTBUD_WORKERS).
// An ingest-only replica (none) and one of urgent workers alone (urgent)
// take the registrations but work none of them; a replica of the main
// server alone (main) works them. With the main replica stopped, the
// urgent replica alerts an urgent letter and leaves a normal one queued;
// the main replica, started again, alerts it. asynq lists each running
// server with its own queues (the main replica's without the urgent
// lane), and none for the ingest-only replica.
func TestEndToEndWorkerRoles(t *testing.T) {
	rt := redistest.New(t)
	smtp := emailtest.New(t)
	logs := &syncBuffer{}
	env := func(workers string) func(string) string {
		return testEnv(rt, smtp, map[string]string{"POSTBUD_WORKERS": workers, "POSTBUD_URGENT_CONCURRENCY": "2"})
	}
	// A server of another test on the same Redis, as CI runs the
	// packages' tests at once: the lists below must leave it out.
	foreign := asynq.NewServerFromRedisClient(rt.Client, asynq.Config{Queues: map[string]int{rt.QueuePrefix + "-other.normal": 1},
		LogLevel: asynq.ErrorLevel})
	if err := foreign.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(foreign.Shutdown)
	ingest := start(t, env("none"), logs)
	start(t, env("urgent"), logs)
	insp := asynq.NewInspectorFromRedisClient(rt.Client)
	urgentQ, normalQ := rt.QueuePrefix+".urgent", rt.QueuePrefix+".normal"
	servers := func() [][]string {
		ss, err := insp.Servers()
		if err != nil {
			t.Fatal(err)
		}
		// The Redis is shared with the other packages' tests, run at
		// the same time: their servers register too. This test's are
		// the ones whose queues carry its prefix.
		var out [][]string
		for _, s := range ss {
			qs := slices.Sorted(maps.Keys(s.Queues))
			if len(qs) > 0 && strings.HasPrefix(qs[0], rt.QueuePrefix+".") {
				out = append(out, qs)
			}
		}
		slices.SortFunc(out, slices.Compare)
		return out
	}
	eventually(t, "the urgent replica's server to register", 20*time.Second, func() bool { return len(servers()) > 0 })
	if got, want := servers(), [][]string{{urgentQ}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("asynq servers' queues %v, want %v: the urgent server alone", got, want)
	}

	cprs := []string{"010190-1234", "020290-1234"}
	for i, cpr := range cprs {
		if code, body := post(t, ingest.base+"/v1/events", testCoreKey, wireEvent(fmt.Sprintf("c%d", i), "contact.updated", "core",
			map[string]any{"cpr": cpr, "email": fmt.Sprintf("citizen%d@example.dk", i), "confirmed": true})); code != http.StatusAccepted {
			t.Fatalf("contact.updated: %d %v", code, body)
		}
	}
	pending := func(q string) int {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			return -1
		}
		return info.Pending
	}
	// Neither replica works the normal lane: the registrations wait. An
	// absence has no condition to wait on: give a wrongly started main
	// server 30 of the test's 10 ms polls to take them (the asynq server
	// list above is the structural check).
	time.Sleep(300 * time.Millisecond)
	if n := pending(normalQ); n != 2 {
		t.Fatalf("%d registrations pending with no main server running, want 2", n)
	}
	main := start(t, env("main"), logs)
	bulkQ := rt.QueuePrefix + ".bulk"
	eventually(t, "the main replica's server to register", 20*time.Second, func() bool { return len(servers()) == 2 })
	// Run alone, the main server leaves the urgent lane to the urgent
	// replicas: a replica busy with a release never starts an urgent letter.
	if got, want := servers(), [][]string{{bulkQ, normalQ}, {urgentQ}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("asynq servers' queues %v, want %v: the main server without the urgent lane", got, want)
	}
	waitIdle(t, rt)
	main.stop(t)

	letter := func(id, messageID, cpr, priority string) string {
		return wireEvent(id, "message.received", "core", map[string]any{"message_id": messageID,
			"recipient": map[string]any{"cpr": cpr}, "priority": priority,
			"sender": map[string]any{"id": "rh", "name": "Rigshospitalet", "kind": "public"}})
	}
	for _, l := range []string{letter("l-normal", "11111111-3b4d-4e5f-8a9b-0c1d2e3f4a5b", cprs[0], "normal"),
		letter("l-urgent", "22222222-3b4d-4e5f-8a9b-0c1d2e3f4a5b", cprs[1], "urgent")} {
		if code, body := post(t, ingest.base+"/v1/events", testCoreKey, l); code != http.StatusAccepted {
			t.Fatalf("letter: %d %v", code, body)
		}
	}
	msgs := waitMessages(t, smtp, 1)
	if to := msgs[0].To; len(to) != 1 || to[0] != "citizen1@example.dk" {
		t.Errorf("the urgent replica alerted %v, want the urgent letter's citizen1@example.dk", to)
	}
	time.Sleep(300 * time.Millisecond) // an absence again: as above
	if n := pending(normalQ); n != 1 {
		t.Errorf("%d letters pending in the normal lane with no main server running, want 1", n)
	}
	if n := len(smtp.Messages()); n != 1 {
		t.Errorf("%d emails before the main server runs again, want 1", n)
	}
	start(t, env("main"), logs)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs, err := smtp.WaitMessages(ctx, 2)
	if err != nil {
		t.Fatalf("the normal letter was not alerted once a main server ran: %v", err)
	}
	if to := msgs[1].To; len(to) != 1 || to[0] != "citizen0@example.dk" {
		t.Errorf("the main replica alerted %v, want the normal letter's citizen0@example.dk", to)
	}
	assertNoPersonalData(t, logs.String())
}
