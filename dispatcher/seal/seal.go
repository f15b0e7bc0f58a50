// Package seal keeps citizens' contact data (email addresses, mobile
// numbers, postal addresses, push tokens) sealed wherever postbud stores it
// or queues it: AES-256-GCM under a key from configuration
// (POSTBUD_SEAL_KEY), with the citizen's pseudonymous key and the field as
// associated data, so a sealed value opens only as the field of the
// citizen it was sealed for.
//
// A sealed value is text (it goes into Redis hash values and JSON task
// payloads alike):
//
//	s1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>
//
// The key id (4 characters) is derived from the key, so a value names the
// key that opens it: during a rotation the previous key
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
	id   string
	aead cipher.AEAD
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
	id := base64.RawURLEncoding.EncodeToString(derive(secret, "postbud seal v1 key id")[:3])
	return key{id: id, aead: aead}, nil
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

// Seal seals plain as field of citizen under the current key. The empty
// string stays empty (it means "none" wherever a value is stored).
func (s *Sealer) Seal(citizen, field, plain string) string {
	if plain == "" {
		return ""
	}
	a := s.cur.aead
	buf := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	_, _ = rand.Read(buf)
	buf = a.Seal(buf, buf, []byte(plain), ad(citizen, field))
	return Prefix + s.cur.id + "." + base64.RawURLEncoding.EncodeToString(buf)
}

// IsSealed reports whether v is in the sealed format (it may still not
// open).
func IsSealed(v string) bool {
	return len(v) > len(Prefix)+idLen+1 && strings.HasPrefix(v, Prefix) && v[len(Prefix)+idLen] == '.'
}

// KeyIDOf returns the key id of a sealed value.
func KeyIDOf(v string) (string, bool) {
	if !IsSealed(v) {
		return "", false
	}
	return v[len(Prefix) : len(Prefix)+idLen], true
}

// Current reports whether v is sealed under the current key: what `postbud
// reseal` leaves alone.
func (s *Sealer) Current(v string) bool {
	id, ok := KeyIDOf(v)
	return ok && id == s.cur.id
}

// Open opens a value sealed as field of citizen, under the current or the
// previous key. The empty string opens to itself.
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
	b, err := base64.RawURLEncoding.DecodeString(v[len(Prefix)+idLen+1:])
	n := k.aead.NonceSize()
	if err != nil || len(b) < n+k.aead.Overhead() {
		return "", ErrOpen
	}
	plain, err := k.aead.Open(nil, b[:n], b[n:], ad(citizen, field))
	if err != nil {
		return "", ErrOpen
	}
	return string(plain), nil
}

// Reseal returns v sealed under the current key, and whether it changed:
// a value under the current key is left as it is.
func (s *Sealer) Reseal(citizen, field, v string) (string, bool, error) {
	if v == "" || s.Current(v) {
		return v, false, nil
	}
	plain, err := s.Open(citizen, field, v)
	if err != nil {
		return "", false, err
	}
	return s.Seal(citizen, field, plain), true, nil
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
