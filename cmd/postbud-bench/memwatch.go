package main

import (
	"fmt"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"time"
)

// memWatch samples the Go runtime's memory while a phase runs, so the
// phase's peak RSS can be split into live heap (what the work holds),
// garbage (the GC's headroom) and goroutine stacks. With a profile path it
// also writes the heap profile taken when the live heap was highest
// (go tool pprof -sample_index=inuse_space|alloc_space).
type memWatch struct {
	stop, done chan struct{}
	peak       map[string]uint64
}

var memMetrics = []string{
	"/gc/heap/live:bytes",                // live heap as of the last GC
	"/memory/classes/heap/objects:bytes", // live + garbage not yet swept
	"/memory/classes/heap/stacks:bytes",
	"/memory/classes/total:bytes", // all the runtime mapped
	"/sched/goroutines:goroutines",
	"/gc/cycles/total:gc-cycles",
}

func watchMemory(profile string) *memWatch {
	w := &memWatch{stop: make(chan struct{}), done: make(chan struct{}), peak: map[string]uint64{}}
	samples := make([]metrics.Sample, len(memMetrics))
	for i, name := range memMetrics {
		samples[i].Name = name
	}
	go func() {
		defer close(w.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var written uint64
		for {
			metrics.Read(samples)
			for _, s := range samples {
				if s.Value.Kind() == metrics.KindUint64 {
					w.peak[s.Name] = max(w.peak[s.Name], s.Value.Uint64())
				}
			}
			// A new profile whenever the live heap grew by 5 %.
			if live := w.peak["/gc/heap/live:bytes"]; profile != "" && live > written+written/20 {
				if f, err := os.Create(profile); err == nil {
					_ = pprof.Lookup("heap").WriteTo(f, 0)
					_ = f.Close()
					written = live
				}
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// report stops the watch and returns its peaks, one line.
func (w *memWatch) report() string {
	close(w.stop)
	<-w.done
	const mib = 1 << 20
	return fmt.Sprintf("Go heap peaks: live after GC %.1f MiB, objects incl. garbage %.1f MiB, stacks %.1f MiB, runtime total %.1f MiB; %d goroutines at most; %d GC cycles",
		float64(w.peak["/gc/heap/live:bytes"])/mib, float64(w.peak["/memory/classes/heap/objects:bytes"])/mib,
		float64(w.peak["/memory/classes/heap/stacks:bytes"])/mib, float64(w.peak["/memory/classes/total:bytes"])/mib,
		w.peak["/sched/goroutines:goroutines"], w.peak["/gc/cycles/total:gc-cycles"])
}
