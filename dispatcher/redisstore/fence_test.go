package redisstore_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

const (
	tryFailover = "master m 127.0.0.1 6379"
	switchedTo  = "m 127.0.0.1 6379 127.0.0.1 6380"
)

// waitOpen fails the test unless the fence opens within a generous bound
// (the bound only keeps a broken fence from hanging the test).
func waitOpen(t *testing.T, f *redisstore.Fence, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Wait(ctx); err != nil {
		t.Fatalf("%s: the fence did not open: %v", what, err)
	}
}

// staysClosed fails the test if the fence opens within a while (its Grace
// is a millisecond: an early open would show well within it).
func staysClosed(t *testing.T, f *redisstore.Fence, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if f.Wait(ctx) == nil {
		t.Fatalf("the fence opened %s", what)
	}
}

// TestFenceEvents drives the fence's state machine with the messages the
// sentinels publish during a planned failover (as logged by redis-server
// 7 in postbud-chaos -scenario switchover).
func TestFenceEvents(t *testing.T) {
	f := redisstore.NewFence(redisstore.FenceOptions{Master: "m", Sentinels: 3, Grace: time.Millisecond, Settle: time.Hour})
	before := f.Token()
	if f.Closed() || f.Broken(before) {
		t.Fatal("a new fence is closed")
	}

	// Another master set's failover, and events that do not start one.
	f.Event("s1", "+try-failover", "master other 127.0.0.1 7000")
	f.Event("s1", "+selected-slave", "slave 127.0.0.1:7001 127.0.0.1 7001 @ other 127.0.0.1 7000")
	f.Event("s1", "+new-epoch", "1")
	f.Event("s1", "+sdown", "master m 127.0.0.1 6379")
	if f.Closed() {
		t.Fatal("closed by events that start no failover of m")
	}

	f.Event("s1", "+try-failover", tryFailover)
	if !f.Closed() || !f.Broken(before) {
		t.Fatal("+try-failover did not close the fence")
	}
	during := f.Token()
	if !f.Broken(during) {
		t.Fatal("a token taken while closed is not broken")
	}
	f.Event("s1", "+selected-slave", "slave 127.0.0.1:6380 127.0.0.1 6380 @ m 127.0.0.1 6379")
	f.Event("s1", "+promoted-slave", "slave 127.0.0.1:6380 127.0.0.1 6380 @ m 127.0.0.1 6379")
	// The followers name the new primary first; the leader, once the
	// other replicas are reconfigured, last. Until then the fence holds.
	f.Event("s2", "+switch-master", switchedTo)
	f.Event("s3", "+switch-master", switchedTo)
	f.Event("s3", "+switch-master", switchedTo) // one sentinel counts once
	staysClosed(t, f, "before every sentinel named the new primary")
	f.Event("s1", "+slave-reconf-done", "slave 127.0.0.1:6381 127.0.0.1 6381 @ m 127.0.0.1 6379")
	f.Event("s1", "+failover-end", tryFailover)
	f.Event("s1", "+switch-master", switchedTo)
	waitOpen(t, f, "every sentinel named the new primary")
	if !f.Broken(during) {
		t.Fatal("a token taken while closed is not broken once the fence opened")
	}
	after := f.Token()
	// A late report of the same switch does not close it again.
	f.Event("s2", "+switch-master", switchedTo)
	f.Event("s1", "+failover-end", "master m 127.0.0.1 6380")
	if f.Closed() || f.Broken(after) {
		t.Fatal("a late report of the finished failover closed the fence")
	}

	// An aborted failover opens it.
	f.Event("s2", "+try-failover", "master m 127.0.0.1 6380")
	if !f.Closed() {
		t.Fatal("the second failover did not close the fence")
	}
	f.Event("s2", "-failover-abort-no-good-slave", "master m 127.0.0.1 6380")
	waitOpen(t, f, "-failover-abort-no-good-slave")
	if !f.Broken(after) {
		t.Fatal("a token from before a close and open is not broken")
	}

	// A switch to a primary the fence did not see coming (its start was
	// missed) closes it too.
	now := f.Token()
	f.Event("s1", "+switch-master", "m 127.0.0.1 6380 127.0.0.1 6381")
	if !f.Closed() || !f.Broken(now) {
		t.Fatal("an unannounced +switch-master did not close the fence")
	}
}

