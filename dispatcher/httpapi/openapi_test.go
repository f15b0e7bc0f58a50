package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/httpapi"
	"github.com/digitalpost/postbud/dispatcher/metrics"
	"github.com/digitalpost/postbud/dispatcher/opsauth"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/rules"
	"github.com/digitalpost/postbud/dispatcher/seal"
	"github.com/digitalpost/postbud/docs"
)

const openAPIBase = "https://postbud.invalid/openapi.json"

// platformKeys are the test API's platform keys.
var platformKeys = map[event.Platform]string{
	event.Core: "core-key-0123456789", event.BorgerDK: "borger-key-0123456789",
	event.DigitalPostApp: "app-key-0123456789", event.EBoks: "eboks-key-0123456789", event.MitDK: "mitdk-key-0123456789",
}

// openAPIDoc is docs/openapi.yaml as JSON values, with a schema compiler
// that knows it.
type openAPIDoc struct {
	root     map[string]any
	compiler *jsonschema.Compiler
}

func loadOpenAPI(t *testing.T) *openAPIDoc {
	t.Helper()
	var root map[string]any
	if err := yaml.Unmarshal(docs.OpenAPI, &root); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if v, _ := root["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("docs/openapi.yaml: openapi %q, want 3.1.x", v)
	}
	raw, err := json.Marshal(root)
	if err != nil {
		t.Fatalf("docs/openapi.yaml as JSON: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(openAPIBase, inst); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &root); err != nil { // JSON numbers and maps throughout
		t.Fatal(err)
	}
	return &openAPIDoc{root: root, compiler: c}
}

// pointer escapes a JSON pointer token.
func pointer(tokens ...string) string {
	var b strings.Builder
	for _, tok := range tokens {
		b.WriteString("/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(tok))
	}
	return b.String()
}

// deref follows a $ref of the document ("#/components/...") and returns
// the object and its pointer.
func (d *openAPIDoc) deref(t *testing.T, obj map[string]any, at string) (map[string]any, string) {
	t.Helper()
	ref, ok := obj["$ref"].(string)
	if !ok {
		return obj, at
	}
	p, ok := strings.CutPrefix(ref, "#")
	if !ok {
		t.Fatalf("%s: $ref %q is not local", at, ref)
	}
	var cur any = d.root
	for _, tok := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%s: $ref %q does not resolve", at, ref)
		}
		cur = m[tok]
	}
	m, ok := cur.(map[string]any)
	if !ok {
		t.Fatalf("%s: $ref %q does not resolve to an object", at, ref)
	}
	return m, p
}

