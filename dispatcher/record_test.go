package dispatcher_test

import (
	"context"
	"sync"
	"testing"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
)

// countingStore is the real store, counting the writes that record
// outcomes. Each waits until every provider answered, so all answers are
// in (or about to be) when the first outcome is written.
type countingStore struct {
	dispatcher.Store
	answered *sync.WaitGroup
	mu       sync.Mutex
	writes   int // writes with an outcome
	outcomes int
}

func (s *countingStore) Write(ctx context.Context, w dispatcher.LetterWrite) (dispatcher.WriteResult, error) {
	if w.Arrive == nil && len(w.Done) > 0 {
		s.answered.Wait()
		s.mu.Lock()
		s.writes++
		s.outcomes += len(w.Done)
		s.mu.Unlock()
	}
	return s.Store.Write(ctx, w)
}

// Providers that answer at once have their outcomes written together:
// four instant sends cost fewer writes than outcomes (one or two as a
// rule), not one each.
func TestOutcomesInTogetherAreWrittenTogether(t *testing.T) {
	var answered sync.WaitGroup
	st := &countingStore{answered: &answered}
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		st.Store = h.store
		c.Store = st
		for name, next := range c.Senders {
			answered.Add(1)
			c.Senders[name] = channels.SenderFunc(func(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
				defer answered.Done()
				return next.Send(ctx, to, a)
			})
		}
	}, channels.Email, channels.SMS, channels.APNs, channels.FCM)
	registerNow(h, annaCPR)
	h.handle(letter("ev-together", msgInterrupted, annaCPR))
	st.mu.Lock()
	defer st.mu.Unlock()
	// Usually 1 or 2 writes; on a loaded machine a sender may be
	// scheduled late and have a write of its own. One write per outcome
	// is what the test refuses.
	if st.outcomes != 4 || st.writes >= 4 {
		t.Errorf("%d outcomes in %d writes; want 4 in fewer than 4 (answers that are in go together)", st.outcomes, st.writes)
	}
}
