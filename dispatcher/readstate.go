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
)

// Read state across the four platforms (docs/design.md, "Read state").
//
// A message.read or message.unread is applied to its letter in one Redis
// script (last writer wins by the event's time; ties deterministic) that
// also keeps the citizen's unread index. When the read flag changed, each
// of the other platforms gets a task (postbud:sync, one per change and
// platform) and the citizen's devices a badge update (postbud:badge).
//
// A sync task sends the letter's *current* state, under a per-letter,
// per-platform lock, and records the version the platform acknowledged: so
// a platform receives versions in increasing order only, never an older
// one after a newer, and a platform that was down gets the newest state
// once it is back (its tasks retry with backoff for about a day).

// TrailWebhook is the channel named in a letter's trail entries about its
// read-state webhooks (App names the platform).
const TrailWebhook channels.Name = "webhook"

// PlatformState is what a platform is told of a letter.
type PlatformState struct {
	MessageID string
	Read      bool
	Version   int64
	ChangedAt time.Time
	ChangedBy event.Platform
}

// Syncer delivers read-state changes to a platform. The dispatcher defines
// it and does not know who implements it (the webhook channel, adapted in
// cmd/postbud). id is stable for one letter version, so a receiver can
// drop a repeat.
type Syncer interface {
	Sync(ctx context.Context, platform event.Platform, id string, st PlatformState) (channels.Receipt, error)
	// Targets lists the platforms with an endpoint.
	Targets() []event.Platform
}

type syncTask struct {
	Citizen   string `json:"c"`
	MessageID string `json:"m"`
	Platform  string `json:"p"`
}

type badgeTask struct {
	Citizen   string `json:"c"`
	MessageID string `json:"m"`
}

// syncLockTTL bounds how long one platform's webhook for one letter may
// hold the letter's lock: twice the sync task's timeout, so a twin cannot
// take it while the holder still runs.
const syncLockTTL = 2 * time.Minute

// errLocked asks asynq to run the task again shortly without spending a
// retry: another task is sending this letter's state to this platform.
var errLocked = channels.Throttle(time.Second, "locked", errors.New("another sync of this letter to this platform is running"))

func (d *Dispatcher) readState(ctx context.Context, ev *event.Event) error {
	r := ev.Read
	mark := EventRef{Citizen: ev.CitizenKey, MessageID: r.MessageID, ID: ev.ID}
	for _, p := range consentPlatforms(ev) {
		// The HTTP API refused this already if the letter was known then;
		// an event enqueued straight into asynq, or one about a letter
		// that arrived meanwhile, is judged here. A letter still unknown
		// keeps the read, as any read that comes before its letter.
		v, err := d.cfg.Store.Lookup(ctx, mark)
		if err != nil || v.Seen {
			return err
		}
		if why := platformNoConsent(v.Citizen, v.Letter, p); v.Stored && why != "" {
			d.log.WarnContext(ctx, "read state refused: no consent", "message_id", r.MessageID, "platform", p,
				"type", ev.Type)
			return d.write(ctx, LetterWrite{Citizen: ev.CitizenKey, MessageID: r.MessageID, Mark: mark,
				Trail: []Outcome{{At: d.cfg.Now(), App: string(p), Result: ResultSkipped,
					Reason: string(ev.Type) + " from " + string(p) + " refused: " + why}}})
		}
	}
	res, err := d.cfg.Store.ApplyState(ctx, StateWrite{Citizen: ev.CitizenKey, MessageID: r.MessageID,
		Read: ev.Type == event.MessageRead, At: r.At, Platform: r.Platform, Guard: mark})
	if err != nil || res.Seen {
		return err
	}
	st := res.State
	d.log.InfoContext(ctx, "read state", "message_id", r.MessageID, "platform", r.Platform, "read", st.Read,
		"version", st.Version, "changed", res.Changed, "by_other_reader", r.ReaderKey != "")
	if r.ReaderKey != "" {
		note, err := d.readBy(ctx, ev.CitizenKey, r.ReaderKey, ev.Type == event.MessageRead, r.Platform, d.cfg.Now())
		if err != nil {
			return err
		}
		if err := d.write(ctx, LetterWrite{Citizen: ev.CitizenKey, MessageID: r.MessageID, Trail: []Outcome{note}}); err != nil {
			return err
		}
	}
	// On a retry the state may have changed in the attempt that failed:
	// enqueue again (task ids make that idempotent).
	switch {
	case res.Correct:
		if err := d.fanOut(ctx, ev.CitizenKey, st, r.Platform); err != nil {
			return err
		}
	case res.Changed || retryCount(ctx) > 0:
		if err := d.fanOut(ctx, ev.CitizenKey, st, ""); err != nil {
			return err
		}
	}
	return d.cfg.Store.Mark(ctx, mark)
}

