package channels

import (
	"fmt"
	"strings"
)

// The texts every channel shares. They name the sender and nothing else of
// the letter; the only link is the configured mailbox URL. Danish first,
// English when the citizen chose it.

// Title is the short title of an alert: an email subject, a push title.
func Title(a Alert) string {
	if a.Code != "" {
		if a.Language == "en" {
			return "Your Digital Post code"
		}
		return "Din kode til Digital Post"
	}
	if a.Language == "en" {
		return "New Digital Post"
	}
	return "Ny Digital Post"
}

// Headline is the one-sentence alert text: the sender's notification text
// when the dispatcher let it through, else the generic text naming the
// sender(s).
func Headline(a Alert) string {
	if a.Code != "" {
		if a.Language == "en" {
			return "Your code to confirm this address for Digital Post alerts is " + a.Code + "."
		}
		return "Din kode til at bekræfte denne adresse til besked om Digital Post er " + a.Code + "."
	}
	if a.Notification != "" {
		return sentence(a.Notification)
	}
	en := a.Language == "en"
	names := joinNames(a.Senders, en)
	if a.Count <= 1 {
		if en {
			return "You have received new Digital Post from " + names + "."
		}
		return "Du har modtaget ny Digital Post fra " + names + "."
	}
	if en {
		return fmt.Sprintf("You have %d new letters in Digital Post from %s.", a.Count, names)
	}
	return fmt.Sprintf("Du har %d nye breve i Digital Post fra %s.", a.Count, names)
}

// sentence ends a sender's own text with a full stop unless it already
// ends with sentence punctuation, so the fixed ending that follows it
// (ReadAt) starts a sentence of its own.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsAny(s[len(s)-1:], ".!?:;") || strings.HasSuffix(s, "…") {
		return s
	}
	return s + "."
}

// ReadAt is the sentence that points to the mailbox.
func ReadAt(a Alert) string {
	switch {
	case a.Code != "" && a.Language == "en":
		return "Enter it at " + a.MailboxURL
	case a.Code != "":
		return "Indtast den på " + a.MailboxURL
	case a.Language == "en" && a.Count > 1:
		return "Read them at " + a.MailboxURL
	case a.Language == "en":
		return "Read it at " + a.MailboxURL
	case a.Count > 1:
		return "Læs dem på " + a.MailboxURL
	}
	return "Læs den på " + a.MailboxURL
}

func joinNames(names []string, en bool) string {
	and := " og "
	if en {
		and = " and "
	}
	switch len(names) {
	case 0:
		if en {
			return "a public sender"
		}
		return "en offentlig afsender"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + and + names[len(names)-1]
}