// TestFenceDemoted: when the leader names the new primary late (after the
// other replicas' full re-sync), the fence opens once the old primary
// reports itself a replica: writes that still reach it then fail.
func TestFenceDemoted(t *testing.T) {
	f := redisstore.NewFence(redisstore.FenceOptions{Master: "m", Sentinels: 3, Settle: time.Hour, MaxHold: time.Hour})
	f.Event("s1", "+try-failover", tryFailover)
	// Before any +switch-master, and for other instances or roles: no.
	f.Event("s2", "+role-change", "slave 127.0.0.1:6379 127.0.0.1 6379 @ m 127.0.0.1 6380 new reported role is slave")
	f.Event("s2", "+switch-master", switchedTo)
	f.Event("s3", "+switch-master", switchedTo)
	f.Event("s2", "-role-change", "slave 127.0.0.1:6379 127.0.0.1 6379 @ m 127.0.0.1 6380 new reported role is master")
	f.Event("s2", "+role-change", "slave 127.0.0.1:6381 127.0.0.1 6381 @ m 127.0.0.1 6380 new reported role is slave")
	f.Event("s2", "+role-change", "slave 127.0.0.1:6379 127.0.0.1 6379 @ other 127.0.0.1 6380 new reported role is slave")
	f.Event("s2", "+role-change", "master m 127.0.0.1 6379 new reported role is master")
	if !f.Closed() {
		t.Fatal("opened by a role change that is not the old primary's demotion")
	}
	f.Event("s3", "+role-change", "slave 127.0.0.1:6379 127.0.0.1 6379 @ m 127.0.0.1 6380 new reported role is slave")
	waitOpen(t, f, "the old primary reports itself a replica")

	// The next failover, back: a late report on the first one's old
	// primary does not open it before a sentinel named the new primary.
	f.Event("s1", "+try-failover", "master m 127.0.0.1 6380")
	f.Event("s2", "+role-change", "slave 127.0.0.1:6379 127.0.0.1 6379 @ m 127.0.0.1 6380 new reported role is slave")
	if !f.Closed() {
		t.Fatal("opened by the previous failover's old primary")
	}
}

// TestFenceSettleAndMaxHold: a sentinel that never names the new primary,
// or a failover that never ends, holds the store only so long.
func TestFenceSettleAndMaxHold(t *testing.T) {
	f := redisstore.NewFence(redisstore.FenceOptions{Master: "m", Sentinels: 3, Settle: 20 * time.Millisecond, MaxHold: time.Hour})
	f.Event("s1", "+try-failover", tryFailover)
	f.Event("s2", "+switch-master", switchedTo)
	waitOpen(t, f, "Settle after the first +switch-master")

	g := redisstore.NewFence(redisstore.FenceOptions{Master: "m", Sentinels: 3, MaxHold: 20 * time.Millisecond})
	g.Event("s1", "+try-failover", tryFailover)
	waitOpen(t, g, "MaxHold")
}

// closeOn is a go-redis hook that closes the fence when a pipeline with
// the named command goes out: a failover that starts while a call runs.
type closeOn struct {
	f   *redisstore.Fence
	cmd string
	on  *atomic.Bool
}

func (h closeOn) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h closeOn) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h closeOn) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if h.on.Load() && strings.EqualFold(c.Name(), h.cmd) {
				h.f.Event("s1", "+try-failover", tryFailover)
			}
		}
		return err
	}
}

