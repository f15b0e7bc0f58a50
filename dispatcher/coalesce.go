package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/rules"
)

// Coalescing. Several letters to one citizen within a short window become
// one alert per channel. The first letter alerts at once and opens the
// window (its end is kept in the citizen's hash, which every letter reads
// anyway, so an idle window costs nothing); letters that arrive while it
// is open are held, and one task at the window's end sends a single alert
// naming their senders ("Du har 3 nye breve i Digital Post fra …"). Urgent
// letters and legal notifications are never held. Two letters processed at
// the same instant may both alert: the window is best effort, never a
// reason to lose an alert.

type flushTask struct {
	Citizen string `json:"c"`
	Channel string `json:"ch"`
	End     int64  `json:"e"` // window end, unix ms
}

// coalesceWindow is the channel's window, or 0 when letters of l's kind
// are never held.
func (d *Dispatcher) coalesceWindow(l *Letter, ch channels.Name) time.Duration {
	if l.Priority == event.Urgent || l.Legal || ch == channels.Paper {
		return 0
	}
	return d.cfg.Coalesce[ch]
}

// holdForWindow holds a delivery when its channel's window is open: the
// letter joins the held letters and the flush task is made sure of.
func (d *Dispatcher) holdForWindow(ctx context.Context, c *Citizen, l *Letter, dl delivery, now time.Time) (Outcome, bool, error) {
	if d.coalesceWindow(l, dl.to.Channel) == 0 {
		return Outcome{}, false, nil
	}
	end, open := c.Windows[dl.to.Channel]
	if !open || !end.After(now) {
		return Outcome{}, false, nil
	}
	if _, err := d.cfg.Store.Hold(ctx, c.Key, dl.to.Channel, l.MessageID); err != nil {
		return Outcome{}, false, err
	}
	b, _ := json.Marshal(flushTask{Citizen: c.Key, Channel: string(dl.to.Channel), End: end.UnixMilli()})
	id := "flush:" + d.cfg.Keyer.EventID(c.Key+"|"+string(dl.to.Channel)+"|"+strconv.FormatInt(end.UnixMilli(), 10))
	if err := d.enqueue(ctx, newTask(TypeFlush, b, d.cfg.Queues, taskArgs{id: id, at: []asynq.Option{asynq.ProcessAt(end)}})); err != nil {
		return Outcome{}, false, err
	}
	return Outcome{At: now, DeliveryID: dl.id, Channel: dl.to.Channel, App: dl.to.App, Result: ResultDeferred,
		Reason: "coalescing until " + rules.LocalTime(end, "2006-01-02 15:04:05 MST")}, true, nil
}

