package failover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
)

// script is a provider that answers each call with the next of its
// answers (nil: accepted) and counts the calls per delivery id.
type script struct {
	name string
	mu   sync.Mutex
	errs []error
	sent map[string]int
}

func (p *script) Send(_ context.Context, _ channels.Address, a channels.Alert) (channels.Receipt, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	if len(p.errs) > 0 {
		err, p.errs = p.errs[0], p.errs[1:]
	}
	if err == nil {
		if p.sent == nil {
			p.sent = map[string]int{}
		}
		p.sent[a.DeliveryID]++
		return channels.Receipt{ProviderID: p.name + "-id"}, nil
	}
	return channels.Receipt{}, err
}

func (p *script) fail(errs ...error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, errs...)
}

// clock is a fake clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

var (
	err5xx      = channels.Refused(channels.Fail(channels.Transient, "http_503", errors.New("sms gateway: Service Unavailable")))
	errRefused  = channels.Fail(channels.Transient, "network", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	errTimeout  = channels.Interrupted(context.DeadlineExceeded)
	errReset    = channels.Fail(channels.Transient, "network", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET})
	errThrottle = channels.Refused(channels.Throttle(7*time.Second, "http_429", errors.New("slow down")))
	errGone     = channels.Refused(channels.Fail(channels.Gone, "http_400 0x0215", errors.New("blacklisted")))
	errPerm     = channels.Refused(channels.Fail(channels.Permanent, "http_400", errors.New("bad request")))
	errAuth     = channels.Refused(channels.Fail(channels.Misconfigured, "http_401", errors.New("unauthorized")))
)

func newTwo(t *testing.T, spill bool) (*Sender, *script, *script, *clock, *[]string) {
	t.Helper()
	a, b := &script{name: "a"}, &script{name: "b"}
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	var changes []string
	var mu sync.Mutex
	s, err := New(Config{Channel: channels.SMS, Providers: []Provider{{"a", a}, {"b", b}}, Threshold: 3,
		OpenFor: time.Minute, SpillOnThrottle: spill, Now: c.now,
		OnChange: func(p string, from, to State) {
			mu.Lock()
			defer mu.Unlock()
			changes = append(changes, fmt.Sprintf("%s:%s>%s", p, from, to))
		}})
	if err != nil {
		t.Fatal(err)
	}
	return s, a, b, c, &changes
}

func states(s *Sender) string {
	var out []string
	for _, p := range s.States() {
		out = append(out, p.Name+"="+p.State)
	}
	return strings.Join(out, " ")
}

// step is one send in a breaker scenario: the answers the providers give
// to it, the time that passes before it, and what must come of it.
type step struct {
	advance    time.Duration
	a, b       []error // queued answers of a and b for this send
	wantBy     string  // provider that took it ("" none)
	wantKind   channels.Kind
	wantStates string
}

