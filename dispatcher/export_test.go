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

// DecodeLetters says whether a TypeLetters payload decodes in one pass and
// how many letters it holds.
func DecodeLetters(payload []byte) (once bool, letters int, err error) {
	p, once, err := decodeLetters(payload)
	if once {
		return true, len(p.Letters), err
	}
	return false, len(p.lettersTask.Letters), err
}
