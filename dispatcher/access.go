package dispatcher

import (
	"context"
	"time"

	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/rules"
)

// Access holders (læseadgang): a citizen (the owner) may give another (the
// holder) access to read the owner's Digital Post. A holder who chose
// notify gets, for each letter to the owner that is alerted digitally, an
// alert of its own on the holder's own confirmed addresses and devices, in
// the holder's language: it names the sender, never the owner.
//
// A holder's deliveries are deliveries of the owner's letter: their done
// and in-flight marks and trail entries are the letter's (the trail entry
// names the holder by HolderRef only), their ids are derived from the
// letter, the holder key, the channel and the address, and every rule of
// the owner's own deliveries applies to them (confirmation, quiet hours,
// rate limits, expiry, read). A held or retried holder delivery looks the
// relation up again when it runs: revoked or expired access, or notify
// turned off, ends it at once.

// HolderRef is how a trail, a log or the support view names an access
// holder: a masked prefix of the holder's pseudonymous key, enough to tell
// a mailbox's holders apart, never the key (nor, of course, the CPR).
func HolderRef(key string) string {
	if key == "" {
		return ""
	}
	if len(key) > 4 {
		key = key[:4]
	}
	return key + "…"
}

// access applies access.granted, access.updated and access.revoked.
func (d *Dispatcher) access(ctx context.Context, ev *event.Event) error {
	a := ev.Access
	change := map[event.Type]AccessChange{event.AccessGranted: AccessGrant, event.AccessUpdated: AccessUpdate,
		event.AccessRevoked: AccessRevoke}[ev.Type]
	applied, err := d.cfg.Store.SetAccess(ctx, AccessWrite{Owner: ev.CitizenKey, Holder: a.HolderKey, Change: change,
		Notify: a.Notify, Expires: a.ExpiresAt, At: ev.OccurredAt, Mark: EventRef{Citizen: ev.CitizenKey, ID: ev.ID}})
	if err != nil {
		return err
	}
	d.log.InfoContext(ctx, "access", "type", ev.Type, "applied", applied, "holder", HolderRef(a.HolderKey))
	return nil
}

// holderAccess returns the owner's relation to holder as stored now.
func (d *Dispatcher) holderAccess(ctx context.Context, owner, holder string) (Access, bool, error) {
	hs, err := d.cfg.Store.HoldersOf(ctx, owner)
	if err != nil {
		return Access{}, false, err
	}
	for _, h := range hs {
		if h.Holder == holder {
			return h, true, nil
		}
	}
	return Access{}, false, nil
}

// holderEnded says why a relation no longer alerts its holder ("" while it
// does).
func holderEnded(a Access, found bool, now time.Time) string {
	switch {
	case !found || !a.Granted:
		return "access holder: access revoked"
	case !a.Active(now):
		return "access holder: access expired"
	case !a.Notify:
		return "access holder: alerts off"
	}
	return ""
}

// holderLetter is l as a holder's alert shows it: the holder text, in the
// holder's language, in place of the sender's own alert text.
func holderLetter(c *Citizen, l *Letter) *Letter {
	hl := *l
	hl.Notification = rules.HolderText(c.Language, l.SenderName)
	return &hl
}

// alertHolders alerts the owner's holders (hs, as the letter's look-up
// found them) who chose notify of letter l (the owner's letter is alerted
// digitally).
func (d *Dispatcher) alertHolders(ctx context.Context, owner, run string, hs []Access, l *Letter, now time.Time) error {
	for _, holder := range alerted(owner, hs, now) {
		if err := d.alertHolder(ctx, owner, run, holder, l, now); err != nil {
			return err
		}
	}
	return nil
}

// alerted returns the holders among hs that a letter to owner alerts now:
// access current, notify on.
func alerted(owner string, hs []Access, now time.Time) []string {
	var out []string
	for _, h := range hs {
		if h.Holder != owner && holderEnded(h, true, now) == "" {
			out = append(out, h.Holder)
		}
	}
	return out
}