// fanOut enqueues the sync of a changed state to every platform but the
// one it came from (or, to correct a platform that sent a losing change,
// to that platform only) and the badge update of the citizen's devices.
func (d *Dispatcher) fanOut(ctx context.Context, citizen string, st ReadState, only event.Platform) error {
	v := strconv.FormatInt(st.Version, 10)
	if d.cfg.Syncer != nil {
		for _, p := range d.cfg.Syncer.Targets() {
			if p == st.ChangedBy || (only != "" && p != only) {
				continue
			}
			b, _ := json.Marshal(syncTask{Citizen: citizen, MessageID: st.MessageID, Platform: string(p)})
			t := newTask(TypeSync, b, d.cfg.Queues, taskArgs{id: "sync:" + string(p) + ":" + st.MessageID + ":" + v})
			if err := d.enqueue(ctx, t); err != nil {
				return err
			}
		}
	}
	if only != "" {
		return nil // a correction: the count did not change
	}
	// Also when the letter is not recorded yet: its first processing may
	// be sending its alert (with the old count) right now.
	b, _ := json.Marshal(badgeTask{Citizen: citizen, MessageID: st.MessageID})
	// The task id is a hash: the dashboard shows task ids, and the
	// citizen key is nobody's business there.
	t := newTask(TypeBadge, b, d.cfg.Queues, taskArgs{id: "badge:" + d.cfg.Keyer.EventID(citizen+"|"+st.MessageID+"|"+v)})
	return d.enqueue(ctx, t)
}

func (d *Dispatcher) enqueue(ctx context.Context, t *asynq.Task) error {
	_, err := d.cfg.Enqueuer.EnqueueContext(ctx, t)
	if errors.Is(err, asynq.ErrTaskIDConflict) || errors.Is(err, asynq.ErrDuplicateTask) {
		return nil
	}
	return err
}

