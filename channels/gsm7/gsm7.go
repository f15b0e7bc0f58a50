// Package gsm7 is the GSM 03.38 alphabet (3GPP TS 23.038): the basic
// character set and its extension table, the one table every part of
// postbud uses to decide whether a text travels as GSM-7 or UCS-2, how to
// rewrite a text towards GSM-7, and how many SMS segments it takes.
package gsm7

import (
	"strings"
	"unicode/utf16"

	"golang.org/x/text/unicode/norm"
)

// The encodings Encoding reports.
const (
	// GSM7 is the GSM 03.38 default alphabet, seven bits a character.
	GSM7 = "GSM7"
	// UCS2 is UTF-16, sent when a text holds a character outside GSM 03.38.
	UCS2 = "UCS2"
)

// Segment sizes of GSM 03.38 (septets) and UCS-2 (UTF-16 code units): one
// part, and each part of a concatenated message (the rest holds the
// concatenation header).
const (
	SingleGSM7  = 160
	PartGSM7    = 153
	SingleUCS2  = 70
	PartUCS2    = 67
	escapeWidth = 2
)

// basic is the GSM 03.38 basic character set in table order, one septet
// each; the escape code 0x1B is left out, so it holds 127 characters.
// Danish æøåÆØÅ are in it.
const basic = "@£$¥èéùìòÇ\nØø\rÅå" +
	"Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ" +
	" !\"#¤%&'()*+,-./" +
	"0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNO" +
	"PQRSTUVWXYZÄÖÑÜ§" +
	"¿abcdefghijklmno" +
	"pqrstuvwxyzäöñüà"

// extension is the GSM 03.38 extension table: each character costs two
// septets (escape + code).
const extension = "\f^{}\\[~]|€"

// width maps every GSM 03.38 character to its width in septets.
var width = func() map[rune]int {
	m := make(map[rune]int, 137)
	for _, r := range basic {
		m[r] = 1
	}
	for _, r := range extension {
		m[r] = escapeWidth
	}
	return m
}()

// replacements maps characters outside GSM 03.38 to a GSM 03.38 spelling.
// Every replacement is itself plain GSM 03.38, so Normalize is idempotent.
var replacements = map[rune]string{
	// Dashes and minus.
	'\u2010': "-", '\u2011': "-", '\u2012': "-", '\u2013': "-", '\u2014': "-", '\u2015': "-", '\u2212': "-",
	// Single quotes, primes and the acute accent used as an apostrophe.
	'\u2018': "'", '\u2019': "'", '\u201A': "'", '\u201B': "'", '\u2032': "'", '\u00B4': "'", '`': "'",
	// Double quotes, double prime and guillemets.
	'\u201C': "\"", '\u201D': "\"", '\u201E': "\"", '\u201F': "\"", '\u2033': "\"", '\u00AB': "\"", '\u00BB': "\"",
	// Ellipsis and bullet.
	'\u2026': "...", '\u2022': "-",
	// Spaces: no-break, en/em and the other fixed-width spaces, tab.
	'\u00A0': " ", '\u2002': " ", '\u2003': " ", '\u2004': " ", '\u2005': " ", '\u2006': " ",
	'\u2007': " ", '\u2008': " ", '\u2009': " ", '\u200A': " ", '\u202F': " ", '\u205F': " ", '\t': " ",
	// Invisible characters: soft hyphen, zero-width space/joiners, word joiner, BOM.
	'\u00AD': "", '\u200B': "", '\u200C': "", '\u200D': "", '\u2060': "", '\uFEFF': "",
	// Latin letters with no GSM 03.38 form, spelled without the accent.
	'À': "A", 'Á': "A", 'Â': "A", 'Ã': "A", 'á': "a", 'â': "a", 'ã': "a",
	'È': "E", 'Ê': "E", 'Ë': "E", 'ê': "e", 'ë': "e",
	'Ì': "I", 'Í': "I", 'Î': "I", 'Ï': "I", 'í': "i", 'î': "i", 'ï': "i",
	'Ò': "O", 'Ó': "O", 'Ô': "O", 'Õ': "O", 'ó': "o", 'ô': "o", 'õ': "o",
	'Ù': "U", 'Ú': "U", 'Û': "U", 'ú': "u", 'û': "u",
	'Ý': "Y", 'ý': "y", 'ÿ': "y", 'ç': "c", 'Ð': "D", 'ð': "d", 'Þ': "Th", 'þ': "th",
	'Œ': "OE", 'œ': "oe", 'Š': "S", 'š': "s", 'Ž': "Z", 'ž': "z", 'Č': "C", 'č': "c",
	'Ć': "C", 'ć': "c", 'Ł': "L", 'ł': "l", 'Ń': "N", 'ń': "n", 'Ś': "S", 'ś': "s",
	'Ź': "Z", 'ź': "z", 'Ż': "Z", 'ż': "z",
}

