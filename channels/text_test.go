package channels_test

import (
	"testing"

	"github.com/digitalpost/postbud/channels"
)

// TestHeadlineEndsSentence: a sender's own text without final punctuation
// is not glued to the fixed ending ("… boligstøtte Read it at …").
func TestHeadlineEndsSentence(t *testing.T) {
	for _, tt := range []struct{ notification, want string }{
		{"Ny besked om din boligstøtte", "Ny besked om din boligstøtte."},
		{"Ny besked om din boligstøtte ", "Ny besked om din boligstøtte."},
		{"Svar senest i morgen!", "Svar senest i morgen!"},
		{"Har du set din årsopgørelse?", "Har du set din årsopgørelse?"},
		{"Ny post.", "Ny post."},
	} {
		a := channels.Alert{Notification: tt.notification, Language: "da", MailboxURL: "https://www.borger.dk/digitalpost", Count: 1}
		if got := channels.Headline(a); got != tt.want {
			t.Errorf("Headline(%q) = %q, want %q", tt.notification, got, tt.want)
		}
	}
}
