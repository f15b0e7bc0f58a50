package dispatcher

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"sync"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Keyer derives postbud's pseudonymous identifiers under one secret key:
// the citizen key (HMAC-SHA256 of the CPR; a plain hash of the small CPR
// space could be brute-forced) and the deterministic delivery ids.
type Keyer struct {
	pool sync.Pool
}

// MinKeyBytes is the least length of the pseudonymisation key.
const MinKeyBytes = 32

// NewKeyer returns a Keyer for key, which must be at least MinKeyBytes long.
func NewKeyer(key []byte) (*Keyer, error) {
	if len(key) < MinKeyBytes {
		return nil, errors.New("pseudonymisation key must be at least 32 bytes")
	}
	k := append([]byte(nil), key...)
	return &Keyer{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}}, nil
}

func (k *Keyer) sum(parts ...string) []byte {
	h := k.pool.Get().(hash.Hash)
	h.Reset()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(p))
	}
	out := h.Sum(nil)
	k.pool.Put(h)
	return out
}

// CitizenKey returns the citizen's pseudonymous key: 128 bits of
// HMAC-SHA256(key, "cpr", cpr) in unpadded base64url (22 characters).
func (k *Keyer) CitizenKey(c event.CPR) string {
	return base64.RawURLEncoding.EncodeToString(k.sum("cpr", c.Digits())[:16])
}

// DeliveryID returns the deterministic id of the delivery of one letter on
// one channel to one address: the same inputs give the same id on every
// replica and every retry, so it serves as asynq task id and provider
// reference.
func (k *Keyer) DeliveryID(messageID string, ch channels.Name, address string) string {
	return hex.EncodeToString(k.sum("delivery", messageID, string(ch), address)[:16])
}

// AddressFingerprint returns a keyed fingerprint of an alert address on a
// channel (32 hex characters): what the store keeps to tell a changed
// address from the same one, and to tie a confirmation code to the address
// it was sent to, without comparing or keeping the address itself.
func (k *Keyer) AddressFingerprint(ch channels.Name, address string) string {
	return hex.EncodeToString(k.sum("address", string(ch), address)[:16])
}

// CodeMAC returns the form a confirmation code is stored and compared in:
// HMAC-SHA256 under the pseudonymisation key, domain-separated ("confirm-
// code") from every other use of it, over the citizen, the channel, the
// address's fingerprint and the code (64 hex characters). The code itself
// is never stored; a MAC of one citizen's code for one address says
// nothing of another's, and without the key the million codes cannot be
// tried against it.
func (k *Keyer) CodeMAC(citizen string, ch channels.Name, fingerprint, code string) string {
	return hex.EncodeToString(k.sum("confirm-code", citizen, string(ch), fingerprint, code))
}

// EventID returns the pseudonymous form of a platform's event id: event ids
// are chosen by platforms and could hold anything, so only this form is used
// in Redis keys, task ids and payloads.
func (k *Keyer) EventID(id string) string {
	return "h" + base64.RawURLEncoding.EncodeToString(k.sum("event", id)[:15])
}

// Pseudonymize returns the task payload form of e: a copy with the CPR
// moved into CitizenKey (and Birth for letters) and cleared, and the event
// id replaced by its pseudonymous form (EventID). e itself is not changed,
// so a caller keeps the platform's id and the CPR for its own answer. An
// event without a CPR (already pseudonymised) comes back as an equal copy,
// so Pseudonymize is idempotent.
func (k *Keyer) Pseudonymize(e *event.Event) *event.Event {
	p := *e
	c := e.Citizen()
	if c == "" {
		return &p
	}
	// An event id is unique per platform: the same id from two platforms
	// is two events.
	p.ID = k.EventID(string(e.Source) + "|" + e.ID)
	p.CitizenKey = k.CitizenKey(c)
	switch {
	case e.Message != nil:
		m := *e.Message
		m.CPR = ""
		p.Message, p.Birth = &m, c.BirthDate().Format("2006-01-02")
	case e.Read != nil:
		r := *e.Read
		if r.ReaderCPR != "" {
			r.ReaderKey = k.CitizenKey(r.ReaderCPR)
		}
		r.CPR, r.ReaderCPR = "", ""
		p.Read = &r
	case e.Contact != nil:
		x := *e.Contact
		x.CPR = ""
		p.Contact = &x
	case e.Device != nil:
		d := *e.Device
		d.CPR = ""
		p.Device = &d
	case e.Exemption != nil:
		x := *e.Exemption
		x.CPR = ""
		p.Exemption = &x
	case e.Consent != nil:
		x := *e.Consent
		x.CPR = ""
		p.Consent = &x
	case e.Access != nil:
		a := *e.Access
		if a.HolderCPR != "" {
			a.HolderKey = k.CitizenKey(a.HolderCPR)
		}
		a.CPR, a.HolderCPR = "", ""
		p.Access = &a
	}
	return &p
}
