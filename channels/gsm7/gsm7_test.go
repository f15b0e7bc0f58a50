package gsm7_test

import (
	"strings"
	"testing"

	"github.com/digitalpost/postbud/channels/gsm7"
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
		// Dropping the zero-width space brings two Hangul jamo together,
		// which compose: the result must already be composed.
		{"\u1100\u200b\u1161", "\uac00"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := gsm7.Normalize(tt.in); got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := gsm7.Normalize(gsm7.Normalize(tt.in)); got != gsm7.Normalize(tt.in) {
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
		{"empty", "", gsm7.GSM7, 1},
		{"danish letters", "æøåÆØÅ", gsm7.GSM7, 1},
		{"whole basic set", gsmBasicChars, gsm7.GSM7, 1},
		{"160 septets", r("a", 160), gsm7.GSM7, 1},
		{"161 septets", r("a", 161), gsm7.GSM7, 2},
		{"306 septets", r("a", 306), gsm7.GSM7, 2},
		{"307 septets", r("a", 307), gsm7.GSM7, 3},
		{"80 euro signs are 160 septets", r("€", 80), gsm7.GSM7, 1},
		{"81 euro signs", r("€", 81), gsm7.GSM7, 2},
		{"extension pair never split", r("a", 152) + "€" + r("a", 152), gsm7.GSM7, 3},
		{"en dash forces UCS2", "Skat – post", gsm7.UCS2, 1},
		{"curly quote forces UCS2", "“Hej”", gsm7.UCS2, 1},
		{"emoji forces UCS2", "Ny post 📬", gsm7.UCS2, 1},
		{"70 units", "–" + r("a", 69), gsm7.UCS2, 1},
		{"71 units", "–" + r("a", 70), gsm7.UCS2, 2},
		{"emoji counts two units", r("a", 69) + "📬", gsm7.UCS2, 2},
		{"134 units", "–" + r("a", 133), gsm7.UCS2, 2},
		{"135 units", "–" + r("a", 134), gsm7.UCS2, 3},
		{"surrogate pair never split", "–" + r("a", 65) + "📬" + r("a", 66), gsm7.UCS2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, n := encoding(tt.in)
			if enc != tt.enc || n != tt.segments {
				t.Errorf("Encoding = %s, %d; want %s, %d", enc, n, tt.enc, tt.segments)
			}
		})
	}
	for _, c := range gsmExtChars {
		if enc, _ := encoding(string(c)); enc != gsm7.GSM7 {
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
		n := gsm7.Normalize(s)
		if again := gsm7.Normalize(n); again != n {
			t.Fatalf("Normalize not idempotent: %q → %q → %q", s, n, again)
		}
		enc, segments := encoding(n)
		if enc != gsm7.GSM7 && enc != gsm7.UCS2 {
			t.Fatalf("Encoding(%q) = %q", n, enc)
		}
		if segments < 1 {
			t.Fatalf("Encoding(%q) gives %d segments", n, segments)
		}
		if _, more := encoding(n + "a"); more < segments {
			t.Fatalf("appending a letter lowered the segments: %q", n)
		}
		g := gsmOnly(s)
		if enc, _ := encoding(g); enc != gsm7.GSM7 {
			t.Fatalf("GSM-only text %q reports %s", g, enc)
		}
		if got, want := gsm7.Normalize(g), strings.ReplaceAll(g, "\f", ""); got != want {
			t.Fatalf("Normalize changed GSM text %q to %q", g, got)
		}
	})
}

// encoding is the encoding and segment count of s.
func encoding(s string) (string, int) { return gsm7.Encoding(s), gsm7.Segments(s) }
