package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/digitalpost/postbud/config"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/publish"
	"github.com/digitalpost/postbud/dispatcher/rules"
)

func envOr(getenv func(string) string, k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}

// humanTimeLayout is how postbud shows a time to people (trace, the dev
// page, the trail's reasons): Copenhagen local time with its zone
// abbreviation.
const humanTimeLayout = "2006-01-02 15:04:05 MST"

// humanTime formats t for people: Copenhagen local time with its zone.
func humanTime(t time.Time) string { return rules.LocalTime(t, humanTimeLayout) }

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// emit sends one event (or a batch) from a file, stdin or flags.
func emit(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("emit", "[FILE|-]", "Sends one event (a JSON object) or a batch ({\"events\": [...]}) from FILE or stdin,\n"+
		"or a letter built with -letter. Prints the letter's message id only once the event was accepted.")
	url := fs.String("url", envOr(getenv, "POSTBUD_URL", "http://127.0.0.1:8080"), "postbud's HTTP base URL (env POSTBUD_URL)")
	key := fs.String("key", getenv("POSTBUD_EMIT_KEY"), "the platform API key (env POSTBUD_EMIT_KEY)")
	redisURL := fs.String("redis", "", "enqueue straight into this Redis (redis://…) with the Go client instead of HTTP")
	queuePrefix := fs.String("queue-prefix", envOr(getenv, "POSTBUD_QUEUE_PREFIX", ""), "postbud's queue prefix, with -redis")
	letter := fs.String("letter", "", "build a message.received event for this CPR number instead of reading JSON")
	sender := fs.String("sender", "Skattestyrelsen", "with -letter: the sender's name")
	kind := fs.String("kind", "public", "with -letter: public, public-special or private")
	priority := fs.String("priority", "normal", "with -letter: urgent, normal or bulk")
	source := fs.String("source", "core", "with -letter: the event's source platform")
	if err := parse(fs, args, 1, stdout, stderr); err != nil {
		return err
	}
	if *letter != "" && fs.NArg() > 0 {
		return usageError{errors.New("emit: -letter builds the event; give no FILE with it")}
	}
	var body []byte
	// msgID is the letter -letter built; it is printed once the event
	// is accepted, not before: a failed emit sent nothing to trace.
	var msgID string
	accepted := func() {
		if msgID != "" {
			fmt.Fprintf(stderr, "message_id %s (postbud trace %s)\n", msgID, msgID)
		}
	}
	switch {
	case *letter != "":
		msgID = newUUID()
		ev := map[string]any{"id": "emit-" + newUUID(), "type": "message.received",
			"occurred_at": time.Now().UTC().Format(time.RFC3339Nano), "source": *source,
			"data": map[string]any{"message_id": msgID, "recipient": map[string]any{"cpr": *letter},
				"sender": map[string]any{"id": "emit", "name": *sender, "kind": *kind}, "priority": *priority}}
		body, _ = json.Marshal(ev)
	case fs.NArg() == 0 || fs.Arg(0) == "-":
		b, err := io.ReadAll(io.LimitReader(stdin, 8<<20))
		if err != nil {
			return err
		}
		body = b
	default:
		b, err := os.ReadFile(fs.Arg(0))
		if err != nil {
			return err
		}
		body = b
	}
	body = bytes.TrimSpace(body)
	batch := bytes.Contains(body[:min(len(body), 64)], []byte(`"events"`))

	if *redisURL != "" {
		cfg, err := config.Load(func(k string) string {
			switch k {
			case "POSTBUD_REDIS_URL":
				return *redisURL
			case "POSTBUD_PSEUDONYM_KEY", "POSTBUD_SEAL_KEY":
				return strings.Repeat("x", 32) // not used: only the Redis settings are read
			case "POSTBUD_OPS_KEY", "POSTBUD_KEY_CORE":
				return "unused-by-emit-000"
			}
			return ""
		})
		if err != nil {
			return err
		}
		p := publish.New(redisConnOpt(cfg.Redis), *queuePrefix)
		defer p.Close()
		if batch {
			return emitBatch(ctx, p, body, stdout)
		}
		dup, err := p.Publish(ctx, body)
		if err != nil {
			return err
		}
		status := "accepted"
		if dup {
			status = "duplicate"
		}
		fmt.Fprintf(stdout, "{\"status\":%q}\n", status)
		accepted()
		return nil
	}
	if *key == "" {
		return errors.New("emit: a platform key is needed: -key or POSTBUD_EMIT_KEY")
	}
	path := "/v1/events"
	if batch {
		path = "/v1/events/batch"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(*url, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+*key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	stdout.Write(out)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("emit: %s", resp.Status)
	}
	accepted()
	return nil
}

// emitBatch enqueues a batch ({"events": [...]}) with p and prints one
// answer per event, in order, as POST /v1/events/batch answers:
// {"results": [{"id", "status", "errors"}]}, status accepted, duplicate,
// invalid (each bad field named; forbidden ones too, as Publish refuses
// them) or unavailable (the enqueue failed: emit then fails too).
func emitBatch(ctx context.Context, p *publish.Publisher, body []byte, stdout io.Writer) error {
	var b struct {
		Events []json.RawMessage `json:"events"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return fmt.Errorf("emit: the batch must be {\"events\": [ ... ]}: %w", err)
	}
	if len(b.Events) == 0 {
		return errors.New("emit: the batch is empty")
	}
	raws := make([][]byte, len(b.Events))
	for i, ev := range b.Events {
		raws[i] = ev
	}
	type result struct {
		ID     string             `json:"id,omitempty"`
		Status string             `json:"status"`
		Errors []event.FieldError `json:"errors,omitempty"`
	}
	out := make([]result, len(raws))
	var failed error
	for i, r := range p.PublishBatch(ctx, raws) {
		var id struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(raws[i], &id) // an event without one is invalid: no id to show
		out[i].ID = id.ID
		var ve *event.ValidationError
		switch {
		case r.Duplicate:
			out[i].Status = "duplicate"
		case errors.As(r.Err, &ve):
			out[i].Status, out[i].Errors = "invalid", ve.Errors
		case r.Err != nil:
			out[i].Status = "unavailable"
			failed = fmt.Errorf("emit: enqueueing event %d: %w", i, r.Err)
		default:
			out[i].Status = "accepted"
		}
	}
	if err := json.NewEncoder(stdout).Encode(map[string]any{"results": out}); err != nil {
		return err
	}
	return failed
}

// trace prints a letter's delivery trail from the ops API.
func trace(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace", "<message-id>", "Prints a letter's delivery trail from the ops API (times in Copenhagen local time).")
	url := fs.String("url", envOr(getenv, "POSTBUD_URL", "http://127.0.0.1:8080"), "postbud's HTTP base URL (env POSTBUD_URL)")
	key := fs.String("key", getenv("POSTBUD_OPS_KEY"), "the ops key (env POSTBUD_OPS_KEY)")
	asJSON := fs.Bool("json", false, "print the trail as JSON")
	if err := parse(fs, args, 1, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.SetOutput(stderr)
		fs.Usage()
		return usageError{errors.New("trace: a message id is required")}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*url, "/")+"/v1/messages/"+fs.Arg(0)+"/trail", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+*key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("trace: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if *asJSON {
		_, err = stdout.Write(b)
		return err
	}
	var t struct {
		MessageID string               `json:"message_id"`
		Trail     []dispatcher.Outcome `json:"trail"`
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "letter %s: %d entries\n", t.MessageID, len(t.Trail))
	for _, o := range t.Trail {
		line := fmt.Sprintf("%s  %-6s %-9s", humanTime(o.At), o.Channel, o.Result)
		for _, kv := range [][2]string{{"reason", o.Reason}, {"kind", o.Kind}, {"code", o.Code}, {"provider_id", o.ProviderID}, {"app", o.App}, {"holder", o.Holder}, {"delivery", o.DeliveryID}} {
			if kv[1] != "" {
				line += " " + kv[0] + "=" + kv[1]
			}
		}
		if o.Attempt > 0 {
			line += fmt.Sprintf(" attempt=%d", o.Attempt)
		}
		fmt.Fprintln(stdout, line)
	}
	return nil
}
