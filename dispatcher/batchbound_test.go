package dispatcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// gate is a channel whose sends all wait until the test opens it; it
// counts the sends waiting at once.
type gate struct {
	mu                    sync.Mutex
	waiting, most, passed int
	open                  chan struct{}
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) Send(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
	g.mu.Lock()
	g.waiting++
	g.most = max(g.most, g.waiting)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.waiting--
		g.mu.Unlock()
	}()
	select {
	case <-g.open:
	case <-ctx.Done():
		return channels.Receipt{}, ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.passed++
	return channels.Receipt{ProviderID: fmt.Sprintf("gate-%d", g.passed)}, nil
}

func (g *gate) counts() (waiting, most, passed int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting, g.most, g.passed
}

// boundHarness is a dispatcher whose batch tasks may process bound letters
// at once, its email channel g (nil: a scripted one).
func boundHarness(t *testing.T, bound int, g *gate) *harness {
	return newHarnessWith(t, func(c *dispatcher.Config, _ *harness) {
		c.BatchInflight = bound
		if g != nil {
			c.Senders = map[channels.Name]channels.Sender{channels.Email: g}
		}
	}, channels.Email)
}

// boundTasks returns n batch tasks of type typ (TypeLetters,
// TypeInboundLetters) of per letters each, to citizens of their own
// (email only).
func (h *harness) boundTasks(typ, name string, n, per int) []*asynq.Task {
	h.t.Helper()
	var tasks []*asynq.Task
	for k := range n {
		var raws []string
		for j := range per {
			i := 300 + k*per + j
			registerEmail(h, cprN(i))
			raws = append(raws, bulkLetter(fmt.Sprintf("%s-%d", name, i), msgN(i), cprN(i), event.Bulk))
		}
		if typ == dispatcher.TypeLetters {
			tasks = append(tasks, h.lettersTaskOf(raws...))
			continue
		}
		// As package publish enqueues them: the wire events as they are.
		events := make([]json.RawMessage, len(raws))
		for j, raw := range raws {
			events[j] = json.RawMessage(raw)
		}
		b, err := json.Marshal(map[string]any{"events": events})
		if err != nil {
			h.t.Fatal(err)
		}
		tasks = append(tasks, asynq.NewTask(dispatcher.TypeInboundLetters, b))
	}
	return tasks
}

// runTask runs a batch task in a goroutine; its error comes on the
// channel.
func (h *harness) runTask(ctx context.Context, task *asynq.Task) <-chan error {
	done := make(chan error, 1)
	go func() {
		if task.Type() == dispatcher.TypeInboundLetters {
			done <- h.d.HandleInboundLetters(ctx, task)
			return
		}
		done <- h.d.HandleLetters(ctx, task)
	}()
	return done
}

// result waits (bounded, as waitFor) for a task's error.
func (h *harness) result(what string, done <-chan error) error {
	h.t.Helper()
	var err error
	h.waitFor(what, func() bool {
		select {
		case err = <-done:
			return true
		default:
			return false
		}
	})
	return err
}

// Batch tasks running side by side process at most BatchInflight letters
// at once: with every send held, two tasks of 10 letters have their 20
// sends waiting at the provider and the third task waits for room, its
// letters not read; once the sends are answered it runs too. Both kinds
// of batch task (from AcceptBatch, from package publish) share the bound.
func TestBatchLettersInFlightBounded(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{dispatcher.TypeLetters, dispatcher.TypeInboundLetters} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			g := newGate()
			h := boundHarness(t, 20, g)
			tasks := h.boundTasks(typ, "bd", 3, 10)
			var done []<-chan error
			for _, task := range tasks {
				done = append(done, h.runTask(context.Background(), task))
			}
			h.waitFor("every letter at the provider or waiting for room", func() bool {
				sending, _, _ := g.counts()
				_, waiting := h.d.BatchLetters()
				return int64(sending)+waiting == 30
			})
			sending, _, _ := g.counts()
			running, waiting := h.d.BatchLetters()
			if sending != 20 || running != 20 || waiting != 10 {
				t.Errorf("%d sends held, %d letters running, %d waiting; want 20, 20 and 10 (POSTBUD_BATCH_INFLIGHT 20)", sending, running, waiting)
			}
			close(g.open)
			for i, d := range done {
				if err := h.result(fmt.Sprintf("task %d to end", i), d); err != nil {
					t.Errorf("task %d: %v", i, err)
				}
			}
			if _, most, passed := g.counts(); most > 20 || passed != 30 {
				t.Errorf("%d sends at most at once, %d sent; want ≤ 20 and 30", most, passed)
			}
			if running, waiting := h.d.BatchLetters(); running != 0 || waiting != 0 {
				t.Errorf("after the tasks: %d letters running, %d waiting; want none", running, waiting)
			}
		})
	}
}

// A task of more letters than the bound still runs (alone), and so does
// one beside it: the bound never deadlocks.
func TestBatchTaskLargerThanBoundRuns(t *testing.T) {
	t.Parallel()
	h := boundHarness(t, 4, nil)
	tasks := h.boundTasks(dispatcher.TypeLetters, "big", 2, 10)
	a, b := h.runTask(context.Background(), tasks[0]), h.runTask(context.Background(), tasks[1])
	if err := errors.Join(h.result("a task of 10 letters to end (POSTBUD_BATCH_INFLIGHT 4)", a),
		h.result("the other task of 10 letters to end", b)); err != nil {
		t.Fatal(err)
	}
	if n := len(h.channels[channels.Email].accepted()); n != 20 {
		t.Errorf("%d emails, want 20", n)
	}
}

// A task waiting for room gives up when its context ends (a shutdown),
// having read and sent nothing; the room it waited for is not lost, and
// it runs in full later.
func TestBatchWaitingTaskHonoursCancel(t *testing.T) {
	t.Parallel()
	g := newGate()
	h := boundHarness(t, 10, g)
	tasks := h.boundTasks(dispatcher.TypeLetters, "cx", 2, 10)
	first := h.runTask(context.Background(), tasks[0])
	h.waitFor("the first task's 10 sends held", func() bool { s, _, _ := g.counts(); return s == 10 })
	ctx, cancel := context.WithCancel(context.Background())
	second := h.runTask(ctx, tasks[1])
	h.waitFor("the second task waiting for room", func() bool { _, w := h.d.BatchLetters(); return w == 10 })
	cancel()
	if err := h.result("the waiting task to give up", second); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled waiting task: %v, want context.Canceled", err)
	}
	close(g.open)
	if err := h.result("the first task to end", first); err != nil {
		t.Fatalf("first task: %v", err)
	}
	if _, _, passed := g.counts(); passed != 10 {
		t.Errorf("%d sent after the first task, want its 10 alone", passed)
	}
	if err := h.result("the second task, run again, to end", h.runTask(context.Background(), tasks[1])); err != nil {
		t.Fatalf("second task, run again: %v", err)
	}
	if _, most, passed := g.counts(); passed != 20 || most > 10 {
		t.Errorf("%d sent, %d at most at once; want 20 and ≤ 10", passed, most)
	}
}
