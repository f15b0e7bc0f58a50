package sms

import (
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/digitalpost/postbud/channels"
)

// The encodings Encoding reports. GSM7 is the GSM 03.38 default alphabet
// (the gateway's default, sent without an "encoding" field); UCS2 is sent as
// "encoding": "UCS2".
const (
	GSM7 = "GSM7"
	UCS2 = "UCS2"
)

// Segment sizes of GSM 03.38 (septets) and UCS-2 (UTF-16 code units): one
// part, and each part of a concatenated message.
const (
	gsmSingle  = 160
	gsmPart    = 153
	ucs2Single = 70
	ucs2Part   = 67
)

// gsmBasic is the GSM 03.38 basic character set (3GPP TS 23.038), one
// septet each; the escape code itself is left out. Danish æøåÆØÅ are in it.
const gsmBasic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ" +
	" !\"#¤%&'()*+,-./0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§" +
	"¿abcdefghijklmnopqrstuvwxyzäöñüà"

// gsmExtension holds the characters of the GSM 03.38 extension table: each
// costs two septets (escape + code).
const gsmExtension = "\f^{}\\[~]|€"

// gsmWidth maps every GSM 03.38 character to its width in septets.
var gsmWidth = func() map[rune]int {
	m := make(map[rune]int, 140)
	for _, r := range gsmBasic {
		m[r] = 1
	}
	for _, r := range gsmExtension {
		m[r] = 2
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

// compositions joins a base letter and a combining mark (decomposed
// Unicode, NFD) into the precomposed GSM 03.38 letter, so that a decomposed
// "å" stays "å" rather than losing its ring.
var compositions = map[[2]rune]rune{
	{'a', '\u030A'}: 'å', {'A', '\u030A'}: 'Å',
	{'e', '\u0301'}: 'é', {'E', '\u0301'}: 'É',
	{'e', '\u0300'}: 'è', {'u', '\u0300'}: 'ù', {'i', '\u0300'}: 'ì', {'o', '\u0300'}: 'ò', {'a', '\u0300'}: 'à',
	{'a', '\u0308'}: 'ä', {'o', '\u0308'}: 'ö', {'u', '\u0308'}: 'ü',
	{'A', '\u0308'}: 'Ä', {'O', '\u0308'}: 'Ö', {'U', '\u0308'}: 'Ü',
	{'n', '\u0303'}: 'ñ', {'N', '\u0303'}: 'Ñ', {'C', '\u0327'}: 'Ç',
	{'o', '\u0338'}: 'ø', {'O', '\u0338'}: 'Ø',
}

// combining reports whether r is a combining diacritical mark.
func combining(r rune) bool {
	return r >= '\u0300' && r <= '\u036F'
}

// Normalize rewrites s towards the GSM 03.38 alphabet so that an SMS stays
// in 160-character segments: typographic dashes become "-", curly quotes
// straight ones, "…" becomes "...", special spaces a space, invisible
// characters and control characters (but newline and carriage return) are
// dropped, decomposed Danish letters are composed, and accented letters
// with no GSM 03.38 form lose their accent. Characters with no GSM 03.38
// spelling (emoji, most non-Latin scripts) are kept: the text is then sent
// as UCS-2. Normalize is idempotent.
func Normalize(s string) string {
	rs := []rune(s)
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		if i+1 < len(rs) && combining(rs[i+1]) {
			if c, ok := compositions[[2]rune{r, rs[i+1]}]; ok {
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
	return b.String()
}

// Encoding reports how s is sent: GSM7 when every character is in the GSM
// 03.38 alphabet (extension characters such as €[]{}^~\| count two), else
// UCS2 (counting UTF-16 code units, so an emoji counts two); and how many
// SMS segments it takes: 160 GSM 03.38 characters or 70 UCS-2 units fit in
// one, a longer text is split into parts of 153 or 67. An escaped pair or a
// surrogate pair is never split across parts. The empty text is one
// segment.
func Encoding(s string) (enc string, segments int) {
	widths := make([]int, 0, len(s))
	enc = GSM7
	for _, r := range s {
		w, ok := gsmWidth[r]
		if !ok {
			enc = UCS2
			break
		}
		widths = append(widths, w)
	}
	single, part := gsmSingle, gsmPart
	if enc == UCS2 {
		single, part = ucs2Single, ucs2Part
		widths = widths[:0]
		for _, r := range s {
			widths = append(widths, utf16.RuneLen(r))
		}
	}
	total := 0
	for _, w := range widths {
		total += w
	}
	if total <= single {
		return enc, 1
	}
	segments, used := 1, 0
	for _, w := range widths {
		if used+w > part {
			segments++
			used = 0
		}
		used += w
	}
	return enc, segments
}

// Text renders the SMS text of an alert: the shared headline and the
// sentence pointing to the mailbox, normalised towards GSM 03.38. When the
// text needs more than maxParts segments it is shortened: a sender-supplied
// notification gives way to the generic text, then a list of several
// senders gives way to their count. A text that is still too long is a
// Permanent error.
func Text(a channels.Alert, maxParts int) (string, error) {
	if maxParts < 1 {
		maxParts = 1
	}
	readAt := channels.ReadAt(a)
	candidates := []string{channels.Headline(a) + " " + readAt}
	if a.Notification != "" {
		generic := a
		generic.Notification = ""
		candidates = append(candidates, channels.Headline(generic)+" "+readAt)
	}
	if len(a.Senders) > 1 {
		candidates = append(candidates, countHeadline(a)+" "+readAt)
	}
	var segments int
	for _, c := range candidates {
		t := Normalize(c)
		if _, segments = Encoding(t); segments <= maxParts {
			return t, nil
		}
	}
	return "", channels.Fail(channels.Permanent, "text too long",
		fmt.Errorf("sms: text needs %d segments, MaxParts is %d", segments, maxParts))
}

// countHeadline is the headline of a coalesced alert with the list of
// senders replaced by their count.
func countHeadline(a channels.Alert) string {
	letters := max(a.Count, len(a.Senders))
	if a.Language == "en" {
		return fmt.Sprintf("You have %d new letters in Digital Post from %d senders.", letters, len(a.Senders))
	}
	return fmt.Sprintf("Du har %d nye breve i Digital Post fra %d afsendere.", letters, len(a.Senders))
}
