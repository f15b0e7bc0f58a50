package config

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/digitalpost/postbud/channels/email"
	"github.com/digitalpost/postbud/channels/sms"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/rules"
)

// Secrets of the base environment. Every secret used in the tests is long
// and distinctive, so that finding one in an error message is never a
// coincidence.
const (
	pseudonymKey = "pseudonym-secret-0123456789abcdef" // 33 bytes
	sealKey      = "seal-secret-0123456789abcdefghijk" // 33 bytes
	opsKey       = "ops-secret-0123456789"
	coreKey      = "core-secret-0123456789"
)

// base is the smallest valid environment: everything else takes its default.
func base() map[string]string {
	return map[string]string{
		"POSTBUD_PSEUDONYM_KEY": pseudonymKey,
		"POSTBUD_SEAL_KEY":      sealKey,
		"POSTBUD_OPS_KEY":       opsKey,
		"POSTBUD_KEY_CORE":      coreKey,
	}
}

func sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func hexSum(s string) string { b := sum(s); return hex.EncodeToString(b[:]) }

// tlsView is the part of a tls.Config that Load sets; tls.Config itself has
// unexported fields cmp cannot look into.
type tlsView struct {
	ServerName string
	MinVersion uint16
}

var cmpOpts = cmp.Options{
	cmp.Transformer("tls", func(c *tls.Config) *tlsView {
		if c == nil {
			return nil
		}
		return &tlsView{ServerName: c.ServerName, MinVersion: c.MinVersion}
	}),
	// Load's platform order is not specified.
	cmpopts.SortSlices(func(a, b Platform) bool { return a.Name < b.Name }),
	cmpopts.EquateEmpty(),
}

// wantErr is one expected problem: the variable (or YAML key) it names and a
// fragment of its reason.
type wantErr struct{ name, reason string }

// row is one Load call. env is laid over base() ("" unsets a variable);
// files are written to a temporary directory and the variable set to the
// path; missing variables are set to a path that does not exist; yaml, if
// set, is written and named by POSTBUD_CONFIG.
type row struct {
	name    string
	env     map[string]string
	files   map[string]string
	missing []string
	yaml    string
	// got picks the field under test out of a successful Load; want is
	// its expected value.
	got  func(*Config) any
	want any
	// errs, if set, are all the problems Load must report, and no others.
	errs []wantErr
}

// isSecret reports whether the variable holds a secret.
func isSecret(name string) bool {
	name = strings.TrimSuffix(name, "_FILE")
	return strings.HasSuffix(name, "_PASSWORD") || strings.HasSuffix(name, "_KEY") ||
		strings.HasPrefix(name, "POSTBUD_KEY_") && name != "POSTBUD_KEY_PREFIX"
}

// run loads r's environment and returns the result with every secret value
// the environment holds.
func (r row) run(t *testing.T) (*Config, []string, error) {
	t.Helper()
	env := base()
	for k, v := range r.env {
		env[k] = v
	}
	dir := t.TempDir()
	var secrets []string
	for k, content := range r.files {
		p := filepath.Join(dir, k)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		env[k] = p
		if isSecret(k) {
			secrets = append(secrets, strings.TrimRight(content, "\r\n"))
		}
	}
	for _, k := range r.missing {
		env[k] = filepath.Join(dir, "does-not-exist", k)
	}
	if r.yaml != "" {
		p := filepath.Join(dir, "postbud.yaml")
		if err := os.WriteFile(p, []byte(r.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		env["POSTBUD_CONFIG"] = p
	}
	for k, v := range env {
		if isSecret(k) && !strings.HasSuffix(k, "_FILE") && v != "" {
			secrets = append(secrets, v)
		}
	}
	if u, err := url.Parse(env["POSTBUD_REDIS_URL"]); err == nil {
		if p, ok := u.User.Password(); ok {
			secrets = append(secrets, p)
		}
	}
	c, err := Load(func(k string) string { return env[k] })
	return c, secrets, err
}

// check runs r and asserts its outcome.
func (r row) check(t *testing.T) {
	t.Helper()
	c, secrets, err := r.run(t)
	if r.errs == nil {
		if err != nil {
			t.Fatalf("Load: unexpected error:\n%v", err)
		}
		if diff := cmp.Diff(r.want, r.got(c), cmpOpts); diff != "" {
			t.Errorf("Load: field mismatch (-want +got):\n%s", diff)
		}
		return
	}
	if err == nil {
		t.Fatalf("Load: no error, want %v", r.errs)
	}
	if c != nil {
		t.Errorf("Load returned a Config alongside the error: %+v", c)
	}
	checkErrs(t, err, r.errs)
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error message leaks the secret %q:\n%v", s, err)
		}
	}
}

// checkErrs asserts that err reports exactly the problems in want, each
// starting with the variable it names.
func checkErrs(t *testing.T, err error, want []wantErr) {
	t.Helper()
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error is not joined: %T %v", err, err)
	}
	got := j.Unwrap()
	for _, e := range got {
		if !strings.HasPrefix(e.Error(), "POSTBUD_") {
			t.Errorf("error does not start with the variable it is about: %q", e)
		}
	}
	for _, w := range want {
		found := false
		for _, e := range got {
			msg := e.Error()
			if strings.HasPrefix(msg, w.name+": ") && strings.Contains(msg, w.reason) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no error %q naming %s; got:\n%v", w.reason, w.name, err)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(got), len(want), err)
	}
}

