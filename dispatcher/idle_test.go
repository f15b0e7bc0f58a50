package dispatcher_test

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
)

// TestIdleWaitsForAHandlerAsynqGaveUp: asynq gives a task up at its
// deadline (archived here, no retries left) while its handler still runs;
// the queues are empty, but the dispatcher is not idle until the handler
// has returned. The send is held until idle has looked at the empty
// queues a few times: an idle that read the queues alone returns first and
// counts no email.
func TestIdleWaitsForAHandlerAsynqGaveUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email)
	h.start()
	h.accept(wire("c-"+annaCPR, "contact.updated", map[string]any{"cpr": annaCPR, "email": "anna@example.dk", "confirmed": true}))
	h.idle()

	email := h.channels[channels.Email]
	release := make(chan struct{})
	email.mu.Lock()
	email.hold = release
	email.mu.Unlock()
	released := false
	unhold := func() {
		if !released {
			released = true
			close(release)
		}
	}
	task, _ := h.eventTask(letter("ev-gaveup", msg1, annaCPR))
	// A second: asynq keeps task timeouts in whole seconds.
	if _, err := h.client.Enqueue(task, asynq.Timeout(time.Second), asynq.MaxRetry(0)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the task given up and archived while its send is held", func() bool {
		archived, _ := h.insp.ListArchivedTasks(h.queues.Normal)
		return len(archived) == 1 && email.attempts() == 0
	})
	looked := h.looks.Load()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for h.looks.Load() < looked+5 {
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
		email.mu.Lock()
		unhold()
		email.mu.Unlock()
	}()
	t.Cleanup(func() {
		close(done)
		<-stopped
		email.mu.Lock()
		unhold() // a failed test's handler is not left waiting
		email.mu.Unlock()
	})
	h.idle()
	if n := len(email.accepted()); n != 1 {
		t.Errorf("%d emails after idle, want 1: idle returned while the handler asynq gave up was still sending", n)
	}
}
