package publish_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/publish"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

func consent(source, platform string) []byte {
	return []byte(`{"id":"cs-1","type":"consent.granted","occurred_at":"2026-11-30T10:00:00Z","source":"` + source +
		`","data":{"cpr":"010190-1234","platform":"` + platform + `"}}`)
}

// The Go client takes the consent events, and refuses a platform changing
// another platform's consent before it is enqueued.
func TestPublishConsent(t *testing.T) {
	env := redistest.New(t)
	p := publish.NewFromRedisClient(env.Client, env.QueuePrefix)
	defer p.Close()
	ctx := t.Context()
	if _, err := p.Publish(ctx, consent("e-boks", "e-boks")); err != nil {
		t.Errorf("e-boks's own consent: %v", err)
	}
	_, err := p.Publish(ctx, consent("e-boks", "mit.dk"))
	var ve *event.ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != "data.platform" ||
		!strings.Contains(ve.Errors[0].Reason, "only its own consent") {
		t.Errorf("e-boks changing mit.dk's consent: %v, want a ValidationError naming data.platform", err)
	}
	// PublishBatch answers each event as Publish would.
	res := p.PublishBatch(ctx, [][]byte{consent("e-boks", "mit.dk"), consent("mit.dk", "mit.dk")})
	if !errors.As(res[0].Err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != "data.platform" {
		t.Errorf("PublishBatch, e-boks changing mit.dk's consent: %+v, want a ValidationError naming data.platform", res[0])
	}
	if res[1].Err != nil || res[1].Duplicate {
		t.Errorf("PublishBatch, mit.dk's own consent: %+v, want accepted", res[1])
	}
}
