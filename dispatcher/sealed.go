package dispatcher

import (
	"fmt"

	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// Task payloads carry contact data sealed (package seal): an accepted
// event's email, mobile, address, forward address and push token are sealed
// for the event's citizen before its task is enqueued (Event.Sealed), and
// opened when the task runs. The dashboard, the queue and any dump of Redis
// see sealed values only. The fields' names in the associated data start
// with "ev.", so a value cannot move between a payload and the registry.

// sealEvent returns a copy of a pseudonymised event with its contact data
// sealed.
func (d *Dispatcher) sealEvent(e *event.Event) *event.Event {
	if e.Sealed {
		return e
	}
	s, c := d.cfg.Sealer, e.CitizenKey
	p := *e
	sealPtr := func(field string, v *string) *string {
		if v == nil {
			return nil
		}
		x := s.Seal(c, field, *v)
		return &x
	}
	switch {
	case e.Contact != nil:
		x := *e.Contact
		x.Email, x.Mobile, x.Address = sealPtr("ev.email", x.Email), sealPtr("ev.mobile", x.Mobile), sealPtr("ev.addr", x.Address)
		p.Contact = &x
	case e.Device != nil:
		x := *e.Device
		x.Token = s.Seal(c, "ev.token", x.Token)
		p.Device = &x
	case e.Exemption != nil:
		x := *e.Exemption
		x.ForwardAddress = s.Seal(c, "ev.fwd", x.ForwardAddress)
		p.Exemption = &x
	default:
		return e // nothing to seal
	}
	p.Sealed = true
	return &p
}

// openEvent opens the contact data of an event from a task payload, in
// place. An error names the field, never a value.
func (d *Dispatcher) openEvent(e *event.Event) error {
	if !e.Sealed {
		return nil // enqueued before sealing
	}
	s, c := d.cfg.Sealer, e.CitizenKey
	var err error
	open := func(field string, v *string) {
		if v == nil || err != nil {
			return
		}
		var x string
		if x, err = s.Open(c, field, *v); err != nil {
			err = fmt.Errorf("event %s, %s: %w", e.ID, field, err)
			return
		}
		*v = x
	}
	switch {
	case e.Contact != nil:
		open("ev.email", e.Contact.Email)
		open("ev.mobile", e.Contact.Mobile)
		open("ev.addr", e.Contact.Address)
	case e.Device != nil:
		open("ev.token", &e.Device.Token)
	case e.Exemption != nil:
		open("ev.fwd", &e.Exemption.ForwardAddress)
	}
	if err == nil {
		e.Sealed = false
	}
	return err
}

// SealedKeyIDs returns the ids of the keys the contact data of a
// TypeEvent payload is sealed under (none for a payload without any), so
// `postbud reseal` can tell whether queued tasks still need the previous
// key.
func SealedKeyIDs(e *event.Event) []string {
	var ids []string
	add := func(v *string) {
		if v == nil {
			return
		}
		if id, ok := seal.KeyIDOf(*v); ok {
			ids = append(ids, id)
		}
	}
	switch {
	case e.Contact != nil:
		add(e.Contact.Email)
		add(e.Contact.Mobile)
		add(e.Contact.Address)
	case e.Device != nil:
		add(&e.Device.Token)
	case e.Exemption != nil:
		add(&e.Exemption.ForwardAddress)
	}
	return ids
}
