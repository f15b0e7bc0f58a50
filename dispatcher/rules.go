package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/rules"
)

// This file applies the Digital Post rules (package rules) to a letter: who
// gets what — digital alerts, paper, or nothing — and when.

// plan is what the rules decided for a letter.
type plan struct {
	todo    []delivery // to attempt now (or hold)
	done    []Outcome  // deliveries decided final without a send (skipped)
	outs    []Outcome  // other decisions, for the trail
	digital bool       // the letter is alerted digitally
}

// plan decides a letter's deliveries for citizen c. birth is the citizen's
// birth date (YYYY-MM-DD) from the event.
func (d *Dispatcher) plan(c *Citizen, l *Letter, birth string, now time.Time) plan {
	var p plan
	under15 := false
	if b, err := time.Parse("2006-01-02", birth); err == nil {
		under15 = rules.UnderAgeBorn(b, l.ReceivedAt)
	}
	dec := rules.Route(l.SenderKind, c.Exempt, under15, d.cfg.PaperForMinors)
	digital, unconfirmed := d.contacts(c, l.MessageID)
	if dec.Digital {
		p.digital = true
		// An alert to an address nobody confirmed would tell a stranger
		// who wrote to the citizen.
		for _, dl := range unconfirmed {
			p.done = append(p.done, skipped(now, dl, NotConfirmed(dl.to.Channel)))
		}
		// No alert for a public letter through the app of a platform the
		// citizen gave no consent to show it.
		kept := digital[:0:0]
		for _, dl := range digital {
			if why := noConsent(c, l, dl.to); why != "" {
				p.done = append(p.done, skipped(now, dl, why))
				continue
			}
			kept = append(kept, dl)
		}
		if len(digital) > 0 && len(kept) == 0 {
			return p
		}
		digital = kept
		if l.Read {
			for _, dl := range digital {
				p.done = append(p.done, skipped(now, dl, "read"))
			}
			return p
		}
		if now.After(d.expires(l)) {
			for _, dl := range digital {
				p.done = append(p.done, skipped(now, dl, "expired"))
			}
			return p
		}
		if len(digital) == 0 && len(unconfirmed) == 0 {
			p.outs = append(p.outs, Outcome{At: now, Result: ResultSkipped, Reason: "no contact"})
		}
		p.todo = digital
		return p
	}
	for _, dl := range digital {
		p.done = append(p.done, skipped(now, dl, dec.Reason))
	}
	if len(digital) == 0 {
		p.outs = append(p.outs, Outcome{At: now, Result: ResultSkipped, Reason: dec.Reason})
	}
	if !dec.Paper {
		return p
	}
	paper := d.paperAddresses(c, l.MessageID)
	switch {
	case d.cfg.Senders[channels.Paper] == nil:
		d.log.Error("a letter must go on paper but no paper channel is configured", "message_id", l.MessageID, "reason", dec.Reason)
		p.outs = append(p.outs, Outcome{At: now, Channel: channels.Paper, Result: ResultFailed,
			Reason: dec.Reason + ": paper channel not configured", Kind: channels.Misconfigured.String()})
	case c.Address == "":
		p.outs = append(p.outs, Outcome{At: now, Channel: channels.Paper, Result: ResultSkipped,
			Reason: dec.Reason + ": no registered address"})
	default:
		for _, dl := range paper {
			if dl.to.Value == c.Address {
				p.todo = append(p.todo, dl)
			}
		}
	}
	return p
}

// noConsent returns why the letter's alert may not go to address to (the
// push token of an app whose platform has no consent to show the letter),
// or "".
func noConsent(c *Citizen, l *Letter, to channels.Address) string {
	return platformNoConsent(c, l, event.Platform(to.App))
}

// platformNoConsent returns why platform p may not learn of letter l
// (rules.MayShow), or "".
func platformNoConsent(c *Citizen, l *Letter, p event.Platform) string {
	_, why := rules.MayShow(l.SenderKind, p, c.Consented(p))
	return why
}

func skipped(now time.Time, dl delivery, reason string) Outcome {
	return Outcome{At: now, DeliveryID: dl.id, Channel: dl.to.Channel, App: dl.to.App, Holder: HolderRef(dl.holder),
		Result: ResultSkipped, Reason: reason}
}

