package redisstore_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
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

// A store call's pipeline can run twice: done runs a call again when a
// script was lost (NOSCRIPT: a restart, a failover to a replica, SCRIPT
// FLUSH), and go-redis runs a whole pipeline again when the connection
// fails before the replies are in. Commands that already ran then run
// again; the trail still shows each entry once.

const replayCitizen = "cit-replay"

func replayLetter(id string, at time.Time) *dispatcher.Letter {
	return &dispatcher.Letter{MessageID: id, SenderID: "sender-1", SenderName: "Skattestyrelsen",
		Priority: "normal", ReceivedAt: at}
}

func replayOutcome(at time.Time, id, result string) dispatcher.Outcome {
	return dispatcher.Outcome{At: at, DeliveryID: id, Channel: channels.SMS, Result: result, Attempt: 1}
}

// trailOf returns a letter's trail as "result delivery" lines.
func trailOf(t *testing.T, s *redisstore.Store, msg string) []string {
	t.Helper()
	trail, err := s.Trail(t.Context(), msg)
	if err != nil {
		t.Fatalf("Trail(%s): %v", msg, err)
	}
	var out []string
	for _, o := range trail {
		out = append(out, o.Result+" "+o.DeliveryID)
	}
	return out
}

// noscripts returns how many NOSCRIPT errors Redis has answered.
func noscripts(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(t.Context(), "errorstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "errorstat_NOSCRIPT:count="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// TestTrailAfterNoScript: the storetest WriteAll batch (an arrival with
// two deliveries in flight, then one's final outcome and the other's
// retrying entry, here with a skipped entry besides) after Redis lost its
// scripts. Its pipeline meets NOSCRIPT and runs again; each entry is in
// the trail once.
func TestTrailAfterNoScript(t *testing.T) {
	srv := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { c.Close() })
	s := redisstore.New(c, redisstore.Options{Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	at := time.Now().Truncate(time.Millisecond)

	// The scripts are loaded (an arrival), then lost.
	if _, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: replayCitizen, MessageID: "msg-0",
		Arrive: &dispatcher.Arrival{Meta: replayLetter("msg-0", at)}}); err != nil {
		t.Fatal(err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	before := noscripts(t, c)
	res, err := s.WriteAll(ctx, []dispatcher.LetterWrite{
		{Citizen: replayCitizen, MessageID: "msg-1", Arrive: &dispatcher.Arrival{Meta: replayLetter("msg-1", at)},
			InFlight: []string{"d-1", "d-2"}},
		{Citizen: replayCitizen, MessageID: "msg-1", Done: []dispatcher.Outcome{replayOutcome(at, "d-1", dispatcher.ResultSent)},
			Trail: []dispatcher.Outcome{replayOutcome(at.Add(time.Millisecond), "d-2", dispatcher.ResultRetrying),
				{At: at.Add(2 * time.Millisecond), Channel: channels.Email, Result: dispatcher.ResultSkipped, Reason: "quiet hours"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if noscripts(t, c) == before {
		t.Fatal("the write met no NOSCRIPT: the test does not run the pipeline twice")
	}
	if res[0].Unread != 2 {
		t.Errorf("unread count after the arrival = %d, want 2", res[0].Unread)
	}
	if got, want := trailOf(t, s, "msg-1"), []string{"sent d-1", "retrying d-2", "skipped "}; !equalLines(got, want) {
		t.Errorf("trail = %q, want %q", got, want)
	}
	l, err := s.Load(ctx, replayCitizen, "msg-1")
	if err != nil {
		t.Fatal(err)
	}
	if !l.Letter.Done["d-1"] || len(l.Letter.InFlight) != 0 {
		t.Errorf("letter: done %v, in flight %v; want d-1 done, nothing in flight", l.Letter.Done, l.Letter.InFlight)
	}
}

// TestTrailAfterPipelineRetry: the connection drops after Redis ran a
// write's pipeline and before its replies reach the client; go-redis runs
// the pipeline again on a new connection. The trail entry shows once.
func TestTrailAfterPipelineRetry(t *testing.T) {
	s, direct, px := dropStore(t)
	ctx := t.Context()
	at := time.Now().Truncate(time.Millisecond)

	if _, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: replayCitizen, MessageID: "msg-1",
		Arrive: &dispatcher.Arrival{Meta: replayLetter("msg-1", at)}, InFlight: []string{"d-1"},
		Trail: []dispatcher.Outcome{{At: at, Channel: channels.Email, Result: dispatcher.ResultSkipped}}}); err != nil {
		t.Fatal(err)
	}
	// The write's last command tracks d-9: once that is in, Redis ran
	// the whole pipeline, and the proxy drops the connection.
	px.arm([]byte("rpush"), func() bool { return direct.Exists(ctx, "pb:dl:d-9").Val() == 1 })
	if _, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: replayCitizen, MessageID: "msg-1",
		Trail: []dispatcher.Outcome{replayOutcome(at.Add(time.Millisecond), "d-1", dispatcher.ResultRetrying)},
		Track: []string{"d-9"}}); err != nil {
		t.Fatalf("the write with its connection dropped once: %v (go-redis should have run it again)", err)
	}
	px.mustHaveDropped(1)
	if got, want := trailOf(t, s, "msg-1"), []string{"skipped ", "retrying d-1"}; !equalLines(got, want) {
		t.Errorf("trail = %q, want %q", got, want)
	}
}

// TestArrivalClaimAfterPipelineRetry: an arrival's pipeline ran, its
// connection dropped before the replies, and go-redis ran it again. The
// second run finds the in-flight mark its own first run claimed and takes
// it again (the mark carries the call's id): nothing comes back taken, so
// the run sends its alert instead of leaving it to nobody.
func TestArrivalClaimAfterPipelineRetry(t *testing.T) {
	s, direct, px := dropStore(t)
	ctx := t.Context()
	at := time.Now().Truncate(time.Millisecond)
	// An earlier arrival loads the script (a NOSCRIPT would re-run the
	// pipeline without the proxy's help).
	if _, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: replayCitizen, MessageID: "msg-0",
		Arrive: &dispatcher.Arrival{Meta: replayLetter("msg-0", at)}}); err != nil {
		t.Fatal(err)
	}
	// The arrival's last command tracks d-9: once that is in, Redis ran
	// the whole pipeline, and the proxy drops the connection.
	px.arm([]byte("evalsha"), func() bool { return direct.Exists(ctx, "pb:dl:d-9").Val() == 1 })
	res, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: replayCitizen, MessageID: "msg-1",
		Arrive: &dispatcher.Arrival{Meta: replayLetter("msg-1", at)}, InFlight: []string{"d-1", "d-9"}, Track: []string{"d-9"}})
	if err != nil {
		t.Fatalf("the arrival with its connection dropped once: %v (go-redis should have run it again)", err)
	}
	px.mustHaveDropped(1)
	if len(res.Taken) != 0 {
		t.Errorf("taken %v after the call ran twice, want none: the call's own claims", res.Taken)
	}
	l, err := s.Load(ctx, replayCitizen, "msg-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Letter.InFlight) != 2 {
		t.Errorf("in flight %v, want d-1 and d-9", l.Letter.InFlight)
	}
}

