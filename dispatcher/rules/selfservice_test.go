package rules

import "testing"

// TestSelfServiceExempt: contexts × exemption. Only the public context
// follows the exemption; courts and business matters never release.
func TestSelfServiceExempt(t *testing.T) {
	for _, tc := range []struct {
		ctx    Context
		exempt bool
		want   bool
	}{
		{ContextPublic, true, true},
		{ContextPublic, false, false},
		{ContextCourt, true, false},
		{ContextCourt, false, false},
		{ContextBusiness, true, false},
		{ContextBusiness, false, false},
		{Context("unknown"), true, false},
		{Context(""), true, false},
	} {
		if got := SelfServiceExempt(tc.ctx, tc.exempt); got != tc.want {
			t.Errorf("SelfServiceExempt(%q, %v) = %v, want %v", tc.ctx, tc.exempt, got, tc.want)
		}
	}
}

func TestParseContext(t *testing.T) {
	for _, c := range Contexts() {
		if got, err := ParseContext(string(c)); err != nil || got != c {
			t.Errorf("ParseContext(%q) = %q, %v", c, got, err)
		}
	}
	for _, bad := range []string{"", "Public", "courts", "private"} {
		if _, err := ParseContext(bad); err == nil {
			t.Errorf("ParseContext(%q) succeeded", bad)
		}
	}
}
