// Package seal keeps citizens' contact data (email addresses, mobile
// numbers, postal addresses, push tokens) sealed wherever postbud stores it
// or queues it: AES-256-GCM under a key from configuration
// (POSTBUD_SEAL_KEY), with the citizen's pseudonymous key and the field as
// associated data, so a sealed value opens only as the field of the
// citizen it was sealed for.
//
// A sealed value has two forms, which Open both reads. Task payloads are
// JSON and take the text form (Seal):
//
//	s1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>
//
// Redis takes the compact binary form (SealCompact), a third smaller:
//
//	0x00 ‖ key id (3 bytes) ‖ nonce ‖ ciphertext ‖ tag
//
// No plain value starts with either (addresses and tokens are text without
// control characters; "s1." is followed by a 4-character id and a dot).
// The key id (3 bytes; 4 characters in base64url) is derived from the
// key, so a value names the key that opens it: during a rotation the previous key
// (POSTBUD_SEAL_KEY_PREVIOUS) still opens what it sealed, and `postbud
// reseal` seals everything again under the current one.
//
// Tag is the other half: a keyed hash (HMAC-SHA256) for values that must
// be found by their content without being stored in clear (a push token
// names its registry entry by its tag). It is keyed by a key that is never
// rotated (derived from POSTBUD_PSEUDONYM_KEY), so tags stay put across
// seal key rotations.
//
// No error of this package holds the value, sealed or open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// MinKeyBytes is the least length of a configured secret.
const MinKeyBytes = 32

// Prefix starts every sealed value (version 1 of the format).
const Prefix = "s1."

const idLen = 4 // base64url of 3 bytes

// compactTag starts the compact form.
const compactTag = 0x00

// Errors. They say what is wrong with a value, never what it holds.
var (
	// ErrNotSealed is a value that is not in the sealed format.
	ErrNotSealed = errors.New("value is not sealed")
	// ErrUnknownKey is a value sealed under a key that is not configured
	// (neither POSTBUD_SEAL_KEY nor POSTBUD_SEAL_KEY_PREVIOUS).
	ErrUnknownKey = errors.New("value is sealed under a key that is not configured")
	// ErrOpen is a value that does not open: tampered with, or sealed for
	// another citizen or another field.
	ErrOpen = errors.New("sealed value does not open (tampered with, or sealed for another citizen or field)")
)

type key struct {
	id    string
	rawID [3]byte
	aead  cipher.AEAD
}

// Keys are the secrets a Sealer is made of.
type Keys struct {
	// Current seals, and opens (POSTBUD_SEAL_KEY): ≥ 32 bytes.
	Current []byte
	// Previous only opens (POSTBUD_SEAL_KEY_PREVIOUS), during a rotation;
	// optional.
	Previous []byte
	// Tag keys Tag (≥ 32 bytes): a secret that is never rotated; postbud
	// passes POSTBUD_PSEUDONYM_KEY, from which a key of its own is derived.
	Tag []byte
}

// Sealer seals and opens values. It is safe for concurrent use.
type Sealer struct {
	cur  key
	prev *key
	tag  []byte
}

