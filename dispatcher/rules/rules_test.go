package rules

import (
	"github.com/digitalpost/postbud/channels/gsm7"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/digitalpost/postbud/dispatcher/event"
)

// polUTC is an instant written in UTC, so that expected values in the
// tables below never depend on the code under test's zone handling.
func polUTC(y int, m time.Month, d, hh, mm, ss, ns int) time.Time {
	return time.Date(y, m, d, hh, mm, ss, ns, time.UTC)
}

func polCPR(t *testing.T, s string) event.CPR {
	t.Helper()
	c, err := event.ParseCPR(s)
	if err != nil {
		t.Fatalf("ParseCPR: %v", err)
	}
	return c
}

func TestParseQuietHours(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    QuietHours
		wantErr string
	}{
		{in: "", want: QuietHours{}},
		{in: "   ", want: QuietHours{}},
		{in: "22:00-07:00", want: QuietHours{Clock{22, 0}, Clock{7, 0}}},
		{in: " 22:00 - 07:00 ", want: QuietHours{Clock{22, 0}, Clock{7, 0}}},
		{in: "7:05-8:30", want: QuietHours{Clock{7, 5}, Clock{8, 30}}},
		{in: "12:00-13:00", want: QuietHours{Clock{12, 0}, Clock{13, 0}}},
		{in: "00:00-23:59", want: QuietHours{Clock{0, 0}, Clock{23, 59}}},
		{in: "22:00", wantErr: `quiet hours "22:00": want START-END, e.g. 22:00-07:00`},
		{in: "22:00-07:00-08:00", wantErr: `quiet hours "22:00-07:00-08:00": want START-END, e.g. 22:00-07:00`},
		{in: "22-07", wantErr: `quiet hours "22-07": start "22" must be HH:MM`},
		{in: "22:00-7", wantErr: `quiet hours "22:00-7": end "7" must be HH:MM`},
		{in: "24:00-07:00", wantErr: `quiet hours "24:00-07:00": start "24:00": hour must be 00 to 23`},
		{in: "22:00-07:60", wantErr: `quiet hours "22:00-07:60": end "07:60": minute must be 00 to 59`},
		{in: "22:0-07:00", wantErr: `quiet hours "22:0-07:00": start "22:0" must be HH:MM`},
		{in: "+2:00-07:00", wantErr: `quiet hours "+2:00-07:00": start "+2:00" must be HH:MM`},
		{in: "aa:bb-07:00", wantErr: `quiet hours "aa:bb-07:00": start "aa:bb" must be HH:MM`},
		{in: "22:00-22:00", wantErr: `quiet hours "22:00-22:00": start and end must differ (use "" for none)`},
	}
	for _, tc := range tests {
		got, err := ParseQuietHours(tc.in)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if gotErr != tc.wantErr {
			t.Errorf("ParseQuietHours(%q) error = %q, want %q", tc.in, gotErr, tc.wantErr)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseQuietHours(%q) mismatch (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestQuietHoursStringRoundTrip(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "22:00-07:00", "07:05-08:30", "12:00-13:00", "23:59-00:00"} {
		q, err := ParseQuietHours(in)
		if err != nil {
			t.Fatalf("ParseQuietHours(%q): %v", in, err)
		}
		if got := q.String(); got != in {
			t.Errorf("ParseQuietHours(%q).String() = %q", in, got)
		}
		if got := q.IsZero(); got != (in == "") {
			t.Errorf("ParseQuietHours(%q).IsZero() = %v", in, got)
		}
	}
}

func TestQuietHoursValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		q    QuietHours
		want string
	}{
		{QuietHours{}, ""},
		{QuietHours{Clock{22, 0}, Clock{7, 0}}, ""},
		{QuietHours{Clock{24, 0}, Clock{7, 0}}, "quiet hours start 24:00: hour must be 00 to 23"},
		{QuietHours{Clock{22, 0}, Clock{7, -1}}, "quiet hours end 07:-1: minute must be 00 to 59"},
	}
	for _, tc := range tests {
		got := ""
		if err := tc.q.Validate(); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%+v.Validate() = %q, want %q", tc.q, got, tc.want)
		}
	}
}

