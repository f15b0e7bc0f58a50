// Package rules holds the pure decisions of the Digital Post rules: quiet
// hours, the privacy check of a sender's notification text, the age rule,
// the six-month forwarding window, the texts of coalesced and reminder
// alerts, the routing of a letter to digital or paper and the platforms'
// consent to show public post (MayShow). Each is a
// function of its inputs and an explicit time; none does I/O or reads the
// clock. Local times are those of Europe/Copenhagen.
package rules

import (
	"fmt"
	"github.com/digitalpost/postbud/channels/gsm7"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/digitalpost/postbud/dispatcher/event"
)

// Clock is a wall-clock time of day, minute precision: {22, 0} is 22:00.
type Clock struct{ Hour, Minute int }

// ParseClock parses "HH:MM" (24-hour; a one-digit hour is accepted).
func ParseClock(s string) (Clock, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 || !allDigits(h) || !allDigits(m) {
		return Clock{}, fmt.Errorf("%q must be HH:MM", s)
	}
	c := Clock{Hour: atoi(h), Minute: atoi(m)}
	if err := c.validate(); err != nil {
		return Clock{}, fmt.Errorf("%q: %w", s, err)
	}
	return c, nil
}

func (c Clock) validate() error {
	if c.Hour < 0 || c.Hour > 23 {
		return fmt.Errorf("hour must be 00 to 23")
	}
	if c.Minute < 0 || c.Minute > 59 {
		return fmt.Errorf("minute must be 00 to 59")
	}
	return nil
}

// String returns "HH:MM".
func (c Clock) String() string { return fmt.Sprintf("%02d:%02d", c.Hour, c.Minute) }

// minutes returns the minutes since midnight.
func (c Clock) minutes() int { return c.Hour*60 + c.Minute }

// QuietHours is a daily window of Copenhagen wall-clock time in which no SMS
// is sent: from Start (inclusive) to End (exclusive). Start after End wraps
// midnight (22:00–07:00). The zero value, and any window with Start equal to
// End, is no quiet hours at all.
type QuietHours struct{ Start, End Clock }

// ParseQuietHours parses "START-END", e.g. "22:00-07:00"; spaces around
// either time are ignored. The empty string is no quiet hours. The error
// names what is wrong.
func ParseQuietHours(s string) (QuietHours, error) {
	if strings.TrimSpace(s) == "" {
		return QuietHours{}, nil
	}
	parts := strings.Split(s, "-")
	if len(parts) != 2 {
		return QuietHours{}, fmt.Errorf("quiet hours %q: want START-END, e.g. 22:00-07:00", s)
	}
	start, err := ParseClock(strings.TrimSpace(parts[0]))
	if err != nil {
		return QuietHours{}, fmt.Errorf("quiet hours %q: start %w", s, err)
	}
	end, err := ParseClock(strings.TrimSpace(parts[1]))
	if err != nil {
		return QuietHours{}, fmt.Errorf("quiet hours %q: end %w", s, err)
	}
	if start == end {
		return QuietHours{}, fmt.Errorf("quiet hours %q: start and end must differ (use \"\" for none)", s)
	}
	return QuietHours{Start: start, End: end}, nil
}

// Validate reports a Start or End outside 00:00–23:59.
func (q QuietHours) Validate() error {
	if err := q.Start.validate(); err != nil {
		return fmt.Errorf("quiet hours start %s: %w", q.Start, err)
	}
	if err := q.End.validate(); err != nil {
		return fmt.Errorf("quiet hours end %s: %w", q.End, err)
	}
	return nil
}

// IsZero reports whether q is no quiet hours.
func (q QuietHours) IsZero() bool { return q.Start == q.End }

// String returns "HH:MM-HH:MM", or "" for no quiet hours; ParseQuietHours
// reads it back.
func (q QuietHours) String() string {
	if q.IsZero() {
		return ""
	}
	return q.Start.String() + "-" + q.End.String()
}

