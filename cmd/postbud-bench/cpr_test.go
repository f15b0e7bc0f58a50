package main

import (
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/dispatcher/event"
)

// TestCPROfMakesDistinctAdults: every citizen number the benchmark can
// use is a valid CPR number of its own, of an adult (a child's letters
// from public senders are never alerted digitally, and the phases count
// alerts), and a count past them is refused naming its flag.
func TestCPROfMakesDistinctAdults(t *testing.T) {
	seen := make(map[string]int, maxCitizens)
	now := time.Now()
	for i := range maxCitizens {
		s := cprOf(i)
		c, err := event.ParseCPR(s)
		if err != nil {
			t.Fatalf("cprOf(%d) does not parse: %v", i, err)
		}
		if age := c.AgeOn(now); age < 18 {
			t.Fatalf("cprOf(%d) is %d years old, want an adult", i, age)
		}
		if j, dup := seen[s]; dup {
			t.Fatalf("cprOf(%d) = cprOf(%d)", i, j)
		}
		seen[s] = i
	}
	if err := checkCitizens("batch-citizens", maxCitizens); err != nil {
		t.Errorf("%d citizens refused: %v", maxCitizens, err)
	}
	for _, n := range []int{0, maxCitizens + 1} {
		if err := checkCitizens("batch-citizens", n); err == nil || !strings.Contains(err.Error(), "-batch-citizens") {
			t.Errorf("%d citizens: %v, want refused naming -batch-citizens", n, err)
		}
	}
}
