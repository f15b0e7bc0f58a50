package redistest

import "time"

// Within checks cond on a 5 ms ticker until it holds (true) or d passes
// (false, after one last check): for state kept in Redis or another
// process, which sends no event to wait on.
func Within(d time.Duration, cond func() bool) bool {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(d)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			return cond()
		}
	}
	return true
}