// HandleFlush sends one alert per address of a channel for the letters
// held in its window, skipping those read meanwhile.
func (d *Dispatcher) HandleFlush(ctx context.Context, t *asynq.Task) error {
	var p flushTask
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.Citizen == "" {
		return fmt.Errorf("flush task payload: %w", errors.Join(err, asynq.SkipRetry))
	}
	ch := channels.Name(p.Channel)
	ids, err := d.cfg.Store.Held(ctx, p.Citizen, ch)
	if err != nil || len(ids) == 0 {
		return err
	}
	now := d.cfg.Now()
	type held struct {
		l  *Letter
		dl delivery
	}
	var c *Citizen
	var letters []held
	var names []string
	for _, id := range ids {
		v, err := d.cfg.Store.Load(ctx, p.Citizen, id)
		if err != nil {
			return err
		}
		if !v.Stored {
			// Held on its way through its first processing, not recorded
			// yet: try the flush again shortly.
			return fmt.Errorf("flush: held letter %s not recorded yet", id)
		}
		cc, l := v.Citizen, v.Letter
		c = cc
		for _, dl := range d.addresses(cc, id) {
			if dl.to.Channel != ch {
				continue
			}
			if l.Done[dl.id] {
				continue
			}
			done := func(o Outcome) error {
				return d.write(ctx, LetterWrite{Citizen: p.Citizen, MessageID: id, Done: []Outcome{o}})
			}
			switch until, why := d.hold(l, ch, now); {
			case noConsent(cc, l, dl.to) != "":
				err = done(skipped(now, dl, noConsent(cc, l, dl.to)))
			case l.Read:
				err = done(skipped(now, dl, "read"))
			case now.After(d.expires(l)):
				err = done(skipped(now, dl, "expired"))
			case !until.IsZero():
				// Quiet hours began meanwhile: it waits on its own.
				o := deferredOutcome(now, dl, until, why)
				if err = d.write(ctx, LetterWrite{Citizen: p.Citizen, MessageID: id, Trail: []Outcome{o}}); err == nil {
					err = d.enqueueDelivery(ctx, p.Citizen, l, result{dl: dl, out: o, until: until})
				}
			default:
				letters = append(letters, held{l: l, dl: dl})
				names = append(names, l.SenderName)
			}
			if err != nil {
				return err
			}
		}
	}
	if len(letters) > 0 {
		targets := map[string]bool{}
		for _, h := range letters {
			targets[h.dl.to.Value] = true
		}
		if err := d.sendCoalesced(ctx, c, ch, p, letters[0].l, len(uniqueLetters(letters, func(h held) string { return h.l.MessageID })), names, targets, func(to channels.Address, out Outcome) error {
			for _, h := range letters {
				if h.dl.to.Value != to.Value {
					continue
				}
				o := out
				o.DeliveryID = h.dl.id
				if err := d.write(ctx, LetterWrite{Citizen: p.Citizen, MessageID: h.l.MessageID, Done: []Outcome{o}}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if err := d.cfg.Store.Release(ctx, p.Citizen, ch, len(ids)); err != nil {
		return err
	}
	// A letter held while this flush ran (its task id was taken by this
	// one) gets a flush of its own.
	if more, err := d.cfg.Store.Held(ctx, p.Citizen, ch); err != nil || len(more) == 0 {
		return err
	}
	next := flushTask{Citizen: p.Citizen, Channel: p.Channel, End: now.UnixMilli()}
	b, _ := json.Marshal(next)
	id := "flush:" + d.cfg.Keyer.EventID(p.Citizen+"|"+p.Channel+"|"+strconv.FormatInt(next.End, 10))
	return d.enqueue(ctx, newTask(TypeFlush, b, d.cfg.Queues, taskArgs{id: id}))
}

func uniqueLetters[T any](xs []T, key func(T) string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[key(x)] = true
	}
	return m
}

// sendCoalesced sends the one alert for count letters to each address of
// the channel and hands each outcome to record. A failed send fails the
// task, which retries; addresses already served are marked done per
// letter, so they are not sent again.
func (d *Dispatcher) sendCoalesced(ctx context.Context, c *Citizen, ch channels.Name, p flushTask, first *Letter, count int,
	names []string, targets map[string]bool, record func(channels.Address, Outcome) error) error {
	shown := rules.CoalescedSenderList(names, c.Language)
	seen := map[string]bool{}
	var errs []error
	for _, dl := range d.addresses(c, first.MessageID) {
		if dl.to.Channel != ch || seen[dl.to.Value] || !targets[dl.to.Value] {
			continue
		}
		seen[dl.to.Value] = true
		id := d.cfg.Keyer.DeliveryID("coalesced:"+strconv.FormatInt(p.End, 10), ch, dl.to.Value)
		cl := *first
		cl.Notification = ""
		r := d.send(ctx, c, &cl, delivery{id: id, to: dl.to}, retryCount(ctx)+1, func(a *channels.Alert) {
			a.Count, a.Senders, a.Badge = count, shown, c.Unread
		})
		out := r.out
		out.Reason = fmt.Sprintf("coalesced: one alert for %d letters (%s)", count, id)
		if r.final {
			if err := record(dl.to, out); err != nil {
				return err
			}
		}
		if r.err != nil && !r.final {
			errs = append(errs, taskError(r.err))
		}
	}
	return errors.Join(errs...)
}