func TestLoadDefaults(t *testing.T) {
	env := base()
	c, err := Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		RedisURL:                "redis://127.0.0.1:6379/0",
		Redis:                   Redis{Addr: "127.0.0.1:6379"},
		HTTPAddr:                ":8080",
		PseudonymKey:            []byte(pseudonymKey),
		SealKey:                 []byte(sealKey),
		OpsKeySHA256:            sum(opsKey),
		OpsKeys:                 []OpsKey{{Name: "ops", Role: "admin", KeySHA256: sum(opsKey)}},
		Platforms:               []Platform{{Name: "core", KeySHA256: sum(coreKey), Rate: 2000}},
		PlatformRate:            2000,
		SelfServiceRate:         50,
		MailboxURL:              "https://www.borger.dk/digitalpost",
		KeyPrefix:               "pb",
		QueuePrefix:             "postbud",
		Concurrency:             50,
		BatchSize:               200,
		BatchInflight:           2000,
		BatchYieldRate:          5000,
		GroupAccepts:            true,
		Workers:                 "all",
		TaskCheckInterval:       200 * time.Millisecond,
		UrgentConcurrency:       20,
		UrgentTaskCheckInterval: 8 * time.Millisecond,
		UrgentWakeWait:          250 * time.Millisecond,
		ShutdownTimeout:         25 * time.Second,
		AckTimeout:              time.Second,
		RetryBase:               5 * time.Second,
		AlertTTL:                48 * time.Hour,
		LetterTTL:               4800 * time.Hour,
		ReadLetterTTL:           720 * time.Hour,
		Rates:                   map[string]int{},
		Coalesce:                map[string]time.Duration{"email": time.Minute, "sms": time.Minute, "push": time.Minute},
		DrainDelay:              2 * time.Second,
		LogLevel:                "info",
		LogFormat:               "json",
		QuietHours:              map[string]rules.QuietHours{"email": {}, "push": {}, "sms": {Start: rules.Clock{Hour: 22}, End: rules.Clock{Hour: 7}}},
		PaperForMinors:          true,
		ReminderBefore:          72 * time.Hour,
		Channels:                Channels{Failover: Failover{Threshold: 5, OpenFor: 30 * time.Second, OnThrottle: true}},
	}
	if diff := cmp.Diff(want, c, cmpOpts); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestLoad(t *testing.T) {
	redisOpt := func(c *Config) any { return c.Redis }
	var rows []row

	// Each variable: its default when unset, valid values, invalid values.
	rows = append(rows,
		// POSTBUD_REDIS_URL
		row{name: "REDIS_URL unset", got: redisOpt, want: Redis{Addr: "127.0.0.1:6379"}},
		row{name: "REDIS_URL redis", env: map[string]string{"POSTBUD_REDIS_URL": "redis://redis.internal:6380"},
			got: redisOpt, want: Redis{Addr: "redis.internal:6380"}},
		row{name: "REDIS_URL redis default port", env: map[string]string{"POSTBUD_REDIS_URL": "redis://redis.internal"},
			got: redisOpt, want: Redis{Addr: "redis.internal:6379"}},
		row{name: "REDIS_URL db path", env: map[string]string{"POSTBUD_REDIS_URL": "redis://redis.internal:6379/15"},
			got: redisOpt, want: Redis{Addr: "redis.internal:6379", DB: 15}},
		row{name: "REDIS_URL user and password", env: map[string]string{"POSTBUD_REDIS_URL": "redis://postbud:url-secret-pw@redis.internal:6379/2"},
			got: redisOpt, want: Redis{Addr: "redis.internal:6379", Username: "postbud", Password: "url-secret-pw", DB: 2}},
		row{name: "REDIS_URL password only", env: map[string]string{"POSTBUD_REDIS_URL": "redis://:url-secret-pw@redis.internal:6379"},
			got: redisOpt, want: Redis{Addr: "redis.internal:6379", Password: "url-secret-pw"}},
		row{name: "REDIS_URL rediss", env: map[string]string{"POSTBUD_REDIS_URL": "rediss://postbud:url-secret-pw@redis.example.com:6380/1"},
			got: redisOpt, want: Redis{Addr: "redis.example.com:6380", Username: "postbud", Password: "url-secret-pw", DB: 1,
				TLS: true}},
		row{name: "REDIS_URL sentinel", env: map[string]string{"POSTBUD_REDIS_URL": "redis-sentinel://h1:26379,h2:26379?master=mymaster"},
			got: redisOpt, want: Redis{SentinelMaster: "mymaster", SentinelAddrs: []string{"h1:26379", "h2:26379"}}},
		row{name: "REDIS_URL sentinel default port", env: map[string]string{"POSTBUD_REDIS_URL": "redis-sentinel://h1,h2?master=mymaster"},
			got: redisOpt, want: Redis{SentinelMaster: "mymaster", SentinelAddrs: []string{"h1:26379", "h2:26379"}}},
		row{name: "REDIS_URL sentinel full", env: map[string]string{
			"POSTBUD_REDIS_URL": "redis-sentinel://postbud:url-secret-pw@h1:26379,h2:26380,h3:26381/4?master=mymaster&sentinel_password=sentinel-secret-pw&tls=true"},
			got: redisOpt, want: Redis{SentinelMaster: "mymaster", SentinelAddrs: []string{"h1:26379", "h2:26380", "h3:26381"},
				Username: "postbud", Password: "url-secret-pw", DB: 4, SentinelPassword: "sentinel-secret-pw",
				TLS: true}},
		row{name: "REDIS_URL db 16", env: map[string]string{"POSTBUD_REDIS_URL": "redis://redis.internal:6379/16"},
			errs: []wantErr{{"POSTBUD_REDIS_URL", "database number 0–15"}}},
		row{name: "REDIS_URL db negative", env: map[string]string{"POSTBUD_REDIS_URL": "redis://redis.internal:6379/-1"},
			errs: []wantErr{{"POSTBUD_REDIS_URL", "database number 0–15"}}},
		row{name: "REDIS_URL db not a number", env: map[string]string{"POSTBUD_REDIS_URL": "redis://:url-secret-pw@redis.internal:6379/queue"},
			errs: []wantErr{{"POSTBUD_REDIS_URL", "database number 0–15"}}},
		row{name: "REDIS_URL sentinel bad db", env: map[string]string{"POSTBUD_REDIS_URL": "redis-sentinel://h1:26379/x?master=mymaster"},
			errs: []wantErr{{"POSTBUD_REDIS_URL", "database number 0–15"}}},
		row{name: "REDIS_URL sentinel without master", env: map[string]string{"POSTBUD_REDIS_URL": "redis-sentinel://h1:26379,h2:26379"},
			errs: []wantErr{{"POSTBUD_REDIS_URL", "needs ?master=NAME"}}},
		row{name: "REDIS_URL sentinel without hosts", env: map[string]string{"POSTBUD_REDIS_URL": "redis-sentinel:///?master=mymaster"},
			errs: []wantErr{{"POSTBUD_REDIS_URL", "at least one sentinel"}}},
		row{name: "REDIS_URL unknown scheme", env: map[string]string{"POSTBUD_REDIS_URL": "memcached://:url-secret-pw@cache:11211"},
			errs: []wantErr{{"POSTBUD_REDIS_URL", `scheme must be redis, rediss or redis-sentinel, got "memcached"`}}},
		row{name: "REDIS_URL no scheme", env: map[string]string{"POSTBUD_REDIS_URL": "redis.internal:6379"},
			errs: []wantErr{{"POSTBUD_REDIS_URL", "scheme must be"}}},
		row{name: "REDIS_URL no host", env: map[string]string{"POSTBUD_REDIS_URL": "redis://"},
			errs: []wantErr{{"POSTBUD_REDIS_URL", "needs one host:port"}}},
		row{name: "REDIS_URL two hosts", env: map[string]string{"POSTBUD_REDIS_URL": "redis://h1:6379,h2:6379"},
			errs: []wantErr{{"POSTBUD_REDIS_URL", "needs one host:port"}}},
		row{name: "REDIS_URL not a URL", env: map[string]string{"POSTBUD_REDIS_URL": "redis://:url-secret-pw@host:port"},
			errs: []wantErr{{"POSTBUD_REDIS_URL", "not a URL"}}},

		// The TLS configuration cmd/postbud hands to the clients.
		row{name: "REDIS_URL rediss TLS config", env: map[string]string{"POSTBUD_REDIS_URL": "rediss://redis.example.com:6380"},
			got:  func(c *Config) any { return c.Redis.TLSConfig() },
			want: &tls.Config{ServerName: "redis.example.com", MinVersion: tls.VersionTLS12}},
		row{name: "REDIS_URL sentinel TLS config", env: map[string]string{"POSTBUD_REDIS_URL": "redis-sentinel://h1?master=mymaster&tls=true"},
			got: func(c *Config) any { return c.Redis.TLSConfig() }, want: &tls.Config{MinVersion: tls.VersionTLS12}},
		row{name: "REDIS_URL redis no TLS config", got: func(c *Config) any { return c.Redis.TLSConfig() }, want: (*tls.Config)(nil)},

		// POSTBUD_REDIS_PASSWORD(_FILE)
		row{name: "REDIS_PASSWORD overrides the URL's", env: map[string]string{
			"POSTBUD_REDIS_URL": "redis://postbud:url-secret-pw@redis.internal:6379", "POSTBUD_REDIS_PASSWORD": "env-secret-pw"},
			got: redisOpt, want: Redis{Addr: "redis.internal:6379", Username: "postbud", Password: "env-secret-pw"}},
		row{name: "REDIS_PASSWORD_FILE overrides the URL's", env: map[string]string{"POSTBUD_REDIS_URL": "rediss://:url-secret-pw@redis.example.com:6380"},
			files: map[string]string{"POSTBUD_REDIS_PASSWORD_FILE": "file-secret-pw\n"},
			got:   redisOpt, want: Redis{Addr: "redis.example.com:6380", Password: "file-secret-pw",
				TLS: true}},
		row{name: "REDIS_PASSWORD overrides the sentinel URL's", env: map[string]string{
			"POSTBUD_REDIS_URL": "redis-sentinel://:url-secret-pw@h1:26379?master=mymaster", "POSTBUD_REDIS_PASSWORD": "env-secret-pw"},
			got: redisOpt, want: Redis{SentinelMaster: "mymaster", SentinelAddrs: []string{"h1:26379"}, Password: "env-secret-pw"}},

		// POSTBUD_HTTP_ADDR
		row{name: "HTTP_ADDR unset", got: func(c *Config) any { return c.HTTPAddr }, want: ":8080"},
		row{name: "HTTP_ADDR host:port", env: map[string]string{"POSTBUD_HTTP_ADDR": "127.0.0.1:9090"},
			got: func(c *Config) any { return c.HTTPAddr }, want: "127.0.0.1:9090"},
		row{name: "HTTP_ADDR :port", env: map[string]string{"POSTBUD_HTTP_ADDR": ":9090"},
			got: func(c *Config) any { return c.HTTPAddr }, want: ":9090"},
		row{name: "HTTP_ADDR port only", env: map[string]string{"POSTBUD_HTTP_ADDR": "9090"},
			errs: []wantErr{{"POSTBUD_HTTP_ADDR", `must be host:port or :port, got "9090"`}}},

		// POSTBUD_PSEUDONYM_KEY(_FILE)
		row{name: "PSEUDONYM_KEY", env: map[string]string{"POSTBUD_PSEUDONYM_KEY": "another-pseudonym-secret-32-bytes"},
			got: func(c *Config) any { return string(c.PseudonymKey) }, want: "another-pseudonym-secret-32-bytes"},
		row{name: "PSEUDONYM_KEY exactly 32 bytes", env: map[string]string{"POSTBUD_PSEUDONYM_KEY": strings.Repeat("k", 32)},
			got: func(c *Config) any { return string(c.PseudonymKey) }, want: strings.Repeat("k", 32)},
		row{name: "PSEUDONYM_KEY unset", env: map[string]string{"POSTBUD_PSEUDONYM_KEY": ""},
			errs: []wantErr{{"POSTBUD_PSEUDONYM_KEY", "required"}}},
		row{name: "PSEUDONYM_KEY 31 bytes", env: map[string]string{"POSTBUD_PSEUDONYM_KEY": "short-pseudonym-secret-31-bytes"},
			errs: []wantErr{{"POSTBUD_PSEUDONYM_KEY", "at least 32 bytes, got 31"}}},
		row{name: "PSEUDONYM_KEY_FILE 31 bytes and a newline", env: map[string]string{"POSTBUD_PSEUDONYM_KEY": ""},
			files: map[string]string{"POSTBUD_PSEUDONYM_KEY_FILE": "short-pseudonym-secret-31-bytes\n"},
			errs:  []wantErr{{"POSTBUD_PSEUDONYM_KEY", "at least 32 bytes, got 31"}}},

		// POSTBUD_SEAL_KEY(_FILE), POSTBUD_SEAL_KEY_PREVIOUS(_FILE)
		row{name: "SEAL_KEY unset", env: map[string]string{"POSTBUD_SEAL_KEY": ""},
			errs: []wantErr{{"POSTBUD_SEAL_KEY", "required"}}},
		row{name: "SEAL_KEY 31 bytes", env: map[string]string{"POSTBUD_SEAL_KEY": "short-seal-secret-0123456789abcd"[:31]},
			errs: []wantErr{{"POSTBUD_SEAL_KEY", "at least 32 bytes, got 31"}}},
		row{name: "SEAL_KEY_PREVIOUS", env: map[string]string{"POSTBUD_SEAL_KEY_PREVIOUS": "old-seal-secret-0123456789abcdefg"},
			got: func(c *Config) any { return string(c.SealKeyPrevious) }, want: "old-seal-secret-0123456789abcdefg"},
		row{name: "SEAL_KEY_PREVIOUS_FILE", files: map[string]string{"POSTBUD_SEAL_KEY_PREVIOUS_FILE": "old-seal-secret-0123456789abcdefg\n"},
			got: func(c *Config) any { return string(c.SealKeyPrevious) }, want: "old-seal-secret-0123456789abcdefg"},
		row{name: "SEAL_KEY_PREVIOUS 31 bytes", env: map[string]string{"POSTBUD_SEAL_KEY_PREVIOUS": "short-seal-secret-0123456789abcd"[:31]},
			errs: []wantErr{{"POSTBUD_SEAL_KEY_PREVIOUS", "at least 32 bytes, got 31"}}},
		row{name: "SEAL_KEY_PREVIOUS the current key", env: map[string]string{"POSTBUD_SEAL_KEY_PREVIOUS": sealKey},
			errs: []wantErr{{"POSTBUD_SEAL_KEY_PREVIOUS", "the previous key must be the one it replaced"}}},

		// POSTBUD_OPS_KEY(_FILE)
		row{name: "OPS_KEY", env: map[string]string{"POSTBUD_OPS_KEY": "other-ops-secret-16"},
			got: func(c *Config) any { return c.OpsKeySHA256 }, want: sum("other-ops-secret-16")},
		row{name: "OPS_KEY unset", env: map[string]string{"POSTBUD_OPS_KEY": ""},
			errs: []wantErr{{"POSTBUD_OPS_KEY", "required"}}},
		row{name: "OPS_KEY short", env: map[string]string{"POSTBUD_OPS_KEY": "ops-secret-15ch"},
			errs: []wantErr{{"POSTBUD_OPS_KEY", "at least 16 characters"}}},

		// POSTBUD_OPS_KEYS(_FILE), POSTBUD_AUDIT_FILE, POSTBUD_OPS_ADDR
		row{name: "OPS_KEYS_FILE with OPS_KEY", files: map[string]string{"POSTBUD_OPS_KEYS_FILE": "# ops team\n" +
			"anna:support:anna-key-0123456789\n\nbo:admin:bo-key-0123456789:with-colon\n"},
			got: func(c *Config) any { return c.OpsKeys }, want: []OpsKey{{Name: "ops", Role: "admin", KeySHA256: sum(opsKey)},
				{Name: "anna", Role: "support", KeySHA256: sum("anna-key-0123456789")},
				{Name: "bo", Role: "admin", KeySHA256: sum("bo-key-0123456789:with-colon")}}},
		row{name: "OPS_KEYS without OPS_KEY", env: map[string]string{"POSTBUD_OPS_KEY": "",
			"POSTBUD_OPS_KEYS": "anna:support:anna-key-0123456789"},
			got: func(c *Config) any { return c.OpsKeys }, want: []OpsKey{{Name: "anna", Role: "support", KeySHA256: sum("anna-key-0123456789")}}},
		row{name: "OPS_KEYS bad lines", env: map[string]string{"POSTBUD_OPS_KEYS": "anna:reader:anna-key-0123456789\n" +
			"Bo Ek:admin:bo-key-0123456789\nc:admin:short\nops:admin:another-key-0123456789\nd:admin:" + opsKey + "\nnocolons"},
			errs: []wantErr{{"POSTBUD_OPS_KEYS", `role must be support or admin, got "reader"`},
				{"POSTBUD_OPS_KEYS", `name "Bo Ek"`}, {"POSTBUD_OPS_KEYS", `"c" must be at least 16`},
				{"POSTBUD_OPS_KEYS", `two ops keys are named "ops"`}, {"POSTBUD_OPS_KEYS", `"ops" and "d" are the same key`},
				{"POSTBUD_OPS_KEYS", "line 6: want name:role:key"}}},
		row{name: "AUDIT_FILE and OPS_ADDR", env: map[string]string{"POSTBUD_AUDIT_FILE": "/var/log/postbud/audit.jsonl",
			"POSTBUD_OPS_ADDR": ":9090"},
			got: func(c *Config) any { return c.AuditFile + " " + c.OpsAddr }, want: "/var/log/postbud/audit.jsonl :9090"},
		row{name: "OPS_ADDR bad", env: map[string]string{"POSTBUD_OPS_ADDR": "9090"},
			errs: []wantErr{{"POSTBUD_OPS_ADDR", "host:port"}}},
		row{name: "OPS_ADDR same as HTTP_ADDR", env: map[string]string{"POSTBUD_OPS_ADDR": ":8080"},
			errs: []wantErr{{"POSTBUD_OPS_ADDR", "must differ"}}},

		// POSTBUD_KEY_<PLATFORM>: none at all
		row{name: "no platform key", env: map[string]string{"POSTBUD_KEY_CORE": ""},
			errs: []wantErr{{"POSTBUD_KEY_<PLATFORM>", "at least one platform key is required"}}},

		// POSTBUD_PLATFORM_RATE
		row{name: "PLATFORM_RATE unset", got: func(c *Config) any { return c.PlatformRate }, want: 2000.0},
		row{name: "PLATFORM_RATE", env: map[string]string{"POSTBUD_PLATFORM_RATE": "150.5", "POSTBUD_KEY_MIT_DK": "mitdk-secret-0123456789"},
			got: func(c *Config) any { return []any{c.PlatformRate, c.Platforms} },
			want: []any{150.5, []Platform{
				{Name: "core", KeySHA256: sum(coreKey), Rate: 150.5},
				{Name: "mit.dk", KeySHA256: sum("mitdk-secret-0123456789"), Rate: 150.5},
			}}},
		row{name: "PLATFORM_RATE 0 is unlimited", env: map[string]string{"POSTBUD_PLATFORM_RATE": "0"},
			got: func(c *Config) any { return c.PlatformRate }, want: 0.0},
		row{name: "PLATFORM_RATE negative", env: map[string]string{"POSTBUD_PLATFORM_RATE": "-1"},
			errs: []wantErr{{"POSTBUD_PLATFORM_RATE", `must be a number ≥ 0 (events per second; 0 = unlimited), got "-1"`}}},
		row{name: "PLATFORM_RATE not a number", env: map[string]string{"POSTBUD_PLATFORM_RATE": "fast"},
			errs: []wantErr{{"POSTBUD_PLATFORM_RATE", `must be a number ≥ 0`}}},
		row{name: "PLATFORM_RATE NaN", env: map[string]string{"POSTBUD_PLATFORM_RATE": "NaN"},
			errs: []wantErr{{"POSTBUD_PLATFORM_RATE", `must be a number ≥ 0`}}},
		row{name: "PLATFORM_RATE Inf", env: map[string]string{"POSTBUD_PLATFORM_RATE": "+Inf"},
			errs: []wantErr{{"POSTBUD_PLATFORM_RATE", `must be a number ≥ 0`}}},

		// POSTBUD_MAILBOX_URL
		row{name: "MAILBOX_URL unset", got: func(c *Config) any { return c.MailboxURL }, want: "https://www.borger.dk/digitalpost"},
		row{name: "MAILBOX_URL", env: map[string]string{"POSTBUD_MAILBOX_URL": "https://post.example.dk/inbox"},
			got: func(c *Config) any { return c.MailboxURL }, want: "https://post.example.dk/inbox"},
		row{name: "MAILBOX_URL http", env: map[string]string{"POSTBUD_MAILBOX_URL": "http://post.example.dk/inbox"},
			errs: []wantErr{{"POSTBUD_MAILBOX_URL", `must be an https:// URL, got "http://post.example.dk/inbox"`}}},
		row{name: "MAILBOX_URL no host", env: map[string]string{"POSTBUD_MAILBOX_URL": "https:///inbox"},
			errs: []wantErr{{"POSTBUD_MAILBOX_URL", "must be an https:// URL"}}},
		row{name: "MAILBOX_URL not a URL", env: map[string]string{"POSTBUD_MAILBOX_URL": "https://%zz"},
			errs: []wantErr{{"POSTBUD_MAILBOX_URL", "must be an https:// URL"}}},
		row{name: "MAILBOX_URL relative", env: map[string]string{"POSTBUD_MAILBOX_URL": "www.borger.dk/digitalpost"},
			errs: []wantErr{{"POSTBUD_MAILBOX_URL", "must be an https:// URL"}}},
	)

	// POSTBUD_KEY_PREFIX and POSTBUD_QUEUE_PREFIX
	for _, p := range []struct {
		env, def string
		got      func(*Config) any
	}{
		{"POSTBUD_KEY_PREFIX", "pb", func(c *Config) any { return c.KeyPrefix }},
		{"POSTBUD_QUEUE_PREFIX", "postbud", func(c *Config) any { return c.QueuePrefix }},
	} {
		rows = append(rows,
			row{name: p.env + " unset", got: p.got, want: p.def},
			row{name: p.env, env: map[string]string{p.env: "pb-staging_2"}, got: p.got, want: "pb-staging_2"},
		)
		for _, bad := range []string{"pb:", "{pb}", "p b", "pb\t"} {
			rows = append(rows, row{name: fmt.Sprintf("%s %q", p.env, bad), env: map[string]string{p.env: bad},
				errs: []wantErr{{p.env, fmt.Sprintf("must not contain braces, colons or spaces, got %q", bad)}}})
		}
	}

	// POSTBUD_CONCURRENCY
	concurrency := func(c *Config) any { return c.Concurrency }
	rows = append(rows,
		row{name: "CONCURRENCY unset", got: concurrency, want: 50},
		row{name: "CONCURRENCY 1", env: map[string]string{"POSTBUD_CONCURRENCY": "1"}, got: concurrency, want: 1},
		row{name: "CONCURRENCY 10000", env: map[string]string{"POSTBUD_CONCURRENCY": "10000"}, got: concurrency, want: 10000},
	)
	for _, bad := range []string{"0", "-5", "10001", "ten", "2.5"} {
		rows = append(rows, row{name: "CONCURRENCY " + bad, env: map[string]string{"POSTBUD_CONCURRENCY": bad},
			errs: []wantErr{{"POSTBUD_CONCURRENCY", fmt.Sprintf("must be a whole number from 1 to 10000, got %q", bad)}}})
	}

	// POSTBUD_BATCH_INFLIGHT
	inflight := func(c *Config) any { return c.BatchInflight }
	rows = append(rows,
		row{name: "BATCH_INFLIGHT unset", got: inflight, want: 2000},
		row{name: "BATCH_INFLIGHT 1", env: map[string]string{"POSTBUD_BATCH_INFLIGHT": "1"}, got: inflight, want: 1},
		row{name: "BATCH_INFLIGHT 100000", env: map[string]string{"POSTBUD_BATCH_INFLIGHT": "100000"}, got: inflight, want: 100000},
	)
	for _, bad := range []string{"0", "-1", "100001", "many"} {
		rows = append(rows, row{name: "BATCH_INFLIGHT " + bad, env: map[string]string{"POSTBUD_BATCH_INFLIGHT": bad},
			errs: []wantErr{{"POSTBUD_BATCH_INFLIGHT", fmt.Sprintf("must be a whole number from 1 to 100000, got %q", bad)}}})
	}

	// POSTBUD_BATCH_YIELD_RATE
	yieldRate := func(c *Config) any { return c.BatchYieldRate }
	rows = append(rows,
		row{name: "BATCH_YIELD_RATE unset", got: yieldRate, want: 5000},
		row{name: "BATCH_YIELD_RATE 0 (off)", env: map[string]string{"POSTBUD_BATCH_YIELD_RATE": "0"}, got: yieldRate, want: 0},
		row{name: "BATCH_YIELD_RATE 1000000", env: map[string]string{"POSTBUD_BATCH_YIELD_RATE": "1000000"}, got: yieldRate, want: 1000000},
	)
	for _, bad := range []string{"-1", "1000001", "fast"} {
		rows = append(rows, row{name: "BATCH_YIELD_RATE " + bad, env: map[string]string{"POSTBUD_BATCH_YIELD_RATE": bad},
			errs: []wantErr{{"POSTBUD_BATCH_YIELD_RATE", fmt.Sprintf("must be a whole number from 0 to 1000000, got %q", bad)}}})
	}

	// POSTBUD_GROUP_ACCEPTS
	group := func(c *Config) any { return c.GroupAccepts }
	rows = append(rows,
		row{name: "GROUP_ACCEPTS unset", got: group, want: true},
		row{name: "GROUP_ACCEPTS false", env: map[string]string{"POSTBUD_GROUP_ACCEPTS": "false"}, got: group, want: false},
		row{name: "GROUP_ACCEPTS 0", env: map[string]string{"POSTBUD_GROUP_ACCEPTS": "0"}, got: group, want: false},
		row{name: "GROUP_ACCEPTS yes", env: map[string]string{"POSTBUD_GROUP_ACCEPTS": "yes"},
			errs: []wantErr{{"POSTBUD_GROUP_ACCEPTS", `must be true or false, got "yes"`}}},
	)

	// POSTBUD_WORKERS
	workersOf := func(c *Config) any { return c.Workers }
	rows = append(rows,
		row{name: "WORKERS unset", got: workersOf, want: "all"},
		row{name: "WORKERS urgent", env: map[string]string{"POSTBUD_WORKERS": "urgent"}, got: workersOf, want: "urgent"},
		row{name: "WORKERS none", env: map[string]string{"POSTBUD_WORKERS": "none"}, got: workersOf, want: "none"},
		row{name: "WORKERS bulk", env: map[string]string{"POSTBUD_WORKERS": "bulk"},
			errs: []wantErr{{"POSTBUD_WORKERS", `must be one of all, urgent, main, none, got "bulk"`}}},
	)

	// POSTBUD_URGENT_CONCURRENCY, POSTBUD_URGENT_TASK_CHECK_INTERVAL
	urgentConc := func(c *Config) any { return c.UrgentConcurrency }
	urgentPoll := func(c *Config) any { return c.UrgentTaskCheckInterval }
	rows = append(rows,
		row{name: "URGENT_CONCURRENCY unset", got: urgentConc, want: 20},
		row{name: "URGENT_CONCURRENCY 5", env: map[string]string{"POSTBUD_URGENT_CONCURRENCY": "5"}, got: urgentConc, want: 5},
		row{name: "URGENT_CONCURRENCY 0", env: map[string]string{"POSTBUD_URGENT_CONCURRENCY": "0"},
			errs: []wantErr{{"POSTBUD_URGENT_CONCURRENCY", `must be a whole number from 1 to 10000, got "0"`}}},
		row{name: "URGENT_TASK_CHECK_INTERVAL unset", got: urgentPoll, want: 8 * time.Millisecond},
		row{name: "URGENT_TASK_CHECK_INTERVAL 1ms", env: map[string]string{"POSTBUD_URGENT_TASK_CHECK_INTERVAL": "1ms"},
			got: urgentPoll, want: time.Millisecond},
		row{name: "URGENT_TASK_CHECK_INTERVAL 500us", env: map[string]string{"POSTBUD_URGENT_TASK_CHECK_INTERVAL": "500us"},
			errs: []wantErr{{"POSTBUD_URGENT_TASK_CHECK_INTERVAL", `must be at least 1ms, got "500us"`}}},
		row{name: "URGENT_TASK_CHECK_INTERVAL soon", env: map[string]string{"POSTBUD_URGENT_TASK_CHECK_INTERVAL": "soon"},
			errs: []wantErr{{"POSTBUD_URGENT_TASK_CHECK_INTERVAL", `must be a positive duration such as 30s or 2h, got "soon"`}}},
	)

	// POSTBUD_URGENT_WAKE_WAIT
	wakeWait := func(c *Config) any { return c.UrgentWakeWait }
	rows = append(rows,
		row{name: "URGENT_WAKE_WAIT unset", got: wakeWait, want: 250 * time.Millisecond},
		row{name: "URGENT_WAKE_WAIT 0", env: map[string]string{"POSTBUD_URGENT_WAKE_WAIT": "0"}, got: wakeWait, want: time.Duration(0)},
		row{name: "URGENT_WAKE_WAIT 2s", env: map[string]string{"POSTBUD_URGENT_WAKE_WAIT": "2s"}, got: wakeWait, want: 2 * time.Second},
		row{name: "URGENT_WAKE_WAIT 3s", env: map[string]string{"POSTBUD_URGENT_WAKE_WAIT": "3s"},
			errs: []wantErr{{"POSTBUD_URGENT_WAKE_WAIT", `must be 0 (off) or from 1ms to 2s, got "3s"`}}},
		row{name: "URGENT_WAKE_WAIT 500us", env: map[string]string{"POSTBUD_URGENT_WAKE_WAIT": "500us"},
			errs: []wantErr{{"POSTBUD_URGENT_WAKE_WAIT", `must be 0 (off) or from 1ms to 2s, got "500us"`}}},
		row{name: "URGENT_WAKE_WAIT soon", env: map[string]string{"POSTBUD_URGENT_WAKE_WAIT": "soon"},
			errs: []wantErr{{"POSTBUD_URGENT_WAKE_WAIT", `must be a positive duration such as 30s or 2h, got "soon"`}}},
	)

	// POSTBUD_ACK_REPLICAS, POSTBUD_ACK_TIMEOUT
	ackReplicas := func(c *Config) any { return c.AckReplicas }
	rows = append(rows,
		row{name: "ACK_REPLICAS unset", got: ackReplicas, want: 0},
		row{name: "ACK_REPLICAS 1", env: map[string]string{"POSTBUD_ACK_REPLICAS": "1"}, got: ackReplicas, want: 1},
		row{name: "ACK_REPLICAS -1", env: map[string]string{"POSTBUD_ACK_REPLICAS": "-1"},
			errs: []wantErr{{"POSTBUD_ACK_REPLICAS", `must be a whole number from 0 to 16, got "-1"`}}},
		row{name: "ACK_TIMEOUT 3s", env: map[string]string{"POSTBUD_ACK_TIMEOUT": "3s"},
			errs: []wantErr{{"POSTBUD_ACK_TIMEOUT", `must be at most 2s, got "3s"`}}},
	)

	// Quiet hours: parsed by rules.ParseQuietHours, "off" for none.
	quietSMS := func(c *Config) any { return c.QuietHours["sms"] }
	rows = append(rows,
		row{name: "POSTBUD_QUIET_HOURS_SMS off", env: map[string]string{"POSTBUD_QUIET_HOURS_SMS": "off"},
			got: quietSMS, want: rules.QuietHours{}},
		row{name: "POSTBUD_QUIET_HOURS_SMS 21:30-08:00", env: map[string]string{"POSTBUD_QUIET_HOURS_SMS": "21:30-08:00"},
			got: quietSMS, want: rules.QuietHours{Start: rules.Clock{Hour: 21, Minute: 30}, End: rules.Clock{Hour: 8}}},
	)
	for _, bad := range []string{"22:00", "24:00-07:00", "22:00-07:60", "22:00-22:00", "late"} {
		rows = append(rows, row{name: fmt.Sprintf("POSTBUD_QUIET_HOURS_SMS %q", bad), env: map[string]string{"POSTBUD_QUIET_HOURS_SMS": bad},
			errs: []wantErr{{"POSTBUD_QUIET_HOURS_SMS", fmt.Sprintf("must be HH:MM-HH:MM (Europe/Copenhagen) or off, got %q", bad)}}})
	}

	// Durations.
	for _, d := range []struct {
		env       string
		def, good time.Duration
		got       func(*Config) any
	}{
		{"POSTBUD_TASK_CHECK_INTERVAL", 200 * time.Millisecond, 10 * time.Millisecond, func(c *Config) any { return c.TaskCheckInterval }},
		{"POSTBUD_SHUTDOWN_TIMEOUT", 25 * time.Second, 55 * time.Second, func(c *Config) any { return c.ShutdownTimeout }},
		{"POSTBUD_ACK_TIMEOUT", time.Second, 300 * time.Millisecond, func(c *Config) any { return c.AckTimeout }},
		{"POSTBUD_RETRY_BASE", 5 * time.Second, 1500 * time.Millisecond, func(c *Config) any { return c.RetryBase }},
		{"POSTBUD_ALERT_TTL", 48 * time.Hour, 72 * time.Hour, func(c *Config) any { return c.AlertTTL }},
		{"POSTBUD_LETTER_TTL", 4800 * time.Hour, 5000 * time.Hour, func(c *Config) any { return c.LetterTTL }},
	} {
		rows = append(rows,
			row{name: d.env + " unset", got: d.got, want: d.def},
			row{name: d.env, env: map[string]string{d.env: d.good.String()}, got: d.got, want: d.good},
		)
		for _, bad := range []string{"0", "0s", "-1s", "30", "soon"} {
			rows = append(rows, row{name: fmt.Sprintf("%s %q", d.env, bad), env: map[string]string{d.env: bad},
				errs: []wantErr{{d.env, fmt.Sprintf("must be a positive duration such as 30s or 2h, got %q", bad)}}})
		}
	}
	rows = append(rows,
		row{name: "LETTER_TTL 4400h", env: map[string]string{"POSTBUD_LETTER_TTL": "4400h"},
			got: func(c *Config) any { return c.LetterTTL }, want: 4400 * time.Hour},
		row{name: "LETTER_TTL below 4400h", env: map[string]string{"POSTBUD_LETTER_TTL": "4399h59m"},
			errs: []wantErr{{"POSTBUD_LETTER_TTL", "must be at least 4400h"}}},
		row{name: "READ_LETTER_TTL 1h", env: map[string]string{"POSTBUD_READ_LETTER_TTL": "1h"},
			got: func(c *Config) any { return c.ReadLetterTTL }, want: time.Hour},
		row{name: "READ_LETTER_TTL below 1h", env: map[string]string{"POSTBUD_READ_LETTER_TTL": "59m"},
			errs: []wantErr{{"POSTBUD_READ_LETTER_TTL", "must be at least 1h"}}},
	)

	// POSTBUD_LOG_LEVEL and POSTBUD_LOG_FORMAT
	logLevel := func(c *Config) any { return c.LogLevel }
	logFormat := func(c *Config) any { return c.LogFormat }
	rows = append(rows, row{name: "LOG_LEVEL unset", got: logLevel, want: "info"})
	for _, v := range []string{"debug", "info", "warn", "error"} {
		rows = append(rows, row{name: "LOG_LEVEL " + v, env: map[string]string{"POSTBUD_LOG_LEVEL": v}, got: logLevel, want: v})
	}
	for _, bad := range []string{"INFO", "trace", "warning"} {
		rows = append(rows, row{name: "LOG_LEVEL " + bad, env: map[string]string{"POSTBUD_LOG_LEVEL": bad},
			errs: []wantErr{{"POSTBUD_LOG_LEVEL", fmt.Sprintf("must be one of debug, info, warn, error, got %q", bad)}}})
	}
	rows = append(rows,
		row{name: "LOG_FORMAT unset", got: logFormat, want: "json"},
		row{name: "LOG_FORMAT text", env: map[string]string{"POSTBUD_LOG_FORMAT": "text"}, got: logFormat, want: "text"},
		row{name: "LOG_FORMAT json", env: map[string]string{"POSTBUD_LOG_FORMAT": "json"}, got: logFormat, want: "json"},
		row{name: "LOG_FORMAT logfmt", env: map[string]string{"POSTBUD_LOG_FORMAT": "logfmt"},
			errs: []wantErr{{"POSTBUD_LOG_FORMAT", `must be json or text, got "logfmt"`}}},
	)

	// POSTBUD_SMTP_*
	smtp := func(c *Config) any { return c.Channels.Email }
	withSMTP := func(kv ...string) map[string]string {
		m := map[string]string{"POSTBUD_SMTP_HOST": "smtp.example.dk", "POSTBUD_SMTP_FROM": "noreply@example.dk"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	rows = append(rows,
		row{name: "SMTP unset", got: smtp, want: (*email.Config)(nil)},
		row{name: "SMTP host and from", env: withSMTP(), got: smtp,
			want: &email.Config{Host: "smtp.example.dk", Port: 587, TLSPolicy: email.TLSMandatory, From: "noreply@example.dk", Timeout: 30 * time.Second}},
		row{name: "SMTP everything", env: withSMTP("POSTBUD_SMTP_PORT", "465", "POSTBUD_SMTP_USERNAME", "postbud",
			"POSTBUD_SMTP_PASSWORD", "smtp-secret-pw", "POSTBUD_SMTP_TLS", "implicit", "POSTBUD_SMTP_TIMEOUT", "10s"), got: smtp,
			want: &email.Config{Host: "smtp.example.dk", Port: 465, Username: "postbud", Password: "smtp-secret-pw", TLSPolicy: email.TLSImplicit,
				From: "noreply@example.dk", Timeout: 10 * time.Second}},
		row{name: "SMTP_TIMEOUT", env: withSMTP("POSTBUD_SMTP_TIMEOUT", "1m"),
			got: func(c *Config) any { return c.Channels.Email.Timeout }, want: time.Minute},
		row{name: "SMTP_TLS opportunistic", env: withSMTP("POSTBUD_SMTP_TLS", "opportunistic"),
			got: func(c *Config) any { return c.Channels.Email.TLSPolicy }, want: email.TLSOpportunistic},
		row{name: "SMTP_TLS none without password", env: withSMTP("POSTBUD_SMTP_TLS", "none"),
			got: func(c *Config) any { return c.Channels.Email.TLSPolicy }, want: email.TLSNone},
		row{name: "SMTP_PORT 25", env: withSMTP("POSTBUD_SMTP_PORT", "25"),
			got: func(c *Config) any { return c.Channels.Email.Port }, want: 25},
		row{name: "SMTP_PORT 0", env: withSMTP("POSTBUD_SMTP_PORT", "0"),
			errs: []wantErr{{"POSTBUD_SMTP_PORT", `must be a whole number from 1 to 65535, got "0"`}}},
		row{name: "SMTP_PORT 65536", env: withSMTP("POSTBUD_SMTP_PORT", "65536"),
			errs: []wantErr{{"POSTBUD_SMTP_PORT", `must be a whole number from 1 to 65535, got "65536"`}}},
		row{name: "SMTP_PORT smtp", env: withSMTP("POSTBUD_SMTP_PORT", "smtp"),
			errs: []wantErr{{"POSTBUD_SMTP_PORT", `got "smtp"`}}},
		row{name: "SMTP_PORT without host", env: map[string]string{"POSTBUD_SMTP_PORT": "nope"},
			errs: []wantErr{{"POSTBUD_SMTP_PORT", `got "nope"`}}},
		row{name: "SMTP_TLS starttls", env: withSMTP("POSTBUD_SMTP_TLS", "starttls"),
			errs: []wantErr{{"POSTBUD_SMTP_TLS", `must be one of mandatory, opportunistic, implicit, none, got "starttls"`}}},
		row{name: "SMTP_FROM missing", env: withSMTP("POSTBUD_SMTP_FROM", ""),
			errs: []wantErr{{"POSTBUD_SMTP_*", "email: From: required"}}},
		row{name: "SMTP_FROM not an address", env: withSMTP("POSTBUD_SMTP_FROM", "postbud"),
			errs: []wantErr{{"POSTBUD_SMTP_*", `email: From: "postbud" is not a bare email address`}}},
		row{name: "SMTP username without password", env: withSMTP("POSTBUD_SMTP_USERNAME", "postbud"),
			errs: []wantErr{{"POSTBUD_SMTP_*", "email: Username: set without Password"}}},
		row{name: "SMTP password without username", env: withSMTP("POSTBUD_SMTP_PASSWORD", "smtp-secret-pw"),
			errs: []wantErr{{"POSTBUD_SMTP_*", "email: Password: set without Username"}}},
		row{name: "SMTP password with TLS none", env: withSMTP("POSTBUD_SMTP_USERNAME", "postbud",
			"POSTBUD_SMTP_PASSWORD", "smtp-secret-pw", "POSTBUD_SMTP_TLS", "none"),
			errs: []wantErr{{"POSTBUD_SMTP_*", `email: TLSPolicy: "none" would send Username and Password in clear text`}}},
		row{name: "SMTP password from file with TLS none", env: withSMTP("POSTBUD_SMTP_USERNAME", "postbud", "POSTBUD_SMTP_TLS", "none"),
			files: map[string]string{"POSTBUD_SMTP_PASSWORD_FILE": "smtp-file-secret-pw\n"},
			errs:  []wantErr{{"POSTBUD_SMTP_*", `email: TLSPolicy: "none" would send Username and Password in clear text`}}},
	)

	// POSTBUD_KEY_<PLATFORM>(_FILE), one per platform, stored only as SHA-256.
	for _, p := range event.Platforms() {
		name, suffix := string(p), EnvSuffix(string(p))
		env := "POSTBUD_KEY_" + suffix
		key := strings.ToLower(suffix) + "-platform-secret"
		want := []Platform{{Name: name, KeySHA256: sum(key), Rate: 2000}}
		if name != "core" {
			want = append(want, Platform{Name: "core", KeySHA256: sum(coreKey), Rate: 2000})
		}
		rows = append(rows,
			row{name: env, env: map[string]string{env: key},
				got: func(c *Config) any { return c.Platforms }, want: want},
			row{name: env + " only as SHA-256", env: map[string]string{env: key},
				got:  func(c *Config) any { return strings.Contains(fmt.Sprintf("%#v", *c), key) },
				want: false},
		)
		short := row{name: env + " short", env: map[string]string{env: "plat-secret-15c"},
			errs: []wantErr{{env, "must be at least 16 characters"}}}
		if name == "core" { // the only key in base(), so none is left
			short.errs = append(short.errs, wantErr{"POSTBUD_KEY_<PLATFORM>", "at least one platform key is required"})
		}
		rows = append(rows, short)
	}

	// Every secret: X_FILE (trailing newline trimmed), X and X_FILE both
	// set, X_FILE unreadable.
	for _, s := range []struct {
		env   string
		value string
		extra map[string]string // other variables the secret needs
		got   func(*Config) any
		want  any
		// missing: the problems besides X_FILE's when X_FILE cannot be read
		missing []wantErr
	}{
		{env: "POSTBUD_REDIS_PASSWORD", value: "redis-file-secret",
			got: redisOpt, want: Redis{Addr: "127.0.0.1:6379", Password: "redis-file-secret"}},
		{env: "POSTBUD_PSEUDONYM_KEY", value: "pseudonym-file-secret-0123456789abc",
			got: func(c *Config) any { return string(c.PseudonymKey) }, want: "pseudonym-file-secret-0123456789abc",
			missing: []wantErr{{"POSTBUD_PSEUDONYM_KEY", "required"}}},
		{env: "POSTBUD_SEAL_KEY", value: "seal-file-secret-0123456789abcdefg",
			got: func(c *Config) any { return string(c.SealKey) }, want: "seal-file-secret-0123456789abcdefg",
			missing: []wantErr{{"POSTBUD_SEAL_KEY", "required"}}},
		{env: "POSTBUD_OPS_KEY", value: "ops-file-secret-0123",
			got: func(c *Config) any { return c.OpsKeySHA256 }, want: sum("ops-file-secret-0123"),
			missing: []wantErr{{"POSTBUD_OPS_KEY", "required"}}},
		{env: "POSTBUD_KEY_CORE", value: "core-file-secret-0123",
			got: func(c *Config) any { return c.Platforms }, want: []Platform{{Name: "core", KeySHA256: sum("core-file-secret-0123"), Rate: 2000}},
			missing: []wantErr{{"POSTBUD_KEY_<PLATFORM>", "at least one platform key is required"}}},
		{env: "POSTBUD_KEY_BORGER_DK", value: "borger-file-secret-0123",
			got: func(c *Config) any { return c.Platforms }, want: []Platform{
				{Name: "borger.dk", KeySHA256: sum("borger-file-secret-0123"), Rate: 2000},
				{Name: "core", KeySHA256: sum(coreKey), Rate: 2000}}},
		{env: "POSTBUD_KEY_DIGITAL_POST_APP", value: "dpa-file-secret-0123",
			got: func(c *Config) any { return c.Platforms }, want: []Platform{
				{Name: "core", KeySHA256: sum(coreKey), Rate: 2000},
				{Name: "digital-post-app", KeySHA256: sum("dpa-file-secret-0123"), Rate: 2000}}},
		{env: "POSTBUD_KEY_E_BOKS", value: "eboks-file-secret-0123",
			got: func(c *Config) any { return c.Platforms }, want: []Platform{
				{Name: "core", KeySHA256: sum(coreKey), Rate: 2000},
				{Name: "e-boks", KeySHA256: sum("eboks-file-secret-0123"), Rate: 2000}}},
		{env: "POSTBUD_KEY_MIT_DK", value: "mitdk-file-secret-0123",
			got: func(c *Config) any { return c.Platforms }, want: []Platform{
				{Name: "core", KeySHA256: sum(coreKey), Rate: 2000},
				{Name: "mit.dk", KeySHA256: sum("mitdk-file-secret-0123"), Rate: 2000}}},
		{env: "POSTBUD_SMTP_PASSWORD", value: "smtp-file-secret",
			extra: withSMTP("POSTBUD_SMTP_USERNAME", "postbud"),
			got:   func(c *Config) any { return c.Channels.Email.Password }, want: "smtp-file-secret",
			missing: []wantErr{{"POSTBUD_SMTP_*", "Username: set without Password"}}},
	} {
		envWith := func(kv ...string) map[string]string {
			m := map[string]string{}
			for k, v := range s.extra {
				m[k] = v
			}
			for i := 0; i < len(kv); i += 2 {
				m[kv[i]] = kv[i+1]
			}
			return m
		}
		rows = append(rows,
			row{name: s.env + "_FILE newline trimmed", env: envWith(s.env, ""),
				files: map[string]string{s.env + "_FILE": s.value + "\n"}, got: s.got, want: s.want},
			row{name: s.env + "_FILE CRLF trimmed", env: envWith(s.env, ""),
				files: map[string]string{s.env + "_FILE": s.value + "\r\n"}, got: s.got, want: s.want},
			row{name: s.env + "_FILE without newline", env: envWith(s.env, ""),
				files: map[string]string{s.env + "_FILE": s.value}, got: s.got, want: s.want},
			row{name: s.env + " and " + s.env + "_FILE", env: envWith(s.env, s.value),
				files: map[string]string{s.env + "_FILE": s.value + "\n"},
				errs:  []wantErr{{s.env, "set either " + s.env + " or " + s.env + "_FILE, not both"}}},
			row{name: s.env + "_FILE unreadable", env: envWith(s.env, ""), missing: []string{s.env + "_FILE"},
				errs: append([]wantErr{{s.env + "_FILE", "cannot read the file"}}, s.missing...)},
		)
	}

	// Second providers and the failover.
	sms1 := map[string]string{"POSTBUD_SMS_TOKEN": "tok1", "POSTBUD_SMS_CALLBACK_URL": "https://postbud.example/v1/sms/reports",
		"POSTBUD_SMS_REPORT_SECRET": "secret-one"}
	with := func(a, b map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range a {
			out[k] = v
		}
		for k, v := range b {
			out[k] = v
		}
		return out
	}
	second := func(c *Config) any {
		return []any{c.Channels.SMS2, string(c.Channels.SMSReportSecret2), c.Channels.Email2, c.Channels.Failover}
	}
	rows = append(rows,
		row{name: "SMS_2 and SMTP_2", env: with(sms1, map[string]string{"POSTBUD_SMS_TOKEN_2": "tok2",
			"POSTBUD_SMS_URL_2": "https://gw2.example", "POSTBUD_SMS_REPORT_SECRET_2": "secret-two",
			"POSTBUD_SMTP_HOST": "smtp1.example", "POSTBUD_SMTP_FROM": "post@digitalpost.dk", "POSTBUD_SMTP_TLS": "implicit",
			"POSTBUD_SMTP_HOST_2": "smtp2.example", "POSTBUD_SMTP_PORT_2": "2525", "POSTBUD_SMTP_USERNAME_2": "u2",
			"POSTBUD_SMTP_PASSWORD_2": "p2-password", "POSTBUD_FAILOVER_THRESHOLD": "3", "POSTBUD_FAILOVER_OPEN_FOR": "1m",
			"POSTBUD_FAILOVER_ON_THROTTLE": "false"}),
			got: second, want: []any{
				&sms.Config{BaseURL: "https://gw2.example", Token: "tok2", Sender: "DigitalPost",
					CallbackURL: "https://postbud.example/v1/sms/reports", MaxParts: 1},
				"secret-two",
				&email.Config{Host: "smtp2.example", Port: 2525, Username: "u2", Password: "p2-password",
					TLSPolicy: email.TLSImplicit, From: "post@digitalpost.dk", Timeout: 30 * time.Second},
				Failover{Threshold: 3, OpenFor: time.Minute},
			}},
		row{name: "SMS_TOKEN_2 without the first gateway", env: map[string]string{"POSTBUD_SMS_TOKEN_2": "tok2",
			"POSTBUD_SMS_URL_2": "https://gw2.example"},
			errs: []wantErr{{"POSTBUD_SMS_TOKEN_2", "needs the first"}}},
		row{name: "SMS_2 without URL and secret", env: with(sms1, map[string]string{"POSTBUD_SMS_TOKEN_2": "tok2"}),
			errs: []wantErr{{"POSTBUD_SMS_URL_2", "required with POSTBUD_SMS_TOKEN_2"},
				{"POSTBUD_SMS_REPORT_SECRET_2", "unsigned delivery reports are refused"}}},
		row{name: "SMS_REPORT_SECRET_2 same as the first", env: with(sms1, map[string]string{"POSTBUD_SMS_TOKEN_2": "tok2",
			"POSTBUD_SMS_URL_2": "https://gw2.example", "POSTBUD_SMS_REPORT_SECRET_2": "secret-one"}),
			errs: []wantErr{{"POSTBUD_SMS_REPORT_SECRET_2", "must differ"}}},
		row{name: "SMS_URL_2 without a second gateway", env: map[string]string{"POSTBUD_SMS_URL_2": "https://gw2.example",
			"POSTBUD_SMS_REPORT_SECRET_2": "x"},
			errs: []wantErr{{"POSTBUD_SMS_URL_2", "no second SMS gateway"}, {"POSTBUD_SMS_REPORT_SECRET_2", "no second SMS gateway"}}},
		row{name: "SMS_URL_2 bad", env: with(sms1, map[string]string{"POSTBUD_SMS_TOKEN_2": "tok2",
			"POSTBUD_SMS_URL_2": "ftp://gw2.example", "POSTBUD_SMS_REPORT_SECRET_2": "secret-two"}),
			errs: []wantErr{{"POSTBUD_SMS_*_2", "BaseURL"}}},
		row{name: "SMTP_HOST_2 without the first relay", env: map[string]string{"POSTBUD_SMTP_HOST_2": "smtp2.example"},
			errs: []wantErr{{"POSTBUD_SMTP_HOST_2", "needs the first"}}},
		row{name: "SMTP_PORT_2 without a second relay", env: map[string]string{"POSTBUD_SMTP_PORT_2": "25"},
			errs: []wantErr{{"POSTBUD_SMTP_PORT_2", "no second SMTP relay"}}},
		row{name: "SMTP_TLS_2 bad", env: map[string]string{"POSTBUD_SMTP_HOST": "smtp1.example", "POSTBUD_SMTP_FROM": "post@digitalpost.dk",
			"POSTBUD_SMTP_HOST_2": "smtp2.example", "POSTBUD_SMTP_TLS_2": "sometimes"},
			errs: []wantErr{{"POSTBUD_SMTP_TLS_2", "must be one of"}}},
		row{name: "FAILOVER bad values", env: map[string]string{"POSTBUD_FAILOVER_THRESHOLD": "0",
			"POSTBUD_FAILOVER_OPEN_FOR": "soon", "POSTBUD_FAILOVER_ON_THROTTLE": "maybe"},
			errs: []wantErr{{"POSTBUD_FAILOVER_THRESHOLD", "whole number from 1 to 1000"},
				{"POSTBUD_FAILOVER_OPEN_FOR", "positive duration"}, {"POSTBUD_FAILOVER_ON_THROTTLE", "true or false"}}},
	)

	// The YAML file.
	platforms := func(c *Config) any { return c.Platforms }
	rows = append(rows,
		row{name: "YAML platforms", env: map[string]string{"POSTBUD_PLATFORM_RATE": "300"},
			yaml: fmt.Sprintf("platforms:\n  borger.dk:\n    key_sha256: %s\n    rate: 10.5\n  e-boks:\n    key_sha256: %s\n",
				hexSum("borger-yaml-key"), strings.ToUpper(hexSum("eboks-yaml-key"))),
			got: platforms, want: []Platform{
				{Name: "borger.dk", KeySHA256: sum("borger-yaml-key"), Rate: 10.5},
				{Name: "core", KeySHA256: sum(coreKey), Rate: 300},
				{Name: "e-boks", KeySHA256: sum("eboks-yaml-key"), Rate: 300},
			}},
		row{name: "YAML platforms only", env: map[string]string{"POSTBUD_KEY_CORE": ""},
			yaml: fmt.Sprintf("platforms:\n  core:\n    key_sha256: %s\n  mit.dk:\n    key_sha256: %s\n    rate: 1\n",
				hexSum("core-yaml-key"), hexSum("mitdk-yaml-key")),
			got: platforms, want: []Platform{
				{Name: "core", KeySHA256: sum("core-yaml-key"), Rate: 2000},
				{Name: "mit.dk", KeySHA256: sum("mitdk-yaml-key"), Rate: 1},
			}},
		row{name: "YAML no platforms and no keys", env: map[string]string{"POSTBUD_KEY_CORE": ""},
			yaml: "platforms: {}\n",
			errs: []wantErr{{"POSTBUD_KEY_<PLATFORM>", "at least one platform key is required"}}},
		row{name: "YAML unknown platform",
			yaml: fmt.Sprintf("platforms:\n  myspace:\n    key_sha256: %s\n", hexSum("x")),
			errs: []wantErr{{"POSTBUD_CONFIG platforms.myspace", "unknown platform"}}},
		row{name: "YAML platform by env suffix", // the YAML names platforms as the API does
			yaml: fmt.Sprintf("platforms:\n  BORGER_DK:\n    key_sha256: %s\n", hexSum("x")),
			errs: []wantErr{{"POSTBUD_CONFIG platforms.BORGER_DK", "unknown platform"}}},
		row{name: "YAML bad hex",
			yaml: "platforms:\n  borger.dk:\n    key_sha256: " + strings.Repeat("zz", 32) + "\n",
			errs: []wantErr{{"POSTBUD_CONFIG platforms.borger.dk.key_sha256", "must be 64 hex digits"}}},
		row{name: "YAML short hex",
			yaml: "platforms:\n  borger.dk:\n    key_sha256: " + hexSum("x")[:62] + "\n",
			errs: []wantErr{{"POSTBUD_CONFIG platforms.borger.dk.key_sha256", "must be 64 hex digits"}}},
		row{name: "YAML missing key_sha256",
			yaml: "platforms:\n  borger.dk:\n    rate: 5\n",
			errs: []wantErr{{"POSTBUD_CONFIG platforms.borger.dk.key_sha256", "must be 64 hex digits"}}},
		row{name: "YAML negative rate",
			yaml: fmt.Sprintf("platforms:\n  e-boks:\n    key_sha256: %s\n    rate: -1\n", hexSum("x")),
			errs: []wantErr{{"POSTBUD_CONFIG platforms.e-boks.rate", "must be ≥ 0"}}},
		row{name: "YAML NaN rate",
			yaml: fmt.Sprintf("platforms:\n  e-boks:\n    key_sha256: %s\n    rate: .nan\n", hexSum("x")),
			errs: []wantErr{{"POSTBUD_CONFIG platforms.e-boks.rate", "must be ≥ 0"}}},
		row{name: "YAML Inf rate",
			yaml: fmt.Sprintf("platforms:\n  e-boks:\n    key_sha256: %s\n    rate: .inf\n", hexSum("x")),
			errs: []wantErr{{"POSTBUD_CONFIG platforms.e-boks.rate", "must be ≥ 0"}}},
		row{name: "YAML unknown top-level key",
			yaml: "redis_url: redis://elsewhere:6379\nplatforms: {}\n",
			errs: []wantErr{{"POSTBUD_CONFIG", "field redis_url not found"}}},
		row{name: "YAML unknown platform key",
			yaml: fmt.Sprintf("platforms:\n  borger.dk:\n    key_sha256: %s\n    key: plain-yaml-secret\n", hexSum("x")),
			errs: []wantErr{{"POSTBUD_CONFIG", "field key not found"}}},
		row{name: "YAML syntax error",
			yaml: "platforms: [\n",
			errs: []wantErr{{"POSTBUD_CONFIG", "invalid YAML"}}},
		row{name: "YAML rate not a number",
			yaml: fmt.Sprintf("platforms:\n  e-boks:\n    key_sha256: %s\n    rate: fast\n", hexSum("x")),
			errs: []wantErr{{"POSTBUD_CONFIG", "invalid YAML"}}},
		row{name: "YAML and env give the same platform",
			yaml: fmt.Sprintf("platforms:\n  core:\n    key_sha256: %s\n", hexSum(coreKey)),
			errs: []wantErr{{"POSTBUD_CONFIG platforms.core", "both here and in POSTBUD_KEY_CORE"}}},
		row{name: "YAML and env _FILE give the same platform", env: map[string]string{"POSTBUD_KEY_MIT_DK": ""},
			files: map[string]string{"POSTBUD_KEY_MIT_DK_FILE": "mitdk-file-secret-0123\n"},
			yaml:  fmt.Sprintf("platforms:\n  mit.dk:\n    key_sha256: %s\n", hexSum("other")),
			errs:  []wantErr{{"POSTBUD_CONFIG platforms.mit.dk", "both here and in POSTBUD_KEY_MIT_DK"}}},
		row{name: "CONFIG unreadable", missing: []string{"POSTBUD_CONFIG"},
			errs: []wantErr{{"POSTBUD_CONFIG", "cannot read the file"}}},
	)

	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.name] {
			t.Fatalf("duplicate row name %q", r.name)
		}
		seen[r.name] = true
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			r.check(t)
		})
	}
}