// TestStoreFenced: a store call waits while the fence is closed, and one
// that was running when it closed reports a transient error (its write
// may be on the old primary only), so the dispatcher writes it again.
func TestStoreFenced(t *testing.T) {
	env := redistest.New(t)
	ctx := context.Background()
	f := redisstore.NewFence(redisstore.FenceOptions{Master: "m", Sentinels: 1, Grace: time.Millisecond})
	s := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix, Fence: f, Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	w := dispatcher.LetterWrite{Citizen: "c1", MessageID: "m1",
		Done: []dispatcher.Outcome{{DeliveryID: "d1", Channel: channels.SMS, Result: dispatcher.ResultSent}}}
	if _, err := s.Write(ctx, w); err != nil {
		t.Fatalf("Write with the fence open: %v", err)
	}

	var on atomic.Bool
	env.Client.AddHook(closeOn{f: f, cmd: "hset", on: &on})
	on.Store(true)
	_, err := s.Write(ctx, w)
	on.Store(false)
	if !errors.Is(err, dispatcher.ErrTransient) || !errors.Is(err, redisstore.ErrFenced) {
		t.Fatalf("Write while a failover began = %v, want ErrTransient and ErrFenced", err)
	}

	// Closed: the call waits (here until its context ends).
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.Write(short, w); !errors.Is(err, dispatcher.ErrTransient) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write while the fence is closed = %v, want ErrTransient after waiting out its context", err)
	}

	f.Event("s1", "+switch-master", switchedTo)
	waitOpen(t, f, "+switch-master")
	if _, err := s.Write(ctx, w); err != nil {
		t.Fatalf("Write after the failover: %v", err)
	}
}

// TestLookupWriteAllFenced: a batch's transaction that was running when
// a failover began reports a transient error, as every store call does,
// and does not write again through the scripts on the old primary.
func TestLookupWriteAllFenced(t *testing.T) {
	env := redistest.New(t)
	f := redisstore.NewFence(redisstore.FenceOptions{Master: "m", Sentinels: 1, Grace: time.Millisecond})
	s := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix, Fence: f, Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	var on atomic.Bool
	env.Client.AddHook(closeOn{f: f, cmd: "exec", on: &on})
	on.Store(true)
	w := dispatcher.LetterWrite{Citizen: "c1", MessageID: "m1", InFlight: []string{"d1"},
		Arrive: &dispatcher.Arrival{Meta: &dispatcher.Letter{MessageID: "m1", SenderName: "Skat", ReceivedAt: time.Now()}}}
	_, err := s.LookupWriteAll(context.Background(), []dispatcher.EventRef{{Citizen: "c1", MessageID: "m1"}}, plannedAs(w))
	if !errors.Is(err, dispatcher.ErrTransient) || !errors.Is(err, redisstore.ErrFenced) {
		t.Fatalf("LookupWriteAll while a failover began = %v, want ErrTransient and ErrFenced", err)
	}
}

// TestReplicasFenced: a replica acknowledged the write, but a failover
// began while WaitReplicas ran: during a planned failover the old
// primary's other replicas still acknowledge writes the new primary never
// gets, so the wait must not count.
func TestReplicasFenced(t *testing.T) {
	primary, _ := startPair(t)
	ctx := context.Background()
	f := redisstore.NewFence(redisstore.FenceOptions{Master: "m", Sentinels: 1, Grace: time.Millisecond})
	r := redisstore.NewReplicas(primary, "t", 1, time.Second)
	r.UseFence(f)
	t.Cleanup(func() { r.Close() })
	if err := r.WaitReplicas(ctx); err != nil {
		t.Fatalf("WaitReplicas with the fence open: %v", err)
	}
	var on atomic.Bool
	on.Store(true)
	primary.AddHook(closeOn{f: f, cmd: "wait", on: &on})
	if err := r.WaitReplicas(ctx); !errors.Is(err, dispatcher.ErrTransient) || !errors.Is(err, redisstore.ErrFenced) {
		t.Fatalf("WaitReplicas while a failover began = %v, want ErrTransient and ErrFenced", err)
	}
	// Asked while closed: fails too, though the replica acknowledges.
	if err := r.WaitReplicas(ctx); !errors.Is(err, redisstore.ErrFenced) {
		t.Fatalf("WaitReplicas while the fence is closed = %v, want ErrFenced", err)
	}
}

// records is a slog handler that passes each record's message on.
type records chan string

func (r records) Enabled(context.Context, slog.Level) bool { return true }
func (r records) Handle(_ context.Context, rec slog.Record) error {
	m := rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		m += " " + a.String()
		return true
	})
	r <- m
	return nil
}
func (r records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r records) WithGroup(string) slog.Handler      { return r }

