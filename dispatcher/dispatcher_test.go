package dispatcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

var allChannels = []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM}

const msg1 = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"

func TestLetterFansOutOnceToEveryChannel(t *testing.T) {
	t.Parallel()
	h := newHarness(t, allChannels...)
	h.start()
	register(h, annaCPR)
	h.idle()

	if dup := h.accept(letter("ev-1", msg1, annaCPR)); dup {
		t.Fatal("first letter event reported as duplicate")
	}
	h.idle()
	// The same event again, while and after it was processed: still once.
	if dup := h.accept(letter("ev-1", msg1, annaCPR)); !dup {
		t.Error("second copy of the event not reported as duplicate")
	}
	h.idle()
	for _, n := range allChannels {
		got := h.channels[n].accepted()
		if len(got) != 1 {
			t.Errorf("%s: %d alerts, want 1", n, len(got))
			continue
		}
		a := got[0].Alert
		if a.MessageID != msg1 || a.Senders[0] != "Skattestyrelsen" || a.MailboxURL != "https://www.borger.dk/digitalpost" {
			t.Errorf("%s: alert %+v", n, a)
		}
	}
	if to := h.channels[channels.SMS].accepted()[0].To.Value; to != "+4520123456" {
		t.Errorf("SMS went to %q, want the normalised +4520123456", to)
	}
	trail, err := h.store.Trail(context.Background(), msg1)
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, o := range trail {
		if o.Result == dispatcher.ResultSent {
			sent++
			if o.ProviderID == "" || o.DeliveryID == "" {
				t.Errorf("sent entry without provider or delivery id: %+v", o)
			}
		}
	}
	if sent != 4 {
		t.Errorf("trail has %d sent entries, want 4: %+v", sent, trail)
	}
}

func TestSameEventAcceptedTwiceBeforeProcessingRunsOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email)
	register(h, annaCPR)
	h.start()
	h.idle()
	h.srv.Stop() // workers stop pulling: both copies meet in the queue
	h.accept(letter("ev-dup", msg1, annaCPR))
	if dup := h.accept(letter("ev-dup", msg1, annaCPR)); !dup {
		t.Error("queued copy not reported as duplicate")
	}
	h.srv.Shutdown()
	h.start()
	h.idle()
	if n := len(h.channels[channels.Email].accepted()); n != 1 {
		t.Errorf("%d emails, want 1", n)
	}
}

func TestFailedChannelIsRetriedAlone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email, channels.SMS)
	h.start()
	register(h, annaCPR)
	h.idle()
	h.channels[channels.SMS].failNext(channels.Fail(channels.Transient, "http 503", errors.New("gateway down")),
		channels.Fail(channels.Transient, "http 503", errors.New("gateway down")))
	h.accept(letter("ev-2", msg1, annaCPR))
	h.waitFor("the SMS to go out after two failures", func() bool { return len(h.channels[channels.SMS].accepted()) == 1 })
	h.idle()
	if n := len(h.channels[channels.Email].accepted()); n != 1 {
		t.Errorf("email sent %d times, want 1: a failing SMS must not re-send the email", n)
	}
	if n := h.channels[channels.SMS].attempts(); n != 3 {
		t.Errorf("SMS attempted %d times, want 3", n)
	}
	trail, _ := h.store.Trail(context.Background(), msg1)
	var results []string
	for _, o := range trail {
		if o.Channel == channels.SMS {
			results = append(results, o.Result)
		}
	}
	if strings.Join(results, ",") != "retrying,retrying,sent" {
		t.Errorf("SMS trail = %v, want retrying,retrying,sent", results)
	}
}

