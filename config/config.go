// Package config reads postbud's configuration from environment variables
// (prefix POSTBUD_, every secret also as *_FILE) and, for the structured
// parts, from a YAML file named by POSTBUD_CONFIG. Load reports every
// problem at once, each naming its variable or key; nothing is silently
// corrected.
package config

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/rules"
)

// EnvSuffix returns the environment variable suffix of a platform or app
// (event.Platforms, event.Apps): upper case, with "." and "-" as "_", so
// borger.dk is POSTBUD_KEY_BORGER_DK and e-boks POSTBUD_APNS_TOPIC_E_BOKS.
func EnvSuffix(name string) string {
	return strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(name))
}

// Config is postbud's configuration. Defaults are given beside each field.
type Config struct {
	// RedisURL (POSTBUD_REDIS_URL, default redis://127.0.0.1:6379/0):
	// redis://[user[:password]@]host:port[/db], rediss:// for TLS, or
	// redis-sentinel://[user[:password]@]host:port[,host:port...][/db]?master=NAME
	// for a primary behind Sentinel. POSTBUD_REDIS_PASSWORD(_FILE) overrides
	// the URL's password.
	RedisURL string
	// Redis is RedisURL parsed (with POSTBUD_REDIS_PASSWORD applied).
	Redis Redis
	// HTTPAddr (POSTBUD_HTTP_ADDR, default :8080) is where the HTTP server
	// listens.
	HTTPAddr string
	// PseudonymKey (POSTBUD_PSEUDONYM_KEY(_FILE), required, ≥ 32 bytes) is
	// the HMAC key citizens' CPR numbers are pseudonymised under. Changing
	// it orphans every stored citizen.
	PseudonymKey []byte
	// SealKey (POSTBUD_SEAL_KEY(_FILE), required, ≥ 32 bytes) is the
	// secret citizens' contact data is sealed under in Redis and in task
	// payloads (AES-256-GCM, dispatcher/seal). SealKeyPrevious
	// (POSTBUD_SEAL_KEY_PREVIOUS(_FILE)) still opens what the previous key
	// sealed, during a rotation, until `postbud reseal` has sealed
	// everything under the new one.
	SealKey, SealKeyPrevious []byte
	// OpsKeySHA256 is the SHA-256 of POSTBUD_OPS_KEY(_FILE), the admin ops
	// key named "ops"; zero when only POSTBUD_OPS_KEYS is set.
	OpsKeySHA256 [32]byte
	// OpsKeys are every ops key, each named and with a role:
	// POSTBUD_OPS_KEY as admin "ops", and the "name:role:key" lines of
	// POSTBUD_OPS_KEYS(_FILE) (role support or admin; blank lines and
	// # comments skipped). At least one ops key is required.
	OpsKeys []OpsKey
	// AuditFile (POSTBUD_AUDIT_FILE, default: stderr) is where the audit
	// log of ops requests and refused authentications is appended, as
	// JSON lines each with "audit":true.
	AuditFile string
	// OpsAddr (POSTBUD_OPS_ADDR, default: none) is a listener of its own
	// for /metrics, /monitoring/ and the ops API; when set, the
	// POSTBUD_HTTP_ADDR listener serves none of them.
	OpsAddr string
	// Platforms are the platforms allowed to send events, each with the
	// SHA-256 of its key: POSTBUD_KEY_<PLATFORM>(_FILE) in clear, or
	// key_sha256 in the YAML file. At least one is required. During a key
	// rotation POSTBUD_KEY_<PLATFORM>_PREVIOUS(_FILE) keeps the old key
	// valid too (a second entry with the same name).
	Platforms []Platform
	// PlatformRate (POSTBUD_PLATFORM_RATE, default 2000) is the events per
	// second one platform may send to one replica; YAML rate overrides it.
	PlatformRate float64
	// SelfService are the authorities' self-service systems that may ask
	// whether a citizen is exempt, each with its context and the SHA-256
	// of its key: the "name:context:key" lines of
	// POSTBUD_SELF_SERVICE_KEYS(_FILE) (context public, court or
	// business; a name twice with one context during a key rotation), or
	// self_service in the YAML file. None by default.
	SelfService []SelfService
	// SelfServiceRate (POSTBUD_SELF_SERVICE_RATE, default 50) is the
	// queries per second one self-service system may ask of one replica;
	// YAML rate overrides it.
	SelfServiceRate float64
	// MailboxURL (POSTBUD_MAILBOX_URL, default https://www.borger.dk/digitalpost)
	// is the one link alerts carry.
	MailboxURL string
	// KeyPrefix (POSTBUD_KEY_PREFIX, default pb) starts postbud's Redis keys.
	KeyPrefix string
	// QueuePrefix (POSTBUD_QUEUE_PREFIX, default postbud) names the asynq
	// queues PREFIX.urgent, PREFIX.normal and PREFIX.bulk.
	QueuePrefix string
	// Concurrency (POSTBUD_CONCURRENCY, default 50) is the number of tasks
	// one replica's main worker server works on at once, of every lane
	// (urgent first).
	Concurrency int
	// BatchSize (POSTBUD_BATCH_SIZE, default 200) is the most letters of
	// one lane one batch task carries (POST /v1/events/batch).
	BatchSize int
	// BatchInflight (POSTBUD_BATCH_INFLIGHT, default 2000) is the most
	// letters of batch tasks one replica processes at once; more tasks
	// wait for room, holding their payload alone. It bounds the replica's
	// memory (≈ 6 KB of heap a letter being processed).
	BatchInflight int
	// BatchYieldRate (POSTBUD_BATCH_YIELD_RATE, default 5000; 0 = off) is
	// the most letters a second the batch tasks of all replicas together
	// process (a rate shared in Redis) while the urgent lane's tasks flow
	// (one was enqueued within the last second, by any replica: an urgent
	// letter, a read, a badge, a confirmation code), in parts of 25
	// letters: a release's drain leaves Redis idle time for the urgent
	// lane's commands. With no urgent-lane task for a second the drain
	// goes at full speed.
	BatchYieldRate int
	// GroupAccepts (POSTBUD_GROUP_ACCEPTS, default true) enqueues the
	// letters (not urgent ones) that single-event requests bring at once
	// together, a task per group, as a batch's: asynq's Redis cost is
	// paid per group. false: a task for each letter.
	GroupAccepts bool
	// TaskCheckInterval (POSTBUD_TASK_CHECK_INTERVAL, default 200ms) is how
	// often the idle main worker server polls its three lanes for tasks:
	// lower is lower latency for normal and bulk letters on an idle
	// replica (urgent ones have the urgent server's wake-up) for three
	// Redis script calls a poll.
	TaskCheckInterval time.Duration
	// Workers (POSTBUD_WORKERS, default all) is which worker servers a
	// replica runs: all (both), urgent (the urgent server alone: a
	// deployment of urgent workers on cores of their own), main (the main
	// server alone, normal and bulk lanes) or none (ingest and the ops API only).
	// Between them the replicas of one Redis must run both servers.
	Workers string
	// UrgentConcurrency (POSTBUD_URGENT_CONCURRENCY, default 20) is the
	// number of urgent-lane tasks (urgent letters, read state, its sync
	// and badges) one replica's urgent worker server works on at once, in
	// slots of their own: a provider that hangs and fills the main
	// server's slots cannot take them.
	UrgentConcurrency int
	// UrgentTaskCheckInterval (POSTBUD_URGENT_TASK_CHECK_INTERVAL, default
	// 8ms, at least 1ms) is how often the idle urgent worker server polls
	// its one queue: an urgent letter on an idle replica waits 0.5–1.5 ×
	// this for the next poll, and each poll is one Redis script call.
	UrgentTaskCheckInterval time.Duration
	// UrgentWakeWait (POSTBUD_URGENT_WAKE_WAIT, default 250ms, 1ms–2s;
	// 0 = off) is how long the idle urgent worker server, finding its
	// queue empty, waits for a wake-up token that an urgent enqueue pushes
	// (package dispatcher/wake) before asynq polls again: an urgent letter
	// on an idle replica starts within a round trip of its enqueue, and
	// the idle server calls Redis a few times a second instead of once
	// every POSTBUD_URGENT_TASK_CHECK_INTERVAL. Shutdown may wait as long.
	// Below go-redis's 3 s read timeout, which a wait must not reach.
	UrgentWakeWait time.Duration
	// ShutdownTimeout (POSTBUD_SHUTDOWN_TIMEOUT, default 25s) bounds the
	// time in-flight work may take to finish on SIGTERM. Keep a
	// Kubernetes terminationGracePeriodSeconds above it.
	ShutdownTimeout time.Duration
	// AckReplicas (POSTBUD_ACK_REPLICAS, default 0) is how many Redis
	// replicas must hold an accepted event before its 202 is answered,
	// and a task's outcome before asynq marks the task done (Redis WAIT).
	// 0 answers once the primary has it, as before.
	AckReplicas int
	// AckTimeout (POSTBUD_ACK_TIMEOUT, default 1s, at most 2s) is how long
	// to wait for those replicas; longer is answered 503.
	AckTimeout time.Duration
	// RetryBase (POSTBUD_RETRY_BASE, default 5s) is the first backoff step
	// of a failed delivery; steps double up to an hour, with jitter.
	RetryBase time.Duration
	// AlertTTL (POSTBUD_ALERT_TTL, default 48h): an alert that could only
	// go out later than this after its letter is dropped and recorded.
	AlertTTL time.Duration
	// LetterTTL (POSTBUD_LETTER_TTL, default 4800h = 200 days) is how long a
	// letter's read state and trail are kept.
	LetterTTL time.Duration
	// ReadLetterTTL (POSTBUD_READ_LETTER_TTL, default 720h = 30 days) is
	// how long a letter is kept once read: only unread letters need
	// LetterTTL, for the 6-month paper forwarding.
	ReadLetterTTL time.Duration
	// DrainDelay (POSTBUD_DRAIN_DELAY, default 2s; 0 for none) is how long
	// /readyz answers 503 before the HTTP listener closes on SIGTERM, so
	// load balancers stop sending first.
	DrainDelay time.Duration
	// LogLevel (POSTBUD_LOG_LEVEL, default info): debug, info, warn, error.
	LogLevel string
	// LogFormat (POSTBUD_LOG_FORMAT, default json): json or text.
	LogFormat string
	// QuietHours are the hours, Europe/Copenhagen, in which a channel's
	// alerts that are not urgent wait for the window's end:
	// POSTBUD_QUIET_HOURS_SMS (default 22:00-07:00), POSTBUD_QUIET_HOURS_EMAIL
	// and POSTBUD_QUIET_HOURS_PUSH (default none); "off" for none (the zero
	// QuietHours). Parsed by rules.ParseQuietHours.
	QuietHours map[string]rules.QuietHours
	// PaperForMinors (POSTBUD_PAPER_FOR_MINORS, default true) sends public
	// letters to citizens under 15 on paper; false sends nothing.
	PaperForMinors bool
	// ReminderBefore (POSTBUD_REMINDER_BEFORE, default 72h; 0 = off) is how
	// long before a letter's reply_by a reminder goes out if it is unread.
	ReminderBefore time.Duration
	// Coalesce are the channels' coalescing windows: letters to one
	// citizen within the window after an alert become one alert
	// (POSTBUD_COALESCE_EMAIL, _SMS, _PUSH; default 60s; 0 = off).
	Coalesce map[string]time.Duration
	// Rates are the channels' send rates per second across all replicas
	// (POSTBUD_RATE_EMAIL, _SMS, _APNS, _FCM, _PAPER; default 0 =
	// unlimited): a send over the rate waits without spending a retry.
	Rates map[string]int
	// DashboardWritable (POSTBUD_DASHBOARD_WRITABLE, default false) lets
	// the asynq dashboard at /monitoring/ (always behind the ops key) run,
	// delete and archive tasks; read-only otherwise.
	DashboardWritable bool
	// AllowEviction (POSTBUD_ALLOW_EVICTION, default false) lets postbud
	// serve on a Redis whose maxmemory-policy may evict keys. Eviction
	// loses queued alerts and read state: only for tests and dev.
	AllowEviction bool
	// Channels are the email, SMS, push and paper channels.
	Channels Channels
}

