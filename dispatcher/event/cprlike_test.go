package event

import "testing"

// TestCPRLike: the one pattern the privacy check, the rejected-event
// archive and the log redaction share.
func TestCPRLike(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		has  bool
		mask string
	}{
		{"010190-1234", true, "[cpr]"},
		{"0101901234", true, "[cpr]"},
		{"cpr 010190 1234.", true, "cpr [cpr]."},
		{"010190.1234 og 010190/1234", true, "[cpr] og [cpr]"},
		{"id=a0101901234b", true, "id=a[cpr]b"},
		{"12345-1234", false, "12345-1234"},
		{"tlf 20 30 40 50", false, "tlf 20 30 40 50"},
		{"", false, ""},
	} {
		if got := HasCPRLike(tc.in); got != tc.has {
			t.Errorf("HasCPRLike(%q) = %v, want %v", tc.in, got, tc.has)
		}
		if got := MaskCPRLike(tc.in); got != tc.mask {
			t.Errorf("MaskCPRLike(%q) = %q, want %q", tc.in, got, tc.mask)
		}
	}
}