// TestLoadEveryProblem: one Load with many bad variables reports them all.
func TestLoadEveryProblem(t *testing.T) {
	r := row{
		env: map[string]string{
			"POSTBUD_REDIS_URL":           "memcached://:url-secret-pw@cache:11211",
			"POSTBUD_HTTP_ADDR":           "8080",
			"POSTBUD_PSEUDONYM_KEY":       "too-short-pseudonym-secret",
			"POSTBUD_SEAL_KEY":            "too-short-seal-secret",
			"POSTBUD_OPS_KEY":             "",
			"POSTBUD_KEY_CORE":            "core-secret-0123456789",
			"POSTBUD_KEY_E_BOKS":          "eboks-shrt-sec",
			"POSTBUD_PLATFORM_RATE":       "lots",
			"POSTBUD_MAILBOX_URL":         "http://borger.dk",
			"POSTBUD_KEY_PREFIX":          "pb:",
			"POSTBUD_QUEUE_PREFIX":        "{q}",
			"POSTBUD_CONCURRENCY":         "0",
			"POSTBUD_TASK_CHECK_INTERVAL": "fast",
			"POSTBUD_SHUTDOWN_TIMEOUT":    "-1s",
			"POSTBUD_RETRY_BASE":          "5",
			"POSTBUD_ALERT_TTL":           "0s",
			"POSTBUD_LETTER_TTL":          "24h",
			"POSTBUD_LOG_LEVEL":           "verbose",
			"POSTBUD_LOG_FORMAT":          "xml",
			"POSTBUD_SMTP_HOST":           "smtp.example.dk",
			"POSTBUD_SMTP_PORT":           "99999",
			"POSTBUD_SMTP_PASSWORD":       "smtp-secret-pw",
			"POSTBUD_SMTP_TLS":            "none",
			"POSTBUD_SMTP_TIMEOUT":        "never",
			"POSTBUD_REDIS_PASSWORD":      "redis-env-secret",
		},
		files:   map[string]string{"POSTBUD_REDIS_PASSWORD_FILE": "redis-file-secret\n"},
		missing: []string{"POSTBUD_KEY_MIT_DK_FILE"},
		yaml:    fmt.Sprintf("platforms:\n  myspace:\n    key_sha256: %s\n  core:\n    key_sha256: %s\n", hexSum("x"), hexSum("y")),
		errs: []wantErr{
			{"POSTBUD_REDIS_URL", "scheme must be"},
			{"POSTBUD_REDIS_PASSWORD", "not both"},
			{"POSTBUD_HTTP_ADDR", "must be host:port"},
			{"POSTBUD_PSEUDONYM_KEY", "at least 32 bytes"},
			{"POSTBUD_SEAL_KEY", "at least 32 bytes"},
			{"POSTBUD_OPS_KEY", "required"},
			{"POSTBUD_KEY_E_BOKS", "at least 16 characters"},
			{"POSTBUD_KEY_MIT_DK_FILE", "cannot read the file"},
			{"POSTBUD_PLATFORM_RATE", "must be a number"},
			{"POSTBUD_CONFIG platforms.myspace", "unknown platform"},
			{"POSTBUD_CONFIG platforms.core", "both here and in POSTBUD_KEY_CORE"},
			{"POSTBUD_MAILBOX_URL", "https://"},
			{"POSTBUD_KEY_PREFIX", "colons"},
			{"POSTBUD_QUEUE_PREFIX", "braces"},
			{"POSTBUD_CONCURRENCY", "whole number"},
			{"POSTBUD_TASK_CHECK_INTERVAL", "positive duration"},
			{"POSTBUD_SHUTDOWN_TIMEOUT", "positive duration"},
			{"POSTBUD_RETRY_BASE", "positive duration"},
			{"POSTBUD_ALERT_TTL", "positive duration"},
			{"POSTBUD_LETTER_TTL", "at least 4400h"},
			{"POSTBUD_LOG_LEVEL", "must be one of"},
			{"POSTBUD_LOG_FORMAT", "json or text"},
			{"POSTBUD_SMTP_PORT", "whole number"},
			{"POSTBUD_SMTP_TIMEOUT", "positive duration"},
			{"POSTBUD_SMTP_*", "email: From: required"},
			{"POSTBUD_SMTP_*", "email: Password: set without Username"},
		},
	}
	r.check(t)
}

