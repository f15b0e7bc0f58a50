package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The failover fence. A planned Sentinel failover (SENTINEL FAILOVER, a
// rolling update) promotes a replica while the old primary is alive and
// still takes writes: for about a second after the promotion the other
// replicas are still attached to it, so even WAIT 1 succeeds, and then all
// those writes are discarded when the old primary rejoins as a replica of
// the new one. Measured with postbud-chaos -scenario switchover: 1.35 % of
// SMS sent twice and the odd 202 lost, with POSTBUD_ACK_REPLICAS=1.
//
// The sentinel leading a failover publishes each step on its pub/sub
// (+try-failover ~150 ms before it sends SLAVEOF NO ONE to the replica it
// picks, then +selected-slave, +promoted-slave, ...), and every sentinel
// publishes +switch-master once it knows the new primary. A Fence listens
// to all of them and is closed from the first step until every sentinel
// has named the new primary (go-redis's failover client follows one
// sentinel's +switch-master; the leader's comes last, once the other
// replicas are reconfigured), or until the old primary reports itself a
// replica (a write that still reaches it fails, and go-redis retries it on
// the new one). While it is closed the store holds its calls
// (so no provider is called whose answer could not be recorded), and a
// write or a replica wait that was in progress when it closed reports
// dispatcher.ErrTransient: it may have gone to the old primary. The
// dispatcher writes a provider's answer again on that error, and the write
// is idempotent, so it lands on the new primary.

// ErrFenced is wrapped (with dispatcher.ErrTransient) by a call that ran
// while a Sentinel failover was under way: its writes may be lost.
var ErrFenced = errors.New("redisstore: Sentinel failover in progress: write not confirmed")

// FenceOptions tune a Fence. Zero values take the defaults.
type FenceOptions struct {
	// Master is the name the sentinels monitor.
	Master string
	// Sentinels is how many sentinels are watched: the fence opens once
	// that many named the new primary.
	Sentinels int
	// Settle opens the fence that long after the first +switch-master even
	// if some sentinel never named the new primary and the old primary was
	// not seen demoted (default 30 s: hello messages tell the others within
	// 2 s; the leader is last, once the other replicas have re-synced).
	Settle time.Duration
	// MaxHold opens a fence that was closed that long without any
	// +switch-master or abort (default 60 s).
	MaxHold time.Duration
	// Grace keeps the fence closed that long after the last sentinel named
	// the new primary, so go-redis, which hears the same message on a
	// connection of its own, has dropped its connections to the old one
	// (default 250 ms).
	Grace time.Duration
	// Logger gets one line per close and open (default: discarded).
	Logger *slog.Logger
}

// Fence is closed while a Sentinel failover is under way. The zero of
// *Fence (nil) is always open. Feed it with Watch (real sentinels) or
// Event.
type Fence struct {
	o FenceOptions

	mu       sync.Mutex
	gen      uint64 // grows by one on every close
	closed   bool
	opened   chan struct{}   // closed while the fence is open
	switched map[string]bool // sentinels that named the new primary
	primary  string          // the new primary they named
	old      string          // the primary it replaced
	timer    *time.Timer
}

// FenceToken is the fence's state when a call started.
type FenceToken struct {
	gen  uint64
	open bool
}

// NewFence returns an open fence.
func NewFence(o FenceOptions) *Fence {
	if o.Settle <= 0 {
		o.Settle = 30 * time.Second
	}
	if o.MaxHold <= 0 {
		o.MaxHold = time.Minute
	}
	if o.Grace <= 0 {
		o.Grace = 250 * time.Millisecond
	}
	if o.Sentinels <= 0 {
		o.Sentinels = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fence{o: o, opened: make(chan struct{})}
	close(f.opened)
	return f
}

// Token returns the fence's state now.
func (f *Fence) Token() FenceToken {
	if f == nil {
		return FenceToken{open: true}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return FenceToken{gen: f.gen, open: !f.closed}
}

// Broken reports whether writes made since t was taken may be lost: the
// fence was closed then, is closed now, or closed in between.
func (f *Fence) Broken(t FenceToken) bool {
	if f == nil {
		return false
	}
	now := f.Token()
	return !t.open || !now.open || now.gen != t.gen
}

// Closed reports whether a failover is under way.
func (f *Fence) Closed() bool { return !f.Token().open }

// Wait returns once the fence is open, or ctx's error.
func (f *Fence) Wait(ctx context.Context) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	ch := f.opened
	f.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closing are the events by which the leading sentinel reports the first
// steps of a failover of a primary, up to the promotion (the instance
// events name the primary after "@"). The later ones (+slave-reconf-*,
// +failover-end) can come after the other sentinels named the new primary
// and the fence opened: they must not close it again.
var closing = []string{"+try-failover", "+elected-leader", "+failover-state-select-slave", "+selected-slave",
	"+failover-state-send-slaveof-noone", "+failover-state-wait-promotion", "+promoted-slave"}

// Event feeds the fence one message a sentinel published: channel and
// payload as PSUBSCRIBE delivers them; sentinel names the publisher.
func (f *Fence) Event(sentinel, channel, payload string) {
	switch {
	case channel == "+switch-master":
		// <master> <old ip> <old port> <new ip> <new port>
		if p := strings.Fields(payload); len(p) == 5 && p[0] == f.o.Master {
			f.switchMaster(sentinel, p[1]+":"+p[2], p[3]+":"+p[4])
		}
	case channel == "+role-change":
		// "slave <name> <ip> <port> @ <master> <ip> <port> new reported
		// role is slave": a sentinel saw an instance report the role it
		// has in the sentinel's own configuration (-role-change: another).
		p := strings.Fields(payload)
		if len(p) >= 8 && p[0] == "slave" && masterOf(payload) == f.o.Master {
			f.demoted(p[2] + ":" + p[3])
		}
	case strings.HasPrefix(channel, "-failover-abort-"):
		if masterOf(payload) == f.o.Master {
			f.open("failover aborted: " + channel)
		}
	default:
		for _, c := range closing {
			if channel == c && masterOf(payload) == f.o.Master {
				f.close(channel)
				return
			}
		}
	}
}

// masterOf is the master name in an instance event: "master <name> <ip>
// <port>", or "<type> <name> <ip> <port> @ <master> <ip> <port>".
func masterOf(payload string) string {
	p := strings.Fields(payload)
	if len(p) >= 8 && p[4] == "@" {
		return p[5]
	}
	if len(p) >= 2 && p[0] == "master" {
		return p[1]
	}
	return ""
}

func (f *Fence) close(why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closeLocked(why)
}

func (f *Fence) closeLocked(why string) {
	if f.closed {
		return
	}
	f.gen++
	f.closed = true
	f.opened = make(chan struct{})
	f.switched = map[string]bool{}
	gen := f.gen
	f.timer = time.AfterFunc(f.o.MaxHold, func() { f.openGen(gen, "no +switch-master within "+f.o.MaxHold.String()) })
	// The number keeps the lines of successive failovers distinct (postbud
	// holds back repeated identical lines).
	f.o.Logger.Warn(fmt.Sprintf("Redis failover %d under way: holding store calls", f.gen), "event", why)
}

// demoted opens the fence once the primary a failover replaced reports
// itself a replica: from then on a write that still reaches it fails
// (READONLY) and go-redis takes it to the new primary, whichever sentinel
// it follows. In a large data set the leader names the new primary only
// after the other replicas' full re-sync; this comes ~10 s after the
// promotion.
func (f *Fence) demoted(addr string) {
	f.mu.Lock()
	ok := f.closed && len(f.switched) > 0 && addr == f.old
	gen := f.gen
	f.mu.Unlock()
	if ok {
		f.openGen(gen, "the old primary is a replica now")
	}
}

func (f *Fence) switchMaster(sentinel, old, primary string) {
	f.mu.Lock()
	if !f.closed && primary == f.primary {
		// A late report of the failover the fence opened after.
		f.mu.Unlock()
		return
	}
	f.primary, f.old = primary, old
	if !f.closed {
		// A sentinel that learnt of a failover it did not lead (or one we
		// missed the start of): the writes since may be on the old
		// primary. Close and count this as its report.
		f.closeLocked("+switch-master")
	}
	first := len(f.switched) == 0
	f.switched[sentinel] = true
	all := len(f.switched) >= f.o.Sentinels
	gen := f.gen
	if first && !all {
		f.timer.Stop()
		f.timer = time.AfterFunc(f.o.Settle, func() { f.openGen(gen, "not every sentinel named the new primary within "+f.o.Settle.String()) })
	}
	if all {
		f.timer.Stop()
		f.timer = time.AfterFunc(f.o.Grace, func() { f.openGen(gen, "every sentinel named the new primary") })
	}
	f.mu.Unlock()
}

func (f *Fence) open(why string) {
	f.mu.Lock()
	gen := f.gen
	f.mu.Unlock()
	f.openGen(gen, why)
}

// openGen opens the fence if it is still the close of generation gen.
func (f *Fence) openGen(gen uint64, why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed || f.gen != gen {
		return
	}
	f.closed = false
	f.timer.Stop()
	close(f.opened)
	f.o.Logger.Warn(fmt.Sprintf("Redis failover %d over: store calls resume", f.gen), "why", why)
}

// Watch subscribes to every sentinel's events and feeds them to the fence
// until ctx ends. A subscription that drops is made again by go-redis;
// on every (re)subscription the sentinel is asked whether it is leading a
// failover now, so a start missed while disconnected still closes the
// fence.
func (f *Fence) Watch(ctx context.Context, sentinels []*redis.SentinelClient, names []string) {
	var wg sync.WaitGroup
	for i, s := range sentinels {
		wg.Go(func() { f.watch(ctx, s, names[i]) })
	}
	wg.Wait()
}

func (f *Fence) watch(ctx context.Context, s *redis.SentinelClient, name string) {
	ps := s.PSubscribe(ctx, "*")
	defer ps.Close()
	ch := ps.ChannelWithSubscriptions()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Message:
				f.Event(name, m.Channel, m.Payload)
			case *redis.Subscription:
				if st, err := s.Master(ctx, f.o.Master).Result(); err == nil && strings.Contains(st["flags"], "failover_in_progress") {
					f.close("failover_in_progress on (re)subscribing")
				}
			}
		}
	}
}
