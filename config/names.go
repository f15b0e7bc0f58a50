package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/digitalpost/postbud/dispatcher/event"
)

// variable is one POSTBUD_* variable as README's configuration table names
// it: <PLATFORM> stands for each platform, <READER> for each platform that
// reads letters (webhooks, signed events) and <APP> for each app, all as
// EnvSuffix spells them. A secret is also read as NAME_FILE.
type variable struct {
	name   string
	secret bool
}

// variables are all the variables postbud reads. Load, emit and trace read
// no other; a test keeps this list, the code and README's table the same.
var variables = []variable{
	{"POSTBUD_REDIS_URL", false}, {"POSTBUD_REDIS_PASSWORD", true},
	{"POSTBUD_HTTP_ADDR", false},
	{"POSTBUD_PSEUDONYM_KEY", true}, {"POSTBUD_SEAL_KEY", true}, {"POSTBUD_SEAL_KEY_PREVIOUS", true},
	{"POSTBUD_OPS_KEY", true}, {"POSTBUD_OPS_KEYS", true},
	{"POSTBUD_AUDIT_FILE", false}, {"POSTBUD_OPS_ADDR", false},
	{"POSTBUD_ACK_REPLICAS", false}, {"POSTBUD_ACK_TIMEOUT", false},
	{"POSTBUD_KEY_<PLATFORM>", true}, {"POSTBUD_KEY_<PLATFORM>_PREVIOUS", true},
	{"POSTBUD_CONFIG", false},
	{"POSTBUD_PLATFORM_RATE", false}, {"POSTBUD_MAILBOX_URL", false},
	{"POSTBUD_SELF_SERVICE_KEYS", true}, {"POSTBUD_SELF_SERVICE_RATE", false},
	{"POSTBUD_KEY_PREFIX", false}, {"POSTBUD_QUEUE_PREFIX", false},
	{"POSTBUD_CONCURRENCY", false}, {"POSTBUD_TASK_CHECK_INTERVAL", false}, {"POSTBUD_BATCH_SIZE", false},
	{"POSTBUD_BATCH_INFLIGHT", false},
	{"POSTBUD_BATCH_YIELD_RATE", false},
	{"POSTBUD_GROUP_ACCEPTS", false}, {"POSTBUD_WORKERS", false},
	{"POSTBUD_URGENT_CONCURRENCY", false}, {"POSTBUD_URGENT_TASK_CHECK_INTERVAL", false},
	{"POSTBUD_URGENT_WAKE_WAIT", false},
	{"POSTBUD_RETRY_BASE", false}, {"POSTBUD_SHUTDOWN_TIMEOUT", false},
	{"POSTBUD_ALERT_TTL", false}, {"POSTBUD_LETTER_TTL", false}, {"POSTBUD_READ_LETTER_TTL", false},
	{"POSTBUD_DRAIN_DELAY", false},
	{"POSTBUD_LOG_LEVEL", false}, {"POSTBUD_LOG_FORMAT", false},
	{"POSTBUD_QUIET_HOURS_SMS", false}, {"POSTBUD_QUIET_HOURS_EMAIL", false}, {"POSTBUD_QUIET_HOURS_PUSH", false},
	{"POSTBUD_COALESCE_EMAIL", false}, {"POSTBUD_COALESCE_SMS", false}, {"POSTBUD_COALESCE_PUSH", false},
	{"POSTBUD_RATE_EMAIL", false}, {"POSTBUD_RATE_SMS", false}, {"POSTBUD_RATE_APNS", false},
	{"POSTBUD_RATE_FCM", false}, {"POSTBUD_RATE_PAPER", false},
	{"POSTBUD_PAPER_FOR_MINORS", false}, {"POSTBUD_REMINDER_BEFORE", false},
	{"POSTBUD_DASHBOARD_WRITABLE", false}, {"POSTBUD_ALLOW_EVICTION", false},
	{"POSTBUD_SMTP_HOST", false}, {"POSTBUD_SMTP_PORT", false}, {"POSTBUD_SMTP_USERNAME", false},
	{"POSTBUD_SMTP_PASSWORD", true}, {"POSTBUD_SMTP_TLS", false}, {"POSTBUD_SMTP_FROM", false},
	{"POSTBUD_SMTP_TIMEOUT", false},
	{"POSTBUD_SMS_TOKEN", true}, {"POSTBUD_SMS_URL", false}, {"POSTBUD_SMS_SENDER", false},
	{"POSTBUD_SMS_MAX_PARTS", false}, {"POSTBUD_SMS_TIMEOUT", false}, {"POSTBUD_SMS_CALLBACK_URL", false},
	{"POSTBUD_SMS_REPORT_SECRET", true},
	{"POSTBUD_SMS_TOKEN_2", true}, {"POSTBUD_SMS_URL_2", false}, {"POSTBUD_SMS_SENDER_2", false},
	{"POSTBUD_SMS_CALLBACK_URL_2", false}, {"POSTBUD_SMS_REPORT_SECRET_2", true},
	{"POSTBUD_SMTP_HOST_2", false}, {"POSTBUD_SMTP_PORT_2", false}, {"POSTBUD_SMTP_USERNAME_2", false},
	{"POSTBUD_SMTP_PASSWORD_2", true}, {"POSTBUD_SMTP_TLS_2", false},
	{"POSTBUD_FAILOVER_THRESHOLD", false}, {"POSTBUD_FAILOVER_OPEN_FOR", false}, {"POSTBUD_FAILOVER_ON_THROTTLE", false},
	{"POSTBUD_APNS_KEY_ID", false}, {"POSTBUD_APNS_TEAM_ID", false}, {"POSTBUD_APNS_KEY_FILE", false},
	{"POSTBUD_APNS_KEY", false}, {"POSTBUD_APNS_TOPIC_<APP>", false}, {"POSTBUD_APNS_PRODUCTION_URL", false},
	{"POSTBUD_APNS_SANDBOX_URL", false}, {"POSTBUD_APNS_CA_FILE", false}, {"POSTBUD_APNS_TIMEOUT", false},
	{"POSTBUD_FCM_PROJECT_<APP>", false}, {"POSTBUD_FCM_CREDENTIALS_<APP>_FILE", false},
	{"POSTBUD_FCM_ENDPOINT", false}, {"POSTBUD_FCM_TIMEOUT", false},
	{"POSTBUD_PAPER_SPOOL_DIR", false}, {"POSTBUD_PAPER_URL", false}, {"POSTBUD_PAPER_TOKEN", true},
	{"POSTBUD_PAPER_TIMEOUT", false},
	{"POSTBUD_WEBHOOK_URL_<READER>", false}, {"POSTBUD_WEBHOOK_SECRET_<READER>", true},
	{"POSTBUD_WEBHOOK_TIMEOUT", false},
	{"POSTBUD_INBOUND_SECRET_<READER>", true},
	// Read by emit and trace, not by serve.
	{"POSTBUD_URL", false}, {"POSTBUD_EMIT_KEY", false},
}

