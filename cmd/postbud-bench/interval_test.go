package main

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestRatioInterval: the bootstrap interval of a p99 ratio holds 1 for two
// samples of one distribution, stays clear of 1 for a sample three times
// slower while holding its 3, is the same every time for one sample, and
// is narrower for a larger sample.
func TestRatioInterval(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	draw := func(n int, scale float64) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = scale * (1 + rng.ExpFloat64()) // a latency's long right tail
		}
		return s
	}
	idle, same, slow := draw(1000, 1), draw(1000, 1), draw(1000, 3)
	const rounds = 500 // bootstrapRounds' quarter: the race detector slows the sorts

	if lo, hi := ratioInterval(same, idle, 0.99, rounds); !(lo < 1 && 1 < hi) {
		t.Errorf("one distribution twice: interval %.2f–%.2f, want it to hold 1", lo, hi)
	}
	lo, hi := ratioInterval(slow, idle, 0.99, rounds)
	if !(lo > 1.5 && lo < 3 && 3 < hi) {
		t.Errorf("three times slower: interval %.2f–%.2f, want it above 1.5 and holding 3", lo, hi)
	}
	if lo2, hi2 := ratioInterval(slow, idle, 0.99, rounds); lo2 != lo || hi2 != hi {
		t.Errorf("the same samples gave %.3f–%.3f, then %.3f–%.3f: want one interval", lo, hi, lo2, hi2)
	}
	bigLo, bigHi := ratioInterval(draw(4000, 3), draw(4000, 1), 0.99, rounds)
	if bigHi-bigLo >= hi-lo {
		t.Errorf("4 000 letters a phase: interval %.2f–%.2f, not narrower than 1 000's %.2f–%.2f", bigLo, bigHi, lo, hi)
	}
	if lo, _ := ratioInterval(nil, idle, 0.99, rounds); !math.IsNaN(lo) {
		t.Errorf("an empty phase: interval from %v, want NaN", lo)
	}
}