// Redis describes postbud's Redis as POSTBUD_REDIS_URL gives it: one
// server (Addr), or a primary behind Sentinel (SentinelMaster and
// SentinelAddrs). It names no client library: cmd/postbud builds the asynq
// and go-redis options from it.
type Redis struct {
	// Addr is host:port of a single server; empty with Sentinel.
	Addr string
	// SentinelMaster is the master set name the sentinels monitor, and
	// SentinelAddrs their host:port; SentinelPassword authenticates to
	// them (?sentinel_password=).
	SentinelMaster   string
	SentinelAddrs    []string
	SentinelPassword string
	// Username and Password authenticate to Redis (ACL user, or password
	// only).
	Username, Password string
	// DB is the database number, 0–15.
	DB int
	// TLS is set for rediss://, and for redis-sentinel:// with ?tls=true.
	TLS bool
}

// Sentinel reports whether the primary is found through Sentinel.
func (r Redis) Sentinel() bool { return r.SentinelMaster != "" || len(r.SentinelAddrs) > 0 }

// TLSConfig returns the TLS configuration of the connections, or nil
// without TLS: TLS 1.2 or later, and for a single server the name of its
// host to verify.
func (r Redis) TLSConfig() *tls.Config {
	if !r.TLS {
		return nil
	}
	if r.Sentinel() {
		return &tls.Config{MinVersion: tls.VersionTLS12}
	}
	host, _, err := net.SplitHostPort(r.Addr)
	if err != nil {
		host = r.Addr
	}
	return &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
}

