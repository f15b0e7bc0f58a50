package paper

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/digitalpost/postbud/channels"
)

// MaxAddressLen is the longest postal address a job may carry, in bytes.
const MaxAddressLen = 1024

// maxJobIDLen is the longest job id: it is also a file name.
const maxJobIDLen = 200

// Job is one print job: print the letter MessageID and mail it to Address.
// It is the print-job contract described in the package documentation.
type Job struct {
	// JobID is the delivery id, the job's idempotency key.
	JobID string `json:"job_id"`
	// MessageID is the letter to print (MeMo messageUUID).
	MessageID string `json:"message_id"`
	// Sender is the display name of the letter's sender.
	Sender string `json:"sender"`
	// Address is the postal address, lines separated by "\n". It is
	// personal data.
	Address string `json:"address"`
	// Language is "da" or "en".
	Language string `json:"language"`
	// CreatedAt is when postbud made the job, in UTC.
	CreatedAt time.Time `json:"created_at"`
}

// LogValue redacts the address: a job logs its ids only.
func (j Job) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("job_id", j.JobID),
		slog.String("message_id", j.MessageID),
		slog.String("address", "[redacted]"),
	)
}

// Validate reports why a print provider could not carry out j, as a
// Permanent *channels.Error whose message never holds the address.
func (j Job) Validate() error {
	var errs []error
	if err := validJobID(j.JobID); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(j.MessageID) == "" {
		errs = append(errs, channels.Fail(channels.Permanent, "empty_message_id", errors.New("job has no message_id")))
	}
	if err := validAddress(j.Address); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func validJobID(id string) error {
	if id == "" || len(id) > maxJobIDLen || id[0] == '.' {
		return channels.Fail(channels.Permanent, "invalid_job_id", fmt.Errorf("job_id must be 1 to %d characters, not starting with '.'", maxJobIDLen))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return channels.Fail(channels.Permanent, "invalid_job_id", errors.New("job_id may hold only ASCII letters, digits, '.', '_' and '-'"))
		}
	}
	return nil
}

// validAddress checks the postal address without ever quoting it.
func validAddress(addr string) error {
	switch {
	case strings.TrimSpace(addr) == "":
		return channels.Fail(channels.Permanent, "empty_address", errors.New("job has no postal address"))
	case len(addr) > MaxAddressLen:
		return channels.Fail(channels.Permanent, "address_too_long", fmt.Errorf("postal address is %d bytes, longer than %d", len(addr), MaxAddressLen))
	case !utf8.ValidString(addr):
		return channels.Fail(channels.Permanent, "invalid_address", errors.New("postal address is not valid UTF-8"))
	}
	for _, r := range addr {
		if r != '\n' && r != '\r' && r != '\t' && !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return channels.Fail(channels.Permanent, "invalid_address", errors.New("postal address holds a control character"))
		}
	}
	return nil
}

// newJob makes the print job for one alert.
func newJob(to channels.Address, a channels.Alert, now time.Time) (Job, error) {
	if a.Count > 1 {
		return Job{}, channels.Fail(channels.Permanent, "coalesced", fmt.Errorf("a print job is one letter, the alert speaks of %d", a.Count))
	}
	j := Job{
		JobID:     a.DeliveryID,
		MessageID: a.MessageID,
		Address:   to.Value,
		Language:  "da",
		CreatedAt: now.UTC(),
	}
	if len(a.Senders) > 0 {
		j.Sender = a.Senders[0]
	}
	if a.Language == "en" {
		j.Language = "en"
	}
	if err := j.Validate(); err != nil {
		return Job{}, err
	}
	return j, nil
}

// encode renders j as one line of JSON, the same bytes in both modes.
func encode(j Job) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, channels.Fail(channels.Permanent, "encode", errors.New("job does not encode as JSON"))
	}
	return b.Bytes(), nil
}