// HandleSync sends a letter's current state to one platform, unless the
// platform already acknowledged that version or newer.
func (d *Dispatcher) HandleSync(ctx context.Context, t *asynq.Task) error {
	var p syncTask
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.Platform == "" {
		return fmt.Errorf("sync task payload: %w", errors.Join(err, asynq.SkipRetry))
	}
	if d.cfg.Syncer == nil {
		return nil
	}
	platform := event.Platform(p.Platform)
	off, err := d.cfg.Store.PlatformDisabled(ctx, platform)
	if err != nil {
		return err
	}
	if off {
		d.log.WarnContext(ctx, "webhook endpoint disabled: change not sent", "platform", platform, "message_id", p.MessageID)
		return nil
	}
	if event.NeedsConsent(platform) {
		// Consent is checked when the webhook is about to go, not when it
		// was planned: a revocation meanwhile drops it.
		v, err := d.cfg.Store.Load(ctx, p.Citizen, p.MessageID)
		if err != nil {
			return err
		}
		if why := platformNoConsent(v.Citizen, v.Letter, platform); why != "" {
			d.log.InfoContext(ctx, "read-state webhook dropped: no consent", "platform", platform, "message_id", p.MessageID)
			if !v.Stored {
				return nil // no letter to keep a trail on
			}
			return d.write(ctx, LetterWrite{Citizen: p.Citizen, MessageID: p.MessageID, Trail: []Outcome{{At: d.cfg.Now(),
				Channel: TrailWebhook, App: string(platform), Result: ResultSkipped, Reason: why}}})
		}
	}
	key := SyncKey{Citizen: p.Citizen, MessageID: p.MessageID, Platform: platform}
	lock, err := d.cfg.Store.LockSync(ctx, key, syncLockTTL)
	if err != nil {
		return err
	}
	if lock == nil {
		return errLocked
	}
	defer func() { _ = lock.Unlock(context.WithoutCancel(ctx)) }()
	st, err := d.cfg.Store.State(ctx, p.Citizen, p.MessageID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Version <= st.Acked[platform] || st.Version == 0 || st.ChangedBy == platform {
		return nil // acknowledged already (by this task's twin), or its own change
	}
	id := "msg_" + p.MessageID + "_v" + strconv.FormatInt(st.Version, 10)
	start := d.cfg.Now()
	_, err = d.cfg.Syncer.Sync(ctx, platform, id, PlatformState{MessageID: p.MessageID, Read: st.Read,
		Version: st.Version, ChangedAt: st.ChangedAt, ChangedBy: st.ChangedBy})
	lag := d.cfg.Now().Sub(st.ChangedAt)
	d.obs.Webhook(platform, resultOf(err), lag, d.cfg.Now().Sub(start))
	switch kind := channels.KindOf(err); {
	case err == nil:
		return d.cfg.Store.AckSync(ctx, key, st.Version)
	case kind == channels.Gone:
		d.log.ErrorContext(ctx, "platform answered 410 Gone: its webhook endpoint is disabled until ops enable it",
			"platform", platform, "message_id", p.MessageID)
		return d.cfg.Store.SetPlatformDisabled(ctx, platform, true)
	case kind == channels.Misconfigured:
		d.log.ErrorContext(ctx, "webhook misconfigured", "platform", platform, "code", channels.CodeOf(err), "error", err)
	default:
		d.log.WarnContext(ctx, "webhook failed", "platform", platform, "message_id", p.MessageID,
			"kind", kind.String(), "code", channels.CodeOf(err), "attempt", retryCount(ctx)+1)
	}
	return taskError(err)
}

func resultOf(err error) string {
	if err == nil {
		return ResultSent
	}
	return channels.KindOf(err).String()
}

// HandleBadge sends the citizen's unread count to each of their devices as
// a silent push.
func (d *Dispatcher) HandleBadge(ctx context.Context, t *asynq.Task) error {
	var p badgeTask
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.Citizen == "" {
		return fmt.Errorf("badge task payload: %w", errors.Join(err, asynq.SkipRetry))
	}
	v, err := d.cfg.Store.Load(ctx, p.Citizen, p.MessageID)
	if err != nil {
		return err
	}
	c, l := v.Citizen, v.Letter
	var errs []error
	for _, dl := range d.addresses(c, p.MessageID) {
		if dl.to.Channel != channels.APNs && dl.to.Channel != channels.FCM {
			continue
		}
		if noConsent(c, l, dl.to) != "" {
			continue // not even a silent count through that app
		}
		badge := delivery{id: d.cfg.Keyer.DeliveryID("badge:"+p.MessageID, dl.to.Channel, dl.to.Value), to: dl.to}
		// The same path as every delivery (rate limit, timeout, metrics, a
		// gone token removed); the alert is the silent count only.
		r := d.send(ctx, c, l, badge, retryCount(ctx)+1, func(a *channels.Alert) {
			*a = channels.Alert{DeliveryID: badge.id, MessageID: l.MessageID, Language: "da", Badge: c.Unread, Silent: true,
				MailboxURL: d.cfg.MailboxURL, Count: 1, Senders: []string{l.SenderName}}
		})
		err := r.err
		switch channels.KindOf(err) {
		case channels.Gone:
			err = nil // send removed the token
		case channels.Permanent:
			d.log.WarnContext(ctx, "badge update refused", "channel", dl.to.Channel, "code", channels.CodeOf(err))
			err = nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// A retry updates every device again: silent pushes replace.
		return errors.Join(errs...)
	}
	return nil
}

// State returns a letter's read state by message id, for platforms that
// reconcile.
func (d *Dispatcher) State(ctx context.Context, messageID string) (ReadState, error) {
	c, err := d.cfg.Store.CitizenOf(ctx, messageID)
	if err != nil {
		return ReadState{}, err
	}
	return d.cfg.Store.State(ctx, c, messageID)
}

// StateFor is State for platform p: a letter p may not learn of (a letter
// from a public sender, to a citizen who gave p no consent to show it) is
// ErrNoConsent.
func (d *Dispatcher) StateFor(ctx context.Context, messageID string, p event.Platform) (ReadState, error) {
	c, err := d.cfg.Store.CitizenOf(ctx, messageID)
	if err != nil {
		return ReadState{}, err
	}
	if event.NeedsConsent(p) {
		v, err := d.cfg.Store.Load(ctx, c, messageID)
		if err != nil {
			return ReadState{}, err
		}
		if why := platformNoConsent(v.Citizen, v.Letter, p); why != "" {
			return ReadState{}, fmt.Errorf("%w: %s: the citizen has not given %s consent to show letters from public senders", ErrNoConsent, why, p)
		}
	}
	return d.cfg.Store.State(ctx, c, messageID)
}

// EnablePlatform re-enables a platform's webhook endpoint after a 410.
func (d *Dispatcher) EnablePlatform(ctx context.Context, p event.Platform) error {
	return d.cfg.Store.SetPlatformDisabled(ctx, p, false)
}

// FreshWebhookID reports whether a signed request's webhook-id is new for
// the platform, remembering it for ttl (replay protection).
func (d *Dispatcher) FreshWebhookID(ctx context.Context, platform, id string, ttl time.Duration) (bool, error) {
	return d.cfg.Store.Remember(ctx, "wh:"+platform+":"+d.cfg.Keyer.EventID(id), ttl)
}
