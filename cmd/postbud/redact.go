package main

import (
	"github.com/digitalpost/postbud/dispatcher/event"
	"log/slog"
	"regexp"
)

// Personal data has types that redact themselves (event.CPR,
// channels.Address). This is the second line: any string or error attribute
// that still holds something shaped like a CPR number, an email address or a
// phone number is masked before it is written.
var (
	emailLike = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`)
	phoneLike = regexp.MustCompile(`\+\d{8,15}\b`)
)

func redactString(s string) string {
	s = event.MaskCPRLike(s)
	s = emailLike.ReplaceAllString(s, "[email]")
	return phoneLike.ReplaceAllString(s, "[phone]")
}

// keptKeys are attributes that hold provider or message ids, never
// personal data: an SMTP Message-ID looks like an address but must stay
// matchable with the MTA's logs.
var keptKeys = map[string]bool{"message_id": true, "provider_id": true, "delivery_id": true, "task_id": true}

func redactAttr(_ []string, a slog.Attr) slog.Attr {
	if keptKeys[a.Key] {
		return a
	}
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); len(s) >= 8 {
			a.Value = slog.StringValue(redactString(s))
		}
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			a.Value = slog.StringValue(redactString(err.Error()))
		}
	}
	return a
}
