package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/hibiken/asynq"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Confirmed contact addresses. An alert to an address nobody confirmed
// tells a stranger which authority wrote to someone, so alerts go only to a
// confirmed email or mobile. postbud runs the confirmation, since it owns
// the channels: a new or changed address in contact.updated gets a
// one-time code through its own channel (a task of its own, whose payload
// names the citizen and the channel only: the address is looked up and the
// code made when it runs), and the platform's UI submits what the citizen
// typed (POST /v1/contacts/confirm). Codes are kept only as a MAC
// (Keyer.CodeMAC) and never logged.

// The confirmation rules.
const (
	// CodeTTL is how long a code is valid.
	CodeTTL = 15 * time.Minute
	// CodeAttempts is how many codes may be tried against one code.
	CodeAttempts = 5
	// CodesPerHour is how many codes an address may be sent in an hour
	// (a contact.updated's and the resends together).
	CodesPerHour = 3
	// CodeDigits is a code's length.
	CodeDigits = 6
)

// confirmTask is the payload of a TypeConfirm task: who and which channel,
// never the address or the code.
type confirmTask struct {
	Citizen string `json:"c"`
	Channel string `json:"ch"`
	// Replace says a resend: the new code replaces a pending one.
	Replace bool `json:"r,omitempty"`
}

// codeChannels are the channels whose addresses are confirmed.
var codeChannels = [...]channels.Name{channels.Email, channels.SMS}

// IsCodeChannel reports whether ch is a channel whose address is confirmed
// with a code (email, sms).
func IsCodeChannel(ch channels.Name) bool { return ch == channels.Email || ch == channels.SMS }

// alertAddress returns the citizen's address on a code channel and whether it
// is confirmed.
func (c *Citizen) alertAddress(ch channels.Name) (string, bool) {
	switch ch {
	case channels.Email:
		return c.Email, c.EmailConfirmed
	case channels.SMS:
		return c.Mobile, c.MobileConfirmed
	}
	return "", false
}

// NotConfirmed is the trail's reason for an alert not sent to an
// unconfirmed address: "email not confirmed", "sms not confirmed".
func NotConfirmed(ch channels.Name) string { return string(ch) + " not confirmed" }

// contact applies contact.updated. A new address that is not confirmed
// gets a code: the code task is enqueued after the write and the event is
// marked after the enqueue, so a crash in between re-runs both (the write
// is idempotent by last writer wins; the task's id is the event's).
func (d *Dispatcher) contact(ctx context.Context, ev *event.Event) error {
	x := ev.Contact
	mark := EventRef{Citizen: ev.CitizenKey, ID: ev.ID}
	w := ContactWrite{Citizen: ev.CitizenKey, Contact: x, At: ev.OccurredAt, Confirmed: x.Confirmed, Mark: mark}
	var codes []channels.Name
	for _, ch := range codeChannels {
		v := x.Email
		fp := &w.EmailFingerprint
		if ch == channels.SMS {
			v, fp = x.Mobile, &w.MobileFingerprint
		}
		if v == nil || *v == "" {
			continue
		}
		*fp = d.cfg.Keyer.AddressFingerprint(ch, *v)
		if _, ok := d.cfg.Senders[ch]; ok && !x.Confirmed {
			codes = append(codes, ch)
		}
	}
	if len(codes) == 0 {
		_, err := d.cfg.Store.UpdateContact(ctx, w)
		return err
	}
	if seen, err := d.cfg.Store.Seen(ctx, mark); err != nil || seen {
		return err
	}
	w.Mark = EventRef{}
	applied, err := d.cfg.Store.UpdateContact(ctx, w)
	if err != nil {
		return err
	}
	if applied {
		for _, ch := range codes {
			// The task finds the address confirmed already (unchanged)
			// or a code pending, and then sends nothing.
			id := "cc:" + d.cfg.Keyer.EventID(ev.CitizenKey+"|"+string(ch)+"|"+ev.ID)
			if err := d.enqueueCode(ctx, confirmTask{Citizen: ev.CitizenKey, Channel: string(ch)}, id); err != nil {
				return err
			}
		}
	}
	return d.cfg.Store.Mark(ctx, mark)
}

func (d *Dispatcher) enqueueCode(ctx context.Context, p confirmTask, id string) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return d.enqueue(ctx, newTask(TypeConfirm, b, d.cfg.Queues, taskArgs{id: id, sendTimeout: d.cfg.SendTimeout}))
}

// newCode returns a code of CodeDigits digits from crypto/rand.
func newCode() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%06d", n.Int64()), nil
}