// TestHolderClaimAfterPipelineRetry: the same for the claims of a write
// without an arrival (an access holder's deliveries, claimScript).
func TestHolderClaimAfterPipelineRetry(t *testing.T) {
	s, direct, px := dropStore(t)
	ctx := t.Context()
	at := time.Now().Truncate(time.Millisecond)
	for _, msg := range []string{"msg-0", "msg-1"} {
		if _, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: replayCitizen, MessageID: msg,
			Arrive: &dispatcher.Arrival{Meta: replayLetter(msg, at)}}); err != nil {
			t.Fatal(err)
		}
	}
	// A claim on msg-0 loads the script.
	if _, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: replayCitizen, MessageID: "msg-0", InFlight: []string{"d-0"},
		Claim: true}); err != nil {
		t.Fatal(err)
	}
	px.arm([]byte("evalsha"), func() bool { return direct.Exists(ctx, "pb:dl:d-9").Val() == 1 })
	res, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: replayCitizen, MessageID: "msg-1", InFlight: []string{"h-1", "d-9"},
		Track: []string{"d-9"}, Claim: true, Follows: true})
	if err != nil {
		t.Fatalf("the claim with its connection dropped once: %v (go-redis should have run it again)", err)
	}
	px.mustHaveDropped(1)
	if len(res.Taken) != 0 {
		t.Errorf("taken %v after the call ran twice, want none: the call's own claims", res.Taken)
	}
	// Another run's claim of the same deliveries finds them taken.
	res, err = s.Write(ctx, dispatcher.LetterWrite{Citizen: replayCitizen, MessageID: "msg-1", InFlight: []string{"h-1"},
		Claim: true, Follows: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Taken) != 1 || res.Taken[0] != "h-1" {
		t.Errorf("another run's claim: taken %v, want [h-1]", res.Taken)
	}
}