// paperAddresses are the citizen's postal addresses as paper deliveries:
// the registered address and, if given on exemption, the forwarding one.
func (d *Dispatcher) paperAddresses(c *Citizen, messageID string) []delivery {
	if d.cfg.Senders[channels.Paper] == nil {
		return nil
	}
	var out []delivery
	for _, a := range []string{c.Address, c.Forward} {
		if a != "" {
			to := channels.Address{Channel: channels.Paper, Value: a}
			out = append(out, delivery{id: d.cfg.Keyer.DeliveryID(messageID, channels.Paper, a), to: to})
		}
	}
	return out
}

// hold returns until when a delivery must wait, and why: the sender's
// do_not_deliver_until, then the channel's quiet hours (not for urgent
// letters, legal notifications, or paper).
func (d *Dispatcher) hold(l *Letter, ch channels.Name, now time.Time) (time.Time, string) {
	if ch == channels.Paper {
		return time.Time{}, ""
	}
	at, why := now, ""
	if l.NotBefore.After(at) {
		at, why = l.NotBefore, "scheduled"
	}
	if q, ok := d.cfg.QuietHours[ch]; ok && l.Priority != event.Urgent && !l.Legal {
		if until, in := q.Until(at); in {
			at, why = until, "quiet hours"
		}
	}
	if why == "" {
		return time.Time{}, ""
	}
	return at, why
}

// remind schedules the reply_by reminder of a digital letter.
func (d *Dispatcher) remind(ctx context.Context, citizen string, l *Letter, digital bool, now time.Time) error {
	at, ok := d.reminderAt(l, digital, now)
	if !ok {
		return nil
	}
	b, _ := json.Marshal(badgeTask{Citizen: citizen, MessageID: l.MessageID})
	return d.enqueue(ctx, newTask(TypeReminder, b, d.cfg.Queues, taskArgs{id: "rem:" + d.cfg.Keyer.EventID(citizen+"|"+l.MessageID),
		at: []asynq.Option{asynq.ProcessAt(at)}}))
}

// reminderAt is when letter l's reply_by reminder is due, if it has one to
// schedule now.
func (d *Dispatcher) reminderAt(l *Letter, digital bool, now time.Time) (time.Time, bool) {
	if !digital || l.ReplyBy.IsZero() || d.cfg.ReminderBefore <= 0 {
		return time.Time{}, false
	}
	at := l.ReplyBy.Add(-d.cfg.ReminderBefore)
	return at, at.After(now)
}

// HandleReminder sends the reply_by reminder unless the letter was read.
// It goes to each digital address as an ordinary alert whose text says it
// is a reminder; its deliveries have ids of their own.
func (d *Dispatcher) HandleReminder(ctx context.Context, t *asynq.Task) error {
	var p badgeTask
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.Citizen == "" {
		return fmt.Errorf("reminder task payload: %w", errors.Join(err, asynq.SkipRetry))
	}
	v, err := d.cfg.Store.Load(ctx, p.Citizen, p.MessageID)
	if err != nil || !v.Stored {
		return err
	}
	c, l := v.Citizen, v.Letter
	now := d.cfg.Now()
	if l.Read {
		return d.write(ctx, LetterWrite{Citizen: p.Citizen, MessageID: p.MessageID,
			Trail: []Outcome{{At: now, Result: ResultSkipped, Reason: "reminder: read"}}})
	}
	var todo []delivery
	var refused []Outcome
	for _, dl := range d.addresses(c, "reminder:"+l.MessageID) {
		switch why := noConsent(c, l, dl.to); {
		case l.Done[dl.id]:
		case why != "":
			refused = append(refused, skipped(now, dl, "reminder: "+why))
		default:
			todo = append(todo, dl)
		}
	}
	if len(refused) > 0 {
		if err := d.write(ctx, LetterWrite{Citizen: p.Citizen, MessageID: p.MessageID, Done: refused}); err != nil {
			return err
		}
	}
	rl := *l
	rl.Notification = rules.ReminderText(c.Language, l.SenderName)
	results, err := d.sendRecorded(ctx, c, &rl, LetterWrite{Citizen: p.Citizen, MessageID: p.MessageID}, todo, retryCount(ctx)+1,
		sendHooks{decorate: func(r *result, _ *LetterWrite) { r.out.Reason = resentReason(l, r.dl.id, "reminder") }})
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range results {
		if !r.final && r.err != nil {
			errs = append(errs, taskError(r.err))
		}
	}
	return errors.Join(errs...) // a retry skips the reminders already sent
}

