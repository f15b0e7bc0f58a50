package sms_test

import (
	"strings"
	"testing"

	"github.com/digitalpost/postbud/channels/sms"
)

// gsmAlphabet is the GSM 03.38 basic set and extension table, written out
// independently of the package's table (3GPP TS 23.038, without ESC).
const (
	gsmBasicChars = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
	gsmExtChars   = "\f^{}\\[~]|€"
)

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Skat – årsopgørelse", "Skat - årsopgørelse"},
		{"Skat — årsopgørelse", "Skat - årsopgørelse"},
		{"“Hej” ‘du’ „dansk“ «fransk»", `"Hej" 'du' "dansk" "fransk"`},
		{"Vent…", "Vent..."},
		{"a\u00a0b\u202fc\u2009d", "a b c d"},
		{"a\u200bb\u00adc\ufeffd", "abcd"},
		{"tab\there", "tab here"},
		{"\x00bell\x07\x7f\f", "bell"},
		{"line\nbreak\r\n", "line\nbreak\r\n"},
		{"æøåÆØÅ", "æøåÆØÅ"},
		{"a\u030Ar A\u030Arhus", "år Århus"},
		{"Cafe\u0301 x\u0301", "Café x"},
		{"Zoë Müller Ångström façade", "Zoe Müller Ångström facade"},
		{"€ [x] {y} ^~\\|", "€ [x] {y} ^~\\|"},
		{"Ny post 📬", "Ny post 📬"},
		{"Ελλάδα", "Ελλάδα"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := sms.Normalize(tt.in); got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := sms.Normalize(sms.Normalize(tt.in)); got != sms.Normalize(tt.in) {
			t.Errorf("Normalize is not idempotent on %q", tt.in)
		}
	}
}

func TestEncoding(t *testing.T) {
	r := strings.Repeat
	tests := []struct {
		name     string
		in       string
		enc      string
		segments int
	}{
		{"empty", "", sms.GSM7, 1},
		{"danish letters", "æøåÆØÅ", sms.GSM7, 1},
		{"whole basic set", gsmBasicChars, sms.GSM7, 1},
		{"160 septets", r("a", 160), sms.GSM7, 1},
		{"161 septets", r("a", 161), sms.GSM7, 2},
		{"306 septets", r("a", 306), sms.GSM7, 2},
		{"307 septets", r("a", 307), sms.GSM7, 3},
		{"80 euro signs are 160 septets", r("€", 80), sms.GSM7, 1},
		{"81 euro signs", r("€", 81), sms.GSM7, 2},
		{"extension pair never split", r("a", 152) + "€" + r("a", 152), sms.GSM7, 3},
		{"en dash forces UCS2", "Skat – post", sms.UCS2, 1},
		{"curly quote forces UCS2", "“Hej”", sms.UCS2, 1},
		{"emoji forces UCS2", "Ny post 📬", sms.UCS2, 1},
		{"70 units", "–" + r("a", 69), sms.UCS2, 1},
		{"71 units", "–" + r("a", 70), sms.UCS2, 2},
		{"emoji counts two units", r("a", 69) + "📬", sms.UCS2, 2},
		{"134 units", "–" + r("a", 133), sms.UCS2, 2},
		{"135 units", "–" + r("a", 134), sms.UCS2, 3},
		{"surrogate pair never split", "–" + r("a", 65) + "📬" + r("a", 66), sms.UCS2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, n := sms.Encoding(tt.in)
			if enc != tt.enc || n != tt.segments {
				t.Errorf("Encoding = %s, %d; want %s, %d", enc, n, tt.enc, tt.segments)
			}
		})
	}
	for _, c := range gsmExtChars {
		if enc, _ := sms.Encoding(string(c)); enc != sms.GSM7 {
			t.Errorf("Encoding(%q) = %s, want GSM7", c, enc)
		}
	}
}

// gsmOnly keeps the characters of s that are in GSM 03.38.
func gsmOnly(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(gsmBasicChars+gsmExtChars, r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func FuzzNormalizeEncoding(f *testing.F) {
	for _, s := range []string{
		"", "Du har modtaget ny Digital Post fra Skattestyrelsen. Læs den på https://www.borger.dk/digitalpost",
		"Skat – “årsopgørelse”…", "a\u030A\u0301", "📬\u200d📬", "€€€[]", "\xff\xfe", "x\u0301\u0301",
		strings.Repeat("é", 200), "Ελλάδα", "\t\f\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := sms.Normalize(s)
		if again := sms.Normalize(n); again != n {
			t.Fatalf("Normalize not idempotent: %q → %q → %q", s, n, again)
		}
		enc, segments := sms.Encoding(n)
		if enc != sms.GSM7 && enc != sms.UCS2 {
			t.Fatalf("Encoding(%q) = %q", n, enc)
		}
		if segments < 1 {
			t.Fatalf("Encoding(%q) gives %d segments", n, segments)
		}
		if _, more := sms.Encoding(n + "a"); more < segments {
			t.Fatalf("appending a letter lowered the segments: %q", n)
		}
		g := gsmOnly(s)
		if enc, _ := sms.Encoding(g); enc != sms.GSM7 {
			t.Fatalf("GSM-only text %q reports %s", g, enc)
		}
		if got, want := sms.Normalize(g), strings.ReplaceAll(g, "\f", ""); got != want {
			t.Fatalf("Normalize changed GSM text %q to %q", g, got)
		}
	})
}