func TestQuietHoursUntil(t *testing.T) {
	t.Parallel()
	night := QuietHours{Clock{22, 0}, Clock{7, 0}}
	noon := QuietHours{Clock{12, 0}, Clock{13, 0}}
	toMidnight := QuietHours{Clock{22, 0}, Clock{0, 0}}
	// Ends at 02:30, a wall time skipped on the spring night and shown
	// twice on the autumn night.
	dstHour := QuietHours{Clock{1, 0}, Clock{2, 30}}
	aest := time.FixedZone("AEST", 10*3600)
	tests := []struct {
		name   string
		q      QuietHours
		t      time.Time
		want   time.Time // zero: outside
		inside bool
	}{
		// Spring: Sunday 29 March 2026, 02:00 CET → 03:00 CEST (01:00Z).
		{"spring eve, 1ns before start", night, polUTC(2026, 3, 28, 20, 59, 59, 999999999), time.Time{}, false},
		{"spring eve, at start 22:00 CET", night, polUTC(2026, 3, 28, 21, 0, 0, 0), polUTC(2026, 3, 29, 5, 0, 0, 0), true},
		{"spring night, 01:59:59 CET", night, polUTC(2026, 3, 29, 0, 59, 59, 0), polUTC(2026, 3, 29, 5, 0, 0, 0), true},
		{"spring night, 03:00 CEST just after the change", night, polUTC(2026, 3, 29, 1, 0, 0, 0), polUTC(2026, 3, 29, 5, 0, 0, 0), true},
		{"spring morning, 1ns before 07:00 CEST", night, polUTC(2026, 3, 29, 4, 59, 59, 999999999), polUTC(2026, 3, 29, 5, 0, 0, 0), true},
		{"spring morning, at end 07:00 CEST", night, polUTC(2026, 3, 29, 5, 0, 0, 0), time.Time{}, false},
		{"spring morning, 07:00 CET would be an hour late", night, polUTC(2026, 3, 29, 6, 0, 0, 0), time.Time{}, false},

		// Autumn: Sunday 25 October 2026, 03:00 CEST → 02:00 CET (01:00Z).
		{"autumn eve, 1ns before start", night, polUTC(2026, 10, 24, 19, 59, 59, 999999999), time.Time{}, false},
		{"autumn eve, at start 22:00 CEST", night, polUTC(2026, 10, 24, 20, 0, 0, 0), polUTC(2026, 10, 25, 6, 0, 0, 0), true},
		{"autumn night, first 02:30 (CEST)", night, polUTC(2026, 10, 25, 0, 30, 0, 0), polUTC(2026, 10, 25, 6, 0, 0, 0), true},
		{"autumn night, second 02:30 (CET)", night, polUTC(2026, 10, 25, 1, 30, 0, 0), polUTC(2026, 10, 25, 6, 0, 0, 0), true},
		{"autumn morning, 07:00 CEST would be an hour early", night, polUTC(2026, 10, 25, 5, 0, 0, 0), polUTC(2026, 10, 25, 6, 0, 0, 0), true},
		{"autumn morning, 1ns before 07:00 CET", night, polUTC(2026, 10, 25, 5, 59, 59, 999999999), polUTC(2026, 10, 25, 6, 0, 0, 0), true},
		{"autumn morning, at end 07:00 CET", night, polUTC(2026, 10, 25, 6, 0, 0, 0), time.Time{}, false},

		// Ordinary nights and days.
		{"summer, before midnight", night, polUTC(2026, 6, 10, 21, 0, 0, 0), polUTC(2026, 6, 11, 5, 0, 0, 0), true},
		{"winter, after midnight", night, polUTC(2026, 1, 15, 2, 0, 0, 0), polUTC(2026, 1, 15, 6, 0, 0, 0), true},
		{"winter, after midnight, given in UTC+10", night, polUTC(2026, 1, 15, 2, 0, 0, 0).In(aest), polUTC(2026, 1, 15, 6, 0, 0, 0), true},
		{"winter, midday", night, polUTC(2026, 1, 15, 11, 0, 0, 0), time.Time{}, false},
		{"new year's eve into the new year", night, polUTC(2026, 12, 31, 22, 30, 0, 0), polUTC(2027, 1, 1, 6, 0, 0, 0), true},
		{"end of February in a leap year", night, polUTC(2028, 2, 28, 22, 0, 0, 0), polUTC(2028, 2, 29, 6, 0, 0, 0), true},

		// A window that does not wrap midnight.
		{"noon, 1ns before start", noon, polUTC(2026, 6, 10, 9, 59, 59, 999999999), time.Time{}, false},
		{"noon, at start 12:00 CEST", noon, polUTC(2026, 6, 10, 10, 0, 0, 0), polUTC(2026, 6, 10, 11, 0, 0, 0), true},
		{"noon, 1ns before end", noon, polUTC(2026, 6, 10, 10, 59, 59, 999999999), polUTC(2026, 6, 10, 11, 0, 0, 0), true},
		{"noon, at end 13:00 CEST", noon, polUTC(2026, 6, 10, 11, 0, 0, 0), time.Time{}, false},
		{"noon, 00:30 is outside", noon, polUTC(2026, 6, 9, 22, 30, 0, 0), time.Time{}, false},
		{"noon, 23:30 is outside", noon, polUTC(2026, 6, 10, 21, 30, 0, 0), time.Time{}, false},
		{"noon in winter, 12:30 CET", noon, polUTC(2026, 1, 15, 11, 30, 0, 0), polUTC(2026, 1, 15, 12, 0, 0, 0), true},

		// A window ending at midnight.
		{"to midnight, 23:00 CEST", toMidnight, polUTC(2026, 6, 10, 21, 0, 0, 0), polUTC(2026, 6, 10, 22, 0, 0, 0), true},
		{"to midnight, at midnight", toMidnight, polUTC(2026, 6, 10, 22, 0, 0, 0), time.Time{}, false},

		// A window ending inside the hour of a clock change.
		{"02:30 skipped, 01:30 CET", dstHour, polUTC(2026, 3, 29, 0, 30, 0, 0), polUTC(2026, 3, 29, 1, 0, 0, 0), true},
		{"02:30 skipped, 01:59:59 CET", dstHour, polUTC(2026, 3, 29, 0, 59, 59, 0), polUTC(2026, 3, 29, 1, 0, 0, 0), true},
		{"02:30 skipped, 03:00 CEST is past the end", dstHour, polUTC(2026, 3, 29, 1, 0, 0, 0), time.Time{}, false},
		{"02:30 twice, 01:00 CEST", dstHour, polUTC(2026, 10, 24, 23, 0, 0, 0), polUTC(2026, 10, 25, 0, 30, 0, 0), true},
		{"02:30 twice, 02:10 CEST ends at the first", dstHour, polUTC(2026, 10, 25, 0, 10, 0, 0), polUTC(2026, 10, 25, 0, 30, 0, 0), true},
		{"02:30 twice, at the first", dstHour, polUTC(2026, 10, 25, 0, 30, 0, 0), time.Time{}, false},
		{"02:30 twice, 02:40 CEST", dstHour, polUTC(2026, 10, 25, 0, 40, 0, 0), time.Time{}, false},
		{"02:30 twice, 02:00 CET re-enters", dstHour, polUTC(2026, 10, 25, 1, 0, 0, 0), polUTC(2026, 10, 25, 1, 30, 0, 0), true},
		{"02:30 twice, 02:10 CET ends at the second", dstHour, polUTC(2026, 10, 25, 1, 10, 0, 0), polUTC(2026, 10, 25, 1, 30, 0, 0), true},

		// No quiet hours.
		{"zero value", QuietHours{}, polUTC(2026, 6, 10, 23, 0, 0, 0), time.Time{}, false},
		{"start equals end", QuietHours{Clock{3, 0}, Clock{3, 0}}, polUTC(2026, 6, 10, 1, 0, 0, 0), time.Time{}, false},
	}
	for _, tc := range tests {
		got, inside := tc.q.Until(tc.t)
		if inside != tc.inside {
			t.Errorf("%s: %v.Until(%v) inside = %v, want %v", tc.name, tc.q, tc.t, inside, tc.inside)
			continue
		}
		if !inside {
			if got != tc.t {
				t.Errorf("%s: Until(%v) outside returned %v, want t unchanged", tc.name, tc.t, got)
			}
			continue
		}
		if !got.Equal(tc.want) {
			t.Errorf("%s: %v.Until(%v) = %v, want %v", tc.name, tc.q, tc.t, got.UTC(), tc.want)
		}
		if got.Location().String() != "Europe/Copenhagen" {
			t.Errorf("%s: Until returned a time in %v, want Europe/Copenhagen", tc.name, got.Location())
		}
	}
}

