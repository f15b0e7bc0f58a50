package event

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCPRCentury checks the century rule of the seventh digit around its
// limits: 0–3 → 1900s; 4 and 9 → 2000s up to YY 36, else 1900s; 5–8 →
// 2000s up to YY 57, else 1800s.
func TestCPRCentury(t *testing.T) {
	t.Parallel()
	yys := []string{"00", "36", "37", "57", "58", "99"}
	want := map[byte][]int{
		'0': {1900, 1936, 1937, 1957, 1958, 1999},
		'1': {1900, 1936, 1937, 1957, 1958, 1999},
		'2': {1900, 1936, 1937, 1957, 1958, 1999},
		'3': {1900, 1936, 1937, 1957, 1958, 1999},
		'4': {2000, 2036, 1937, 1957, 1958, 1999},
		'5': {2000, 2036, 2037, 2057, 1858, 1899},
		'6': {2000, 2036, 2037, 2057, 1858, 1899},
		'7': {2000, 2036, 2037, 2057, 1858, 1899},
		'8': {2000, 2036, 2037, 2057, 1858, 1899},
		'9': {2000, 2036, 1937, 1957, 1958, 1999},
	}
	for d7 := byte('0'); d7 <= '9'; d7++ {
		for i, yy := range yys {
			in := "1503" + yy + "-" + string(d7) + "234"
			c, err := ParseCPR(in)
			if err != nil {
				t.Errorf("ParseCPR(%s): %v", in, err)
				continue
			}
			wantDate := time.Date(want[d7][i], time.March, 15, 0, 0, 0, 0, time.UTC)
			if got := c.BirthDate(); !got.Equal(wantDate) || got.Location() != time.UTC {
				t.Errorf("BirthDate of %s = %v, want %v", in, got, wantDate)
			}
		}
	}
}

