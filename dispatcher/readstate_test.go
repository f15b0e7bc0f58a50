package dispatcher_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/channels/webhook/webhooktest"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/webhooksync"
)

func newPlatforms(t *testing.T) (map[event.Platform]*webhooktest.Receiver, dispatcher.Syncer) {
	recv := map[event.Platform]*webhooktest.Receiver{}
	cfg := webhook.Config{Endpoints: map[string]webhook.Endpoint{}, Timeout: 5 * time.Second}
	for _, p := range event.ReadingPlatforms() {
		r := webhooktest.New(t, webhooktest.Options{})
		recv[p] = r
		cfg.Endpoints[string(p)] = r.Endpoint()
	}
	s, err := webhook.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return recv, webhooksync.New(s)
}

// change is one read or unread as a platform sent it.
type change struct {
	read     bool
	at       time.Time
	platform event.Platform
}

// wins reports whether a beats b under the documented rule: later time;
// on a tie read over unread; then the greater platform name.
func (a change) wins(b change) bool {
	if !a.at.Equal(b.at) {
		return a.at.After(b.at)
	}
	if a.read != b.read {
		return a.read
	}
	return a.platform > b.platform
}

func TestReadStateConvergesOnEveryPlatform(t *testing.T) {
	t.Parallel()
	recv, syncer := newPlatforms(t)
	h := newHarnessSync(t, syncer)
	h.start()
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("seed %d", seed)

	cprs := []string{"010190-1234", "020291-2345", "030392-3456", "040493-4567"}
	for _, cpr := range cprs {
		consent(h, cpr, "e-boks", "mit.dk")
	}
	// The consents are the citizens' standing state: in place before any
	// letter or read. Left in the queue, they race the reads (normal lane
	// against urgent) and a sync to mit.dk or e-Boks that runs first is
	// dropped for want of consent.
	h.idle()
	const letters = 24
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	type letterInfo struct {
		id, cpr string
		changes []change
	}
	var all []letterInfo
	var events []string
	for i := range letters {
		li := letterInfo{id: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), cpr: cprs[i%len(cprs)]}
		events = append(events, letter(fmt.Sprintf("l%d", i), li.id, li.cpr))
		for j := range 2 + rng.IntN(6) {
			c := change{read: rng.IntN(3) > 0, platform: event.ReadingPlatforms()[rng.IntN(4)],
				// Few distinct times, so ties happen.
				at: base.Add(time.Duration(rng.IntN(8)) * time.Second)}
			li.changes = append(li.changes, c)
			typ := "message.unread"
			if c.read {
				typ = "message.read"
			}
			ev := wire(fmt.Sprintf("r%d-%d", i, j), typ, map[string]any{"message_id": li.id,
				"recipient": map[string]any{"cpr": li.cpr}, "platform": string(c.platform), "at": c.at.Format(time.RFC3339Nano)})
			events = append(events, ev)
			if rng.IntN(4) == 0 {
				events = append(events, ev) // duplicated
			}
		}
		all = append(all, li)
	}
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })

	// e-boks is down for the first part of the run; mit.dk answers slowly.
	recv[event.EBoks].SetDown(true)
	recv[event.MitDK].SetDelay(20 * time.Millisecond)
	for i, ev := range events {
		h.accept(ev)
		if i == len(events)/2 {
			recv[event.EBoks].SetDown(false)
		}
	}
	h.idle()

	ctx := context.Background()
	unread := map[string]int{}
	for _, li := range all {
		// The last writer, computed independently.
		want := li.changes[0]
		for _, c := range li.changes[1:] {
			if c.wins(want) {
				want = c
			}
		}
		st, err := h.d.State(ctx, li.id)
		if err != nil {
			t.Fatalf("State(%s): %v", li.id, err)
		}
		if st.Read != want.read || !st.ChangedAt.Equal(want.at) || st.ChangedBy != want.platform {
			t.Errorf("letter %s: postbud has read=%v at %v by %s, last writer is read=%v at %v by %s",
				li.id, st.Read, st.ChangedAt, st.ChangedBy, want.read, want.at, want.platform)
		}
		if !st.Read {
			unread[li.cpr]++
		}
		// Each platform's view: its own changes and what it was told.
		for _, p := range event.ReadingPlatforms() {
			var view *change
			for _, c := range li.changes {
				if c.platform == p && (view == nil || c.wins(*view)) {
					cc := c
					view = &cc
				}
			}
			for _, sc := range recv[p].Changes() {
				if sc.MessageID != li.id {
					continue
				}
				c := change{read: sc.Read, at: sc.ChangedAt, platform: event.Platform(sc.Platform)}
				if view == nil || c.wins(*view) {
					view = &c
				}
			}
			// A platform that never saw any change shows the letter
			// unread, as it arrived.
			got := view != nil && view.read
			if got != st.Read {
				t.Errorf("letter %s: %s shows read=%v, postbud read=%v v%d", li.id, p, got, st.Read, st.Version)
				for _, c := range li.changes {
					t.Logf("  sent: read=%v at %v by %s", c.read, c.at.Format("05.000"), c.platform)
				}
				for _, sc := range recv[p].Changes() {
					if sc.MessageID == li.id {
						t.Logf("  %s got: read=%v v%d at %v by %s", p, sc.Read, sc.Version, sc.ChangedAt.Format("05.000"), sc.Platform)
					}
				}
			}
		}
	}
	for p, r := range recv {
		if n := r.Stale(); n != 0 {
			t.Errorf("%s received %d older versions after newer ones", p, n)
		}
	}
	for _, cpr := range cprs {
		ev, _ := event.Parse([]byte(letter("probe", "ffffffff-0000-4000-8000-000000000000", cpr)))
		key := h.keyer.CitizenKey(ev.Message.CPR)
		v, err := h.store.Load(ctx, key, "ffffffff-0000-4000-8000-000000000000")
		if err != nil {
			t.Fatal(err)
		}
		c := v.Citizen
		if c.Unread != unread[cpr] {
			t.Errorf("citizen %d…: unread count %d, want %d", len(cpr), c.Unread, unread[cpr])
		}
	}
}