// TestQuietHoursUntilSweep walks both DST weeks of 2026 and checks, for every
// instant found inside a window, that the returned end is after it, that the
// end is outside the window, that the instant just before the end is inside
// with the same end, and that an instant halfway agrees.
func TestQuietHoursUntilSweep(t *testing.T) {
	t.Parallel()
	windows := []QuietHours{
		{Clock{22, 0}, Clock{7, 0}},
		{Clock{12, 0}, Clock{13, 0}},
		{Clock{1, 0}, Clock{2, 30}},
		{Clock{2, 15}, Clock{3, 15}},
	}
	spans := [][2]time.Time{
		{polUTC(2026, 3, 26, 0, 0, 0, 0), polUTC(2026, 4, 1, 0, 0, 0, 0)},
		{polUTC(2026, 10, 22, 0, 0, 0, 0), polUTC(2026, 10, 28, 0, 0, 0, 0)},
	}
	const step = 7*time.Minute + 13*time.Second
	for _, q := range windows {
		var in, out int
		for _, span := range spans {
			for tt := span[0]; tt.Before(span[1]); tt = tt.Add(step) {
				end, ok := q.Until(tt)
				if !ok {
					out++
					continue
				}
				in++
				if !end.After(tt) {
					t.Fatalf("%v.Until(%v) = %v, not after t", q, tt, end)
				}
				if _, ok := q.Until(end); ok {
					t.Fatalf("%v.Until(%v) = %v, but that end is still inside", q, tt, end)
				}
				if e, ok := q.Until(end.Add(-time.Nanosecond)); !ok || !e.Equal(end) {
					t.Fatalf("%v: 1ns before end %v: Until = %v, %v; want the same end, inside", q, end, e, ok)
				}
				if e, ok := q.Until(tt.Add(end.Sub(tt) / 2)); !ok || !e.Equal(end) {
					t.Fatalf("%v: halfway from %v to %v: Until = %v, %v; want the same end, inside", q, tt, end, e, ok)
				}
				if q.End == (Clock{7, 0}) {
					if l := end.In(copenhagen); l.Hour() != 7 || l.Minute() != 0 || l.Second() != 0 || l.Nanosecond() != 0 {
						t.Fatalf("%v.Until(%v) = %v, want local 07:00", q, tt, l)
					}
				}
			}
		}
		if in == 0 || out == 0 {
			t.Errorf("%v: %d instants inside and %d outside; want both", q, in, out)
		}
	}
}