// alertHolder plans and makes one holder's deliveries of the owner's
// letter l, as receive does the owner's.
func (d *Dispatcher) alertHolder(ctx context.Context, owner, run, holder string, l *Letter, now time.Time) error {
	v, err := d.cfg.Store.Load(ctx, holder, l.MessageID)
	if err != nil {
		return err
	}
	c := v.Citizen
	ok, unconfirmed := d.contactsAs(c, l.MessageID, holder)
	w := LetterWrite{Citizen: owner, MessageID: l.MessageID}
	for _, dl := range unconfirmed {
		if !l.Done[dl.id] {
			w.Done = append(w.Done, skipped(now, dl, NotConfirmed(dl.to.Channel)))
		}
	}
	if len(ok) == 0 && len(unconfirmed) == 0 {
		w.Trail = append(w.Trail, Outcome{At: now, Result: ResultSkipped, Reason: "access holder: no contact",
			Holder: HolderRef(holder)})
	}
	var todo []delivery
	var pending []result
	for _, dl := range ok {
		if l.Done[dl.id] {
			continue
		}
		// The holder's own consent: no alert about a public letter
		// through the app of a platform the holder gave none.
		if why := noConsent(c, l, dl.to); why != "" {
			w.Done = append(w.Done, skipped(now, dl, why))
			continue
		}
		switch {
		case l.Read:
			w.Done = append(w.Done, skipped(now, dl, "read"))
			continue
		case now.After(d.expires(l)):
			w.Done = append(w.Done, skipped(now, dl, "expired"))
			continue
		}
		if _, inFlight := l.InFlight[dl.id]; inFlight {
			if !othersClaim(l, dl.id, run, now) {
				pending = append(pending, result{dl: dl})
			}
			continue
		}
		if until, why := d.hold(l, dl.to.Channel, now); !until.IsZero() {
			o := deferredOutcome(now, dl, until, why)
			w.Trail = append(w.Trail, o)
			pending = append(pending, result{dl: dl, out: o, until: until})
			continue
		}
		todo = append(todo, dl)
	}
	// Another run of the letter at once (two event ids for one message
	// id) may alert the holder too: the marks are claims.
	w.Claim, w.Run = true, run
	results, err := d.sendRecorded(ctx, c, holderLetter(c, l), w, todo, 1, sendHooks{})
	if err != nil {
		return err
	}
	for _, r := range results {
		if !r.final {
			pending = append(pending, r)
		}
	}
	for _, r := range pending {
		if err := d.enqueueDelivery(ctx, owner, l, r); err != nil {
			return err
		}
	}
	return nil
}

// readBy is the trail note of a read made by someone other than the
// recipient (data.reader): an access holder, or — if no access is
// recorded — an unknown reader. The read counts either way: the platform
// showed the letter.
func (d *Dispatcher) readBy(ctx context.Context, owner, reader string, read bool, p event.Platform, now time.Time) (Outcome, error) {
	a, found, err := d.holderAccess(ctx, owner, reader)
	if err != nil {
		return Outcome{}, err
	}
	verb := "read"
	if !read {
		verb = "marked unread"
	}
	o := Outcome{At: now, Result: ResultNote, Holder: HolderRef(reader), Reason: verb + " by access holder on " + string(p)}
	if !found || !a.Active(now) {
		o.Reason = verb + " on " + string(p) + " by a reader other than the recipient, without current access"
	}
	return o, nil
}

// AccessEntry is one access relation as support sees it: the other party
// named by HolderRef only.
type AccessEntry struct {
	Citizen string    `json:"citizen"`
	Notify  bool      `json:"notify"`
	Expires time.Time `json:"expires_at,omitzero"`
	Since   time.Time `json:"since"`
	Active  bool      `json:"active"`
}

// AccessView is a citizen's access relations for support: who holds the
// citizen's mailbox, and whose mailboxes the citizen holds.
type AccessView struct {
	Holders []AccessEntry `json:"holders"`
	Holds   []AccessEntry `json:"holds"`
}

// AccessOf returns the access relations of the citizen with CPR c, each
// other party masked.
func (d *Dispatcher) AccessOf(ctx context.Context, c event.CPR) (AccessView, error) {
	key := d.cfg.Keyer.CitizenKey(c)
	now := d.cfg.Now()
	holders, err := d.cfg.Store.HoldersOf(ctx, key)
	if err != nil {
		return AccessView{}, err
	}
	holds, err := d.cfg.Store.HeldBy(ctx, key)
	if err != nil {
		return AccessView{}, err
	}
	v := AccessView{Holders: []AccessEntry{}, Holds: []AccessEntry{}}
	entry := func(other string, a Access) AccessEntry {
		return AccessEntry{Citizen: HolderRef(other), Notify: a.Notify, Expires: a.Expires, Since: a.Since, Active: a.Active(now)}
	}
	for _, a := range holders {
		v.Holders = append(v.Holders, entry(a.Holder, a))
	}
	for _, a := range holds {
		v.Holds = append(v.Holds, entry(a.Owner, a))
	}
	return v, nil
}

// holderDelivery finds which of the owner's holders a delivery of letter
// messageID went to: that holder's key and deliveries (none if no holder's).
func (d *Dispatcher) holderDelivery(ctx context.Context, owner, messageID, deliveryID string) (string, []delivery, error) {
	hs, err := d.cfg.Store.HoldersOf(ctx, owner)
	if err != nil {
		return "", nil, err
	}
	for _, h := range hs {
		v, err := d.cfg.Store.Load(ctx, h.Holder, messageID)
		if err != nil {
			return "", nil, err
		}
		ok, _ := d.contactsAs(v.Citizen, messageID, h.Holder)
		for _, dl := range ok {
			if dl.id == deliveryID {
				return h.Holder, ok, nil
			}
		}
	}
	return "", nil, nil
}
