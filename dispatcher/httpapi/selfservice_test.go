package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/httpapi"
	"github.com/digitalpost/postbud/dispatcher/opsauth"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/rules"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// The self-service systems of these tests, one per context.
var ssKeys = map[rules.Context]string{
	rules.ContextPublic:   "selfservice-public-key-0123",
	rules.ContextCourt:    "selfservice-court-key-0123",
	rules.ContextBusiness: "selfservice-business-key-0123",
}

const ssPath = "/v1/self-service/exemption"

// commandCounter counts the Redis commands a client sends.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.n.Add(1); return next(ctx, cmd) }
}
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

// selfServiceAPI is the API with the three systems (rate: 0 = none) on a
// client whose commands are counted, audited to the returned buffer; the
// store seeds citizens under the API's pseudonymisation key.
func selfServiceAPI(t *testing.T, rate float64, now func() time.Time) (*httpapi.API, *lockedBuffer, *commandCounter, func(cpr string, exempt bool, at time.Time)) {
	t.Helper()
	env := redistest.New(t)
	opt, err := redis.ParseURL(env.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	counter := &commandCounter{}
	rdb.AddHook(counter)
	audit := &lockedBuffer{}
	g, err := opsauth.New([]opsauth.Key{{Name: "anna", Role: opsauth.Admin, SHA256: opsauth.HashKey(adminKey)}}, audit)
	if err != nil {
		t.Fatal(err)
	}
	api := newAPIConfig(t, rdb, env.Prefix, func(c *httpapi.Config) {
		c.Guard = g
		if now != nil {
			c.Now = now
		}
		for ctx, k := range ssKeys {
			c.SelfService = append(c.SelfService, httpapi.SelfService{Name: "sys-" + string(ctx), Context: ctx,
				KeySHA256: httpapi.HashKey(k), Rate: rate})
		}
	})
	store := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix, Sealer: seal.Ephemeral()})
	t.Cleanup(func() { store.Close() })
	keyer, err := dispatcher.NewKeyer([]byte("test-pseudonymisation-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	seq := 0
	set := func(cpr string, exempt bool, at time.Time) {
		t.Helper()
		c, err := event.ParseCPR(cpr)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		if _, err := store.SetExemption(context.Background(), dispatcher.ExemptionWrite{Citizen: keyer.CitizenKey(c),
			Exempt: exempt, At: at, Mark: dispatcher.EventRef{Citizen: keyer.CitizenKey(c), ID: "ev-" + string(rune('a'+seq))}}); err != nil {
			t.Fatal(err)
		}
	}
	return api, audit, counter, set
}

// TestSelfServiceContextsTimesExemption: each context asks about an
// exempt, a not exempt, a revoked and an unknown citizen; only the public
// context is released from self-service, and only while exempt; since is
// the grant's time or null; the unknown citizen's answer is byte for byte
// the not exempt one's, found with the same Redis commands; each query
// leaves one audit line with the system, its context and the answer.
func TestSelfServiceContextsTimesExemption(t *testing.T) {
	api, audit, counter, set := selfServiceAPI(t, 0, nil)
	granted := time.Date(2026, 3, 2, 10, 0, 0, 123e6, time.UTC)
	set("010190-1234", true, granted)                    // exempt
	set("150805-4321", false, granted)                   // known, never exempt
	set("311265-2345", true, granted)                    // revoked
	set("311265-2345", false, granted.Add(24*time.Hour)) //
	citizens := []struct {
		name, cpr string
		exempt    bool
	}{
		{"exempt", "010190-1234", true},
		{"not exempt", "150805-4321", false},
		{"revoked", "311265-2345", false},
		{"unknown", "120370-1118", false},
	}
	bodies := map[string]string{}
	commands := map[string]int64{}
	for _, ctx := range rules.Contexts() {
		for _, c := range citizens {
			t.Run(string(ctx)+"/"+c.name, func(t *testing.T) {
				before := counter.n.Load()
				rec := call(api, "POST", ssPath, ssKeys[ctx], `{"cpr":"`+c.cpr+`"}`)
				commands[string(ctx)+c.name] = counter.n.Load() - before
				if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" ||
					rec.Header().Get("Cache-Control") != "no-store" {
					t.Fatalf("%d %q %q: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Header().Get("Cache-Control"), rec.Body)
				}
				var got map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
					t.Fatal(err)
				}
				wantSS := c.exempt && ctx == rules.ContextPublic
				var wantSince any
				if c.exempt {
					wantSince = "2026-03-02T10:00:00.123Z"
				}
				if len(got) != 3 || got["digital_post_exempt"] != c.exempt || got["self_service_exempt"] != wantSS ||
					got["since"] != wantSince {
					t.Errorf("answer %v, want digital_post_exempt %v, self_service_exempt %v, since %v", got, c.exempt, wantSS, wantSince)
				}
				bodies[string(ctx)+"/"+c.name] = rec.Body.String()
				lines := audit.take(t)
				if len(lines) != 1 {
					t.Fatalf("%d audit lines, want 1: %v", len(lines), lines)
				}
				l := lines[0]
				if l["key"] != "sys-"+string(ctx) || l["role"] != "self-service" || l["context"] != string(ctx) ||
					l["route"] != httpapi.SelfServiceRoute || l["status"] != float64(200) || l["time"] == nil ||
					l["digital_post_exempt"] != c.exempt || l["self_service_exempt"] != wantSS || l["since"] != wantSince {
					t.Errorf("audit line %v", l)
				}
			})
		}
		if bodies[string(ctx)+"/unknown"] != bodies[string(ctx)+"/not exempt"] {
			t.Errorf("%s: the unknown citizen's answer %s differs from a known one's %s", ctx,
				bodies[string(ctx)+"/unknown"], bodies[string(ctx)+"/not exempt"])
		}
		if n, m := commands[string(ctx)+"unknown"], commands[string(ctx)+"not exempt"]; n != m || n == 0 {
			t.Errorf("%s: %d Redis commands for the unknown citizen, %d for a known one: want the same", ctx, n, m)
		}
	}
}

// TestSelfServiceKeyOpensNothingElse: a self-service key is refused with
// 403 on every other route (audited under its system's name); a platform
// key and an ops key cannot ask (403); no key or a wrong one gets 401; a
// bad CPR is a 400 naming the field without echoing it; nothing written
// holds the CPR.
func TestSelfServiceKeyOpensNothingElse(t *testing.T) {
	api, audit, _, _ := selfServiceAPI(t, 0, nil)
	key := ssKeys[rules.ContextPublic]
	ev := `{"id":"e1","type":"contact.updated","occurred_at":"2026-11-23T10:00:00Z","source":"core",` +
		`"data":{"cpr":"010190-1234","email":"a@b.dk"}}`
	for _, tc := range []struct {
		name, method, path, key, body string
		code                          int
		who                           string
	}{
		{"event", "POST", "/v1/events", key, ev, 403, "sys-public"},
		{"batch", "POST", "/v1/events/batch", key, `{"events":[` + ev + `]}`, 403, "sys-public"},
		{"state", "GET", "/v1/messages/" + letterID + "/state", key, "", 403, "sys-public"},
		{"trail", "GET", "/v1/messages/" + letterID + "/trail", key, "", 403, "sys-public"},
		{"enable", "POST", "/v1/ops/platforms/e-boks/enable", key, "", 403, "sys-public"},
		{"unrouted", "GET", "/v1/citizens/0101901234", key, "", 403, "sys-public"},
		{"GET the query", "GET", ssPath, key, "", 403, "sys-public"},
		{"platform key asks", "POST", ssPath, coreKey, `{"cpr":"010190-1234"}`, 403, "core"},
		{"ops key asks", "POST", ssPath, adminKey, `{"cpr":"010190-1234"}`, 403, "anna"},
		{"no key", "POST", ssPath, "", `{"cpr":"010190-1234"}`, 401, ""},
		{"wrong key", "POST", ssPath, key + "x", `{"cpr":"010190-1234"}`, 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := call(api, tc.method, tc.path, tc.key, tc.body)
			if rec.Code != tc.code {
				t.Fatalf("%d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if strings.Contains(rec.Body.String(), "0101901234") || strings.Contains(rec.Body.String(), "010190-1234") {
				t.Errorf("the answer holds the CPR: %s", rec.Body)
			}
			lines := audit.take(t)
			if len(lines) != 1 || lines[0]["key"] != tc.who || lines[0]["status"] != float64(tc.code) {
				t.Errorf("audit lines %v, want one for %q with status %d", lines, tc.who, tc.code)
			}
		})
	}
	// The platform and ops keys still work where they belong.
	if rec := call(api, "POST", "/v1/events", coreKey, ev); rec.Code != http.StatusAccepted {
		t.Errorf("the platform's own event: %d %s", rec.Code, rec.Body)
	}
	if rec := call(api, "GET", "/v1/messages/"+letterID+"/trail", adminKey, ""); rec.Code != http.StatusNotFound {
		t.Errorf("the ops trail: %d %s", rec.Code, rec.Body)
	}
	audit.take(t)
	for _, tc := range []struct{ body, field string }{
		{`{"cpr":"310290-1234"}`, "cpr"},
		{`{"cpr":"0101901234","name":"Anna"}`, "name"},
		{`{}`, "cpr"},
		{`{"0101901234":1}`, "[cpr]"},
	} {
		rec := call(api, "POST", ssPath, key, tc.body)
		var p struct {
			Errors []struct{ Field, Reason string }
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &p)
		if rec.Code != http.StatusBadRequest || rec.Header().Get("Content-Type") != "application/problem+json" ||
			len(p.Errors) != 1 || p.Errors[0].Field != tc.field {
			t.Errorf("%s: %d %s, want 400 naming %s", tc.body, rec.Code, rec.Body, tc.field)
		}
		if strings.Contains(rec.Body.String(), "0101901234") || strings.Contains(rec.Body.String(), "310290") {
			t.Errorf("%s: the problem echoes the CPR: %s", tc.body, rec.Body)
		}
		if lines := audit.take(t); len(lines) != 1 || lines[0]["status"] != float64(400) || lines[0]["key"] != "sys-public" {
			t.Errorf("%s: audit %v, want one 400 line", tc.body, lines)
		}
	}
	if rec := call(api, "POST", ssPath, key, `{"cpr":"`+strings.Repeat("1", 2000)+`"}`); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("a 2 KB query: %d, want 413", rec.Code)
	}
	if lines := audit.take(t); len(lines) != 1 || lines[0]["status"] != float64(413) {
		t.Errorf("audit of the 413: %v", lines)
	}
}

