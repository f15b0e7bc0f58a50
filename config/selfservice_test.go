package config

import (
	"strings"
	"testing"

	"github.com/digitalpost/postbud/dispatcher/rules"
)

// TestSelfService: the self-service systems from POSTBUD_SELF_SERVICE_KEYS
// and the YAML file, their contexts, rates and rotation, and every way to
// get them wrong, each named; no error holds a key.
func TestSelfService(t *testing.T) {
	const (
		skatKey  = "skat-selfservice-secret-0123"
		skatNew  = "skat-selfservice-secret-new-0123"
		courtKey = "court-selfservice-secret-0123"
	)
	systems := func(c *Config) any { return c.SelfService }
	rate := func(c *Config) any { return c.SelfServiceRate }
	for _, r := range []row{
		{name: "none by default", got: systems, want: []SelfService(nil)},
		{name: "default rate", got: rate, want: 50.0},
		{name: "rate", env: map[string]string{"POSTBUD_SELF_SERVICE_RATE": "2.5"}, got: rate, want: 2.5},
		{name: "lines", env: map[string]string{"POSTBUD_SELF_SERVICE_KEYS": "# the systems\n\nskat:public:" + skatKey +
			"\n domstol:court:" + courtKey + " \nvirk:business:virk-selfservice-secret-0123\n", "POSTBUD_SELF_SERVICE_RATE": "7"},
			got: systems, want: []SelfService{
				{Name: "skat", Context: rules.ContextPublic, KeySHA256: sum(skatKey), Rate: 7},
				{Name: "domstol", Context: rules.ContextCourt, KeySHA256: sum(courtKey), Rate: 7},
				{Name: "virk", Context: rules.ContextBusiness, KeySHA256: sum("virk-selfservice-secret-0123"), Rate: 7}}},
		{name: "from a file", files: map[string]string{"POSTBUD_SELF_SERVICE_KEYS_FILE": "skat:public:" + skatKey + "\n"},
			got: systems, want: []SelfService{{Name: "skat", Context: rules.ContextPublic, KeySHA256: sum(skatKey), Rate: 50}}},
		{name: "rotation: one name, two keys", env: map[string]string{"POSTBUD_SELF_SERVICE_KEYS": "skat:public:" + skatNew + "\nskat:public:" + skatKey},
			got: systems, want: []SelfService{{Name: "skat", Context: rules.ContextPublic, KeySHA256: sum(skatNew), Rate: 50},
				{Name: "skat", Context: rules.ContextPublic, KeySHA256: sum(skatKey), Rate: 50}}},
		{name: "yaml", yaml: "self_service:\n  domstol: {context: court, key_sha256: " + hexSum(courtKey) + ", rate: 3}\n",
			got: systems, want: []SelfService{{Name: "domstol", Context: rules.ContextCourt, KeySHA256: sum(courtKey), Rate: 3}}},
		{name: "bad line", env: map[string]string{"POSTBUD_SELF_SERVICE_KEYS": "skat " + skatKey},
			errs: []wantErr{{"POSTBUD_SELF_SERVICE_KEYS", "line 1: want name:context:key"}}},
		{name: "short key", env: map[string]string{"POSTBUD_SELF_SERVICE_KEYS": "skat:public:short"},
			errs: []wantErr{{"POSTBUD_SELF_SERVICE_KEYS", `"skat" must be at least 16 characters`}}},
		{name: "bad context", env: map[string]string{"POSTBUD_SELF_SERVICE_KEYS": "skat:private:" + skatKey},
			errs: []wantErr{{"POSTBUD_SELF_SERVICE_KEYS", "must be public, court or business"}}},
		{name: "bad name", env: map[string]string{"POSTBUD_SELF_SERVICE_KEYS": "Skat Selv:public:" + skatKey},
			errs: []wantErr{{"POSTBUD_SELF_SERVICE_KEYS", "use lower case letters"}}},
		{name: "one name, two contexts", env: map[string]string{"POSTBUD_SELF_SERVICE_KEYS": "skat:public:" + skatKey + "\nskat:court:" + courtKey},
			errs: []wantErr{{"POSTBUD_SELF_SERVICE_KEYS", `"skat" is given two contexts, public and court`}}},
		{name: "one key, two systems", env: map[string]string{"POSTBUD_SELF_SERVICE_KEYS": "skat:public:" + skatKey + "\nother:public:" + skatKey},
			errs: []wantErr{{"POSTBUD_SELF_SERVICE_KEYS", "also the key of self-service system skat"}}},
		{name: "a platform's key", env: map[string]string{"POSTBUD_SELF_SERVICE_KEYS": "skat:public:" + coreKey},
			errs: []wantErr{{"POSTBUD_SELF_SERVICE_KEYS", "also the key of platform core"}}},
		{name: "an ops key", env: map[string]string{"POSTBUD_SELF_SERVICE_KEYS": "skat:public:" + opsKey},
			errs: []wantErr{{"POSTBUD_SELF_SERVICE_KEYS", "also the key of ops key ops"}}},
		{name: "bad rate", env: map[string]string{"POSTBUD_SELF_SERVICE_RATE": "-1"},
			errs: []wantErr{{"POSTBUD_SELF_SERVICE_RATE", "must be a number ≥ 0"}}},
		{name: "yaml and env", env: map[string]string{"POSTBUD_SELF_SERVICE_KEYS": "skat:public:" + skatKey},
			yaml: "self_service:\n  skat: {context: public, key_sha256: " + hexSum(skatNew) + "}\n",
			errs: []wantErr{{"POSTBUD_CONFIG self_service.skat", "given both here and in POSTBUD_SELF_SERVICE_KEYS"}}},
		{name: "yaml bad hash", yaml: "self_service:\n  skat: {context: public, key_sha256: abc}\n",
			errs: []wantErr{{"POSTBUD_CONFIG self_service.skat.key_sha256", "must be 64 hex digits"}}},
		{name: "yaml bad context", yaml: "self_service:\n  skat: {context: courts, key_sha256: " + hexSum(skatKey) + "}\n",
			errs: []wantErr{{"POSTBUD_CONFIG self_service.skat", "must be public, court or business"}}},
	} {
		t.Run(r.name, func(t *testing.T) {
			r.check(t)
			if r.errs == nil {
				return
			}
			_, _, err := r.run(t)
			for _, k := range []string{skatKey, skatNew, courtKey} {
				if strings.Contains(err.Error(), k) {
					t.Errorf("the error holds a key: %v", err)
				}
			}
		})
	}
}
