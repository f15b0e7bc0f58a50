package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/httpapi"
	"github.com/digitalpost/postbud/dispatcher/opsauth"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// TestAccessEventsFromCoreOnly: access.granted, access.updated and
// access.revoked are core's; a platform's key sending one (with its own
// source) is answered 403 naming the type, core's is accepted.
func TestAccessEventsFromCoreOnly(t *testing.T) {
	env := redistest.New(t)
	api := newAPIConfig(t, env.Client, env.Prefix, func(c *httpapi.Config) {
		c.Platforms = []httpapi.Platform{
			{Name: event.Core, KeySHA256: httpapi.HashKey("core-key-0123456789")},
			{Name: event.MitDK, KeySHA256: httpapi.HashKey("mitdk-key-0123456789")}}
	})
	data := map[string]string{
		"access.granted": `{"cpr":"010190-1234","holder":{"cpr":"020285-2345"},"scope":"read","notify":true}`,
		"access.updated": `{"cpr":"010190-1234","holder":{"cpr":"020285-2345"},"notify":false}`,
		"access.revoked": `{"cpr":"010190-1234","holder":{"cpr":"020285-2345"},"scope":"read"}`,
	}
	for typ, d := range data {
		for _, tc := range []struct {
			key, source string
			want        int
		}{
			{"mitdk-key-0123456789", "mit.dk", http.StatusForbidden},
			{"core-key-0123456789", "core", http.StatusAccepted},
		} {
			body := `{"id":"a-` + tc.source + `-` + typ + `","type":"` + typ + `","occurred_at":"2026-11-23T10:00:00Z","source":"` +
				tc.source + `","data":` + d + `}`
			req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tc.key)
			rec := httptest.NewRecorder()
			api.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("%s from %s: %d %s, want %d", typ, tc.source, rec.Code, rec.Body, tc.want)
			}
			if tc.want == http.StatusForbidden && !strings.Contains(rec.Body.String(), `"field":"type"`) {
				t.Errorf("%s from %s: the 403 does not name the field: %s", typ, tc.source, rec.Body)
			}
			for _, cpr := range []string{"0101901234", "010190-1234", "0202852345", "020285-2345"} {
				if strings.Contains(rec.Body.String(), cpr) {
					t.Errorf("the answer holds a CPR: %s", rec.Body)
				}
			}
		}
	}
}

// TestCitizenAccessForSupport: support sees a citizen's holders and the
// mailboxes the citizen holds, masked; no CPR in the answer; a bad body
// names the field; without an ops key, 401.
func TestCitizenAccessForSupport(t *testing.T) {
	env := redistest.New(t)
	const supportKey = "support-key-0123456789"
	g, err := opsauth.New([]opsauth.Key{{Name: "sam", Role: opsauth.Support, SHA256: opsauth.HashKey(supportKey)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	api := newAPIConfig(t, env.Client, env.Prefix, func(c *httpapi.Config) { c.Guard = g })
	store := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix, Sealer: seal.Ephemeral()})
	t.Cleanup(func() { store.Close() })
	keyer, _ := dispatcher.NewKeyer([]byte("test-pseudonymisation-key-0123456789"))
	cpr := func(s string) event.CPR { c, _ := event.ParseCPR(s); return c }
	owner, holder := keyer.CitizenKey(cpr("010190-1234")), keyer.CitizenKey(cpr("020285-2345"))
	if _, err := store.SetAccess(context.Background(), dispatcher.AccessWrite{Owner: owner, Holder: holder,
		Change: dispatcher.AccessGrant, Notify: true, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	ask := func(key, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/v1/citizens/access", strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		return rec
	}
	if rec := ask("", `{"cpr":"010190-1234"}`); rec.Code != http.StatusUnauthorized {
		t.Errorf("without a key: %d, want 401", rec.Code)
	}
	if rec := ask(supportKey, `{"cpr":"0101-901234"}`); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"field":"cpr"`) {
		t.Errorf("a bad CPR: %d %s, want 400 naming cpr", rec.Code, rec.Body)
	}
	for _, tc := range []struct{ cpr, field, other string }{
		{"010190-1234", "holders", holder},
		{"020285-2345", "holds", owner},
	} {
		rec := ask(supportKey, `{"cpr":"`+tc.cpr+`"}`)
		var v dispatcher.AccessView
		if err := json.Unmarshal(rec.Body.Bytes(), &v); rec.Code != http.StatusOK || err != nil {
			t.Fatalf("%s: %d %s", tc.cpr, rec.Code, rec.Body)
		}
		list := map[string][]dispatcher.AccessEntry{"holders": v.Holders, "holds": v.Holds}[tc.field]
		if len(list) != 1 || list[0].Citizen != dispatcher.HolderRef(tc.other) || !list[0].Active || !list[0].Notify {
			t.Errorf("%s: %s = %+v, want the other party masked, active, notify", tc.cpr, tc.field, list)
		}
		for _, leak := range []string{"0101901234", "010190-1234", "0202852345", "020285-2345", owner, holder} {
			if strings.Contains(rec.Body.String(), leak) {
				t.Errorf("%s: the answer holds %q: %s", tc.cpr, leak, rec.Body)
			}
		}
	}
}