// TestQuietHoursNightLength checks the real length of the 22:00–07:00 night
// around both clock changes.
func TestQuietHoursNightLength(t *testing.T) {
	t.Parallel()
	night := QuietHours{Clock{22, 0}, Clock{7, 0}}
	tests := []struct {
		start time.Time // 22:00 local
		want  time.Duration
	}{
		{polUTC(2026, 3, 27, 21, 0, 0, 0), 9 * time.Hour},
		{polUTC(2026, 3, 28, 21, 0, 0, 0), 8 * time.Hour},
		{polUTC(2026, 3, 29, 20, 0, 0, 0), 9 * time.Hour},
		{polUTC(2026, 10, 24, 20, 0, 0, 0), 10 * time.Hour},
		{polUTC(2026, 10, 25, 21, 0, 0, 0), 9 * time.Hour},
	}
	for _, tc := range tests {
		end, ok := night.Until(tc.start)
		if !ok {
			t.Errorf("Until(%v): not inside", tc.start)
			continue
		}
		if got := end.Sub(tc.start); got != tc.want {
			t.Errorf("night from %v lasts %v, want %v", tc.start.In(copenhagen), got, tc.want)
		}
	}
}

func TestCheckNotification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, reason string // reason "" = accepted
	}{
		// Accepted.
		{"generic", "Du har modtaget ny Digital Post fra Skattestyrelsen", ""},
		{"Danish letters", "Årsopgørelsen for 2025 er klar. Æbler, øl og ål.", ""},
		{"date and time", "Husk din tid på hospitalet den 12.03.2026 kl. 10:30", ""},
		{"ISO date with en dash", "Mødetid 2026-03-12 – se brevet", ""},
		{"amount", "Betal 1.234,50 kr. senest 1. april", ""},
		{"7-digit number", "Sag 1234567", ""},
		{"7 digits in groups", "Ring 1234 567", ""},
		{"extension characters", "Pris 100 € [rabat]", ""},
		{"Danish quotes", "»Vigtigt« brev fra kommunen", ""},
		{"Danish abbreviations", "Gælder f.eks. børn, unge m.fl. samt bl.a. ældre o.lign.", ""},
		{"lone at sign", "Mød op @ Rådhuset", ""},
		{"two lines", "Ny post\nfra Udbetaling Danmark", ""},
		{"exactly 150 characters", strings.Repeat("a", 150), ""},
		{"150 Danish letters", strings.Repeat("æ", 150), ""},

		{"empty", "", reasonEmpty},
		{"blank", " \n ", reasonEmpty},
		{"no-break space only", "\u00a0", reasonEmpty},
		{"151 characters", strings.Repeat("a", 151), reasonTooLong},
		{"151 after normalising the ellipsis", strings.Repeat("a", 148) + "…", reasonTooLong},
		{"invalid UTF-8", "Ny post \xff", reasonUTF8},
		{"tab (sent as a space)", "Ny\tpost", ""},
		{"carriage return", "Ny\rpost", reasonControl},
		{"escape", "Ny\x1bpost", reasonControl},

		{"CPR with hyphen", "Vedr. CPR 010190-1234", reasonCPR},
		{"CPR without hyphen", "Vedr. 0101901234", reasonCPR},
		{"CPR with space", "Vedr. 010190 1234", reasonCPR},
		{"CPR with en dash", "Vedr. 010190–1234", reasonCPR},
		{"CPR with no-break space", "Vedr. 010190\u00a01234", reasonCPR},
		{"CPR with dot", "Vedr. 010190.1234", reasonCPR},
		{"CPR with slash", "Vedr. 010190/1234", reasonCPR},
		{"CPR at start", "010190-1234 har fået post", reasonCPR},

		{"8-digit phone", "Ring 12345678", reasonLongRun},
		{"9 digits after a hyphen", "Konto 1234-123456789", reasonAccount},
		{"account with space", "Konto 1234 5678901234", reasonAccount},
		{"account with hyphen", "Konto 1234-1234567", reasonAccount},
		{"12-digit run", "Ref 123456789012", reasonCPR},
		{"card-like run", "Kort 4571000011112222", reasonCPR},
		{"8 digits after a word", "Ordre nr12345678", reasonLongRun},
		{"phone in pairs", "Ring 12 34 56 78", reasonGrouped},
		{"phone with country code", "Ring +45 12 34 56 78", reasonGrouped},
		{"phone in fours", "Ring +45 1234 5678", reasonGrouped},

		{"email", "Skriv til info@skat.dk", reasonEmail},
		{"email without domain dot", "Skriv til a@b", reasonEmail},

		{"https URL", "Se https://skat.dk/login", reasonLink},
		{"upper-case HTTP", "Se HTTP://x", reasonLink},
		{"www", "Se www.example.com", reasonLink},
		{"bare domain", "Log ind på borger.dk", reasonLink},
		{"one-letter domain", "Se x.dk", reasonLink},
		{"upper-case domain", "Se BORGER.DK nu", reasonLink},
		{"domain with path", "sundhed.dk/login", reasonLink},
		{"domain ending a sentence", "Læs mere på mit.dk.", reasonLink},
		{"IDN domain", "Se æble.dk", reasonLink},
		{"punycode domain", "Se xn--ble-zla.xn--p1ai", reasonLink},
		{"abbreviation used as a domain", "Se f.eks.dk", reasonLink},

		{"accents outside GSM-7 (sent unaccented)", "Crème brûlée", ""},
		{"emoji", "Ny post 😀", reasonNotGSM},
		{"zero-width space (dropped)", "Ny\u200bpost", ""},
		{"zero-width space hiding digits", "Ring 1234\u200b5678", reasonLongRun},
		{"other script", "新邮件", reasonNotGSM},
	}
	for _, tc := range tests {
		ok, reason := CheckNotification(tc.in)
		if ok != (tc.reason == "") || reason != tc.reason {
			t.Errorf("%s: CheckNotification(%q) = %v, %q; want %v, %q", tc.name, tc.in, ok, reason, tc.reason == "", tc.reason)
		}
		if !polReasons[reason] {
			t.Errorf("%s: reason %q is not one of the fixed reasons", tc.name, reason)
		}
	}
}

