package email

import (
	"net"
	"sync"
	"time"
)

// boundedConn is a connection no deadline can extend past its limit.
//
// go-mail bounds its dial by ctx and then sets "now + timeout" deadlines on
// the connection, renewing them before sending; a server that answers
// slowly enough could keep a send going far past Config.Timeout or ctx's
// deadline. boundedConn clamps every deadline to the limit of the whole
// conversation, and expire cuts it short when ctx ends.
type boundedConn struct {
	net.Conn

	mu      sync.Mutex
	limit   time.Time
	expired bool
}

func newBoundedConn(c net.Conn, limit time.Time) *boundedConn {
	b := &boundedConn{Conn: c, limit: limit}
	_ = c.SetDeadline(limit)
	return b
}

func (b *boundedConn) clamp(t time.Time) time.Time {
	if t.IsZero() || t.After(b.limit) {
		return b.limit
	}
	return t
}

// SetDeadline sets the deadline, no later than the limit.
func (b *boundedConn) SetDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Conn.SetDeadline(b.clamp(t))
}

// SetReadDeadline sets the read deadline, no later than the limit.
func (b *boundedConn) SetReadDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Conn.SetReadDeadline(b.clamp(t))
}

// SetWriteDeadline sets the write deadline, no later than the limit.
func (b *boundedConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Conn.SetWriteDeadline(b.clamp(t))
}

// expire moves the limit to the past, ending any blocked read or write.
func (b *boundedConn) expire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expired = true
	b.limit = time.Unix(1, 0)
	_ = b.Conn.SetDeadline(b.limit)
}

// timedOut reports whether the limit has passed or expire was called.
func (b *boundedConn) timedOut() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.expired || !time.Now().Before(b.limit)
}