// Patterns returns the variables as README's table names them, a secret's
// NAME_FILE included, sorted.
func Patterns() []string {
	var out []string
	for _, v := range variables {
		out = append(out, v.name)
		if v.secret {
			out = append(out, v.name+"_FILE")
		}
	}
	slices.Sort(out)
	return out
}

// Names returns every variable postbud reads, the placeholders expanded,
// sorted.
func Names() []string {
	var platforms, readers []string
	for _, p := range event.Platforms() {
		platforms = append(platforms, EnvSuffix(string(p)))
	}
	for _, p := range event.ReadingPlatforms() {
		readers = append(readers, EnvSuffix(string(p)))
	}
	var apps []string
	for _, a := range event.Apps() {
		apps = append(apps, EnvSuffix(a))
	}
	var out []string
	for _, p := range Patterns() {
		out = append(out, expand(p, map[string][]string{"<PLATFORM>": platforms, "<READER>": readers, "<APP>": apps})...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func expand(p string, with map[string][]string) []string {
	for ph, values := range with {
		if strings.Contains(p, ph) {
			var out []string
			for _, v := range values {
				out = append(out, expand(strings.Replace(p, ph, v, 1), with)...)
			}
			return out
		}
	}
	return []string{p}
}

// Unknown reports each POSTBUD_* variable in environ (os.Environ's
// NAME=VALUE form, or bare names) that postbud does not read, with the
// closest known name as a hint: a misspelt variable is an error, not
// silently ignored.
func Unknown(environ []string) []error {
	known := Names()
	var errs []error
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "POSTBUD_") {
			continue
		}
		if _, ok := slices.BinarySearch(known, name); ok {
			continue
		}
		msg := "unknown variable: postbud does not read it"
		if c := closest(name, known); c != "" {
			msg += fmt.Sprintf("; did you mean %s?", c)
		}
		errs = append(errs, fmt.Errorf("%s: %s", name, msg))
	}
	return errs
}

// closest returns the name in known nearest to name by edit distance, if
// it is near enough to be a likely misspelling.
func closest(name string, known []string) string {
	best, bestD := "", len(name)/3+1
	for _, k := range known {
		if d := levenshtein(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
