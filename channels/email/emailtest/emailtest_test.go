package emailtest_test

import (
	"context"
	"net"
	"net/textproto"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/digitalpost/postbud/channels/email/emailtest"
)

// step is one command and the reply code it must get.
type step struct {
	send string
	code int
}

func converse(t *testing.T, srv *emailtest.Server, steps []step) {
	t.Helper()
	c, err := textproto.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	for _, s := range steps {
		if err := c.PrintfLine("%s", s.send); err != nil {
			t.Fatal(err)
		}
		if code, msg, err := c.ReadResponse(s.code); err != nil {
			t.Fatalf("%q: got %d %s, want %d", s.send, code, msg, s.code)
		}
	}
}

func TestRawConversation(t *testing.T) {
	srv := emailtest.New(t)
	converse(t, srv, []step{
		{"MAIL FROM:<a@example.org>", 503}, // before HELO
		{"HELO client.example", 250},
		{"NOOP", 250},
		{"RCPT TO:<b@example.org>", 503}, // before MAIL
		{"MAIL FROM:<a@example.org>", 250},
		{"RCPT TO:<b@example.org>", 250},
		{"RSET", 250},
		{"DATA", 503}, // RSET dropped the transaction
		{"MAIL FROM:<a@example.org> BODY=8BITMIME", 250},
		{"RCPT TO:<b@example.org>", 250},
		{"RCPT TO:<c@example.org>", 250},
		{"DATA", 354},
		{"Subject: dots\r\n\r\n..leading dot\r\n.", 250},
		{"QUIT", 221},
	})
	msgs, err := srv.WaitMessages(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	got := struct {
		From string
		To   []string
		Data string
		Body string
	}{msgs[0].From, msgs[0].To, string(msgs[0].Data), msgs[0].Parts[0].Text()}
	want := struct {
		From string
		To   []string
		Data string
		Body string
	}{"a@example.org", []string{"b@example.org", "c@example.org"}, "Subject: dots\r\n\r\n.leading dot\r\n", ".leading dot\n"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recorded message (-want +got):\n%s", diff)
	}
}

func TestAuthRequired(t *testing.T) {
	srv := emailtest.New(t, emailtest.WithAuth("u", "p"))
	converse(t, srv, []step{
		{"EHLO client.example", 250},
		{"MAIL FROM:<a@example.org>", 530},
		{"AUTH PLAIN AHUAd3Jvbmc=", 535}, // \0u\0wrong
		{"AUTH PLAIN AHUAcA==", 235},     // \0u\0p
		{"MAIL FROM:<a@example.org>", 250},
	})
}

func TestFailNextTimes(t *testing.T) {
	srv := emailtest.New(t)
	srv.Greylist(emailtest.StageRcpt, 2)
	converse(t, srv, []step{
		{"EHLO client.example", 250},
		{"MAIL FROM:<a@example.org>", 250},
		{"RCPT TO:<b@example.org>", 451},
		{"RCPT TO:<b@example.org>", 451},
		{"RCPT TO:<b@example.org>", 250},
	})
}

// TestCloseEndsStalledSessions: Close returns although a session is
// stalled and its client still connected.
func TestCloseEndsStalledSessions(t *testing.T) {
	srv := emailtest.New(t)
	srv.Stall(emailtest.StallAfterGreeting)
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := srv.WaitStalled(ctx, 1); err != nil {
		t.Fatalf("WaitStalled: %v", err)
	}
	closed := make(chan struct{})
	go func() {
		srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close did not return")
	}
	if n := srv.Connections(); n != 1 {
		t.Errorf("Connections = %d, want 1", n)
	}
}

func TestWaitMessagesHonoursCtx(t *testing.T) {
	srv := emailtest.New(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := srv.WaitMessages(ctx, 1); err != context.Canceled {
		t.Errorf("WaitMessages = %v, want context.Canceled", err)
	}
}