// Platform is one platform's credentials.
type Platform struct {
	Name      string
	KeySHA256 [32]byte
	Rate      float64
}

// file is the YAML file's shape.
type file struct {
	Platforms map[string]struct {
		KeySHA256 string  `yaml:"key_sha256"`
		Rate      float64 `yaml:"rate"`
	} `yaml:"platforms"`
	Apps        map[string]appsFile        `yaml:"apps"`
	SelfService map[string]selfServiceFile `yaml:"self_service"`
}

type loader struct {
	getenv   func(string) string
	readFile func(string) ([]byte, error)
	errs     []error
	// selfServiceFile is the YAML file's self_service, once read.
	selfServiceFile map[string]selfServiceFile
}

func (l *loader) fail(name, format string, args ...any) {
	l.errs = append(l.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

func (l *loader) str(name, def string) string {
	if v := l.getenv(name); v != "" {
		return v
	}
	return def
}

// secret reads NAME or NAME_FILE (not both).
func (l *loader) secret(name string) string {
	v, f := l.getenv(name), l.getenv(name+"_FILE")
	switch {
	case v != "" && f != "":
		l.fail(name, "set either %s or %s_FILE, not both", name, name)
	case f != "":
		b, err := l.readFile(f)
		if err != nil {
			l.fail(name+"_FILE", "cannot read the file: %v", errors.Unwrap(err))
			return ""
		}
		return strings.TrimRight(string(b), "\r\n")
	}
	return v
}

func (l *loader) boolean(name string, def bool) bool {
	switch v := l.getenv(name); v {
	case "":
		return def
	case "true", "1":
		return true
	case "false", "0":
		return false
	default:
		l.fail(name, "must be true or false, got %q", v)
		return def
	}
}

func (l *loader) duration(name string, def time.Duration) time.Duration {
	v := l.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		l.fail(name, "must be a positive duration such as 30s or 2h, got %q", v)
		return def
	}
	return d
}

func (l *loader) integer(name string, def, lo, hi int) int {
	v := l.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		l.fail(name, "must be a whole number from %d to %d, got %q", lo, hi, v)
		return def
	}
	return n
}