func TestReadBeforeLetterSkipsItsAlerts(t *testing.T) {
	t.Parallel()
	recv, syncer := newPlatforms(t)
	h := newHarnessSync(t, syncer, channels.Email, channels.APNs)
	h.start()
	register(h, annaCPR)
	h.idle()
	h.accept(wire("read-1", "message.read", map[string]any{"message_id": msg1, "recipient": map[string]any{"cpr": annaCPR},
		"platform": "e-boks", "at": time.Now().UTC().Format(time.RFC3339Nano)}))
	h.idle()
	h.accept(letter("l-1", msg1, annaCPR))
	h.idle()
	if n := len(h.channels[channels.Email].alerts()) + len(h.channels[channels.APNs].alerts()); n != 0 {
		t.Errorf("%d alerts for a letter read before it arrived, want 0", n)
	}
	trail, err := h.store.Trail(context.Background(), msg1)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range trail {
		if o.Result != dispatcher.ResultSkipped || o.Reason != "read" {
			t.Errorf("trail entry %+v, want skipped: read", o)
		}
	}
	if n := len(recv[event.EBoks].Changes()); n != 0 {
		t.Errorf("e-boks got %d webhooks for its own change, want 0", n)
	}
	for _, p := range []event.Platform{event.BorgerDK, event.DigitalPostApp, event.MitDK} {
		if n := len(recv[p].Changes()); n != 1 {
			t.Errorf("%s got %d webhooks, want 1", p, n)
		}
	}
}

func TestWebhookGoneDisablesPlatform(t *testing.T) {
	t.Parallel()
	recv, syncer := newPlatforms(t)
	h := newHarnessSync(t, syncer)
	h.start()
	recv[event.MitDK].SetGone(true)
	consent(h, annaCPR, "e-boks", "mit.dk")
	h.accept(letter("l-1", msg1, annaCPR))
	h.accept(wire("read-1", "message.read", map[string]any{"message_id": msg1, "recipient": map[string]any{"cpr": annaCPR},
		"platform": "e-boks", "at": time.Now().UTC().Format(time.RFC3339Nano)}))
	h.idle()
	off, err := h.store.PlatformDisabled(context.Background(), event.MitDK)
	if err != nil || !off {
		t.Fatalf("mit.dk disabled = %v, %v; want true after a 410", off, err)
	}
	reqs := recv[event.MitDK].Snapshot().Requests
	h.accept(wire("unread-1", "message.unread", map[string]any{"message_id": msg1, "recipient": map[string]any{"cpr": annaCPR},
		"platform": "e-boks", "at": time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)}))
	h.idle()
	if n := recv[event.MitDK].Snapshot().Requests; n != reqs {
		t.Errorf("a disabled endpoint got %d more requests", n-reqs)
	}
	if n := len(recv[event.BorgerDK].Changes()); n != 2 {
		t.Errorf("borger.dk got %d changes, want 2", n)
	}
}

// badgeLimiter holds back APNs once armed; it counts reservations.
type badgeLimiter struct {
	armed    atomic.Bool
	mu       sync.Mutex
	reserved map[channels.Name]int
}