func TestParseCPR(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    CPR
		wantErr string
	}{
		// The hyphen is optional.
		{in: "010190-1234", want: "0101901234"},
		{in: "0101901234", want: "0101901234"},
		// Real dates at the edges of months and leap years.
		{in: "310190-1234", want: "3101901234"},
		{in: "300490-1234", want: "3004901234"},
		{in: "290296-1234", want: "2902961234"}, // 1996
		{in: "290200-4234", want: "2902004234"}, // 2000 is a leap year
		{in: "290256-5234", want: "2902565234"}, // 2056
		{in: "290204-9234", want: "2902049234"}, // 2004
		{in: "311299-0234", want: "3112990234"},
		// Numbers failing the modulus-11 check are valid (see below).
		{in: "010190-1235", want: "0101901235"},
		{in: "010190-1238", want: "0101901238"}, // passes modulus 11

		// Not a real date.
		{in: "310490-1234", wantErr: "does not hold a real birth date"}, // 31 April
		{in: "310690-1234", wantErr: "does not hold a real birth date"}, // 31 June
		{in: "300296-1234", wantErr: "does not hold a real birth date"}, // 30 February
		{in: "290297-1234", wantErr: "does not hold a real birth date"}, // 1997 is common
		{in: "290200-0234", wantErr: "does not hold a real birth date"}, // 1900 is not a leap year
		{in: "290200-1234", wantErr: "does not hold a real birth date"}, // 1900
		{in: "290258-5234", wantErr: "does not hold a real birth date"}, // 1858 is common
		{in: "290201-4234", wantErr: "does not hold a real birth date"}, // 2001 is common
		{in: "010090-1234", wantErr: "does not hold a real birth date"}, // month 00
		{in: "011390-1234", wantErr: "does not hold a real birth date"}, // month 13
		{in: "019990-1234", wantErr: "does not hold a real birth date"}, // month 99
		{in: "000190-1234", wantErr: "does not hold a real birth date"}, // day 00
		{in: "320190-1234", wantErr: "does not hold a real birth date"}, // day 32
		{in: "990190-1234", wantErr: "does not hold a real birth date"}, // day 99

		// Wrong length or not digits.
		{in: "", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "010190123", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "01019012345", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "010190-123", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "010190-12345", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "010190--1234", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "01019-01234", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "0101901-234", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "010190 1234", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "010190/1234", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "010190–1234", wantErr: "must be 10 digits, DDMMYY-SSSS"}, // en dash
		{in: " 0101901234", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "0101901234 ", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "01019O1234", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "010190-123A", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "ABCDEFGHIJ", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "+101901234", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "-101901234", wantErr: "must be 10 digits, DDMMYY-SSSS"},
		{in: "０１０１９０１２３４", wantErr: "must be 10 digits, DDMMYY-SSSS"}, // full-width digits
		{in: "٠١٠١٩٠١٢٣٤", wantErr: "must be 10 digits, DDMMYY-SSSS"}, // Arabic-Indic digits
	}
	for _, tc := range tests {
		got, err := ParseCPR(tc.in)
		if tc.wantErr != "" {
			if err == nil {
				t.Errorf("ParseCPR(%q) = %q, want error %q", tc.in, got.Digits(), tc.wantErr)
				continue
			}
			if err.Error() != tc.wantErr {
				t.Errorf("ParseCPR(%q) error = %q, want %q", tc.in, err, tc.wantErr)
			}
			if tc.in != "" && strings.Contains(err.Error(), tc.in) || strings.Contains(err.Error(), fxDigitsOnly(tc.in)) && len(fxDigitsOnly(tc.in)) >= 6 {
				t.Errorf("ParseCPR(%q) error %q quotes the input", tc.in, err)
			}
			if got != "" {
				t.Errorf("ParseCPR(%q) returned %q with its error", tc.in, got.Digits())
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCPR(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseCPR(%q) = %q, want %q", tc.in, got.Digits(), tc.want.Digits())
		}
	}
}

// mod11 reports whether a CPR number passes the old modulus-11 check.
func fxMod11(digits string) bool {
	weights := []int{4, 3, 2, 7, 6, 5, 4, 3, 2, 1}
	sum := 0
	for i, w := range weights {
		sum += int(digits[i]-'0') * w
	}
	return sum%11 == 0
}

// TestParseCPRIgnoresModulus11 checks that numbers issued without the
// modulus-11 check since 2007 are accepted alongside those with it.
func TestParseCPRIgnoresModulus11(t *testing.T) {
	t.Parallel()
	passes, fails := 0, 0
	for s := 0; s < 10000; s += 7 {
		in := fmt.Sprintf("150307%04d", s)
		if fxMod11(in) {
			passes++
		} else {
			fails++
		}
		if _, err := ParseCPR(in); err != nil {
			t.Fatalf("ParseCPR(%s) (modulus 11: %v): %v", in, fxMod11(in), err)
		}
	}
	if passes == 0 || fails == 0 {
		t.Fatalf("the sample has %d numbers passing and %d failing modulus 11; want both", passes, fails)
	}
}

func TestCPRAgeOn(t *testing.T) {
	t.Parallel()
	cph, err := time.LoadLocation("Europe/Copenhagen")
	if err != nil {
		t.Fatal(err)
	}
	local := func(y int, m time.Month, d, hh, mm, ss int) time.Time { return time.Date(y, m, d, hh, mm, ss, 0, cph) }
	tests := []struct {
		name string
		cpr  string
		at   time.Time
		want int
	}{
		// Born 1 March 2010 (7th digit 4, YY 10 → 2010).
		{"day before 15th birthday", "010310-4234", local(2025, 2, 28, 12, 0, 0), 14},
		{"last second before 15th birthday", "010310-4234", local(2025, 2, 28, 23, 59, 59), 14},
		{"15th birthday at local midnight", "010310-4234", local(2025, 3, 1, 0, 0, 0), 15},
		{"15th birthday just after local midnight, in UTC", "010310-4234", time.Date(2025, 2, 28, 23, 0, 1, 0, time.UTC), 15},
		{"15th birthday eve, in UTC", "010310-4234", time.Date(2025, 2, 28, 22, 59, 59, 0, time.UTC), 14},
		{"15th birthday eve, given in UTC+10", "010310-4234", time.Date(2025, 3, 1, 8, 0, 0, 0, time.FixedZone("AEST", 10*3600)), 14},
		{"day after 15th birthday", "010310-4234", local(2025, 3, 2, 0, 0, 0), 15},
		{"day of birth", "010310-4234", local(2010, 3, 1, 0, 0, 0), 0},

		// Born 15 June 2010: the birthday falls in summer time (UTC+2).
		{"summer 15th birthday just after local midnight, in UTC", "150610-4234", time.Date(2025, 6, 14, 22, 0, 30, 0, time.UTC), 15},
		{"summer 15th birthday eve, in UTC", "150610-4234", time.Date(2025, 6, 14, 21, 59, 59, 0, time.UTC), 14},

		// Born 29 February 2008: turns 15 on 1 March 2023 (a common year).
		{"leapling, 28 Feb of 15th year", "290208-4234", local(2023, 2, 28, 23, 59, 59), 14},
		{"leapling, 1 Mar of 15th year", "290208-4234", local(2023, 3, 1, 0, 0, 1), 15},
		{"leapling, 1 Mar of 15th year, in UTC", "290208-4234", time.Date(2023, 2, 28, 23, 0, 1, 0, time.UTC), 15},
		{"leapling, 28 Feb of 16th year (leap)", "290208-4234", local(2024, 2, 28, 12, 0, 0), 15},
		{"leapling, 29 Feb of 16th year (leap)", "290208-4234", local(2024, 2, 29, 0, 0, 1), 16},
		{"leapling, 29 Feb just after local midnight, in UTC", "290208-4234", time.Date(2024, 2, 28, 23, 0, 1, 0, time.UTC), 16},

		// Other centuries.
		{"born 1858", "010158-5234", local(2025, 1, 1, 0, 0, 0), 167},
		{"born 1937", "311237-4234", local(2025, 12, 30, 12, 0, 0), 87},
		{"born 1937, birthday", "311237-4234", local(2025, 12, 31, 0, 0, 0), 88},
	}
	for _, tc := range tests {
		c, err := ParseCPR(tc.cpr)
		if err != nil {
			t.Fatalf("%s: ParseCPR: %v", tc.name, err)
		}
		if got := c.AgeOn(tc.at); got != tc.want {
			t.Errorf("%s: AgeOn(%v) = %d, want %d", tc.name, tc.at, got, tc.want)
		}
	}
}

func TestCPRRedacts(t *testing.T) {
	t.Parallel()
	c, err := ParseCPR(fxCPR)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Digits(); got != fxCPRDigits {
		t.Errorf("Digits() = %q, want %q", got, fxCPRDigits)
	}
	if got := c.String(); got != "[cpr]" {
		t.Errorf("String() = %q, want [cpr]", got)
	}
	if got := c.LogValue(); !cmp.Equal(got.Kind(), slog.KindString) || got.String() != "[cpr]" {
		t.Errorf("LogValue() = %v, want the string [cpr]", got)
	}
	for _, verb := range []string{"%v", "%s", "%q", "%+v"} {
		if got := fmt.Sprintf(verb, c); strings.Contains(got, fxCPRDigits) {
			t.Errorf("fmt %s shows the CPR: %s", verb, got)
		}
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("letter", "cpr", c, slog.Any("recipient", c), slog.Group("citizen", "cpr", c))
	out := buf.String()
	if strings.Contains(out, fxCPRDigits) || strings.Contains(out, fxCPR) {
		t.Errorf("log line holds the CPR: %s", out)
	}
	if got := strings.Count(out, `"[cpr]"`); got != 3 {
		t.Errorf("log line has %d redacted values, want 3: %s", got, out)
	}
}

func TestCopenhagen(t *testing.T) {
	loc := Copenhagen()
	if loc.String() != "Europe/Copenhagen" {
		t.Fatalf("Copenhagen() = %s, want Europe/Copenhagen", loc)
	}
	for _, tc := range []struct {
		at   time.Time
		name string
		off  int
	}{
		{time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC), "CET", 3600},
		{time.Date(2024, 7, 15, 12, 0, 0, 0, time.UTC), "CEST", 7200},
	} {
		if name, off := tc.at.In(loc).Zone(); name != tc.name || off != tc.off {
			t.Errorf("%s in Copenhagen: zone %s %d, want %s %d", tc.at, name, off, tc.name, tc.off)
		}
	}
}