func TestBreakerStates(t *testing.T) {
	ok := []error{nil}
	for _, tc := range []struct {
		name  string
		spill bool
		steps []step
	}{
		{name: "closed until the threshold, then open: traffic on b", steps: []step{
			{a: []error{err5xx}, wantBy: "b", b: ok, wantStates: "a=closed b=closed"},
			{a: []error{err5xx}, wantBy: "b", b: ok, wantStates: "a=closed b=closed"},
			{a: []error{err5xx}, wantBy: "b", b: ok, wantStates: "a=open b=closed"},
			{b: ok, wantBy: "b", wantStates: "a=open b=closed"}, // a is not called while open
		}},
		{name: "a success resets the count of failures in a row", steps: []step{
			{a: []error{err5xx}, b: ok, wantBy: "b", wantStates: "a=closed b=closed"},
			{a: []error{err5xx}, b: ok, wantBy: "b", wantStates: "a=closed b=closed"},
			{a: ok, wantBy: "a", wantStates: "a=closed b=closed"},
			{a: []error{err5xx}, b: ok, wantBy: "b", wantStates: "a=closed b=closed"},
		}},
		{name: "half-open probe succeeds: closed again", steps: []step{
			{a: []error{errRefused}, b: ok, wantBy: "b"},
			{a: []error{errRefused}, b: ok, wantBy: "b"},
			{a: []error{errRefused}, b: ok, wantBy: "b", wantStates: "a=open b=closed"},
			{advance: 59 * time.Second, b: ok, wantBy: "b", wantStates: "a=open b=closed"},
			{advance: time.Second, a: ok, wantBy: "a", wantStates: "a=closed b=closed"},
			{a: ok, wantBy: "a", wantStates: "a=closed b=closed"},
		}},
		{name: "half-open probe fails: open again for OpenFor", steps: []step{
			{a: []error{err5xx}, b: ok, wantBy: "b"},
			{a: []error{err5xx}, b: ok, wantBy: "b"},
			{a: []error{err5xx}, b: ok, wantBy: "b", wantStates: "a=open b=closed"},
			{advance: time.Minute, a: []error{err5xx}, b: ok, wantBy: "b", wantStates: "a=open b=closed"},
			{advance: 30 * time.Second, b: ok, wantBy: "b", wantStates: "a=open b=closed"},
			{advance: 30 * time.Second, a: ok, wantBy: "a", wantStates: "a=closed b=closed"},
		}},
		{name: "misconfigured counts as a failure", steps: []step{
			{a: []error{errAuth}, b: ok, wantBy: "b"},
			{a: []error{errAuth}, b: ok, wantBy: "b"},
			{a: []error{errAuth}, b: ok, wantBy: "b", wantStates: "a=open b=closed"},
		}},
		{name: "429 is no failure: rested for its Retry-After while b takes the traffic", spill: true, steps: []step{
			{a: []error{errThrottle}, b: ok, wantBy: "b", wantStates: "a=throttled b=closed"},
			{advance: 6 * time.Second, b: ok, wantBy: "b", wantStates: "a=throttled b=closed"},
			{a: []error{errThrottle}, advance: time.Second, wantBy: "b", b: ok, wantStates: "a=throttled b=closed"},
			{a: []error{errThrottle}, advance: 7 * time.Second, wantBy: "b", b: ok, wantStates: "a=throttled b=closed"},
			{advance: 7 * time.Second, a: ok, wantBy: "a", wantStates: "a=closed b=closed"},
		}},
		{name: "429 without spill: the send waits for the provider", steps: []step{
			{a: []error{errThrottle}, wantKind: channels.Throttled, wantStates: "a=throttled b=closed"},
			{a: []error{errThrottle}, wantKind: channels.Throttled, wantStates: "a=throttled b=closed"},
			{a: []error{errThrottle}, wantKind: channels.Throttled, wantStates: "a=throttled b=closed"},
			{a: []error{errThrottle}, wantKind: channels.Throttled, wantStates: "a=throttled b=closed"},
		}},
		{name: "permanent and gone count as answers and never move on", steps: []step{
			{a: []error{err5xx}, b: ok, wantBy: "b"},
			{a: []error{err5xx}, b: ok, wantBy: "b"},
			{a: []error{errPerm}, wantKind: channels.Permanent, wantStates: "a=closed b=closed"},
			{a: []error{err5xx}, b: ok, wantBy: "b"},
			{a: []error{err5xx}, b: ok, wantBy: "b"},
			{a: []error{errGone}, wantKind: channels.Gone, wantStates: "a=closed b=closed"},
			{a: []error{err5xx}, b: ok, wantBy: "b", wantStates: "a=closed b=closed"},
		}},
		{name: "an unsure failure counts but never moves on", steps: []step{
			{a: []error{errTimeout}, wantKind: channels.Transient, wantStates: "a=closed b=closed"},
			{a: []error{errReset}, wantKind: channels.Transient, wantStates: "a=closed b=closed"},
			{a: []error{errTimeout}, wantKind: channels.Transient, wantStates: "a=open b=closed"},
			{b: ok, wantBy: "b"},
		}},
		{name: "both open: no call, a transient failure", steps: []step{
			{a: []error{err5xx}, b: []error{err5xx}, wantKind: channels.Transient},
			{a: []error{err5xx}, b: []error{err5xx}, wantKind: channels.Transient},
			{a: []error{err5xx}, b: []error{err5xx}, wantKind: channels.Transient, wantStates: "a=open b=open"},
			{wantKind: channels.Transient, wantStates: "a=open b=open"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, a, b, c, _ := newTwo(t, tc.spill)
			for i, st := range tc.steps {
				c.advance(st.advance)
				a.fail(st.a...)
				b.fail(st.b...)
				id := fmt.Sprintf("d%d", i)
				rc, err := s.Send(context.Background(), channels.Address{Value: "+4520123456"}, channels.Alert{DeliveryID: id})
				if st.wantBy != "" {
					if err != nil || rc.Provider != st.wantBy {
						t.Fatalf("step %d: provider %q, %v; want taken by %s", i, rc.Provider, err, st.wantBy)
					}
				} else if err == nil || channels.KindOf(err) != st.wantKind {
					t.Fatalf("step %d: %v (%v), want a %v failure", i, err, rc, st.wantKind)
				}
				if st.wantStates != "" {
					if got := states(s); got != st.wantStates {
						t.Fatalf("step %d: states %s, want %s", i, got, st.wantStates)
					}
				}
				if len(a.errs) > 0 || len(b.errs) > 0 {
					t.Fatalf("step %d: answers left unused: a %v, b %v (a provider was not called)", i, a.errs, b.errs)
				}
				if a.sent[id]+b.sent[id] > 1 {
					t.Fatalf("step %d: sent %d times", i, a.sent[id]+b.sent[id])
				}
			}
		})
	}
}

// TestChangesReportedOnce: each change of state is reported once, however
// many sends meet it.
func TestChangesReportedOnce(t *testing.T) {
	s, a, b, c, changes := newTwo(t, false)
	send := func() {
		_, _ = s.Send(context.Background(), channels.Address{}, channels.Alert{DeliveryID: "x"})
	}
	a.fail(err5xx, err5xx, err5xx)
	b.fail(nil, nil, nil)
	send()
	send()
	send()
	for range 10 {
		b.fail(nil)
		send()
	}
	c.advance(time.Minute)
	a.fail(nil)
	send()
	send()
	want := []string{"a:closed>open", "a:open>half-open", "a:half-open>closed"}
	if !slices.Equal(*changes, want) {
		t.Errorf("changes %v, want %v", *changes, want)
	}
}

// TestPinned: a pinned alert goes to its provider only, whatever its state,
// and every failure keeps it pinned (unsure).
func TestPinned(t *testing.T) {
	s, a, b, _, _ := newTwo(t, true)
	alert := channels.Alert{DeliveryID: "d", Provider: "a"}
	a.fail(err5xx)
	_, err := s.Send(context.Background(), channels.Address{}, alert)
	if p, unsure := channels.ProviderOf(err); p != "a" || !unsure {
		t.Fatalf("pinned send refused by a: %v (provider %q, unsure %v); want pinned to a", err, p, unsure)
	}
	if len(b.sent) != 0 {
		t.Fatal("a pinned alert went to the other provider")
	}
	a.fail(err5xx, err5xx)
	_, _ = s.Send(context.Background(), channels.Address{}, alert)
	_, _ = s.Send(context.Background(), channels.Address{}, alert)
	_, err = s.Send(context.Background(), channels.Address{}, alert) // a is open: not called
	if p, unsure := channels.ProviderOf(err); p != "a" || !unsure || channels.CodeOf(err) != "circuit open" {
		t.Fatalf("pinned send with a open: %v (provider %q, unsure %v)", err, p, unsure)
	}
	if len(b.sent) != 0 {
		t.Fatal("a pinned alert went to the other provider")
	}
	_, err = s.Send(context.Background(), channels.Address{}, channels.Alert{DeliveryID: "d", Provider: "gone"})
	if channels.KindOf(err) != channels.Permanent {
		t.Fatalf("pinned to an unknown provider: %v, want permanent", err)
	}
}

// TestHandoffBeforeEachCall: the hook names each provider before it is
// called; its error stops the send before the call.
func TestHandoffBeforeEachCall(t *testing.T) {
	s, a, b, _, _ := newTwo(t, false)
	var handed []string
	ctx := channels.WithHandoff(context.Background(), func(p string) error {
		handed = append(handed, p)
		if p == "b" {
			return errors.New("store down")
		}
		return nil
	})
	a.fail(err5xx)
	_, err := s.Send(ctx, channels.Address{}, channels.Alert{DeliveryID: "d"})
	if err == nil || !slices.Equal(handed, []string{"a", "b"}) || len(b.sent) != 0 {
		t.Fatalf("err %v, handed %v, b sent %v: want a then b named, b never called", err, handed, b.sent)
	}
}

func TestUnsure(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{err5xx, false},
		{errRefused, false},
		{channels.Fail(channels.Transient, "network", &net.DNSError{Err: "no such host", Name: "x"}), false},
		{errThrottle, false},
		{errGone, false},
		{errPerm, false},
		{errAuth, false},
		{errTimeout, true},
		{errReset, true},
		{channels.Fail(channels.Transient, "http_503", errors.New("not marked refused")), true},
		{errors.New("unclassified"), true},
	} {
		if got := channels.Unsure(tc.err); got != tc.want {
			t.Errorf("Unsure(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// gated is a provider whose first call waits for the gate to open; later
// calls answer at once.
type gated struct {
	calls   atomic.Int32
	entered chan struct{} // closed when the first call is in
	gate    chan struct{}
}

func (g *gated) Send(ctx context.Context, _ channels.Address, _ channels.Alert) (channels.Receipt, error) {
	if g.calls.Add(1) > 1 {
		return channels.Receipt{ProviderID: "gated-second"}, nil
	}
	close(g.entered)
	<-g.gate
	return channels.Receipt{ProviderID: "gated"}, nil
}

// TestHalfOpenOneProbe: while a probe of a half-open provider is in flight,
// other sends do not pile onto it: they go to the next provider.
func TestHalfOpenOneProbe(t *testing.T) {
	a := &gated{entered: make(chan struct{}), gate: make(chan struct{})}
	b := &script{name: "b"}
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	fails := &script{name: "a-failing"}
	var mu sync.Mutex
	current := channels.Sender(fails)
	sw := channels.SenderFunc(func(ctx context.Context, to channels.Address, al channels.Alert) (channels.Receipt, error) {
		mu.Lock()
		p := current
		mu.Unlock()
		return p.Send(ctx, to, al)
	})
	s, err := New(Config{Providers: []Provider{{"a", sw}, {"b", b}}, Threshold: 1, OpenFor: time.Minute, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	fails.fail(err5xx)
	if rc, err := s.Send(context.Background(), channels.Address{}, channels.Alert{DeliveryID: "d0"}); err != nil || rc.Provider != "b" {
		t.Fatalf("first send: %v %v", rc, err)
	}
	c.advance(time.Minute)
	mu.Lock()
	current = a
	mu.Unlock()
	var openGate sync.Once
	release := func() { openGate.Do(func() { close(a.gate) }) }
	defer release() // a failing test does not leave the probe waiting
	probe := make(chan error, 1)
	go func() {
		_, err := s.Send(context.Background(), channels.Address{}, channels.Alert{DeliveryID: "probe"})
		probe <- err
	}()
	<-a.entered // the probe is in a
	if got := states(s); got != "a=half-open b=closed" {
		t.Errorf("during the probe: %s", got)
	}
	for i := range 3 {
		rc, err := s.Send(context.Background(), channels.Address{}, channels.Alert{DeliveryID: fmt.Sprint("d", i+1)})
		if err != nil || rc.Provider != "b" {
			t.Fatalf("send during the probe: %v %v, want b", rc, err)
		}
	}
	release()
	if err := <-probe; err != nil {
		t.Fatal(err)
	}
	if got := states(s); got != "a=closed b=closed" {
		t.Errorf("after the probe: %s", got)
	}
}