// slashed joins a letter and a combining long solidus into ø or Ø, which
// Unicode does not compose (U+00F8 has no decomposition) but GSM 03.38 has.
var slashed = map[[2]rune]rune{{'o', '\u0338'}: 'ø', {'O', '\u0338'}: 'Ø'}

// combining reports whether r is a combining diacritical mark.
func combining(r rune) bool {
	return r >= '\u0300' && r <= '\u036F'
}

// IsGSM7 reports whether every character of s is in the GSM 03.38 basic
// set or its extension table, so that an SMS of s is sent as GSM-7.
func IsGSM7(s string) bool {
	for _, r := range s {
		if _, ok := width[r]; !ok {
			return false
		}
	}
	return true
}

// Normalize rewrites s towards the GSM 03.38 alphabet so that an SMS stays
// in 160-character segments. It first composes s (Unicode NFC), so a
// decomposed "å" becomes "å"; then typographic dashes become "-", curly
// quotes straight ones, "…" becomes "...", "•" a "-", tabs and special
// spaces a space, invisible characters and control characters (but newline
// and carriage return) are dropped, and accented letters with no GSM 03.38
// form lose their accent ("ç" → "c", "Á" → "A"). Characters with no GSM
// 03.38 spelling (emoji, most non-Latin scripts) are kept: the text is then
// sent as UCS-2. Normalize is idempotent.
func Normalize(s string) string {
	rs := []rune(norm.NFC.String(s))
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		if i+1 < len(rs) {
			if c, ok := slashed[[2]rune{r, rs[i+1]}]; ok {
				r = c
				i++
			}
		}
		if rep, ok := replacements[r]; ok {
			b.WriteString(rep)
			continue
		}
		if combining(r) || (r < 0x20 && r != '\n' && r != '\r') || r == 0x7F || r == '\f' {
			continue
		}
		b.WriteRune(r)
	}
	// Dropping a character may bring two others together that compose
	// (Hangul jamo around a zero-width space): compose once more so that
	// Normalize(Normalize(s)) == Normalize(s).
	return norm.NFC.String(b.String())
}

// Encoding reports how s is sent: GSM7 when every character is in the GSM
// 03.38 alphabet, else UCS2.
func Encoding(s string) string {
	if IsGSM7(s) {
		return GSM7
	}
	return UCS2
}

// Segments reports how many SMS segments s takes in its Encoding. GSM-7
// counts septets (an extension character such as €[]{}^~\| counts two);
// UCS-2 counts UTF-16 code units (an emoji counts two). 160 septets or 70
// units fit in one segment; a longer text is split into parts of 153 or 67,
// and an escaped pair or a surrogate pair is never split across parts. The
// empty text is one segment.
func Segments(s string) int {
	single, part := SingleGSM7, PartGSM7
	unit := func(r rune) int { return width[r] }
	if !IsGSM7(s) {
		single, part = SingleUCS2, PartUCS2
		unit = utf16.RuneLen
	}
	total := 0
	for _, r := range s {
		total += unit(r)
	}
	if total <= single {
		return 1
	}
	segments, used := 1, 0
	for _, r := range s {
		w := unit(r)
		if used+w > part {
			segments++
			used = 0
		}
		used += w
	}
	return segments
}
