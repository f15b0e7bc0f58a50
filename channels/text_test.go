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

// TestCodeTexts: a confirmation code's alert is the fixed text with the
// code and the mailbox URL, whatever else the alert holds (no sender, no
// letter), in each language, and it fits one SMS.
func TestCodeTexts(t *testing.T) {
	for _, tt := range []struct{ lang, title, text string }{
		{"da", "Din kode til Digital Post",
			"Din kode til at bekræfte denne adresse til besked om Digital Post er 042917. Indtast den på https://www.borger.dk/digitalpost"},
		{"en", "Your Digital Post code",
			"Your code to confirm this address for Digital Post alerts is 042917. Enter it at https://www.borger.dk/digitalpost"},
	} {
		a := channels.Alert{Code: "042917", Language: tt.lang, MailboxURL: "https://www.borger.dk/digitalpost", Count: 3,
			Senders: []string{"Skattestyrelsen"}, Notification: "Ny post"}
		if got := channels.Title(a); got != tt.title {
			t.Errorf("%s: Title = %q, want %q", tt.lang, got, tt.title)
		}
		if got := channels.Headline(a) + " " + channels.ReadAt(a); got != tt.text {
			t.Errorf("%s: text = %q, want %q", tt.lang, got, tt.text)
		}
		if len([]rune(tt.text)) > 160 {
			t.Errorf("%s: %d characters: more than one SMS", tt.lang, len([]rune(tt.text)))
		}
	}
}
