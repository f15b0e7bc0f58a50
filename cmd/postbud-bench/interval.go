package main

import (
	"math"
	"math/rand/v2"
	"slices"
)

// The latency targets compare two p99s of one run: a phase's and the idle
// phase's. With 1 000 urgent letters a phase a p99 is the eleventh
// slowest letter (nearest rank), and on a shared machine it moves a lot between runs: the hang
// phase, whose urgent path nothing touches, measured 0.80–1.56 × idle p99
// in runs of one day (README, runs 51–68). ratioInterval says how far one run's ratio
// can be trusted, so a verdict within the noise reads as such.

// quantileIndex is the index of the f-quantile in a sorted sample of n
// (the nearest-rank definition every figure of the benchmark uses).
func quantileIndex(n int, f float64) int {
	return max(int(math.Ceil(f*float64(n)))-1, 0)
}

// ratioInterval returns the 95 % percentile-bootstrap interval of
// quantile f of a divided by quantile f of b: both samples drawn again
// with replacement, rounds times, and the 2.5th and 97.5th percentiles of
// the ratios. The draws are seeded, so a result prints the same interval
// every time. Either sample empty: NaN.
func ratioInterval(a, b []float64, f float64, rounds int) (lo, hi float64) {
	if len(a) == 0 || len(b) == 0 || rounds < 1 {
		return math.NaN(), math.NaN()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ra, rb := make([]float64, len(a)), make([]float64, len(b))
	ratios := make([]float64, rounds)
	redraw := func(dst, src []float64) float64 {
		for i := range dst {
			dst[i] = src[rng.IntN(len(src))]
		}
		slices.Sort(dst)
		return dst[quantileIndex(len(dst), f)]
	}
	for i := range ratios {
		ratios[i] = redraw(ra, a) / redraw(rb, b)
	}
	slices.Sort(ratios)
	return ratios[quantileIndex(rounds, 0.025)], ratios[quantileIndex(rounds, 0.975)]
}

// bootstrapRounds is how many redraws an interval takes: 2 000 redraws of
// two 1 000-letter phases take well under a second.
const bootstrapRounds = 2000