// Load reads the configuration. getenv is os.Getenv in production; tests
// pass their own. Every problem is reported, joined, each naming its
// variable. Load cannot see variables it does not ask for: LoadEnviron
// also refuses unknown ones.
func Load(getenv func(string) string) (*Config, error) {
	return LoadEnviron(getenv, nil)
}

// LoadEnviron is Load that also reports every POSTBUD_* variable in
// environ (os.Environ in production) that postbud does not read, with the
// closest known name as a hint. A nil environ checks nothing.
func LoadEnviron(getenv func(string) string, environ func() []string) (*Config, error) {
	l := &loader{getenv: getenv, readFile: os.ReadFile}
	if environ != nil {
		l.errs = append(l.errs, Unknown(environ())...)
	}
	c := &Config{}
	c.RedisURL = l.str("POSTBUD_REDIS_URL", "redis://127.0.0.1:6379/0")
	c.Redis = l.redis(c.RedisURL, l.secret("POSTBUD_REDIS_PASSWORD"))
	c.HTTPAddr = l.str("POSTBUD_HTTP_ADDR", ":8080")
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		l.fail("POSTBUD_HTTP_ADDR", "must be host:port or :port, got %q", c.HTTPAddr)
	}
	switch k := l.secret("POSTBUD_PSEUDONYM_KEY"); {
	case k == "":
		l.fail("POSTBUD_PSEUDONYM_KEY", "required: a random secret of at least 32 bytes (e.g. openssl rand -hex 32)")
	case len(k) < 32:
		l.fail("POSTBUD_PSEUDONYM_KEY", "must be at least 32 bytes, got %d", len(k))
	default:
		c.PseudonymKey = []byte(k)
	}
	switch k := l.secret("POSTBUD_SEAL_KEY"); {
	case k == "":
		l.fail("POSTBUD_SEAL_KEY", "required: a random secret of at least 32 bytes (e.g. openssl rand -hex 32)")
	case len(k) < 32:
		l.fail("POSTBUD_SEAL_KEY", "must be at least 32 bytes, got %d", len(k))
	default:
		c.SealKey = []byte(k)
	}
	switch k := l.secret("POSTBUD_SEAL_KEY_PREVIOUS"); {
	case k == "":
	case len(k) < 32:
		l.fail("POSTBUD_SEAL_KEY_PREVIOUS", "must be at least 32 bytes, got %d", len(k))
	case k == string(c.SealKey):
		l.fail("POSTBUD_SEAL_KEY_PREVIOUS", "is POSTBUD_SEAL_KEY: the previous key must be the one it replaced")
	default:
		c.SealKeyPrevious = []byte(k)
	}
	l.opsKeys(c)
	c.PlatformRate = 2000
	if v := getenv("POSTBUD_PLATFORM_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
			l.fail("POSTBUD_PLATFORM_RATE", "must be a number ≥ 0 (events per second; 0 = unlimited), got %q", v)
		} else {
			c.PlatformRate = r
		}
	}
	apps := l.platforms(c)
	l.selfService(c, l.selfServiceFile)
	c.MailboxURL = l.str("POSTBUD_MAILBOX_URL", "https://www.borger.dk/digitalpost")
	if u, err := url.Parse(c.MailboxURL); err != nil || u.Scheme != "https" || u.Host == "" {
		l.fail("POSTBUD_MAILBOX_URL", "must be an https:// URL, got %q", c.MailboxURL)
	}
	c.KeyPrefix = l.str("POSTBUD_KEY_PREFIX", "pb")
	c.QueuePrefix = l.str("POSTBUD_QUEUE_PREFIX", "postbud")
	for _, n := range []string{"POSTBUD_KEY_PREFIX", "POSTBUD_QUEUE_PREFIX"} {
		if v := l.str(n, "x"); strings.ContainsAny(v, "{}: \t") {
			l.fail(n, "must not contain braces, colons or spaces, got %q", v)
		}
	}
	c.Concurrency = l.integer("POSTBUD_CONCURRENCY", 50, 1, 10000)
	c.BatchSize = l.integer("POSTBUD_BATCH_SIZE", 200, 1, 500)
	c.BatchInflight = l.integer("POSTBUD_BATCH_INFLIGHT", 2000, 1, 100000)
	c.BatchYieldRate = l.integer("POSTBUD_BATCH_YIELD_RATE", 5000, 0, 1000000)
	c.GroupAccepts = l.boolean("POSTBUD_GROUP_ACCEPTS", true)
	c.TaskCheckInterval = l.duration("POSTBUD_TASK_CHECK_INTERVAL", 200*time.Millisecond)
	c.Workers = l.str("POSTBUD_WORKERS", "all")
	if !oneOf(c.Workers, "all", "urgent", "main", "none") {
		l.fail("POSTBUD_WORKERS", "must be one of all, urgent, main, none, got %q", c.Workers)
	}
	c.UrgentConcurrency = l.integer("POSTBUD_URGENT_CONCURRENCY", 20, 1, 10000)
	c.UrgentTaskCheckInterval = l.duration("POSTBUD_URGENT_TASK_CHECK_INTERVAL", 8*time.Millisecond)
	if c.UrgentTaskCheckInterval < time.Millisecond {
		// Each idle poll is a Redis script call: below 1 ms the polling
		// alone would cost Redis a noticeable share of a core per replica.
		l.fail("POSTBUD_URGENT_TASK_CHECK_INTERVAL", "must be at least 1ms, got %q", l.getenv("POSTBUD_URGENT_TASK_CHECK_INTERVAL"))
	}
	c.UrgentWakeWait = 250 * time.Millisecond
	if v := l.getenv("POSTBUD_URGENT_WAKE_WAIT"); v == "0" || v == "0s" {
		c.UrgentWakeWait = 0
	} else if c.UrgentWakeWait = l.duration("POSTBUD_URGENT_WAKE_WAIT", 250*time.Millisecond); c.UrgentWakeWait < time.Millisecond || c.UrgentWakeWait > 2*time.Second {
		l.fail("POSTBUD_URGENT_WAKE_WAIT", "must be 0 (off) or from 1ms to 2s, got %q", v)
	}
	c.ShutdownTimeout = l.duration("POSTBUD_SHUTDOWN_TIMEOUT", 25*time.Second)
	c.AckReplicas = l.integer("POSTBUD_ACK_REPLICAS", 0, 0, 16)
	c.AckTimeout = l.duration("POSTBUD_ACK_TIMEOUT", time.Second)
	if c.AckTimeout > 2*time.Second {
		// The WAIT shares a pipeline whose read times out after 3 s.
		l.fail("POSTBUD_ACK_TIMEOUT", "must be at most 2s, got %q", l.getenv("POSTBUD_ACK_TIMEOUT"))
	}
	c.RetryBase = l.duration("POSTBUD_RETRY_BASE", 5*time.Second)
	c.AlertTTL = l.duration("POSTBUD_ALERT_TTL", 48*time.Hour)
	c.LetterTTL = l.duration("POSTBUD_LETTER_TTL", 4800*time.Hour)
	if c.LetterTTL < 4400*time.Hour {
		l.fail("POSTBUD_LETTER_TTL", "must be at least 4400h (6 months and a margin): unread letters of the last 6 months are forwarded on paper on exemption")
	}
	c.ReadLetterTTL = l.duration("POSTBUD_READ_LETTER_TTL", 720*time.Hour)
	if c.ReadLetterTTL > c.LetterTTL && c.LetterTTL >= 4400*time.Hour {
		l.fail("POSTBUD_READ_LETTER_TTL", "must not exceed POSTBUD_LETTER_TTL")
	}
	if c.ReadLetterTTL < time.Hour {
		// A batch task writes a letter's outcomes without renewing the
		// expiry its arrival set (LetterWrite.Follows): the expiry must
		// outlast the task (15 minutes).
		l.fail("POSTBUD_READ_LETTER_TTL", "must be at least 1h, got %q", l.getenv("POSTBUD_READ_LETTER_TTL"))
	}
	c.DrainDelay = 2 * time.Second
	if v := l.getenv("POSTBUD_DRAIN_DELAY"); v == "0" || v == "0s" {
		c.DrainDelay = 0
	} else {
		c.DrainDelay = l.duration("POSTBUD_DRAIN_DELAY", 2*time.Second)
	}
	c.LogLevel = l.str("POSTBUD_LOG_LEVEL", "info")
	if !oneOf(c.LogLevel, "debug", "info", "warn", "error") {
		l.fail("POSTBUD_LOG_LEVEL", "must be one of debug, info, warn, error, got %q", c.LogLevel)
	}
	c.LogFormat = l.str("POSTBUD_LOG_FORMAT", "json")
	if !oneOf(c.LogFormat, "json", "text") {
		l.fail("POSTBUD_LOG_FORMAT", "must be json or text, got %q", c.LogFormat)
	}
	c.QuietHours = map[string]rules.QuietHours{}
	for ch, def := range map[string]string{"sms": "22:00-07:00", "email": "", "push": ""} {
		name := "POSTBUD_QUIET_HOURS_" + strings.ToUpper(ch)
		v := l.str(name, def)
		if v == "off" {
			v = ""
		}
		q, err := rules.ParseQuietHours(v)
		if err != nil {
			l.fail(name, "must be HH:MM-HH:MM (Europe/Copenhagen) or off, got %q: %v", v, err)
		}
		c.QuietHours[ch] = q
	}
	c.PaperForMinors = l.boolean("POSTBUD_PAPER_FOR_MINORS", true)
	c.Coalesce = map[string]time.Duration{}
	for _, ch := range []string{"email", "sms", "push"} {
		name := "POSTBUD_COALESCE_" + strings.ToUpper(ch)
		if v := l.getenv(name); v == "0" || v == "0s" {
			continue
		}
		c.Coalesce[ch] = l.duration(name, time.Minute)
	}
	c.Rates = map[string]int{}
	for _, ch := range []string{"email", "sms", "apns", "fcm", "paper"} {
		if n := l.integer("POSTBUD_RATE_"+strings.ToUpper(ch), 0, 0, 1000000); n > 0 {
			c.Rates[ch] = n
		}
	}
	c.DashboardWritable = l.boolean("POSTBUD_DASHBOARD_WRITABLE", false)
	c.AllowEviction = l.boolean("POSTBUD_ALLOW_EVICTION", false)
	c.ReminderBefore = 72 * time.Hour
	if v := l.getenv("POSTBUD_REMINDER_BEFORE"); v == "0" {
		c.ReminderBefore = 0
	} else {
		c.ReminderBefore = l.duration("POSTBUD_REMINDER_BEFORE", 72*time.Hour)
	}
	l.channels(&c.Channels, apps)
	if err := errors.Join(l.errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func oneOf(s string, set ...string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

func (l *loader) platforms(c *Config) (apps map[string]appsFile) {
	byName := map[string]*Platform{}
	var order []string
	var previous []Platform
	for _, p := range event.Platforms() {
		name := string(p)
		env := "POSTBUD_KEY_" + EnvSuffix(name)
		if k := l.secret(env); k != "" {
			if len(k) < 16 {
				l.fail(env, "must be at least 16 characters")
				continue
			}
			byName[name] = &Platform{Name: name, KeySHA256: sha256.Sum256([]byte(k)), Rate: c.PlatformRate}
			order = append(order, name)
			// During a rotation the old key stays valid until removed.
			if prev := l.secret(env + "_PREVIOUS"); prev != "" {
				if len(prev) < 16 {
					l.fail(env+"_PREVIOUS", "must be at least 16 characters")
				} else {
					previous = append(previous, Platform{Name: name, KeySHA256: sha256.Sum256([]byte(prev)), Rate: c.PlatformRate})
				}
			}
		} else if l.getenv(env+"_PREVIOUS") != "" || l.getenv(env+"_PREVIOUS_FILE") != "" {
			l.fail(env+"_PREVIOUS", "set without %s: the previous key only stays valid beside a current one", env)
		}
	}
	if path := l.getenv("POSTBUD_CONFIG"); path != "" {
		b, err := l.readFile(path)
		if err != nil {
			l.fail("POSTBUD_CONFIG", "cannot read the file: %v", errors.Unwrap(err))
		} else {
			var f file
			defer func() { apps, l.selfServiceFile = f.Apps, f.SelfService }()
			dec := yaml.NewDecoder(strings.NewReader(string(b)))
			dec.KnownFields(true)
			if err := dec.Decode(&f); err != nil {
				l.fail("POSTBUD_CONFIG", "invalid YAML: %v", err)
			}
			for name, p := range f.Platforms {
				key := "POSTBUD_CONFIG platforms." + name
				if !event.IsPlatform(event.Platform(name)) {
					l.fail(key, "unknown platform (want core, borger.dk, digital-post-app, e-boks or mit.dk)")
					continue
				}
				if byName[name] != nil {
					l.fail(key, "key given both here and in POSTBUD_KEY_%s", EnvSuffix(name))
					continue
				}
				raw, err := hex.DecodeString(p.KeySHA256)
				if err != nil || len(raw) != 32 {
					l.fail(key+".key_sha256", "must be 64 hex digits (sha256sum of the key)")
					continue
				}
				if p.Rate < 0 || math.IsNaN(p.Rate) || math.IsInf(p.Rate, 0) {
					l.fail(key+".rate", "must be ≥ 0")
				}
				pl := &Platform{Name: name, Rate: c.PlatformRate}
				copy(pl.KeySHA256[:], raw)
				if p.Rate > 0 {
					pl.Rate = p.Rate
				}
				byName[name] = pl
				order = append(order, name)
			}
		}
	}
	if len(byName) == 0 {
		l.fail("POSTBUD_KEY_<PLATFORM>", "at least one platform key is required (e.g. POSTBUD_KEY_CORE or POSTBUD_KEY_BORGER_DK, or platforms in POSTBUD_CONFIG)")
	}
	for _, n := range order {
		c.Platforms = append(c.Platforms, *byName[n])
	}
	c.Platforms = append(c.Platforms, previous...)
	return apps
}

// redis parses the Redis URL.
func (l *loader) redis(raw, password string) Redis {
	const name = "POSTBUD_REDIS_URL"
	u, err := url.Parse(raw)
	if err != nil {
		l.fail(name, "not a URL")
		return Redis{}
	}
	user := u.User.Username()
	if p, ok := u.User.Password(); ok && password == "" {
		password = p
	}
	db := 0
	if p := strings.Trim(u.Path, "/"); p != "" {
		if db, err = strconv.Atoi(p); err != nil || db < 0 || db > 15 {
			l.fail(name, "the path must be a database number 0–15")
		}
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" || strings.Contains(u.Host, ",") {
			l.fail(name, "needs one host:port")
			return Redis{}
		}
		return Redis{Addr: hostPort(u.Host, "6379"), Username: user, Password: password, DB: db, TLS: u.Scheme == "rediss"}
	case "redis-sentinel":
		master := u.Query().Get("master")
		if master == "" {
			l.fail(name, "redis-sentinel:// needs ?master=NAME")
		}
		var addrs []string
		for _, h := range strings.Split(u.Host, ",") {
			if h != "" {
				addrs = append(addrs, hostPort(h, "26379"))
			}
		}
		if len(addrs) == 0 {
			l.fail(name, "redis-sentinel:// needs at least one sentinel host:port")
		}
		return Redis{SentinelMaster: master, SentinelAddrs: addrs, Username: user, Password: password, DB: db,
			SentinelPassword: u.Query().Get("sentinel_password"), TLS: u.Query().Get("tls") == "true"}
	}
	l.fail(name, "scheme must be redis, rediss or redis-sentinel, got %q", u.Scheme)
	return Redis{}
}

// hostPort adds the default port to h if it has none: 6379 for Redis,
// 26379 for Sentinel.
func hostPort(h, port string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	return net.JoinHostPort(h, port)
}