// polReasons are the reasons CheckNotification may give: fixed strings, so
// that a reason can never quote the text.
var polReasons = map[string]bool{
	"": true, reasonEmpty: true, reasonTooLong: true, reasonUTF8: true, reasonControl: true,
	reasonCPR: true, reasonLongRun: true, reasonAccount: true, reasonGrouped: true,
	reasonEmail: true, reasonLink: true, reasonNotGSM: true,
}

// polMaxDigitRun is the longest run of ASCII digits in s, counted without
// regular expressions so that it checks the code rather than repeats it.
func polMaxDigitRun(s string) int {
	best, run := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	return best
}

func FuzzCheckNotification(f *testing.F) {
	for _, s := range []string{
		"", "Du har modtaget ny Digital Post fra Skattestyrelsen", "010190-1234", "12345678",
		"1234 5678901234", "info@skat.dk", "https://x.dk", "borger.dk", "Ny post 😀",
		"Mødetid 2026-03-12 – se brevet", strings.Repeat("æ", 150), strings.Repeat("a", 148) + "…",
		"1234\u00a05678", "\xff", "f.eks.", "12 34 56 78",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ok, reason := CheckNotification(s)
		if ok2, reason2 := CheckNotification(s); ok2 != ok || reason2 != reason {
			t.Fatalf("CheckNotification(%q) is not deterministic: %v %q then %v %q", s, ok, reason, ok2, reason2)
		}
		if !ok {
			if reason == "" || !polReasons[reason] {
				t.Fatalf("CheckNotification(%q) refused with reason %q, want a fixed reason", s, reason)
			}
			return
		}
		if reason != "" {
			t.Fatalf("CheckNotification(%q) accepted with reason %q", s, reason)
		}
		if !utf8.ValidString(s) {
			t.Fatalf("CheckNotification accepted invalid UTF-8 %q", s)
		}
		n := gsm7.Normalize(s)
		if c := utf8.RuneCountInString(s); c > event.MaxNotificationRunes {
			t.Fatalf("CheckNotification accepted %d characters: %q", c, s)
		}
		if c := utf8.RuneCountInString(n); c > event.MaxNotificationRunes {
			t.Fatalf("CheckNotification accepted %q, %d characters once normalised", s, c)
		}
		if r := polMaxDigitRun(n); r >= 8 {
			t.Fatalf("CheckNotification accepted a run of %d digits: %q", r, s)
		}
		if !gsm7.IsGSM7(n) {
			t.Fatalf("CheckNotification accepted %q, not GSM-7 once normalised", s)
		}
		if l := strings.ToLower(n); strings.Contains(l, "http") || strings.Contains(l, "www.") {
			t.Fatalf("CheckNotification accepted a link: %q", s)
		}
	})
}