// Until reports whether t falls inside the quiet hours, judged by the
// Copenhagen wall clock at t, and if so returns the instant they end: the
// next time the local clock shows End (07:00 wall time whatever the UTC
// offset, so a 22:00–07:00 night lasts 8 hours in real time, 7 on the last
// Sunday of March and 10 on the last Sunday of October). When a clock change
// skips End, the window ends at the instant of the change; when End occurs
// twice, at the first occurrence after t. Outside the window, and for no
// quiet hours, it returns t and false. The returned end is in
// Europe/Copenhagen.
func (q QuietHours) Until(t time.Time) (time.Time, bool) {
	if q.IsZero() {
		return t, false
	}
	lt := t.In(copenhagen)
	now, start, end := lt.Hour()*60+lt.Minute(), q.Start.minutes(), q.End.minutes()
	var inside bool
	if start < end {
		inside = start <= now && now < end
	} else {
		inside = now >= start || now < end
	}
	if !inside {
		return t, false
	}
	y, mo, d := lt.Date()
	if now >= end { // after Start on a window that wraps midnight: it ends tomorrow
		d++
	}
	return localInstant(y, mo, d, q.End.Hour, q.End.Minute, 0, 0, t), true
}

// localInstant returns the first instant after `after` at which the
// Copenhagen wall clock shows the given reading (fields are normalised as
// by time.Date). When a forward clock change skips the reading, it returns
// the instant of the change, the first at which the clock shows a later
// reading. When a backward change shows the reading twice, it returns the
// earlier occurrence that is after `after`.
func localInstant(y int, mo time.Month, d, h, mi, s, ns int, after time.Time) time.Time {
	want := time.Date(y, mo, d, h, mi, s, ns, time.UTC)
	c := time.Date(y, mo, d, h, mi, s, ns, copenhagen)
	start, end := c.ZoneBounds()
	if got := wall(c); !got.Equal(want) {
		// Skipped: the clock jumped from before want to after it.
		if got.After(want) {
			return start
		}
		return end
	}
	_, off := c.Zone()
	best := c
	if !start.IsZero() {
		if _, prev := start.Add(-time.Nanosecond).Zone(); prev > off {
			if e := c.Add(-time.Duration(prev-off) * time.Second); wall(e).Equal(want) && e.After(after) {
				best = e
			}
		}
	}
	if !end.IsZero() && !best.After(after) {
		if _, next := end.Zone(); next < off {
			if l := c.Add(time.Duration(off-next) * time.Second); wall(l).Equal(want) && l.After(after) {
				best = l
			}
		}
	}
	return best
}

// wall returns the Copenhagen wall-clock reading of t, as a UTC time.
func wall(t time.Time) time.Time {
	l := t.In(copenhagen)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC)
}

// copenhagen is Europe/Copenhagen, the zone of every local time here.
var copenhagen = event.Copenhagen()

// LocalTime formats t on the Copenhagen wall clock with layout, for the
// reasons recorded in a letter's trail ("quiet hours until 2024-03-02
// 07:00 CET").
func LocalTime(t time.Time, layout string) string { return t.In(copenhagen).Format(layout) }

// Reasons CheckNotification gives for refusing a text. They never quote it.
const (
	reasonEmpty   = "empty"
	reasonTooLong = "longer than 150 characters"
	reasonUTF8    = "not valid UTF-8"
	reasonControl = "contains a control character"
	reasonCPR     = "contains a CPR-like number"
	reasonLongRun = "contains a run of 8 or more digits"
	reasonAccount = "contains an account-like number"
	reasonGrouped = "contains a number grouped like a phone or account number"
	reasonEmail   = "contains an email address"
	reasonLink    = "contains a link"
	reasonNotGSM  = "contains a character outside GSM-7"
)

// minGroupedDigits is how many digits in space-separated groups make a
// number that looks like a phone or account number.
const minGroupedDigits = 8

var (
	// Eight digits in a row: account, phone, card, CPR without separator.
	longRun = regexp.MustCompile(`[0-9]{8,}`)
	// A Danish bank account: 4-digit registration number, separator, 6 to
	// 10 digit account number ("1234 5678901234", "1234-123456789").
	accountLike = regexp.MustCompile(`[0-9]{4}[- ][0-9]{6,10}`)
	// Digit groups separated by single spaces ("12 34 56 78",
	// "+45 1234 5678"); refused when they hold 8 digits or more.
	spaceGroups = regexp.MustCompile(`[0-9]+(?: [0-9]+)+`)
	emailLike   = regexp.MustCompile(`[^\s@]@[^\s@]`)
	// Dot-joined tokens ("borger.dk", "f.eks"); domainLike sorts them.
	dotted = regexp.MustCompile(`[\p{L}\p{N}_-]+(?:\.[\p{L}\p{N}_-]+)+`)
)