// next returns the next record's message, failing the test after a
// generous bound (a failover on loopback takes a few seconds).
func next(t *testing.T, r records) string {
	t.Helper()
	select {
	case m := <-r:
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("no fence log within 30 s")
		return ""
	}
}

// TestFenceSentinel runs a real planned failover (a primary, a replica and
// a sentinel of the test's own, SENTINEL FAILOVER): Watch closes the fence
// when the sentinel starts it, a store write made meanwhile waits and then
// lands on the promoted replica, and the fence opens once the sentinel
// names it.
func TestFenceSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("a real failover takes a few seconds")
	}
	primary, replica := startPair(t)
	sen := redistest.StartSentinel(t, "m", primary.Options().Addr, 1)
	sc := redis.NewSentinelClient(&redis.Options{Addr: sen.Addr})
	t.Cleanup(func() { sc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	waitFor(t, "the sentinel to see the replica", func() bool {
		reps, err := sc.Replicas(ctx, "m").Result()
		return err == nil && len(reps) == 1 && reps[0]["master-link-status"] == "ok"
	})

	plain := redis.NewClient(&redis.Options{Addr: sen.Addr})
	t.Cleanup(func() { plain.Close() })
	watch := func(log records) *redisstore.Fence {
		f := redisstore.NewFence(redisstore.FenceOptions{Master: "m", Sentinels: 1, Logger: slog.New(log)})
		c := redis.NewSentinelClient(&redis.Options{Addr: sen.Addr})
		watching := make(chan struct{})
		go func() {
			defer close(watching)
			f.Watch(ctx, []*redis.SentinelClient{c}, []string{sen.Addr})
		}()
		t.Cleanup(func() { cancel(); <-watching; c.Close() })
		return f
	}
	log := make(records, 16)
	f := watch(log)
	// The subscription is up once the sentinel lists a client with a
	// pattern (sentinels know no PUBSUB command).
	waitFor(t, "the fence to subscribe", func() bool {
		list, err := plain.ClientList(ctx).Result()
		return err == nil && strings.Contains(list, "psub=1")
	})

	// The store follows the sentinel's primary, as postbud's does.
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{sen.Addr}, MaxRetries: 15})
	t.Cleanup(func() { rdb.Close() })
	s := redisstore.New(rdb, redisstore.Options{Prefix: "f", Fence: f, Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	before := f.Token()
	if err := sc.Failover(ctx, "m").Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	// A fence that subscribes while the failover runs (its connection
	// was down when it began) asks the sentinel and closes too.
	late := make(records, 16)
	watch(late)
	if msg := next(t, log); !strings.Contains(msg, "holding") {
		t.Fatalf("first fence log = %q, want the close", msg)
	}
	if msg := next(t, late); !strings.Contains(msg, "holding") || !strings.Contains(msg, "failover_in_progress") {
		t.Fatalf("first log of the fence that subscribed late = %q, want the close on failover_in_progress", msg)
	}
	if !f.Broken(before) {
		t.Fatal("the failover did not break a token taken before it")
	}
	w := dispatcher.LetterWrite{Citizen: "c1", MessageID: "m1",
		Done: []dispatcher.Outcome{{DeliveryID: "d1", Channel: channels.SMS, Result: dispatcher.ResultSent}}}
	if _, err := s.Write(ctx, w); err != nil {
		t.Fatalf("Write during the failover: %v", err)
	}
	if f.Closed() {
		t.Fatal("a Write made during the failover returned before the fence opened")
	}
	if msg := next(t, log); !strings.Contains(msg, "resume") {
		t.Fatalf("second fence log = %q, want the open", msg)
	}
	role, err := replica.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) == 0 || role[0] != "master" {
		t.Fatalf("the replica's ROLE after the failover = %v, %v; want master", role, err)
	}
	_, port, _ := net.SplitHostPort(replica.Options().Addr)
	if n, err := replica.Exists(ctx, "f:{c1}:m:m1").Result(); err != nil || n != 1 {
		t.Fatalf("the write made during the failover is not on the new primary (port %s): %d, %v", port, n, err)
	}
}