func TestUnderAge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cpr  string
		on   time.Time
		want bool
	}{
		// Born 29 February 2012: turns 15 on 1 March 2027, a common year.
		{"leapling, 28 Feb 2027 23:59:59 CET", "290212-4234", polUTC(2027, 2, 28, 22, 59, 59, 0), true},
		{"leapling, 1 Mar 2027 00:00 CET", "290212-4234", polUTC(2027, 2, 28, 23, 0, 0, 0), false},
		{"leapling, 29 Feb 2024 (12th birthday)", "290212-4234", polUTC(2024, 2, 29, 12, 0, 0, 0), true},
		// Born 29 February 2008: 15 on 1 March 2023; 16 on 29 February 2024.
		{"leapling 2008, 28 Feb 2023", "290208-4234", polUTC(2023, 2, 28, 12, 0, 0, 0), true},
		{"leapling 2008, 1 Mar 2023", "290208-4234", polUTC(2023, 3, 1, 12, 0, 0, 0), false},
		// Born 15 June 2011: the 15th birthday falls in summer time.
		{"summer, 1ns before local midnight", "150611-4234", polUTC(2026, 6, 14, 21, 59, 59, 999999999), true},
		{"summer, at local midnight", "150611-4234", polUTC(2026, 6, 14, 22, 0, 0, 0), false},
		{"adult", "010170-1234", polUTC(2026, 6, 14, 22, 0, 0, 0), false},
		{"newborn", "010126-4234", polUTC(2026, 1, 2, 12, 0, 0, 0), true},
	}
	for _, tc := range tests {
		if got := UnderAge(polCPR(t, tc.cpr), tc.on); got != tc.want {
			t.Errorf("%s: UnderAge(%v) = %v, want %v", tc.name, tc.on, got, tc.want)
		}
	}
}

func TestForwardWindowStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		granted time.Time
		want    time.Time
	}{
		{"same wall time across DST: 10:00 CEST → 10:00 CET", polUTC(2026, 9, 15, 8, 0, 0, 0), polUTC(2026, 3, 15, 9, 0, 0, 0)},
		{"31 August clamps to 28 February", polUTC(2026, 8, 31, 10, 0, 0, 0), polUTC(2026, 2, 28, 11, 0, 0, 0)},
		{"31 August clamps to 29 February in a leap year", polUTC(2028, 8, 31, 10, 0, 0, 0), polUTC(2028, 2, 29, 11, 0, 0, 0)},
		{"31 December clamps to 30 June", polUTC(2026, 12, 31, 22, 59, 59, 500), polUTC(2026, 6, 30, 21, 59, 59, 500)},
		{"31 March clamps to 30 September", polUTC(2026, 3, 31, 10, 0, 0, 0), polUTC(2025, 9, 30, 10, 0, 0, 0)},
		{"January goes back into the previous year", polUTC(2026, 1, 15, 7, 0, 0, 0), polUTC(2025, 7, 15, 6, 0, 0, 0)},
		{"local calendar, not UTC: 1 Sep 00:30 CEST", polUTC(2026, 8, 31, 22, 30, 0, 0), polUTC(2026, 2, 28, 23, 30, 0, 0)},
		{"02:30 skipped on 29 March → the change at 03:00 CEST", polUTC(2026, 9, 29, 0, 30, 0, 0), polUTC(2026, 3, 29, 1, 0, 0, 0)},
		{"02:30 twice on 25 October → the first (CEST)", polUTC(2027, 4, 25, 0, 30, 0, 0), polUTC(2026, 10, 25, 0, 30, 0, 0)},
	}
	for _, tc := range tests {
		if got := ForwardWindowStart(tc.granted); !got.Equal(tc.want) {
			t.Errorf("%s: ForwardWindowStart(%v) = %v, want %v", tc.name, tc.granted, got.UTC(), tc.want)
		}
	}
}

