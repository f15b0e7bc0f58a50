package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"regexp"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
	gosmtp "github.com/wneessen/go-mail/smtp"

	"github.com/digitalpost/postbud/channels"
)

// stage is where in the conversation an error happened.
type stage int

const (
	stageConnect stage = iota // dial, greeting, EHLO, STARTTLS, AUTH, QUIT of a Ping
	stageSend                 // the message: MAIL, RCPT, DATA (refined from the SendError)
	stageMail
	stageRcpt
	stageData
)

var stageNames = map[stage]string{
	stageConnect: "connect", stageSend: "send", stageMail: "MAIL FROM",
	stageRcpt: "RCPT TO", stageData: "DATA",
}

// escInText finds an enhanced status code right after a reply code, for
// servers that do not advertise ENHANCEDSTATUSCODES (go-mail then reports
// none). textproto.Error quotes the reply text: `550 "5.1.1 …"`.
var escInText = regexp.MustCompile(`\b([2-5]\d\d)[ -]"?([245]\.\d{1,3}\.\d{1,3})\b`)

// escAtStart finds an enhanced status code at the start of a reply text.
var escAtStart = regexp.MustCompile(`^([245]\.\d{1,3}\.\d{1,3})\b`)

// classify turns an error of one conversation into a *channels.Error whose
// text holds no reply text, so no recipient address.
func (s *Sender) classify(ctx context.Context, conn *boundedConn, st stage, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxError(ctxErr)
	}
	timedOut := (conn != nil && conn.timedOut()) || errors.Is(err, context.DeadlineExceeded) || isTimeout(err)

	var se *gomail.SendError
	if errors.As(err, &se) {
		return classifySendError(se, timedOut)
	}

	var te *textproto.Error
	if errors.As(err, &te) {
		esc := ""
		if m := escAtStart.FindStringSubmatch(te.Msg); m != nil {
			esc = m[1]
		}
		return replyError(st, te.Code, esc)
	}

	if code, ok := misconfiguration(err); ok {
		// These errors are go-mail's or crypto/tls's own: no reply text.
		return channels.Fail(channels.Misconfigured, code, fmt.Errorf("send email: %s: %w", stageNames[st], err))
	}
	if timedOut {
		return channels.Fail(channels.Transient, "timeout", fmt.Errorf("send email: %s: timed out", stageNames[st]))
	}
	var ne net.Error
	if errors.As(err, &ne) {
		// Network errors name the server's address, never the recipient's.
		return channels.Fail(channels.Transient, "network", fmt.Errorf("send email: %s: %w", stageNames[st], err))
	}
	return channels.Fail(channels.Transient, "", fmt.Errorf("send email: %s: connection failed", stageNames[st]))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// classifySendError classifies go-mail's error for MAIL, RCPT or DATA. Its
// Error() names the recipient, so only its reason and codes are used.
func classifySendError(se *gomail.SendError, timedOut bool) error {
	st := stageSend
	switch se.Reason {
	case gomail.ErrSMTPMailFrom:
		st = stageMail
	case gomail.ErrSMTPRcptTo:
		st = stageRcpt
	case gomail.ErrSMTPData, gomail.ErrSMTPDataClose, gomail.ErrWriteContent:
		st = stageData
	case gomail.ErrGetSender, gomail.ErrGetRcpts, gomail.ErrNoUnencoded:
		return channels.Fail(channels.Permanent, "message", fmt.Errorf("send email: %s", se.Reason))
	}
	code := se.ErrorCode()
	if code == 0 {
		if timedOut {
			return channels.Fail(channels.Transient, "timeout", fmt.Errorf("send email: %s: timed out", se.Reason))
		}
		return channels.Fail(channels.Transient, "network", fmt.Errorf("send email: %s: connection failed", se.Reason))
	}
	esc := se.EnhancedStatusCode()
	if esc == "" {
		// Read the code from the text, keeping nothing else of it.
		for _, m := range escInText.FindAllStringSubmatch(se.Error(), -1) {
			if m[1] == fmt.Sprint(code) {
				esc = m[2]
				break
			}
		}
	}
	return replyError(st, code, esc)
}

// replyError classifies an SMTP reply code met at stage st.
func replyError(st stage, code int, esc string) error {
	err := fmt.Errorf("send email: %s: server replied %s", stageNames[st], replyCode(code, esc))
	// A reply code is the server's refusal: it did not take the message
	// (see channels.Unsure).
	if kind := replyKind(st, code, esc); kind != channels.Throttled {
		return channels.Refused(channels.Fail(kind, replyCode(code, esc), err))
	}
	return channels.Throttle(throttleWait, replyCode(code, esc), err)
}

// throttleWait is how long a send the server throttled waits: SMTP has no
// Retry-After, and relays' rate limits are counted in minutes.
const throttleWait = time.Minute

func replyKind(st stage, code int, esc string) channels.Kind {
	switch {
	case code == 421 && strings.HasPrefix(esc, "4.7."):
		// 421 4.7.x: the server limits our rate and closes the
		// connection: wait, without spending a retry. (A per-recipient
		// 450/451 4.7.1 is usually greylisting: retried as transient.)
		return channels.Throttled
	case code >= 400 && code < 500:
		return channels.Transient
	case code < 400 || code >= 600:
		// Not a failure reply where one was expected: a broken server.
		return channels.Transient
	case code == 530 || code == 534 || code == 535 || esc == "5.7.8":
		return channels.Misconfigured
	case st == stageConnect || st == stageMail:
		// Nothing of the alert was sent yet: the server refuses us (our
		// host, HELO, TLS, credentials or sender address), not the alert.
		return channels.Misconfigured
	case (code == 550 || code == 551 || code == 553) && (esc == "5.1.1" || esc == "5.1.2" || esc == "5.1.10"):
		return channels.Gone
	default:
		return channels.Permanent
	}
}

// misconfiguration recognises the errors of a setup that cannot work until
// someone changes it.
func misconfiguration(err error) (code string, ok bool) {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		record           tls.RecordHeaderError
		alert            tls.AlertError
	)
	switch {
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &invalid),
		errors.As(err, &verification):
		return "tls-certificate", true
	case errors.As(err, &record), errors.As(err, &alert):
		return "tls-handshake", true
	case errors.Is(err, gosmtp.ErrUnencrypted), errors.Is(err, gosmtp.ErrWrongHostname):
		return "auth-unencrypted", true
	case errors.Is(err, gomail.ErrNoSupportedAuthDiscovered), errors.Is(err, gomail.ErrPlainAuthNotSupported),
		errors.Is(err, gomail.ErrLoginAuthNotSupported):
		return "auth-unsupported", true
	}
	// go-mail has no sentinel for these two; its wording is pinned by the
	// tests ("mandatory TLS without STARTTLS", "AUTH not offered").
	msg := err.Error()
	switch {
	case strings.Contains(msg, "does not support STARTTLS"):
		return "starttls-unavailable", true
	case strings.Contains(msg, "server does not support SMTP AUTH"):
		return "auth-unavailable", true
	}
	return "", false
}