// TestSelfServiceSeparateOps: with the ops routes on their own listener,
// the query is on the public one, and the self-service key opens nothing
// on the ops one.
func TestSelfServiceSeparateOps(t *testing.T) {
	env := redistest.New(t)
	api := newAPIConfig(t, env.Client, env.Prefix, func(c *httpapi.Config) {
		c.SeparateOps = true
		c.SelfService = []httpapi.SelfService{{Name: "sys", Context: rules.ContextPublic,
			KeySHA256: httpapi.HashKey(ssKeys[rules.ContextPublic])}}
	})
	key := ssKeys[rules.ContextPublic]
	if rec := call(api, "POST", ssPath, key, `{"cpr":"010190-1234"}`); rec.Code != http.StatusOK {
		t.Errorf("public query: %d %s", rec.Code, rec.Body)
	}
	for _, path := range []string{ssPath, "/v1/messages/" + letterID + "/trail", "/healthz"} {
		if rec := call(api.OpsHandler(), "POST", path, key, `{"cpr":"010190-1234"}`); rec.Code != http.StatusForbidden {
			t.Errorf("ops listener %s with the self-service key: %d, want 403", path, rec.Code)
		}
	}
}

// TestSelfServiceRateLimit: a system over its rate is answered 429 with
// Retry-After and audited; another system's budget is its own.
func TestSelfServiceRateLimit(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) // the bucket does not refill
	api, audit, _, _ := selfServiceAPI(t, 1, func() time.Time { return now })
	ask := func(ctx rules.Context) int {
		return call(api, "POST", ssPath, ssKeys[ctx], `{"cpr":"010190-1234"}`).Code
	}
	for i := 0; i < 3; i++ { // burst: 2 × 1 + 1
		if c := ask(rules.ContextPublic); c != http.StatusOK {
			t.Fatalf("query %d within the burst: %d", i+1, c)
		}
	}
	rec := call(api, "POST", ssPath, ssKeys[rules.ContextPublic], `{"cpr":"010190-1234"}`)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" ||
		!strings.Contains(rec.Body.String(), "self-service system sys-public is over its rate") {
		t.Errorf("over the rate: %d Retry-After=%q %s, want 429", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if c := ask(rules.ContextCourt); c != http.StatusOK {
		t.Errorf("another system while sys-public is limited: %d, want 200", c)
	}
	lines := audit.take(t)
	if len(lines) != 5 || lines[3]["status"] != float64(429) || lines[3]["key"] != "sys-public" ||
		lines[3]["digital_post_exempt"] != nil {
		t.Errorf("audit lines %v, want the 429 audited without an answer", lines)
	}
}