func TestInForwardWindow(t *testing.T) {
	t.Parallel()
	granted := polUTC(2026, 9, 15, 8, 0, 0, 0) // 10:00 CEST
	start := polUTC(2026, 3, 15, 9, 0, 0, 0)   // 10:00 CET
	clamped := polUTC(2026, 8, 31, 10, 0, 0, 0)
	tests := []struct {
		name              string
		received, granted time.Time
		want              bool
	}{
		{"exactly at the start", start, granted, true},
		{"1ns before the start", start.Add(-time.Nanosecond), granted, false},
		{"start, given in UTC+10", start.In(time.FixedZone("AEST", 10*3600)), granted, true},
		{"an hour before the start (UTC arithmetic would admit it)", start.Add(-time.Hour), granted, false},
		{"in the middle", polUTC(2026, 6, 1, 12, 0, 0, 0), granted, true},
		{"exactly at the grant", granted, granted, true},
		{"1ns after the grant", granted.Add(time.Nanosecond), granted, false},
		{"a year before", polUTC(2025, 9, 15, 8, 0, 0, 0), granted, false},
		{"clamped start, 28 February 12:00 CET", polUTC(2026, 2, 28, 11, 0, 0, 0), clamped, true},
		{"clamped start, 1ns before", polUTC(2026, 2, 28, 10, 59, 59, 999999999), clamped, false},
		{"2 March (AddDate would start on 3 March)", polUTC(2026, 3, 2, 11, 0, 0, 0), clamped, true},
	}
	for _, tc := range tests {
		if got := InForwardWindow(tc.received, tc.granted); got != tc.want {
			t.Errorf("%s: InForwardWindow(%v, %v) = %v, want %v", tc.name, tc.received, tc.granted, got, tc.want)
		}
	}
}

func TestCoalescedSenders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		names     []string
		max       int
		wantShown []string
		wantMore  int
	}{
		{nil, 3, nil, 0},
		{[]string{"Skattestyrelsen"}, 3, []string{"Skattestyrelsen"}, 0},
		{[]string{"A", "B", "A", "C"}, 3, []string{"A", "B", "C"}, 0},
		{[]string{"A", "B", "A", "C"}, 2, []string{"A", "B"}, 1},
		{[]string{"A", "A", "B", "B", "C", "D", "C"}, 1, []string{"A"}, 3},
		{[]string{"C", "B", "A"}, 3, []string{"C", "B", "A"}, 0},
		{[]string{"A", "B", "C"}, 0, nil, 3},
		{[]string{"A", "B", "C"}, -1, nil, 3},
		{[]string{"Skat", " skat ", "SKAT", "Borger.dk"}, 5, []string{"Skat", "Borger.dk"}, 0},
		{[]string{"", "  ", "A"}, 5, []string{"A"}, 0},
		{[]string{" Aarhus Kommune "}, 5, []string{"Aarhus Kommune"}, 0},
	}
	for _, tc := range tests {
		shown, more := CoalescedSenders(tc.names, tc.max)
		if diff := cmp.Diff(tc.wantShown, shown, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("CoalescedSenders(%q, %d) shown mismatch (-want +got):\n%s", tc.names, tc.max, diff)
		}
		if more != tc.wantMore {
			t.Errorf("CoalescedSenders(%q, %d) more = %d, want %d", tc.names, tc.max, more, tc.wantMore)
		}
	}

	names := []string{"A", "B"}
	shown, _ := CoalescedSenders(names, 2)
	shown[0] = "changed"
	if names[0] != "A" {
		t.Errorf("CoalescedSenders returned a slice sharing memory with its input")
	}
}