// notDomains are Danish abbreviations that look like domain names.
var notDomains = map[string]bool{"f.eks": true, "m.fl": true, "o.lign": true, "bl.a": true}

// CheckNotification decides whether a sender's own notification text
// (MeMo's notification field) may be used in an alert, or the generic text
// must be used instead. It refuses, with a short reason that never quotes
// the text, a text that is empty, longer than 150 characters, holds a
// control character other than newline, a CPR-like number (6 digits, an
// optional separator, 4 digits), a run of 8 or more digits, a number grouped
// like a bank account ("1234 5678901234") or phone ("12 34 56 78"), an email
// address, or a link ("http", "www.", or a domain-like token such as
// "x.dk"), or a character that is not in GSM-7 after gsm7.Normalize. The
// checks apply to gsm7.Normalize(text), which is the form to send; a text
// that passes is at most 150 characters before and after normalising.
func CheckNotification(text string) (ok bool, reason string) {
	if !utf8.ValidString(text) {
		return false, reasonUTF8
	}
	s := gsm7.Normalize(text)
	switch {
	case strings.TrimSpace(s) == "":
		return false, reasonEmpty
	case utf8.RuneCountInString(s) > event.MaxNotificationRunes:
		return false, reasonTooLong
	case strings.ContainsFunc(text, func(r rune) bool { return (r < 0x20 && r != '\n' && r != '\t') || r == 0x7F }):
		return false, reasonControl
	case accountLike.MatchString(s):
		return false, reasonAccount
	case event.HasCPRLike(s):
		return false, reasonCPR
	case longRun.MatchString(s):
		return false, reasonLongRun
	case groupedNumber(s):
		return false, reasonGrouped
	case emailLike.MatchString(s):
		return false, reasonEmail
	case hasLink(s):
		return false, reasonLink
	case !gsm7.IsGSM7(s):
		return false, reasonNotGSM
	}
	return true, ""
}

func groupedNumber(s string) bool {
	for _, g := range spaceGroups.FindAllString(s, -1) {
		if len(g)-strings.Count(g, " ") >= minGroupedDigits {
			return true
		}
	}
	return false
}

func hasLink(s string) bool {
	low := strings.ToLower(s)
	if strings.Contains(low, "http") || strings.Contains(low, "www.") {
		return true
	}
	for _, tok := range dotted.FindAllString(low, -1) {
		if notDomains[tok] {
			continue
		}
		tld := tok[strings.LastIndexByte(tok, '.')+1:]
		if strings.HasPrefix(tld, "xn--") || utf8.RuneCountInString(tld) >= 2 && allLetters(tld) {
			return true
		}
	}
	return false
}

// UnderAge reports whether the citizen is under 15, the age from which
// Digital Post from public senders is mandatory, on the Copenhagen calendar
// day of on (the letter's date). A citizen born on 29 February turns 15 on
// 1 March in a common year (CPR.AgeOn).
func UnderAge(c event.CPR, on time.Time) bool { return c.AgeOn(on) < 15 }

// UnderAgeBorn is UnderAge for a citizen known by birth date only (the
// pseudonymised event's Birth): the Copenhagen calendar day of on decides.
func UnderAgeBorn(birth, on time.Time) bool { return event.Age(birth, on) < 15 }

// ForwardWindowStart returns the start of the six months of unopened Digital
// Post a citizen may have sent on paper when exempted at grantedAt: the same
// Copenhagen wall-clock time six calendar months earlier. When that month
// is shorter, the day is clamped to its last day, so 31 August gives 28 (or
// 29) February and 31 December gives 30 June, never a day of the next month
// as time.AddDate would. A wall-clock time skipped by the spring clock change
// gives the instant of the change; one shown twice in the autumn gives the
// earlier occurrence.
func ForwardWindowStart(grantedAt time.Time) time.Time {
	lt := grantedAt.In(copenhagen)
	y, m, d := lt.Date()
	m -= 6
	if m < time.January {
		m += 12
		y--
	}
	if last := daysIn(y, m); d > last {
		d = last
	}
	return localInstant(y, m, d, lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), time.Time{})
}