func TestGoneAddressIsRemovedAndNotTriedAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email, channels.APNs)
	h.start()
	register(h, annaCPR)
	h.idle()
	h.channels[channels.APNs].failNext(channels.Fail(channels.Gone, "410 Unregistered", errors.New("gone")))
	h.accept(letter("ev-3", msg1, annaCPR))
	h.idle()
	if n := h.channels[channels.APNs].attempts(); n != 1 {
		t.Fatalf("APNs attempted %d times, want 1 (gone is not retried)", n)
	}
	h.accept(letter("ev-4", "7f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", annaCPR))
	h.idle()
	if n := h.channels[channels.APNs].attempts(); n != 1 {
		t.Errorf("APNs attempted %d times after the token was gone, want still 1", n)
	}
	if n := len(h.channels[channels.Email].accepted()); n != 2 {
		t.Errorf("%d emails, want 2", n)
	}
}

func TestGoneReportOlderThanRegistrationKeepsToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.APNs)
	h.start()
	register(h, annaCPR)
	h.idle()
	goneBefore := &goneAtError{at: time.Now().Add(-time.Hour)}
	h.channels[channels.APNs].failNext(channels.Fail(channels.Gone, "410 Unregistered", goneBefore))
	h.accept(letter("ev-5", msg1, annaCPR))
	h.idle()
	h.accept(letter("ev-6", "7f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", annaCPR))
	h.idle()
	if n := len(h.channels[channels.APNs].accepted()); n != 1 {
		t.Errorf("the token re-registered after the 410 got %d alerts for the next letter, want 1", n)
	}
}

type goneAtError struct{ at time.Time }

func (e *goneAtError) Error() string        { return "unregistered" }
func (e *goneAtError) GoneSince() time.Time { return e.at }

func TestPermanentFailureIsArchivedForOps(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email)
	h.start()
	register(h, annaCPR)
	h.idle()
	perm := channels.Fail(channels.Permanent, "554", errors.New("rejected"))
	h.channels[channels.Email].failNext(perm, perm)
	h.accept(letter("ev-7", msg1, annaCPR))
	h.waitFor("an archived delivery task", func() bool {
		tasks, err := h.insp.ListArchivedTasks(h.queues.Normal)
		return err == nil && len(tasks) == 1 && tasks[0].Type == dispatcher.TypeDelivery
	})
	tasks, _ := h.insp.ListArchivedTasks(h.queues.Normal)
	if p := string(tasks[0].Payload); strings.Contains(p, "anna") || strings.Contains(p, "0101901234") {
		t.Errorf("archived payload holds personal data: %s", p)
	}
}

func TestThrottledRetryDoesNotSpendRetries(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.SMS)
	h.start()
	register(h, annaCPR)
	h.idle()
	thr := channels.Throttle(10*time.Millisecond, "http 429", errors.New("slow down"))
	h.channels[channels.SMS].failNext(thr, thr, thr, thr)
	h.accept(letter("ev-8", msg1, annaCPR))
	h.waitFor("the SMS after four throttles", func() bool { return len(h.channels[channels.SMS].accepted()) == 1 })
	if !dispatcher.IsFailure(errors.New("plain")) || dispatcher.IsFailure(thr) {
		t.Error("IsFailure must be false only for throttled channel errors")
	}
	if d := dispatcher.RetryDelay(3, channels.Throttle(90*time.Second, "429", nil), nil); d != 90*time.Second {
		t.Errorf("RetryDelay for Retry-After 90s = %v", d)
	}
}

func TestLetterForCitizenWithoutContactIsRecordedAsSkipped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, allChannels...)
	h.start()
	h.accept(letter("ev-9", msg1, "311265-2345"))
	h.idle()
	trail, err := h.store.Trail(context.Background(), msg1)
	if err != nil {
		t.Fatal(err)
	}
	if len(trail) != 1 || trail[0].Result != dispatcher.ResultSkipped || trail[0].Reason != "no contact" {
		t.Errorf("trail = %+v, want one skipped: no contact", trail)
	}
}

