package sms

import (
	"fmt"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/gsm7"
)

// Text renders the SMS text of an alert: the shared headline and the
// sentence pointing to the mailbox, normalised towards GSM 03.38 (gsm7.Normalize). When the
// text needs more than maxParts segments it is shortened: a sender-supplied
// notification gives way to the generic text, then a list of several
// senders gives way to their count. A text that is still too long is a
// Permanent error.
func Text(a channels.Alert, maxParts int) (string, error) {
	if maxParts < 1 {
		maxParts = 1
	}
	readAt := channels.ReadAt(a)
	candidates := []string{channels.Headline(a) + " " + readAt}
	if a.Notification != "" {
		generic := a
		generic.Notification = ""
		candidates = append(candidates, channels.Headline(generic)+" "+readAt)
	}
	if len(a.Senders) > 1 {
		candidates = append(candidates, countHeadline(a)+" "+readAt)
	}
	var segments int
	for _, c := range candidates {
		t := gsm7.Normalize(c)
		if segments = gsm7.Segments(t); segments <= maxParts {
			return t, nil
		}
	}
	return "", channels.Fail(channels.Permanent, "text too long",
		fmt.Errorf("sms: text needs %d segments, MaxParts is %d", segments, maxParts))
}

// countHeadline is the headline of a coalesced alert with the list of
// senders replaced by their count.
func countHeadline(a channels.Alert) string {
	letters := max(a.Count, len(a.Senders))
	if a.Language == "en" {
		return fmt.Sprintf("You have %d new letters in Digital Post from %d senders.", letters, len(a.Senders))
	}
	return fmt.Sprintf("Du har %d nye breve i Digital Post fra %d afsendere.", letters, len(a.Senders))
}
