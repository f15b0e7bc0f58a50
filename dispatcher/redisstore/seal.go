package redisstore

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// The citizen hash's codec: every field that holds contact data is sealed
// here, in Go, before it is written and opened in decodeCitizen after it is
// read (package seal; the associated data is the citizen key and the
// field's name). Other fields (language, exemption, windows, times, and
// whatever non-secret field is added later) are stored as they are and
// never pass through here.
//
//	email, mobile, addr, fwd       sealed value (compact form)
//	dev:<provider>:<tag>           app|environment|registered ms|<sealed token>
//
// A push token is never part of a field name: its field is named by its
// tag (seal.Tag of "device", the provider and the token: a keyed hash, the
// same under every seal key), so a registration and an unregistration of
// one token find the same field without storing the token in clear.
//
// Scripts never compare contact data: RemoveAddress opens the stored value
// in Go, compares it, and hands the script the sealed value it read, which
// the script compares byte for byte ("unless it changed").
//
// Values written before sealing (plain email, mobile, addr, fwd; device
// fields named dev:<provider>:<token> with app|environment|registered ms)
// are read as they are, so an upgrade needs no downtime; `postbud reseal`
// seals them (Reseal).

// sealedFields are the citizen hash's fields that hold sealed contact data
// (besides the device fields).
var sealedFields = [...]string{"email", "mobile", "addr", "fwd"}

const devicePrefix = "dev:"

func (s *Store) sealField(citizen, field, v string) string {
	return s.o.Sealer.SealCompact(citizen, field, v)
}

// openField opens a sealed field; a value stored before sealing is
// returned as it is.
func (s *Store) openField(citizen, field, v string) (string, error) {
	if !seal.IsSealed(v) {
		return v, nil
	}
	p, err := s.o.Sealer.Open(citizen, field, v)
	if err != nil {
		return "", fmt.Errorf("citizen record, field %s: %w", fieldKind(field), err)
	}
	return p, nil
}

// fieldKind names a field in errors without its tag.
func fieldKind(field string) string {
	if strings.HasPrefix(field, devicePrefix) {
		p, _, _ := strings.Cut(strings.TrimPrefix(field, devicePrefix), ":")
		return devicePrefix + p
	}
	return field
}

// deviceField returns the field of a push token.
func (s *Store) deviceField(provider, token string) string {
	return devicePrefix + provider + ":" + s.o.Sealer.Tag("device", provider, token)
}

// legacyDeviceField is a push token's field before sealing.
func legacyDeviceField(provider, token string) string { return devicePrefix + provider + ":" + token }

// encodeDevice returns a device field's value: the token sealed as that
// field, last (a sealed value is binary and may hold a "|").
func (s *Store) encodeDevice(citizen, field string, d dispatcher.Device) string {
	return d.App + "|" + d.Environment + "|" + strconv.FormatInt(d.RegisteredAt.UnixMilli(), 10) + "|" +
		s.sealField(citizen, field, d.Token)
}

// sealedToken returns the sealed token of a device field's value ("" for
// a value from before sealing).
func sealedToken(v string) string {
	parts := strings.SplitN(v, "|", 4)
	if len(parts) != 4 {
		return ""
	}
	return parts[3]
}

// decodeDevice reads a device field; ok is false for a field that is no
// device.
func (s *Store) decodeDevice(citizen, field, v string) (dispatcher.Device, bool, error) {
	rest, ok := strings.CutPrefix(field, devicePrefix)
	if !ok {
		return dispatcher.Device{}, false, nil
	}
	provider, name, ok := strings.Cut(rest, ":")
	if !ok {
		return dispatcher.Device{}, false, nil
	}
	parts := strings.SplitN(v, "|", 4)
	var token string
	switch len(parts) {
	case 3: // before sealing: the token is the field's name
		token = name
	case 4:
		if !seal.IsSealed(parts[3]) {
			return dispatcher.Device{}, false, fmt.Errorf("citizen record, field %s: %w", fieldKind(field), seal.ErrNotSealed)
		}
		t, err := s.openField(citizen, field, parts[3])
		if err != nil {
			return dispatcher.Device{}, false, err
		}
		token = t
	default:
		return dispatcher.Device{}, false, nil
	}
	ms, _ := strconv.ParseInt(parts[2], 10, 64)
	return dispatcher.Device{App: parts[0], Provider: provider, Token: token, Environment: parts[1],
		RegisteredAt: time.UnixMilli(ms)}, true, nil
}