// resentReason is reason, marked as a possible repeat when an earlier
// attempt at the delivery was in flight when its worker died.
func resentReason(l *Letter, deliveryID, reason string) string {
	if _, ok := l.InFlight[deliveryID]; ok {
		return joinReason(ReasonResent, reason)
	}
	return reason
}

// exemption applies exemption.granted and exemption.revoked. On a grant
// with forward_unopened, every unread letter from a public sender received
// in the six months before gets a paper job, to the forwarding address if
// one was given, else the registered address.
func (d *Dispatcher) exemption(ctx context.Context, ev *event.Event) error {
	x := ev.Exemption
	granted := ev.Type == event.ExemptionGranted
	mark := EventRef{Citizen: ev.CitizenKey, ID: ev.ID}
	forwarding := granted && x.ForwardUnopened
	if forwarding {
		// The forwarding may run again after a failure: paper deliveries
		// are marked done per letter, so a letter is never printed twice,
		// and the event is marked once, after it.
		if seen, err := d.cfg.Store.Seen(ctx, mark); err != nil || seen {
			return err
		}
	}
	w := ExemptionWrite{Citizen: ev.CitizenKey, Exempt: granted, Forward: x.ForwardAddress, At: ev.OccurredAt}
	if !forwarding {
		w.Mark = mark
	}
	// Without a mark the write is idempotent by last writer wins: a re-run
	// applies the same values at the same time again.
	applied, err := d.cfg.Store.SetExemption(ctx, w)
	if err != nil {
		return err
	}
	d.log.InfoContext(ctx, "exemption", "granted", granted, "applied", applied, "forward_unopened", x.ForwardUnopened)
	if !forwarding {
		return nil
	}
	ids, err := d.cfg.Store.UnreadSince(ctx, ev.CitizenKey, rules.ForwardWindowStart(ev.OccurredAt), ev.OccurredAt)
	if err != nil {
		return err
	}
	for _, id := range ids {
		v, err := d.cfg.Store.Load(ctx, ev.CitizenKey, id)
		if err != nil {
			return err
		}
		if !v.Stored {
			continue
		}
		if err := d.forward(ctx, v.Citizen, v.Letter); err != nil {
			return err
		}
	}
	return d.cfg.Store.Mark(ctx, mark)
}

// consent applies consent.granted and consent.revoked: last writer wins per
// platform. Nothing is sent on either: after a grant the platform
// reconciles through the state API; after a revocation, webhooks still
// pending to it for the citizen's public letters are dropped when their
// tasks run (HandleSync checks consent), and so are pending alerts through
// its app (HandleDelivery, HandleFlush, HandleReminder).
func (d *Dispatcher) consent(ctx context.Context, ev *event.Event) error {
	x := ev.Consent
	granted := ev.Type == event.ConsentGranted
	applied, err := d.cfg.Store.SetConsent(ctx, ConsentWrite{Citizen: ev.CitizenKey, Platform: x.Platform, Granted: granted,
		At: ev.OccurredAt, Mark: EventRef{Citizen: ev.CitizenKey, ID: ev.ID}})
	if err != nil {
		return err
	}
	d.log.InfoContext(ctx, "consent", "platform", x.Platform, "granted", granted, "applied", applied)
	return nil
}

// forward sends one unread letter on paper (exemption forwarding).
func (d *Dispatcher) forward(ctx context.Context, c *Citizen, l *Letter) error {
	now := d.cfg.Now()
	if l.SenderKind != event.SenderPublic || l.Read {
		return nil
	}
	addr := c.Forward
	if addr == "" {
		addr = c.Address
	}
	var dl *delivery
	for _, x := range d.paperAddresses(c, l.MessageID) {
		if x.to.Value == addr {
			dl = &x
		}
	}
	if dl == nil {
		return d.write(ctx, LetterWrite{Citizen: c.Key, MessageID: l.MessageID, Trail: []Outcome{{At: now,
			Channel: channels.Paper, Result: ResultSkipped, Reason: "forwarding on exemption: no address or no paper channel"}}})
	}
	if l.Done[dl.id] {
		return nil
	}
	results, err := d.sendRecorded(ctx, c, l, LetterWrite{Citizen: c.Key, MessageID: l.MessageID}, []delivery{*dl}, 1,
		sendHooks{decorate: func(r *result, _ *LetterWrite) { r.out.Reason = resentReason(l, r.dl.id, "forwarded on exemption") }})
	if err != nil {
		return err
	}
	r := results[0]
	if r.final {
		return nil
	}
	return d.enqueueDelivery(ctx, c.Key, l, r)
}