func (l *badgeLimiter) Reserve(_ context.Context, ch channels.Name) (time.Duration, error) {
	if !l.armed.Load() {
		return 0, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reserved[ch]++
	if ch == channels.APNs {
		return time.Minute, nil
	}
	return 0, nil
}

// badgeObserver counts the deliveries and alert latencies it is told of.
type badgeObserver struct {
	mu        sync.Mutex
	delivered map[channels.Name][]string
	alerts    int
}

func (o *badgeObserver) Delivered(ch channels.Name, result, _ string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.delivered[ch] = append(o.delivered[ch], result)
}
func (o *badgeObserver) EventToAlert(channels.Name, time.Duration) {
	o.mu.Lock()
	o.alerts++
	o.mu.Unlock()
}
func (o *badgeObserver) AddressRemoved(channels.Name) {}
func (o *badgeObserver) Webhook(event.Platform, string, time.Duration, time.Duration) {
}

// TestBadgeGoesThroughSend checks that a badge update takes the path of
// every delivery: the rate limiter (APNs over its rate waits, as a
// throttled send, without spending a retry) and the metrics; a silent
// update is not counted as an alert.
func TestBadgeGoesThroughSend(t *testing.T) {
	t.Parallel()
	lim := &badgeLimiter{reserved: map[channels.Name]int{}}
	obs := &badgeObserver{delivered: map[channels.Name][]string{}}
	h := newHarnessWith(t, func(c *dispatcher.Config, _ *harness) { c.Limiter, c.Observer = lim, obs }, channels.APNs, channels.FCM)
	h.start()
	register(h, annaCPR)
	h.idle()
	msgID := "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5c"
	h.handle(letter("l1", msgID, annaCPR))
	h.idle()
	apns, fcm := len(h.channels[channels.APNs].accepted()), len(h.channels[channels.FCM].accepted())
	obs.mu.Lock()
	obs.delivered, obs.alerts = map[channels.Name][]string{}, 0
	obs.mu.Unlock()

	lim.armed.Store(true)
	c, err := event.ParseCPR(annaCPR)
	if err != nil {
		t.Fatal(err)
	}
	payload := fmt.Sprintf(`{"c":%q,"m":%q}`, h.keyer.CitizenKey(c), msgID)
	err = h.d.HandleBadge(context.Background(), asynq.NewTask(dispatcher.TypeBadge, []byte(payload)))
	if channels.KindOf(err) != channels.Throttled || dispatcher.IsFailure(err) {
		t.Errorf("HandleBadge with APNs over its rate = %v, want a throttled error that spends no retry", err)
	}
	if n := len(h.channels[channels.APNs].accepted()); n != apns {
		t.Errorf("APNs got %d sends over its rate, want none", n-apns)
	}
	got := h.channels[channels.FCM].accepted()
	if len(got) != fcm+1 || !got[len(got)-1].Alert.Silent {
		t.Fatalf("FCM got %d sends, want one silent badge update", len(got)-fcm)
	}
	lim.mu.Lock()
	if lim.reserved[channels.APNs] != 1 || lim.reserved[channels.FCM] != 1 {
		t.Errorf("limiter reservations %v, want one per device channel", lim.reserved)
	}
	lim.mu.Unlock()
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if d := obs.delivered[channels.FCM]; len(d) != 1 || d[0] != dispatcher.ResultSent {
		t.Errorf("observer saw FCM deliveries %v, want [sent]", d)
	}
	if obs.alerts != 0 {
		t.Errorf("observer counted %d alerts for a silent badge update, want 0", obs.alerts)
	}
}

// TestSendReadsTheConfiguredClock checks that a send's duration comes from
// the configured clock, not the wall clock: a clock that steps 250 ms on
// each read makes every measured duration a positive multiple of 250 ms.
func TestSendReadsTheConfiguredClock(t *testing.T) {
	t.Parallel()
	const step = 250 * time.Millisecond
	var ticks atomic.Int64
	base := time.Now()
	obs := &clockObserver{}
	h := newHarnessWith(t, func(c *dispatcher.Config, _ *harness) {
		c.Now = func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * step) }
		c.Observer = obs
	}, channels.Email)
	h.start()
	register(h, annaCPR)
	h.idle()
	h.handle(letter("l1", "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5d", annaCPR))
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.took) == 0 {
		t.Fatal("no delivery observed")
	}
	for _, d := range obs.took {
		if d <= 0 || d%step != 0 {
			t.Errorf("send took %s by the configured clock, want a positive multiple of %s", d, step)
		}
	}
}

type clockObserver struct {
	mu   sync.Mutex
	took []time.Duration
}

func (o *clockObserver) Delivered(_ channels.Name, _, _ string, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.took = append(o.took, took)
}
func (o *clockObserver) EventToAlert(channels.Name, time.Duration)                    {}
func (o *clockObserver) AddressRemoved(channels.Name)                                 {}
func (o *clockObserver) Webhook(event.Platform, string, time.Duration, time.Duration) {}
