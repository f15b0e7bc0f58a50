package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/httpapi"
	"github.com/digitalpost/postbud/dispatcher/redistest"
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