// derive returns HMAC-SHA256(secret, label): keys of their own for each
// use of one secret.
func derive(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

func newKey(secret []byte, name string) (key, error) {
	if len(secret) < MinKeyBytes {
		return key{}, fmt.Errorf("%s must be at least %d bytes, got %d", name, MinKeyBytes, len(secret))
	}
	block, err := aes.NewCipher(derive(secret, "postbud seal v1 aes-256-gcm"))
	if err != nil {
		return key{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return key{}, err
	}
	k := key{aead: aead}
	copy(k.rawID[:], derive(secret, "postbud seal v1 key id"))
	k.id = base64.RawURLEncoding.EncodeToString(k.rawID[:])
	return k, nil
}

// New returns a Sealer for k.
func New(k Keys) (*Sealer, error) {
	cur, err := newKey(k.Current, "the seal key")
	if err != nil {
		return nil, err
	}
	if len(k.Tag) < MinKeyBytes {
		return nil, fmt.Errorf("the tag key must be at least %d bytes, got %d", MinKeyBytes, len(k.Tag))
	}
	s := &Sealer{cur: cur, tag: derive(k.Tag, "postbud seal v1 tag")}
	if len(k.Previous) > 0 {
		prev, err := newKey(k.Previous, "the previous seal key")
		if err != nil {
			return nil, err
		}
		if prev.id == cur.id {
			return nil, errors.New("the previous seal key is the current one (or has its key id): generate another")
		}
		s.prev = &prev
	}
	return s, nil
}

// Ephemeral returns a Sealer with random keys, for tests and benchmarks:
// no other Sealer opens what it seals.
func Ephemeral() *Sealer {
	var a, b [32]byte
	_, _ = rand.Read(a[:])
	_, _ = rand.Read(b[:])
	s, err := New(Keys{Current: a[:], Tag: b[:]})
	if err != nil {
		panic(err)
	}
	return s
}

// KeyID returns the id of the current key.
func (s *Sealer) KeyID() string { return s.cur.id }

// PreviousKeyID returns the id of the previous key ("" when none).
func (s *Sealer) PreviousKeyID() string {
	if s.prev == nil {
		return ""
	}
	return s.prev.id
}

// ad is the associated data: the citizen and the field, so a value opens
// only where it was sealed.
func ad(citizen, field string) []byte {
	return []byte("postbud\x00" + citizen + "\x00" + field)
}

// Seal seals plain as field of citizen under the current key, in the text
// form. The empty string stays empty (it means "none" wherever a value is
// stored).
func (s *Sealer) Seal(citizen, field, plain string) string {
	if plain == "" {
		return ""
	}
	return Prefix + s.cur.id + "." + base64.RawURLEncoding.EncodeToString(s.seal(nil, citizen, field, plain))
}

// SealCompact is Seal in the compact binary form, for Redis.
func (s *Sealer) SealCompact(citizen, field, plain string) string {
	if plain == "" {
		return ""
	}
	head := append([]byte{compactTag}, s.cur.rawID[:]...)
	return string(s.seal(head, citizen, field, plain))
}

// seal appends nonce ‖ ciphertext ‖ tag to dst.
func (s *Sealer) seal(dst []byte, citizen, field, plain string) []byte {
	a := s.cur.aead
	n := len(dst)
	dst = append(dst, make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())...)
	_, _ = rand.Read(dst[n:])
	return a.Seal(dst, dst[n:], []byte(plain), ad(citizen, field))
}

// IsSealed reports whether v is in a sealed form (it may still not open).
func IsSealed(v string) bool {
	_, ok := KeyIDOf(v)
	return ok
}

// KeyIDOf returns the key id of a sealed value.
func KeyIDOf(v string) (string, bool) {
	switch {
	case len(v) > 4 && v[0] == compactTag:
		return base64.RawURLEncoding.EncodeToString([]byte(v[1:4])), true
	case len(v) > len(Prefix)+idLen+1 && strings.HasPrefix(v, Prefix) && v[len(Prefix)+idLen] == '.':
		return v[len(Prefix) : len(Prefix)+idLen], true
	}
	return "", false
}

// Current reports whether v is sealed under the current key: what `postbud
// reseal` leaves alone.
func (s *Sealer) Current(v string) bool {
	id, ok := KeyIDOf(v)
	return ok && id == s.cur.id
}

// Open opens a value sealed as field of citizen, in either form, under the
// current or the previous key. The empty string opens to itself.
func (s *Sealer) Open(citizen, field, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	id, ok := KeyIDOf(v)
	if !ok {
		return "", ErrNotSealed
	}
	var k *key
	switch {
	case id == s.cur.id:
		k = &s.cur
	case s.prev != nil && id == s.prev.id:
		k = s.prev
	default:
		return "", fmt.Errorf("%w (key id %s)", ErrUnknownKey, id)
	}
	var b []byte
	if v[0] == compactTag {
		b = []byte(v[4:])
	} else {
		var err error
		if b, err = base64.RawURLEncoding.DecodeString(v[len(Prefix)+idLen+1:]); err != nil {
			return "", ErrOpen
		}
	}
	n := k.aead.NonceSize()
	if len(b) < n+k.aead.Overhead() {
		return "", ErrOpen
	}
	plain, err := k.aead.Open(nil, b[:n], b[n:], ad(citizen, field))
	if err != nil {
		return "", ErrOpen
	}
	return string(plain), nil
}

// Tag returns the keyed hash of parts (128 bits, base64url, 22
// characters): the same parts give the same tag under every seal key.
func (s *Sealer) Tag(parts ...string) string {
	m := hmac.New(sha256.New, s.tag)
	for i, p := range parts {
		if i > 0 {
			m.Write([]byte{0})
		}
		m.Write([]byte(p))
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}
