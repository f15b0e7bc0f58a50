package email

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	netmail "net/mail"
	"net/url"
	"strings"
	texttemplate "text/template"

	gomail "github.com/wneessen/go-mail"

	"github.com/digitalpost/postbud/channels"
)

//go:embed templates/alert.txt.tmpl templates/alert.html.tmpl
var templateFS embed.FS

var (
	textTemplate = texttemplate.Must(texttemplate.ParseFS(templateFS, "templates/alert.txt.tmpl"))
	htmlTemplate = htmltemplate.Must(htmltemplate.ParseFS(templateFS, "templates/alert.html.tmpl"))
)

// view is what the templates see.
type view struct {
	Lang     string // "da" or "en"
	Title    string // channels.Title
	Headline string // channels.Headline
	ReadAt   string // channels.ReadAt, URL included
	// ReadAtLead is ReadAt without the URL, which the HTML turns into the
	// message's one link.
	ReadAtLead string
	URL        string // Alert.MailboxURL
}

func newView(a channels.Alert) view {
	lang := "da"
	if a.Language == "en" {
		lang = "en"
	}
	readAt := channels.ReadAt(a)
	lead, ok := strings.CutSuffix(readAt, a.MailboxURL)
	if !ok {
		lead = readAt + " "
	}
	return view{
		Lang:       lang,
		Title:      channels.Title(a),
		Headline:   channels.Headline(a),
		ReadAt:     readAt,
		ReadAtLead: lead,
		URL:        a.MailboxURL,
	}
}

// render returns the text and HTML bodies of a.
func render(a channels.Alert) (text, html string, err error) {
	v := newView(a)
	var tb, hb bytes.Buffer
	if err := textTemplate.Execute(&tb, v); err != nil {
		return "", "", fmt.Errorf("render text: %w", err)
	}
	if err := htmlTemplate.Execute(&hb, v); err != nil {
		return "", "", fmt.Errorf("render html: %w", err)
	}
	return tb.String(), hb.String(), nil
}

// messageID returns the Message-ID (without angle brackets) of a delivery.
func (s *Sender) messageID(deliveryID string) string {
	return deliveryID + "@" + s.domain
}

// message builds the message for alert a to the address to. Its errors are
// classified and hold no personal data.
func (s *Sender) message(to string, a channels.Alert) (*gomail.Msg, string, error) {
	if !validDeliveryID(a.DeliveryID) {
		return nil, "", channels.Fail(channels.Permanent, "bad-delivery-id",
			fmt.Errorf("send email: DeliveryID is empty or not usable in a Message-ID"))
	}
	if u, err := url.Parse(a.MailboxURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, "", channels.Fail(channels.Permanent, "bad-mailbox-url",
			fmt.Errorf("send email: MailboxURL is not an absolute http(s) URL"))
	}
	rcpt, err := netmail.ParseAddress(to)
	if err != nil || domainOf(rcpt.Address) == "" {
		return nil, "", channels.Fail(channels.Gone, "invalid-address",
			fmt.Errorf("send email: the address is not a valid email address"))
	}
	text, html, err := render(a)
	if err != nil {
		return nil, "", channels.Fail(channels.Permanent, "render", fmt.Errorf("send email: %w", err))
	}

	// No User-Agent / X-Mailer: alerts need not name our software.
	m := gomail.NewMsg(gomail.WithCharset(gomail.CharsetUTF8), gomail.WithEncoding(gomail.EncodingQP),
		gomail.WithNoDefaultUserAgent())
	m.FromMailAddress(s.from)
	// The recipient's display name is never used: only the bare address.
	m.ToMailAddress(&netmail.Address{Address: rcpt.Address})
	m.Subject(channels.Title(a))
	id := s.messageID(a.DeliveryID)
	m.SetMessageIDWithValue(id)
	m.SetDate()
	m.SetGenHeader("Auto-Submitted", "auto-generated")
	m.SetGenHeader(gomail.HeaderContentLang, newView(a).Lang)
	m.SetBodyString(gomail.TypeTextPlain, text)
	m.AddAlternativeString(gomail.TypeTextHTML, html)
	return m, "<" + id + ">", nil
}

// validDeliveryID reports whether id can be the left side of a Message-ID
// (RFC 5322 dot-atom-text).
func validDeliveryID(id string) bool {
	if id == "" || len(id) > 200 || strings.HasPrefix(id, ".") || strings.HasSuffix(id, ".") || strings.Contains(id, "..") {
		return false
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r):
		default:
			return false
		}
	}
	return true
}