func TestRoute(t *testing.T) {
	t.Parallel()
	digital := Decision{Digital: true}
	exempt := Decision{Paper: true, Reason: "exempt"}
	minorNoPaper := Decision{Reason: "under 15"}
	minorPaper := Decision{Paper: true, Reason: "under 15"}
	type in struct {
		kind                           event.SenderKind
		exempt, under15, paperForMinor bool
	}
	tests := []struct {
		in   in
		want Decision
	}{
		{in{event.SenderPublic, false, false, false}, digital},
		{in{event.SenderPublic, false, false, true}, digital},
		{in{event.SenderPublic, false, true, false}, minorNoPaper},
		{in{event.SenderPublic, false, true, true}, minorPaper},
		{in{event.SenderPublic, true, false, false}, exempt},
		{in{event.SenderPublic, true, false, true}, exempt},
		{in{event.SenderPublic, true, true, false}, exempt},
		{in{event.SenderPublic, true, true, true}, exempt},

		{in{event.SenderPublicSpecial, false, false, false}, digital},
		{in{event.SenderPublicSpecial, false, false, true}, digital},
		{in{event.SenderPublicSpecial, false, true, false}, digital},
		{in{event.SenderPublicSpecial, false, true, true}, digital},
		{in{event.SenderPublicSpecial, true, false, false}, digital},
		{in{event.SenderPublicSpecial, true, false, true}, digital},
		{in{event.SenderPublicSpecial, true, true, false}, digital},
		{in{event.SenderPublicSpecial, true, true, true}, digital},

		{in{event.SenderPrivate, false, false, false}, digital},
		{in{event.SenderPrivate, false, false, true}, digital},
		{in{event.SenderPrivate, false, true, false}, digital},
		{in{event.SenderPrivate, false, true, true}, digital},
		{in{event.SenderPrivate, true, false, false}, digital},
		{in{event.SenderPrivate, true, false, true}, digital},
		{in{event.SenderPrivate, true, true, false}, digital},
		{in{event.SenderPrivate, true, true, true}, digital},

		// An unknown kind is treated as public.
		{in{"", false, false, false}, digital},
		{in{"", false, false, true}, digital},
		{in{"", false, true, false}, minorNoPaper},
		{in{"", false, true, true}, minorPaper},
		{in{"", true, false, false}, exempt},
		{in{"", true, false, true}, exempt},
		{in{"", true, true, false}, exempt},
		{in{"", true, true, true}, exempt},
	}
	seen := map[in]bool{}
	for _, tc := range tests {
		if seen[tc.in] {
			t.Errorf("duplicate row %+v", tc.in)
		}
		seen[tc.in] = true
		got := Route(tc.in.kind, tc.in.exempt, tc.in.under15, tc.in.paperForMinor)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Route(%+v) mismatch (-want +got):\n%s", tc.in, diff)
		}
	}
	for _, k := range []event.SenderKind{event.SenderPublic, event.SenderPublicSpecial, event.SenderPrivate, ""} {
		for i := range 8 {
			key := in{k, i&4 != 0, i&2 != 0, i&1 != 0}
			if !seen[key] {
				t.Errorf("no row for %+v", key)
			}
		}
	}
	// Every decision either sends something or says why not.
	for key := range seen {
		d := Route(key.kind, key.exempt, key.under15, key.paperForMinor)
		if !d.Digital && d.Reason == "" {
			t.Errorf("Route(%+v) = %+v: no digital alert and no reason", key, d)
		}
	}
}

// TestSenderTextAndSMSAgreeOnGSM7: the privacy check and the SMS channel
// share one GSM-7 table, so a text the SMS channel sends as GSM-7 is not
// refused as "outside GSM-7".
func TestSenderTextAndSMSAgreeOnGSM7(t *testing.T) {
	t.Parallel()
	for _, text := range []string{"Café Niçoise", "José Álvarez", "Nyt fra • Kommunen", "Ny\tbesked", "Ny besked fra Ra\u030adhuset"} {
		ok, why := CheckNotification(text)
		if !ok {
			t.Errorf("CheckNotification(%q) refused it (%s)", text, why)
		}
		if enc := gsm7.Encoding(gsm7.Normalize(text)); enc != gsm7.Encoding("abc") {
			t.Errorf("the SMS channel would send %q as %s", text, enc)
		}
	}
}

// TestMayShow is the consent rule's table: consent × platform × sender
// kind, every combination.
func TestMayShow(t *testing.T) {
	t.Parallel()
	kinds := []event.SenderKind{event.SenderPublic, event.SenderPublicSpecial, event.SenderPrivate, ""}
	for _, p := range event.ReadingPlatforms() {
		for _, kind := range kinds {
			for _, consented := range []bool{false, true} {
				// The expectation, spelled out rather than derived.
				want := true
				if (p == event.EBoks || p == event.MitDK) && kind != event.SenderPrivate && !consented {
					want = false
				}
				ok, why := MayShow(kind, p, consented)
				if ok != want {
					t.Errorf("MayShow(%q, %s, consented %v) = %v, want %v", kind, p, consented, ok, want)
				}
				switch {
				case ok && why != "":
					t.Errorf("MayShow(%q, %s, %v) allowed with reason %q", kind, p, consented, why)
				case !ok && why != "no consent ("+string(p)+")":
					t.Errorf("MayShow(%q, %s, %v) reason = %q, want %q", kind, p, consented, why, "no consent ("+string(p)+")")
				}
			}
		}
	}
}