func TestInboundTaskFromPublisherIsPseudonymisedAndProcessed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email)
	h.start()
	register(h, annaCPR)
	h.idle()
	raw := letter("ev-10", msg1, annaCPR)
	_, err := h.client.Enqueue(asynq.NewTask(dispatcher.TypeInbound, []byte(raw)), asynq.Queue(h.queues.Normal))
	if err != nil {
		t.Fatal(err)
	}
	h.idle()
	if n := len(h.channels[channels.Email].accepted()); n != 1 {
		t.Errorf("%d emails, want 1", n)
	}
	// An invalid inbound event is archived as a rejected task naming the
	// bad fields, with the CPR masked; the original is not kept.
	bad := strings.Replace(letter("ev-11", msg1, annaCPR), `"kind":"public"`, `"kind":"council"`, 1)
	_, err = h.client.Enqueue(asynq.NewTask(dispatcher.TypeInbound, []byte(bad)), asynq.Queue(h.queues.Normal))
	if err != nil {
		t.Fatal(err)
	}
	h.waitFor("the invalid inbound event to be archived", func() bool {
		tasks, err := h.insp.ListArchivedTasks(h.queues.Normal)
		return err == nil && len(tasks) == 1
	})
	tasks, _ := h.insp.ListArchivedTasks(h.queues.Normal)
	a := tasks[0]
	if a.Type != dispatcher.TypeRejected || !strings.Contains(a.LastErr, "data.sender.kind") {
		t.Errorf("archived %s with error %q, want postbud:rejected naming data.sender.kind", a.Type, a.LastErr)
	}
	if strings.Contains(string(a.Payload), "0101901234") || strings.Contains(string(a.Payload), "010190-1234") {
		t.Errorf("the archived rejected event holds the CPR: %s", a.Payload)
	}
}

// TestInboundRegistryEventIsHandedOverSealed: a contact event a platform
// enqueued straight into asynq (its payload in clear, CPR and all) is
// handed over at its first handling as a postbud:event whose contact data
// is sealed; worked, it registers the address.
func TestInboundRegistryEventIsHandedOverSealed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email)
	raw := wire("c-in", "contact.updated", map[string]any{"cpr": annaCPR, "email": "anna@example.dk", "mobile": "20123456"})
	ctx := context.Background()
	if err := h.d.HandleInbound(ctx, asynq.NewTask(dispatcher.TypeInbound, []byte(raw))); err != nil {
		t.Fatal(err)
	}
	pending, err := h.insp.ListPendingTasks(h.queues.Normal)
	if err != nil || len(pending) != 1 || pending[0].Type != dispatcher.TypeEvent {
		t.Fatalf("pending tasks %v, %v; want one postbud:event", pending, err)
	}
	for _, l := range h.env.Leaks(t, "0101901234", "010190-1234", "anna@", "20123456") {
		t.Error(l)
	}
	h.start()
	h.idle()
	h.accept(letter("ev-in", msg1, annaCPR))
	h.idle()
	if got := h.channels[channels.Email].accepted(); len(got) != 1 || got[0].To.Value != "anna@example.dk" {
		t.Errorf("emails %+v, want one to the registered address", got)
	}
}

// TestTamperedEventPayloadIsAnError: a queued event whose sealed contact
// data was changed is refused with an error that names the field, not the
// data, and registers nothing.
func TestTamperedEventPayloadIsAnError(t *testing.T) {
	t.Parallel()
	h := newHarness(t, channels.Email)
	h.accept(wire("c-t", "contact.updated", map[string]any{"cpr": annaCPR, "email": "anna@example.dk"}))
	pending, err := h.insp.ListPendingTasks(h.queues.Normal)
	if err != nil || len(pending) != 1 {
		t.Fatalf("pending %v, %v", pending, err)
	}
	var ev map[string]any
	if err := json.Unmarshal(pending[0].Payload, &ev); err != nil || ev["sealed"] != true {
		t.Fatalf("payload %s, %v: not sealed", pending[0].Payload, err)
	}
	contact := ev["contact"].(map[string]any)
	v := contact["email"].(string)
	contact["email"] = v[:len(v)-2] + map[bool]string{true: "AA", false: "BB"}[v[len(v)-2:] != "AA"]
	b, _ := json.Marshal(ev)
	err = h.d.HandleEvent(context.Background(), asynq.NewTask(dispatcher.TypeEvent, b))
	if !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("tampered payload: %v, want ErrOpen", err)
	}
	if strings.Contains(err.Error(), "anna") || strings.Contains(err.Error(), v[10:]) || !strings.Contains(err.Error(), "ev.email") {
		t.Errorf("error %q: want the field named and no data", err)
	}
	contact["email"] = v
	b, _ = json.Marshal(ev)
	if err := h.d.HandleEvent(context.Background(), asynq.NewTask(dispatcher.TypeEvent, b)); err != nil {
		t.Fatalf("the untouched payload: %v", err)
	}
}

