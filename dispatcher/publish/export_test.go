package publish

// Waiting returns the letters of Publish calls waiting for the group
// before them.
func (p *Publisher) Waiting() int { return p.group.Waiting() }