// HandleConfirm makes a confirmation code for the citizen's registered
// address on the task's channel and sends it there: a fixed text with the
// code and the mailbox URL. Nothing is sent when the address is gone,
// confirmed, has a valid code pending (unless a resend), or had its
// CodesPerHour codes. A failed send is retried with a new code that
// replaces the old one and spends no further request.
func (d *Dispatcher) HandleConfirm(ctx context.Context, t *asynq.Task) error {
	var p confirmTask
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.Citizen == "" || !IsCodeChannel(channels.Name(p.Channel)) {
		return fmt.Errorf("confirm task payload: %w", errors.Join(err, asynq.SkipRetry))
	}
	ch := channels.Name(p.Channel)
	log := d.log.With("channel", ch, "task_id", taskID(ctx))
	if _, ok := d.cfg.Senders[ch]; !ok {
		log.ErrorContext(ctx, "no confirmation code sent: the channel is not configured")
		return nil
	}
	v, err := d.cfg.Store.Load(ctx, p.Citizen, "")
	if err != nil {
		return err
	}
	c := v.Citizen
	// The store decides whether this address gets a code (IssueCode):
	// it is still the registered one, not confirmed, and within its limits.
	addr, _ := c.alertAddress(ch)
	code, err := newCode()
	if err != nil {
		return err
	}
	fp := d.cfg.Keyer.AddressFingerprint(ch, addr)
	issued, err := d.cfg.Store.IssueCode(ctx, CodeWrite{Citizen: p.Citizen, Channel: ch, Fingerprint: fp,
		MAC: d.cfg.Keyer.CodeMAC(p.Citizen, ch, fp, code), Issuer: taskID(ctx), At: d.cfg.Now(), Replace: p.Replace})
	if err != nil {
		return err
	}
	if issued != CodeIssued {
		log.InfoContext(ctx, "no confirmation code sent", "reason", issued.String())
		return nil
	}
	dl := delivery{id: d.cfg.Keyer.DeliveryID("confirm:"+taskID(ctx)+":"+fp, ch, addr), to: channels.Address{Channel: ch, Value: addr}}
	lang := c.Language
	if lang == "" {
		lang = "da"
	}
	r := d.send(ctx, c, &Letter{}, dl, retryCount(ctx)+1, func(a *channels.Alert) {
		*a = channels.Alert{DeliveryID: dl.id, Language: lang, Code: code, MailboxURL: d.cfg.MailboxURL, Count: 1,
			Badge: -1, Expires: d.cfg.Now().Add(CodeTTL)}
	})
	if r.err == nil {
		log.InfoContext(ctx, "confirmation code sent")
	}
	return taskError(r.err)
}

func (c CodeIssue) String() string {
	switch c {
	case CodeIssued:
		return "issued"
	case CodePending:
		return "a valid code is pending"
	case CodeLimited:
		return fmt.Sprintf("%d codes in the last hour", CodesPerHour)
	case CodeStale:
		return "the address changed"
	case CodeConfirmed:
		return "confirmed already"
	}
	return "unknown"
}

func (a CodeAnswer) String() string {
	switch a {
	case AnswerConfirmed:
		return "confirmed"
	case AnswerWrong:
		return "wrong code"
	case AnswerExpired:
		return "expired"
	case AnswerTooMany:
		return "too many attempts"
	case AnswerNone:
		return "no code pending"
	}
	return "unknown"
}

// ConfirmAddress checks a code the citizen typed for their registered
// address on ch (email or sms) and answers at once. left is the attempts
// remaining after a wrong code. The code is never logged.
func (d *Dispatcher) ConfirmAddress(ctx context.Context, cpr event.CPR, ch channels.Name, code string) (a CodeAnswer, left int, err error) {
	if !IsCodeChannel(ch) {
		return 0, 0, fmt.Errorf("channel %s has no confirmed address", ch)
	}
	key := d.cfg.Keyer.CitizenKey(cpr)
	v, err := d.cfg.Store.Load(ctx, key, "")
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	// No address, or another than the code went to: the store answers
	// AnswerNone (the code's fingerprint is not the registered one's).
	addr, _ := v.Citizen.alertAddress(ch)
	fp := d.cfg.Keyer.AddressFingerprint(ch, addr)
	a, left, err = d.cfg.Store.CheckCode(ctx, CodeCheck{Citizen: key, Channel: ch, MAC: d.cfg.Keyer.CodeMAC(key, ch, fp, code),
		At: d.cfg.Now()})
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	d.log.InfoContext(ctx, "confirmation code checked", "channel", ch, "answer", a.String())
	return a, left, nil
}

// ResendAnswer is what a resend did.
type ResendAnswer int

// The answers of ResendCode.
const (
	ResendQueued    ResendAnswer = iota + 1 // a new code is on its way
	ResendNoAddress                         // no address is registered on the channel
	ResendConfirmed                         // the address is confirmed already
	ResendLimited                           // CodesPerHour codes in the last hour
)

// ResendCode sends a new code to the citizen's registered, unconfirmed
// address on ch; it replaces any pending code. The hourly limit is taken
// here (ReserveCode), so the answer is exact.
func (d *Dispatcher) ResendCode(ctx context.Context, cpr event.CPR, ch channels.Name) (ResendAnswer, error) {
	if !IsCodeChannel(ch) {
		return 0, fmt.Errorf("channel %s has no confirmed address", ch)
	}
	key := d.cfg.Keyer.CitizenKey(cpr)
	v, err := d.cfg.Store.Load(ctx, key, "")
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	addr, confirmed := v.Citizen.alertAddress(ch)
	_, configured := d.cfg.Senders[ch]
	switch {
	case addr == "" || !configured:
		return ResendNoAddress, nil
	case confirmed:
		return ResendConfirmed, nil
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	id := "cc:" + d.cfg.Keyer.EventID(key+"|"+string(ch)+"|resend|"+string(b[:]))
	ok, err := d.cfg.Store.ReserveCode(ctx, key, ch, d.cfg.Keyer.AddressFingerprint(ch, addr), id, d.cfg.Now())
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !ok {
		return ResendLimited, nil
	}
	if err := d.enqueueCode(ctx, confirmTask{Citizen: key, Channel: string(ch), Replace: true}, id); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	d.log.InfoContext(ctx, "confirmation code resend queued", "channel", ch)
	return ResendQueued, nil
}