// dropStore returns a store ("pb" prefix) whose client goes through a
// dropProxy and retries (go-redis runs a call again after the proxy drops
// its connection), and a client straight to the same Redis.
func dropStore(t *testing.T) (*redisstore.Store, *redis.Client, *dropProxy) {
	t.Helper()
	srv := redistest.StartServer(t)
	direct := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { direct.Close() })
	px := startDropProxy(t, srv.Addr)
	c := redis.NewClient(&redis.Options{Addr: px.addr(), MaxRetries: 3})
	t.Cleanup(func() { c.Close() })
	s := redisstore.New(c, redisstore.Options{Prefix: "pb", Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	return s, direct, px
}

// mustHaveDropped fails the test unless the proxy dropped n connections:
// else the call under test did not run twice.
func (p *dropProxy) mustHaveDropped(n int32) {
	p.t.Helper()
	if got := p.dropped.Load(); got != n {
		p.t.Fatalf("the proxy dropped %d connections, want %d: the test does not run the call twice", got, n)
	}
}

func equalLines(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// dropProxy forwards TCP connections to a Redis server. Armed, it drops
// the first connection whose request holds a marker (lower case: go-redis
// sends command names so): the replies to that
// request are swallowed, and once ready reports the request ran, both
// sides of the connection are closed.
type dropProxy struct {
	t       *testing.T
	ln      net.Listener
	target  string
	wg      sync.WaitGroup
	mu      sync.Mutex
	marker  []byte
	ready   func() bool
	conns   []net.Conn
	dropped atomic.Int32
}

func startDropProxy(t *testing.T, target string) *dropProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{t: t, ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *dropProxy) addr() string { return p.ln.Addr().String() }

func (p *dropProxy) arm(marker []byte, ready func() bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.marker, p.ready = marker, ready
}

func (p *dropProxy) accept() {
	for {
		cc, err := p.ln.Accept()
		if err != nil {
			return
		}
		sc, err := net.Dial("tcp", p.target)
		if err != nil {
			cc.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, cc, sc)
		p.mu.Unlock()
		var swallow atomic.Bool
		p.wg.Go(func() { // server to client
			buf := make([]byte, 64<<10)
			for {
				n, err := sc.Read(buf)
				if n > 0 && !swallow.Load() {
					if _, werr := cc.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					cc.Close()
					return
				}
			}
		})
		p.wg.Go(func() { // client to server
			defer sc.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := cc.Read(buf)
				if n > 0 {
					p.mu.Lock()
					ready := p.ready
					hit := ready != nil && bytes.Contains(bytes.ToLower(buf[:n]), p.marker)
					if hit {
						p.marker, p.ready = nil, nil
					}
					p.mu.Unlock()
					if hit {
						swallow.Store(true)
					}
					if _, werr := sc.Write(buf[:n]); werr != nil {
						return
					}
					if hit {
						p.waitReady(ready)
						p.dropped.Add(1)
						cc.Close()
						return
					}
				}
				if err != nil {
					if err != io.EOF {
						cc.Close()
					}
					return
				}
			}
		})
	}
}

func (p *dropProxy) waitReady(ready func() bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !ready() {
		select {
		case <-ctx.Done():
			p.t.Error("the armed request did not run within 10 s")
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}
