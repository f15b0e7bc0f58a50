package event

import (
	"strings"
	"testing"
)

// fxQuotes reports whether an error message repeats the input (of 4 bytes or
// more: "+" alone is no personal data), or its digits where those make a
// phone number.
func fxQuotes(msg, in string) bool {
	if len(in) >= 4 && strings.Contains(msg, in) {
		return true
	}
	d := fxDigitsOnly(in)
	return len(d) >= 8 && strings.Contains(msg, d)
}

func TestNormalizeMobile(t *testing.T) {
	t.Parallel()
	const (
		chars = "must be a phone number in E.164 form (+4512345678)"
		cc    = "must be in E.164 form with country code (+4512345678)"
		span  = "must be in E.164 form: + then 8 to 15 digits"
		dk    = "a Danish number has 8 digits after +45"

		unassigned = "is not a number in an assigned range of its country"
		notMobile  = "must be a mobile number, not a landline or service number"
	)
	tests := []struct {
		in, want, wantErr string
	}{
		// Danish numbers without a country code get +45.
		{in: "20123456", want: "+4520123456"},
		{in: "20 12 34 56", want: "+4520123456"},
		{in: "2012 3456", want: "+4520123456"},
		{in: "20-12-34-56", want: "+4520123456"},
		{in: "20.12.34.56", want: "+4520123456"},
		{in: "(20) 12 34 56", want: "+4520123456"},
		{in: " 20123456 ", want: "+4520123456"},
		// 00 is the international prefix.
		{in: "004520123456", want: "+4520123456"},
		{in: "0045 20 12 34 56", want: "+4520123456"},
		{in: "0046701234567", want: "+46701234567"},
		// E.164, spaced or not.
		{in: "+4520123456", want: "+4520123456"},
		{in: "+45 20 12 34 56", want: "+4520123456"},
		{in: "+45-2012-3456", want: "+4520123456"},
		{in: "+46 70 123 45 67", want: "+46701234567"},
		{in: "+298 211234", want: "+298211234"}, // Faroe Islands: 6 digits
		{in: "+47 912 34 567", want: "+4791234567"},

		// Valid in form, but not an SMS-capable number in an assigned range.
		{in: "12345678", wantErr: unassigned},         // Danish 1x: unassigned
		{in: "+45 12 34 56 78", wantErr: unassigned},  // the same, E.164
		{in: "+12345678", wantErr: unassigned},        // 8 digits: too short for +1
		{in: "+123456789012345", wantErr: unassigned}, // 15 digits: too long for +1
		{in: "+298 123456", wantErr: unassigned},      // Faroe Islands 1x: unassigned
		{in: "+45 80 12 34 56", wantErr: notMobile},   // Danish toll-free (80)
		{in: "+45 90 12 34 56", wantErr: notMobile},   // Danish premium rate (90)
		{in: "+47 23 45 67 89", wantErr: notMobile},   // Norwegian landline (Oslo)
		{in: "+46 8 123 456 78", wantErr: notMobile},  // Swedish landline (Stockholm)
		{in: "", wantErr: cc},
		{in: "8765432", wantErr: cc},           // 7 digits
		{in: "987654321", wantErr: cc},         // 9 digits, no prefix
		{in: "4587654321", wantErr: cc},        // country code without + or 00
		{in: "0 87654321", wantErr: cc},        // a trunk 0 is not a prefix
		{in: "(+45) 87654321", wantErr: chars}, // + only first
		{in: "8765 4321 +", wantErr: chars},
		{in: "++4587654321", wantErr: chars},
		{in: "8765x4321", wantErr: chars},
		{in: "call me", wantErr: chars},
		{in: "87654321 ext 9", wantErr: chars},
		{in: "87654321\n", wantErr: chars},
		{in: "８７６５４３２１", wantErr: chars}, // full-width digits
		{in: "+", wantErr: span},
		{in: "+ 1", wantErr: span},
		{in: "+9876543", wantErr: span},          // 7 digits
		{in: "+9876543210987654", wantErr: span}, // 16 digits
		{in: "+0987654321", wantErr: span},       // no country code starts with 0
		{in: "000987654321", wantErr: span},      // 00 then 0
		{in: "0045", wantErr: span},
		{in: "+45 8765 432", wantErr: dk},
		{in: "+45987654321", wantErr: dk},
		{in: "0045 8765 432", wantErr: dk},
	}
	for _, tc := range tests {
		got, err := NormalizeMobile(tc.in)
		if tc.wantErr != "" {
			if err == nil {
				t.Errorf("NormalizeMobile(%q) = %q, want error %q", tc.in, got, tc.wantErr)
				continue
			}
			if err.Error() != tc.wantErr {
				t.Errorf("NormalizeMobile(%q) error = %q, want %q", tc.in, err, tc.wantErr)
			}
			if fxQuotes(err.Error(), tc.in) {
				t.Errorf("NormalizeMobile(%q) error %q quotes the input", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("NormalizeMobile(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("NormalizeMobile(%q) = %q, want %q", tc.in, got, tc.want)
		}
		// The normal form is a fixed point.
		if again, err := NormalizeMobile(got); err != nil || again != got {
			t.Errorf("NormalizeMobile(%q) = %q, %v; want it unchanged", got, again, err)
		}
	}
}

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	const (
		plain  = "must be a plain email address (name@example.dk)"
		domain = "must be a plain email address with a domain (name@example.dk)"
		long   = "must be at most 254 characters"
	)
	max := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 186) + ".dk" // 254
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "anna@eksempel.dk", want: "anna@eksempel.dk"},
		// The domain is lower-cased; the local part is left alone.
		{in: "Anna.Jensen@Eksempel.DK", want: "Anna.Jensen@eksempel.dk"},
		{in: "ANNA@EKSEMPEL.DK", want: "ANNA@eksempel.dk"},
		{in: "anna+post@Sub.Eksempel.dk", want: "anna+post@sub.eksempel.dk"},
		{in: "anna_j-1@eksempel.co.uk", want: "anna_j-1@eksempel.co.uk"},
		{in: "Æble@Blåbær.DK", want: "Æble@blåbær.dk"},
		{in: max, want: max},

		{in: "", wantErr: plain},
		{in: "anna", wantErr: plain},
		{in: "anna@", wantErr: plain},
		{in: "@eksempel.dk", wantErr: plain},
		{in: "anna@@eksempel.dk", wantErr: plain},
		{in: "anna jensen@eksempel.dk", wantErr: plain},
		{in: "anna.@eksempel.dk", wantErr: plain},
		{in: "anna@eksempel..dk", wantErr: plain},
		{in: "Anna <anna@eksempel.dk>", wantErr: plain},   // display name
		{in: `"Anna" <anna@eksempel.dk>`, wantErr: plain}, // display name
		{in: "<anna@eksempel.dk>", wantErr: plain},        // angle brackets
		{in: " anna@eksempel.dk", wantErr: plain},         // spaces
		{in: "anna@eksempel.dk ", wantErr: plain},
		{in: "anna@eksempel.dk (Anna)", wantErr: plain}, // comment
		{in: "anna@eksempel.dk, bo@eksempel.dk", wantErr: plain},
		{in: `"anna jensen"@eksempel.dk`, wantErr: plain}, // quoted local part: not plain
		{in: "anna@eksempel.dk\n", wantErr: plain},
		{in: "anna@localhost", wantErr: domain},
		{in: "anna@eksempeldk", wantErr: domain},
		{in: max[:len(max)-3] + "x.dk", wantErr: long}, // 255
	}
	for _, tc := range tests {
		got, err := NormalizeEmail(tc.in)
		if tc.wantErr != "" {
			if err == nil {
				t.Errorf("NormalizeEmail(%q) = %q, want error %q", tc.in, got, tc.wantErr)
				continue
			}
			if err.Error() != tc.wantErr {
				t.Errorf("NormalizeEmail(%q) error = %q, want %q", tc.in, err, tc.wantErr)
			}
			if fxQuotes(err.Error(), tc.in) {
				t.Errorf("NormalizeEmail(%q) error %q quotes the input", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("NormalizeEmail(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("NormalizeEmail(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if again, err := NormalizeEmail(got); err != nil || again != got {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want it unchanged", got, again, err)
		}
	}
}