// TestNoCPRInRedis scans every key and value of the test's Redis, asynq's
// task payloads included, for the CPR numbers and the contact data of the
// citizens: while their events wait in the queue, and after they were
// worked and letters alerted (one retry pending). Contact data is sealed
// (dispatcher/seal): none of it may show in clear.
func TestNoCPRInRedis(t *testing.T) {
	t.Parallel()
	h := newHarness(t, allChannels...)
	const other = "311265-2345"
	register(h, annaCPR)
	h.accept(wire("c2-"+annaCPR, "contact.updated", map[string]any{"cpr": annaCPR, "address": "Vestergade 12, 1456 København K"}))
	h.accept(wire("x-"+other, "exemption.granted", map[string]any{"cpr": other, "forward_unopened": true,
		"forward_address": "Postboks 77, 9990 Skagen"}))
	secrets := []string{"0101901234", "010190-1234", "3112652345", "311265-2345",
		"anna@example.dk", "anna@", "20123456", "a1b2c3d4e5f6a7b8", "fcm-token-0001", "Vestergade", "Postboks 77"}
	// Queued, not yet worked: the task payloads.
	for _, l := range h.env.Leaks(t, secrets...) {
		t.Errorf("queued events: %s", l)
	}
	h.start()
	h.idle()
	h.accept(letter("ev-11", msg1, annaCPR))
	h.channels[channels.SMS].failNext(channels.Fail(channels.Transient, "503", errors.New("x")))
	h.accept(letter("ev-12", "7f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", annaCPR))
	// idle alone can see the queues empty before the letters' tasks show
	// (seen once in CI): wait for the sends themselves.
	h.waitFor("both letters' SMS and pushes", func() bool {
		return len(h.channels[channels.SMS].accepted()) >= 2 && len(h.channels[channels.APNs].accepted()) >= 2
	})
	h.idle()
	// The addresses were opened where they are used: at the send.
	if got := h.channels[channels.SMS].accepted(); len(got) != 2 || got[0].To.Value != "+4520123456" {
		t.Fatalf("SMS alerts %+v, want 2 to +4520123456", got)
	}
	if got := h.channels[channels.APNs].accepted(); len(got) != 2 || got[0].To.Value != "a1b2c3d4e5f6a7b8" {
		t.Fatalf("APNs alerts %+v, want 2 to the registered token", got)
	}
	// An access holder: the relation, the holder's alerts (one failing, so
	// its delivery task is queued), and a read by the holder.
	h.accept(wire("c-holder", "contact.updated", map[string]any{"cpr": holderCPR, "email": "holder@example.dk", "mobile": "30123456", "confirmed": true}))
	h.idle()
	h.accept(accessEvent("acc-1", "access.granted", time.Now().UTC().Format(time.RFC3339Nano), map[string]any{"scope": "read", "notify": true,
		"expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}))
	h.idle()
	h.channels[channels.Email].failNext(nil, channels.Fail(channels.Transient, "503", errors.New("x")))
	h.accept(letter("ev-13", "8f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", annaCPR))
	b, _ := json.Marshal(map[string]any{"id": "r-1", "type": "message.read", "occurred_at": time.Now().UTC().Format(time.RFC3339Nano),
		"source": "mit.dk", "data": map[string]any{"message_id": msg1, "recipient": map[string]any{"cpr": annaCPR},
			"platform": "mit.dk", "at": time.Now().UTC().Format(time.RFC3339Nano), "reader": map[string]any{"cpr": holderCPR}}})
	h.accept(string(b))
	h.idle()
	toHolder := 0
	for _, a := range h.channels[channels.Email].accepted() {
		if a.To.Value == "holder@example.dk" {
			toHolder++
		}
	}
	if toHolder != 1 {
		t.Errorf("%d emails to the holder, want 1 (after a retry)", toHolder)
	}
	h.accept(accessEvent("acc-2", "access.revoked", time.Now().UTC().Format(time.RFC3339Nano), map[string]any{}))
	h.idle()
	ctx := context.Background()
	for _, pattern := range []string{"*:ah", "*:ao"} {
		if ks, _ := h.env.Client.Keys(ctx, h.env.Prefix+pattern).Result(); len(ks) != 1 {
			t.Errorf("keys %s: %v, want the relation's one (the scan covers it)", pattern, ks)
		}
	}
	// Consent: revoked (the citizen hash), then a read from that platform
	// refused by the worker (the trail), and a webhook dropped (a log).
	h.accept(wire("cs-r", "consent.revoked", map[string]any{"cpr": annaCPR, "platform": "e-boks"}))
	h.idle()
	h.handle(wire("r-eboks", "message.read", map[string]any{"message_id": msg1, "recipient": map[string]any{"cpr": annaCPR},
		"platform": "e-boks", "at": time.Now().UTC().Format(time.RFC3339Nano)}))
	h.idle()
	for _, l := range h.env.Leaks(t, append(secrets, "0202852345", holderCPR, "holder@example.dk", "30123456")...) {
		t.Errorf("after the run: %s", l)
	}
	// Values are read as they are: a DUMP may be LZF-compressed and hide
	// the number.
	h.noCPRInRedis(annaCPR)
}

func TestSendRateIsSharedAndWaitsWithoutSpendingRetries(t *testing.T) {
	t.Parallel()
	var limiter *redisstore.Limiter
	h := newHarnessWith(t, func(c *dispatcher.Config, h *harness) {
		limiter = redisstore.NewLimiter(h.env.Client, h.env.Prefix, map[channels.Name]int{channels.SMS: 5})
		c.Limiter = limiter
	}, channels.SMS, channels.Email)
	h.start()
	cprs := []string{"010190-1001", "010190-1002", "010190-1003", "010190-1004", "010190-1005", "010190-1006",
		"010190-1007", "010190-1008", "010190-1009", "010190-1010", "010190-1011", "010190-1012"}
	for _, c := range cprs {
		h.accept(wire("c-"+c, "contact.updated", map[string]any{"cpr": c, "email": "x@example.dk", "mobile": "20123456", "confirmed": true}))
	}
	h.idle()
	start := time.Now()
	for i, c := range cprs {
		h.accept(letter(fmt.Sprintf("l%d", i), fmt.Sprintf("%08x-0000-4000-8000-000000000000", i), c))
	}
	h.waitFor("every SMS", func() bool { return len(h.channels[channels.SMS].accepted()) == len(cprs) })
	took := time.Since(start)
	h.idle()
	// 12 SMS at 5/s with a burst of 5 need at least (12-5)/5 s.
	if took < 1200*time.Millisecond {
		t.Errorf("12 SMS at 5/s went out in %v: the limit did not hold", took)
	}
	if n := len(h.channels[channels.Email].accepted()); n != len(cprs) {
		t.Errorf("%d emails, want %d: the SMS limit must not hold up email", n, len(cprs))
	}
	archived, _ := h.insp.ListArchivedTasks(h.queues.Normal)
	if len(archived) != 0 {
		t.Errorf("%d archived tasks: throttled sends must not spend retries", len(archived))
	}
}
