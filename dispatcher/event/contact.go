package event

import (
	"errors"
	"net/mail"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// NormalizeMobile returns the E.164 form of a mobile number. Danish numbers
// given without a country code (8 digits, optionally spaced or with a 0045
// prefix) get +45. The number must be valid in its country's numbering plan
// (libphonenumber's metadata) and of a type that can take an SMS: mobile,
// or fixed-line-or-mobile where the plan does not tell them apart (as in
// Denmark, where numbers move between the two). A landline, a toll-free
// or premium service number, or a number in an unassigned range is
// refused. The error never contains the input.
func NormalizeMobile(s string) (string, error) {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '(' || r == ')' || r == '.':
		default:
			return "", errors.New("must be a phone number in E.164 form (+4512345678)")
		}
	}
	n := b.String()
	switch {
	case strings.HasPrefix(n, "+"):
	case strings.HasPrefix(n, "00"):
		n = "+" + n[2:]
	case len(n) == 8:
		n = "+45" + n
	default:
		return "", errors.New("must be in E.164 form with country code (+4512345678)")
	}
	digits := n[1:]
	if len(digits) < 8 || len(digits) > 15 || digits[0] == '0' {
		return "", errors.New("must be in E.164 form: + then 8 to 15 digits")
	}
	if strings.HasPrefix(digits, "45") && len(digits) != 10 {
		return "", errors.New("a Danish number has 8 digits after +45")
	}
	num, err := phonenumbers.Parse(n, "")
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return "", errors.New("is not a number in an assigned range of its country")
	}
	switch phonenumbers.GetNumberType(num) {
	case phonenumbers.MOBILE, phonenumbers.FIXED_LINE_OR_MOBILE:
	default:
		return "", errors.New("must be a mobile number, not a landline or service number")
	}
	return phonenumbers.Format(num, phonenumbers.E164), nil
}

// NormalizeEmail checks an email address (a bare addr-spec, no display name)
// and returns it with the domain in lower case. The error never contains the
// input.
func NormalizeEmail(s string) (string, error) {
	if len(s) > 254 {
		return "", errors.New("must be at most 254 characters")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", errors.New("must be a plain email address (name@example.dk)")
	}
	at := strings.LastIndexByte(s, '@')
	if at < 1 || !strings.Contains(s[at+1:], ".") {
		return "", errors.New("must be a plain email address with a domain (name@example.dk)")
	}
	return s[:at] + "@" + strings.ToLower(s[at+1:]), nil
}
