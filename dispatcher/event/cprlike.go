package event

import "regexp"

// cprLike is what could be a CPR number in free text: six digits, an
// optional separator (hyphen, space, dot or slash) and four digits. It is
// deliberately wider than ParseCPR (no date check, no century rule): it is
// used to refuse or mask text, where a false alarm costs little and a miss
// leaks a CPR number.
var cprLike = regexp.MustCompile(`[0-9]{6}[- ./]?[0-9]{4}`)

// HasCPRLike reports whether s holds anything shaped like a CPR number.
func HasCPRLike(s string) bool { return cprLike.MatchString(s) }

// MaskCPRLike replaces everything in s shaped like a CPR number with
// "[cpr]".
func MaskCPRLike(s string) string { return cprLike.ReplaceAllString(s, "[cpr]") }