func (d *openAPIDoc) validate(t *testing.T, schemaAt string, body []byte) error {
	t.Helper()
	sch, err := d.compiler.Compile(openAPIBase + "#" + schemaAt)
	if err != nil {
		t.Fatalf("schema %s does not compile: %v", schemaAt, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return sch.Validate(inst)
}

// example is one request the document describes.
type example struct {
	name, method, path string
	body               []byte
	key                string
	reqSchema          string // pointer of the request body's schema, "" without a body
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

// examples returns every example request of the document: each request
// body example, each path parameter example, or one plain request for an
// operation without either. The key is the one its security wants: the
// platform of the event's source (or x-postbud-key), else the admin key.
func (d *openAPIDoc) examples(t *testing.T) []example {
	t.Helper()
	var out []example
	paths := asMap(d.root["paths"])
	names := make([]string, 0, len(paths))
	for p := range paths {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, path := range names {
		item := asMap(paths[path])
		for _, method := range []string{"get", "post", "put", "patch", "delete"} {
			op := asMap(item[method])
			if op == nil {
				continue
			}
			at := pointer("paths", path, method)
			var schemes []string
			for _, req := range op["security"].([]any) {
				for s := range asMap(req) {
					schemes = append(schemes, s)
				}
			}
			keyFor := func(ex map[string]any, body any) string {
				if k, ok := ex["x-postbud-key"].(string); ok {
					return platformKeys[event.Platform(k)]
				}
				switch {
				case slices.Contains(schemes, "platformKey"):
					src, _ := asMap(body)["source"].(string)
					if evs, ok := asMap(body)["events"].([]any); ok && len(evs) > 0 {
						src, _ = asMap(evs[0])["source"].(string)
					}
					if k, ok := platformKeys[event.Platform(src)]; ok {
						return k
					}
					return platformKeys[event.Core]
				case slices.Contains(schemes, "opsKey"):
					return adminKey
				case slices.Contains(schemes, "selfServiceKey"):
					return ssKeys[rules.ContextPublic]
				}
				return ""
			}
			m := strings.ToUpper(method)
			if rb := asMap(op["requestBody"]); rb != nil {
				media := asMap(asMap(rb["content"])["application/json"])
				schemaAt := at + pointer("requestBody", "content", "application/json", "schema")
				exs := asMap(media["examples"])
				for _, n := range sortedKeys(exs) {
					ex := asMap(exs[n])
					body, err := json.Marshal(ex["value"])
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, example{name: m + " " + path + " " + n, method: m, path: path, body: body,
						key: keyFor(ex, ex["value"]), reqSchema: schemaAt})
				}
				if len(exs) == 0 {
					out = append(out, example{name: m + " " + path, method: m, path: path, body: []byte("{}"), key: keyFor(nil, nil)})
				}
				continue
			}
			var params []any
			params = append(params, asSlice(item["parameters"])...)
			params = append(params, asSlice(op["parameters"])...)
			var pathParam map[string]any
			for _, p := range params {
				pm, _ := d.deref(t, asMap(p), at)
				if pm["in"] == "path" {
					pathParam = pm
				}
			}
			if pathParam == nil {
				out = append(out, example{name: m + " " + path, method: m, path: path, key: keyFor(nil, nil)})
				continue
			}
			exs := asMap(pathParam["examples"])
			if len(exs) == 0 {
				t.Errorf("%s %s: the path parameter %v has no examples", m, path, pathParam["name"])
			}
			for _, n := range sortedKeys(exs) {
				v := fmt.Sprint(asMap(exs[n])["value"])
				out = append(out, example{name: m + " " + path + " " + n, method: m,
					path: strings.Replace(path, "{"+pathParam["name"].(string)+"}", v, 1), key: keyFor(nil, nil)})
			}
		}
	}
	return out
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// check validates one answer against the operation: its status must be
// listed, and its body must validate against the schema of its content
// type.
func (d *openAPIDoc) check(t *testing.T, ex example, specPath string, rec *httptest.ResponseRecorder) {
	t.Helper()
	at := pointer("paths", specPath, strings.ToLower(ex.method))
	op := asMap(asMap(asMap(d.root["paths"])[specPath])[strings.ToLower(ex.method)])
	status := fmt.Sprint(rec.Code)
	resp := asMap(asMap(op["responses"])[status])
	if resp == nil {
		t.Errorf("%s: answered %d, which the document does not list for the operation: %s", ex.name, rec.Code, rec.Body)
		return
	}
	resp, respAt := d.deref(t, resp, at+pointer("responses", status))
	content := asMap(resp["content"])
	if len(content) == 0 {
		return
	}
	mt, _, err := mime.ParseMediaType(rec.Header().Get("Content-Type"))
	if err != nil || content[mt] == nil {
		t.Errorf("%s: %d answered with Content-Type %q, the document lists %v", ex.name, rec.Code, rec.Header().Get("Content-Type"), sortedKeys(content))
		return
	}
	if !strings.Contains(mt, "json") {
		return
	}
	if err := d.validate(t, respAt+pointer("content", mt, "schema"), rec.Body.Bytes()); err != nil {
		t.Errorf("%s: the %d body does not match its documented schema: %v\n%s", ex.name, rec.Code, err, rec.Body)
	}
}

// TestOpenAPIExamples runs every example request of docs/openapi.yaml
// against the real handler (real Redis) and checks each answer's status is
// one the document lists for the operation and its body validates against
// the documented schema; example events that were accepted are then worked
// by the real dispatcher so the state and trail examples find their letter.
func TestOpenAPIExamples(t *testing.T) {
	d := loadOpenAPI(t)
	env := redistest.New(t)
	sealer := seal.Ephemeral()
	store := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix, Sealer: sealer})
	t.Cleanup(func() { store.Close() })
	keyer, err := dispatcher.NewKeyer([]byte("test-pseudonymisation-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(env.Client)
	queues := dispatcher.DefaultQueues(env.QueuePrefix)
	disp, err := dispatcher.New(dispatcher.Config{Store: store, Keyer: keyer, Sealer: sealer, Enqueuer: client, Queues: queues,
		MailboxURL: "https://www.borger.dk/digitalpost"})
	if err != nil {
		t.Fatal(err)
	}
	var platforms []httpapi.Platform
	for p, k := range platformKeys {
		platforms = append(platforms, httpapi.Platform{Name: p, KeySHA256: httpapi.HashKey(k)})
	}
	guard, err := opsauth.New([]opsauth.Key{{Name: "anna", Role: opsauth.Admin, SHA256: opsauth.HashKey(adminKey)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	api := httpapi.New(httpapi.Config{Dispatcher: disp, Platforms: platforms, Guard: guard,
		SelfService: []httpapi.SelfService{{Name: "sys", Context: rules.ContextPublic, KeySHA256: httpapi.HashKey(ssKeys[rules.ContextPublic])}},
		SMSReportFunc: func(*http.Request) (httpapi.SMSReport, error) {
			return httpapi.SMSReport{}, fmt.Errorf("%w: no signature", httpapi.ErrBadSignature)
		}})
	reg := metrics.NewRegistry()
	metrics.New(reg)
	api.HandleOps("GET /metrics", metrics.Handler(reg))
	mux := asynq.NewServeMux()
	disp.Register(mux)
	inspector := asynq.NewInspectorFromRedisClient(env.Client)

	exs := d.examples(t)
	if len(exs) < 15 {
		t.Fatalf("only %d examples in docs/openapi.yaml", len(exs))
	}
	// Events first, then the rest: the letters the events bring are
	// worked before their state and trail are asked for.
	slices.SortStableFunc(exs, func(a, b example) int {
		return boolInt(!strings.HasPrefix(a.path, "/v1/events")) - boolInt(!strings.HasPrefix(b.path, "/v1/events"))
	})
	seen := map[string]map[int]bool{}
	worked := false
	for _, ex := range exs {
		if !strings.HasPrefix(ex.path, "/v1/events") && !worked {
			work(t, inspector, mux, queues)
			worked = true
		}
		specPath := specPathOf(d, ex)
		req := httptest.NewRequest(ex.method, ex.path, bytes.NewReader(ex.body))
		if ex.key != "" {
			req.Header.Set("Authorization", "Bearer "+ex.key)
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		d.check(t, ex, specPath, rec)
		if ex.reqSchema != "" && rec.Code < 300 {
			if err := d.validate(t, ex.reqSchema, ex.body); err != nil {
				t.Errorf("%s: accepted by postbud but not by the documented request schema: %v", ex.name, err)
			}
		}
		op := ex.method + " " + specPath
		if seen[op] == nil {
			seen[op] = map[int]bool{}
		}
		seen[op][rec.Code] = true
	}
	// The examples show the letter's state and trail, and each kind of
	// answer the events examples promise.
	for op, codes := range map[string][]int{
		"POST /v1/events":                          {202, 400, 403},
		"POST /v1/events/batch":                    {202, 400},
		"POST /v1/contacts/confirm":                {400, 410},
		"POST /v1/contacts/resend":                 {400, 404},
		"GET /v1/messages/{message_id}/state":      {200},
		"GET /v1/messages/{message_id}/trail":      {200},
		"POST /v1/ops/platforms/{platform}/enable": {200, 404},
		"POST /v1/self-service/exemption":          {200, 400, 403},
		"GET /openapi.yaml":                        {200},
		"GET /metrics":                             {200},
	} {
		for _, c := range codes {
			if !seen[op][c] {
				t.Errorf("%s: no example answered %d (seen %v)", op, c, seen[op])
			}
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// specPathOf finds the document's path template an example was built from.
func specPathOf(d *openAPIDoc, ex example) string {
	for p := range asMap(d.root["paths"]) {
		re := "^" + strings.NewReplacer("{message_id}", "[^/]+", "{platform}", "[^/]+").Replace(p) + "$"
		if ok, _ := regexpMatch(re, ex.path); ok {
			return p
		}
	}
	return ex.path
}

// work runs the queued tasks through the real dispatcher's handlers until
// none is left (the handlers may queue more).
func work(t *testing.T, inspector *asynq.Inspector, mux *asynq.ServeMux, queues dispatcher.Queues) {
	t.Helper()
	for round := 0; round < 10; round++ {
		n := 0
		for _, q := range []string{queues.Urgent, queues.Normal, queues.Bulk} {
			for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
				inspector.ListPendingTasks, inspector.ListScheduledTasks} {
				tasks, err := list(q)
				if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
					t.Fatal(err)
				}
				for _, ti := range tasks {
					n++
					// Failures are the dispatcher's business; the trail records them.
					_ = mux.ProcessTask(context.Background(), asynq.NewTask(ti.Type, ti.Payload))
					if err := inspector.DeleteTask(q, ti.ID); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if n == 0 {
			return
		}
	}
}

// TestOpenAPIServed: GET /openapi.yaml answers the embedded document.
func TestOpenAPIServed(t *testing.T) {
	env := redistest.New(t)
	api := newAPI(t, env.Client, env.Prefix)
	rec := call(api, "GET", "/openapi.yaml", "", "")
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), docs.OpenAPI) ||
		rec.Header().Get("Content-Type") != "application/yaml" {
		t.Errorf("GET /openapi.yaml: %d %q, %d bytes", rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
	}
}

func regexpMatch(re, s string) (bool, error) { return regexp.MatchString(re, s) }

// devKeys are postbud dev's platform keys (cmd/postbud/dev.go), as
// docs/events.md tells readers to use them.
var devKeys = map[event.Platform]string{
	event.Core: "dev-core-platform-key", event.BorgerDK: "dev-borger-dk-platform-key",
	event.DigitalPostApp: "dev-digital-post-app-platform-key", event.EBoks: "dev-e-boks-platform-key",
	event.MitDK: "dev-mit-dk-platform-key",
}

// eventsMDRedate is the sed expression docs/events.md §4 gives to set an
// example's times to now, and the same in Go.
const eventsMDRedate = `s/\"20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2})\"/\"$NOW\"/g`

var anyTime = regexp.MustCompile(`"[0-9]{4}-[0-9]{2}-[0-9]{2}T[^"]*"`)

var redate = regexp.MustCompile(`"20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2})"`)

// TestEventsMDExamples sends every event example of docs/events.md §4,
// its times set to now as the section says, with postbud dev's key of
// its source, and expects each to be accepted; dev must have every key.
func TestEventsMDExamples(t *testing.T) {
	md, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	devGo, err := os.ReadFile("../../cmd/postbud/dev.go")
	if err != nil {
		t.Fatal(err)
	}
	text := string(md)
	if !strings.Contains(text, eventsMDRedate) {
		t.Errorf("docs/events.md §4 no longer gives the sed expression %s", eventsMDRedate)
	}
	for p, k := range devKeys {
		if !strings.Contains(string(devGo), `"`+k+`"`) || !strings.Contains(text, "`"+k+"`") {
			t.Errorf("the dev key of %s, %s, is not in cmd/postbud/dev.go and docs/events.md", p, k)
		}
	}
	start, end := strings.Index(text, "\n## 4. "), strings.Index(text, "\n## 5. ")
	if start < 0 || end < start {
		t.Fatal("docs/events.md: no §4")
	}
	env := redistest.New(t)
	api := newAPIConfig(t, env.Client, env.Prefix, func(c *httpapi.Config) {
		c.Platforms = nil
		for p, k := range devKeys {
			c.Platforms = append(c.Platforms, httpapi.Platform{Name: p, KeySHA256: httpapi.HashKey(k)})
		}
	})
	now := time.Now().UTC().Format("2006-01-02T15:04:05Z")
	blocks := strings.Split(text[start:end], "```json\n")[1:]
	if len(blocks) < 7 {
		t.Fatalf("docs/events.md §4: %d JSON examples, want at least 7 (one per type; unread is read's shape)", len(blocks))
	}
	for _, b := range blocks {
		body := redate.ReplaceAllString(b[:strings.Index(b, "```")], `"`+now+`"`)
		// Every time is now, or the letter would be accepted and expire.
		for _, ts := range anyTime.FindAllString(body, -1) {
			if ts != `"`+now+`"` {
				t.Errorf("docs/events.md §4: the sed expression leaves the time %s in an example", ts)
			}
		}
		var ev struct {
			ID     string         `json:"id"`
			Source event.Platform `json:"source"`
		}
		if err := json.Unmarshal([]byte(body), &ev); err != nil {
			t.Errorf("docs/events.md §4 example is not JSON: %v\n%s", err, body)
			continue
		}
		rec := call(api, "POST", "/v1/events", devKeys[ev.Source], body)
		if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), `"status":"accepted"`) {
			t.Errorf("docs/events.md §4 example %s (source %s): %d %s", ev.ID, ev.Source, rec.Code, rec.Body)
		}
	}
}
