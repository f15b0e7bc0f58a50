package dispatcher_test

import (
	"context"
	"sync"
	"testing"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
)

// laneStore records, per letter, whether the store calls of its accept and
// its task ran marked urgent (dispatcher.Urgent).
type laneStore struct {
	dispatcher.Store
	mu     sync.Mutex
	seen   map[string]bool // message id → the accept's mark check was urgent
	looked map[string]bool // message id → the task's look-up was urgent
}

func (s *laneStore) Seen(ctx context.Context, ref dispatcher.EventRef) (bool, error) {
	s.mu.Lock()
	s.seen[ref.MessageID] = dispatcher.Urgent(ctx)
	s.mu.Unlock()
	return s.Store.Seen(ctx, ref)
}

func (s *laneStore) Lookup(ctx context.Context, ref dispatcher.EventRef) (dispatcher.LetterView, error) {
	s.mu.Lock()
	s.looked[ref.MessageID] = dispatcher.Urgent(ctx)
	s.mu.Unlock()
	return s.Store.Lookup(ctx, ref)
}

// TestUrgentLaneCallsAreMarkedUrgent: an urgent letter's accept and task
// call the store marked urgent (redisstore then runs them at once instead
// of behind the group commit of bulk work); a normal letter's do not.
func TestUrgentLaneCallsAreMarkedUrgent(t *testing.T) {
	t.Parallel()
	ls := &laneStore{seen: map[string]bool{}, looked: map[string]bool{}}
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		ls.Store = c.Store
		c.Store = ls
	}, channels.Email, channels.SMS, channels.APNs, channels.FCM)
	h.start()
	const cpr = "010190-1234"
	register(h, cpr)
	const urgentMsg, normalMsg = "9a1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "8a1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	h.accept(wire("u1", "message.received", map[string]any{"message_id": urgentMsg, "recipient": map[string]any{"cpr": cpr},
		"priority": "urgent", "sender": map[string]any{"id": "rh", "name": "Rigshospitalet", "kind": "public"}}))
	h.accept(letter("n1", normalMsg, cpr))
	h.idle()

	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, c := range []struct {
		what      string
		got, ok   bool
		wantMarks bool
	}{
		{"the urgent letter's accept", ls.seen[urgentMsg], hasKey(ls.seen, urgentMsg), true},
		{"the urgent letter's task", ls.looked[urgentMsg], hasKey(ls.looked, urgentMsg), true},
		{"the normal letter's accept", ls.seen[normalMsg], hasKey(ls.seen, normalMsg), false},
		{"the normal letter's task", ls.looked[normalMsg], hasKey(ls.looked, normalMsg), false},
	} {
		if !c.ok {
			t.Errorf("%s made no store call", c.what)
		} else if c.got != c.wantMarks {
			t.Errorf("%s: marked urgent = %v, want %v", c.what, c.got, c.wantMarks)
		}
	}
}

func hasKey(m map[string]bool, k string) bool { _, ok := m[k]; return ok }