// TestLoadJoined: the error is an errors.Join, so callers can pick it apart.
func TestLoadJoined(t *testing.T) {
	env := map[string]string{"POSTBUD_HTTP_ADDR": "nope"}
	_, err := Load(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("Load: no error")
	}
	var j interface{ Unwrap() []error }
	if !errors.As(err, &j) {
		t.Fatalf("error %T is not joined", err)
	}
	if got := len(j.Unwrap()); got != 5 { // HTTP_ADDR, PSEUDONYM_KEY, SEAL_KEY, OPS_KEY, KEY_<PLATFORM>
		t.Errorf("got %d errors, want 5:\n%v", got, err)
	}
}

func TestPlatformKeyRotation(t *testing.T) {
	env := map[string]string{
		"POSTBUD_PSEUDONYM_KEY":       strings.Repeat("k", 32),
		"POSTBUD_SEAL_KEY":            strings.Repeat("s", 32),
		"POSTBUD_OPS_KEY":             "ops-key-0123456789",
		"POSTBUD_KEY_E_BOKS":          "new-e-boks-key-0123",
		"POSTBUD_KEY_E_BOKS_PREVIOUS": "old-e-boks-key-0123",
	}
	c, err := Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	var keys [][32]byte
	for _, p := range c.Platforms {
		if p.Name != "e-boks" {
			t.Errorf("unexpected platform %q", p.Name)
		}
		keys = append(keys, p.KeySHA256)
	}
	want := [][32]byte{sha256.Sum256([]byte("new-e-boks-key-0123")), sha256.Sum256([]byte("old-e-boks-key-0123"))}
	if !cmp.Equal(keys, want) {
		t.Errorf("e-boks keys %x, want the new and the previous", keys)
	}
	delete(env, "POSTBUD_KEY_E_BOKS")
	env["POSTBUD_KEY_CORE"] = "core-key-0123456789"
	if _, err := Load(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "POSTBUD_KEY_E_BOKS_PREVIOUS") {
		t.Errorf("a previous key without a current one: %v", err)
	}
}

// TestEnvSuffix pins the variable suffixes of the platforms and apps: they
// are derived from the names in package event, and deployments set them.
func TestEnvSuffix(t *testing.T) {
	want := map[string]string{
		"core":             "CORE",
		"borger.dk":        "BORGER_DK",
		"digital-post-app": "DIGITAL_POST_APP",
		"e-boks":           "E_BOKS",
		"mit.dk":           "MIT_DK",
	}
	var names []string
	for _, p := range event.Platforms() {
		names = append(names, string(p))
	}
	names = append(names, event.Apps()...)
	for _, n := range names {
		if got := EnvSuffix(n); got != want[n] {
			t.Errorf("EnvSuffix(%q) = %q, want %q", n, got, want[n])
		}
	}
}