// InForwardWindow reports whether a letter received at received falls in
// the forwarding window of an exemption granted at grantedAt: from
// ForwardWindowStart(grantedAt) to grantedAt, both included.
func InForwardWindow(received, grantedAt time.Time) bool {
	return !received.Before(ForwardWindowStart(grantedAt)) && !received.After(grantedAt)
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// MaxNamedSenders is how many senders a coalesced alert names; the rest
// are counted.
const MaxNamedSenders = 3

// CoalescedSenderList returns the sender list of a coalesced alert in the
// citizen's language ("da" unless "en"): CoalescedSenders(names,
// MaxNamedSenders), then "2 andre afsendere" ("2 other senders") for the
// senders not named.
func CoalescedSenderList(names []string, lang string) []string {
	shown, more := CoalescedSenders(names, MaxNamedSenders)
	if more > 0 {
		if lang == "en" {
			shown = append(shown, fmt.Sprintf("%d other senders", more))
		} else {
			shown = append(shown, fmt.Sprintf("%d andre afsendere", more))
		}
	}
	return shown
}

// ReminderText is the alert text of the reply_by reminder of an unread
// letter from sender, in the citizen's language ("da" unless "en").
func ReminderText(lang, sender string) string {
	if lang == "en" {
		return "Reminder: you have unread Digital Post from " + sender + " with a deadline."
	}
	return "Påmindelse: Du har ulæst Digital Post fra " + sender + " med svarfrist."
}

// HolderText is the alert text an access holder gets for a letter to a
// mailbox the holder has access to: it names the sender and never the
// owner (the holder knows whose mailbox; whoever reads the SMS or lock
// screen may not).
func HolderText(lang, sender string) string {
	if lang == "en" {
		return "There is new Digital Post from " + sender + " for someone you have access to."
	}
	return "Der er kommet ny Digital Post fra " + sender + " til en, du har adgang til."
}

// CoalescedSenders returns the sender names to show in one alert for
// several letters: names in first-seen order, each once (names differing
// only in case or surrounding space are the same sender, shown as first
// seen; blank names are skipped), at most max of them, and how many
// further distinct senders there are ("og 2 andre"). max ≤ 0 shows none.
// The result does not share memory with names.
func CoalescedSenders(names []string, max int) (shown []string, more int) {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		n = strings.TrimSpace(n)
		key := strings.ToLower(n)
		if n == "" || seen[key] {
			continue
		}
		seen[key] = true
		if len(shown) < max {
			shown = append(shown, n)
		} else {
			more++
		}
	}
	return shown, more
}

// Decision says how a letter reaches its citizen: Digital is a digital
// alert ("besked om ny post"), Paper a print to the registered address.
// Reason names the rule when the letter does not get a plain digital
// alert; it is empty otherwise.
type Decision struct {
	Digital bool
	Paper   bool
	Reason  string
}

// Route applies the Digital Post rules to one letter. For a public sender:
// an exempt citizen gets the letter on paper and no digital alert
// ("exempt"); a citizen under 15 gets no digital alert, and paper only if
// paperForMinors ("under 15"); exemption comes first. Senders under special
// legislation (public-special) and private senders are not covered by the
// exemption or the age rule: their letters are always digital. An unknown
// sender kind is treated as public, the strictest.
func Route(kind event.SenderKind, exempt bool, under15 bool, paperForMinors bool) Decision {
	if kind == event.SenderPublicSpecial || kind == event.SenderPrivate {
		return Decision{Digital: true}
	}
	switch {
	case exempt:
		return Decision{Paper: true, Reason: "exempt"}
	case under15:
		return Decision{Paper: paperForMinors, Reason: "under 15"}
	}
	return Decision{Digital: true}
}

// MayShow decides whether platform p may learn of a letter from a sender of
// the given kind: be sent its read-state webhook, carry its alert through
// its app's push tokens, report it read or unread. Letters from public
// senders (public and public-special) reach e-Boks and mit.dk only while
// the citizen consents (consent.granted); borger.dk and the Digital Post
// app need no consent, and letters from private senders none anywhere. A
// letter whose kind is not known (not arrived yet) counts as public, the
// strictest. reason is "no consent (<platform>)" when it may not.
func MayShow(kind event.SenderKind, p event.Platform, consented bool) (ok bool, reason string) {
	if kind == event.SenderPrivate || !event.NeedsConsent(p) || consented {
		return true, ""
	}
	return false, NoConsent(p)
}

// NoConsent is the trail reason of a platform without the citizen's
// consent: "no consent (e-boks)".
func NoConsent(p event.Platform) string { return "no consent (" + string(p) + ")" }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func allLetters(s string) bool {
	for _, r := range s {
		if !unicode.IsLetter(r) {
			return false
		}
	}
	return true
}

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}
