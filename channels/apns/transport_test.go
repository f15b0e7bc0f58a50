package apns

import (
	"testing"
	"time"

	"github.com/sideshow/apns2"
)

// The transport speaks HTTP/2 only and keeps the health pings the
// deprecated x/net/http2 transport of apns2 had (ReadIdleTimeout).
func TestTransportHTTP2WithPings(t *testing.T) {
	tr := newTransport(nil)
	if tr.Protocols == nil || !tr.Protocols.HTTP2() || tr.Protocols.HTTP1() || tr.Protocols.UnencryptedHTTP2() {
		t.Errorf("Protocols = %v, want HTTP/2 over TLS only", tr.Protocols)
	}
	if tr.HTTP2 == nil {
		t.Fatal("no HTTP2 config: no health pings")
	}
	if got := tr.HTTP2.SendPingTimeout; got != apns2.ReadIdleTimeout || got <= 0 {
		t.Errorf("SendPingTimeout = %v, want apns2.ReadIdleTimeout (%v)", got, apns2.ReadIdleTimeout)
	}
	if got := tr.HTTP2.PingTimeout; got != 15*time.Second {
		t.Errorf("PingTimeout = %v, want 15s", got)
	}
	if tr.Proxy != nil {
		t.Error("the transport uses a proxy; the x/net one did not")
	}
}
