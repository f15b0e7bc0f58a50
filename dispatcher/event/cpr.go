package event

import (
	"errors"
	"log/slog"
	"sync"
	"time"
	_ "time/tzdata" // Europe/Copenhagen where the system has no zone database
)

// CPR is a Danish civil registration number, normalised to ten digits
// (DDMMYYSSSS). It is personal data: it never appears in logs, metrics,
// Redis keys, task payloads or error strings; its LogValue redacts it.
type CPR string

// LogValue redacts the number.
func (CPR) LogValue() slog.Value { return slog.StringValue("[cpr]") }

// String redacts the number, so a CPR that slips into a format verb does not
// leak. Use Digits for the value.
func (CPR) String() string { return "[cpr]" }

// Digits returns the ten digits.
func (c CPR) Digits() string { return string(c) }

// ParseCPR parses "DDMMYY-SSSS" or "DDMMYYSSSS". The date must be real, with
// the century taken from the seventh digit; the modulus-11 check is not
// applied (numbers without it have been issued since 2007). The error never
// contains the input.
func ParseCPR(s string) (CPR, error) {
	if len(s) == 11 && s[6] == '-' {
		s = s[:6] + s[7:]
	}
	if len(s) != 10 {
		return "", errors.New("must be 10 digits, DDMMYY-SSSS")
	}
	for i := 0; i < 10; i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", errors.New("must be 10 digits, DDMMYY-SSSS")
		}
	}
	c := CPR(s)
	if _, ok := c.birthDate(); !ok {
		return "", errors.New("does not hold a real birth date")
	}
	return c, nil
}

func d2(s string) int { return int(s[0]-'0')*10 + int(s[1]-'0') }

// birthDate returns the birth date encoded in the number.
func (c CPR) birthDate() (time.Time, bool) {
	s := string(c)
	if len(s) != 10 {
		return time.Time{}, false
	}
	day, month, yy := d2(s[0:2]), d2(s[2:4]), d2(s[4:6])
	var century int
	switch d7 := s[6] - '0'; {
	case d7 <= 3:
		century = 1900
	case d7 == 4 || d7 == 9:
		century = 1900
		if yy <= 36 {
			century = 2000
		}
	default: // 5–8
		century = 1800
		if yy <= 57 {
			century = 2000
		}
	}
	if month < 1 || month > 12 || day < 1 {
		return time.Time{}, false
	}
	t := time.Date(century+yy, time.Month(month), day, 0, 0, 0, 0, time.UTC)
	if t.Day() != day || int(t.Month()) != month {
		return time.Time{}, false
	}
	return t, true
}

// BirthDate returns the birth date encoded in the number.
func (c CPR) BirthDate() time.Time {
	t, _ := c.birthDate()
	return t
}

// AgeOn returns the citizen's age in whole years on the calendar day of t
// (Europe/Copenhagen). Someone born on 29 February turns a year older on
// 1 March in common years.
func (c CPR) AgeOn(t time.Time) int { return Age(c.BirthDate(), t) }

// Age is the age in whole years on t's Copenhagen calendar day of someone
// born on b's date.
func Age(b, t time.Time) int {
	lt := t.In(copenhagen())
	age := lt.Year() - b.Year()
	if lt.Month() < b.Month() || (lt.Month() == b.Month() && lt.Day() < b.Day()) {
		age--
	}
	return age
}

// Copenhagen returns the Europe/Copenhagen location, the time zone of the
// Digital Post rules. It is loaded once; time/tzdata embeds the zone
// database, so it loads on a system without one too.
func Copenhagen() *time.Location { return copenhagen() }

var copenhagen = sync.OnceValue(func() *time.Location {
	loc, err := time.LoadLocation("Europe/Copenhagen")
	if err != nil {
		// Unreachable: LoadLocation falls back to the embedded database,
		// which holds the zone. TestCopenhagen checks it.
		return time.FixedZone("CET", 3600)
	}
	return loc
})
