package dispatcher

// BatchLetters returns the letters of batch tasks being processed and
// those waiting for room (Config.BatchInflight).
func (d *Dispatcher) BatchLetters() (running, waiting int64) {
	return d.letters.running.Load(), d.letters.waiting.Load()
}

// AcceptsWaiting returns the letters of Accept calls waiting for the
// group before them (Config.GroupAccepts).
func (d *Dispatcher) AcceptsWaiting() int {
	return d.groups.Waiting()
}
