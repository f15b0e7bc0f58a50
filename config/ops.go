package config

import (
	"crypto/sha256"
	"fmt"
	"net"
	"regexp"
	"strings"
)

// OpsKey is one named ops key: POSTBUD_OPS_KEY is the admin key named
// "ops"; POSTBUD_OPS_KEYS(_FILE) holds more, one "name:role:key" a line.
type OpsKey struct {
	// Name is whose key it is, as the audit log records it.
	Name string
	// Role is "support" (read trails, citizens, letters' state, the
	// dashboard) or "admin" (also dashboard writes, enabling platform
	// endpoints, erasing citizens).
	Role string
	// KeySHA256 is the key's SHA-256; the key is not kept.
	KeySHA256 [32]byte
}

var opsNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// opsKeys reads POSTBUD_OPS_KEY(_FILE), POSTBUD_OPS_KEYS(_FILE),
// POSTBUD_AUDIT_FILE and POSTBUD_OPS_ADDR.
func (l *loader) opsKeys(c *Config) {
	single := l.secret("POSTBUD_OPS_KEY")
	list := l.secret("POSTBUD_OPS_KEYS")
	names := map[string]bool{}
	sums := map[[32]byte]string{}
	add := func(env, name, role, key string) {
		switch {
		case !opsNamePattern.MatchString(name):
			l.fail(env, "ops key name %q: use lower case letters, digits, '.', '_' and '-'", name)
		case role != "support" && role != "admin":
			l.fail(env, "ops key %q: role must be support or admin, got %q", name, role)
		case len(key) < 16:
			l.fail(env, "ops key %q must be at least 16 characters", name)
		case names[name]:
			l.fail(env, "two ops keys are named %q", name)
		default:
			sum := sha256.Sum256([]byte(key))
			if other, dup := sums[sum]; dup {
				l.fail(env, "ops keys %q and %q are the same key: the audit log could not tell them apart", other, name)
				return
			}
			names[name], sums[sum] = true, name
			c.OpsKeys = append(c.OpsKeys, OpsKey{Name: name, Role: role, KeySHA256: sum})
		}
	}
	switch {
	case single == "" && list == "":
		l.fail("POSTBUD_OPS_KEY", "required: the bearer token of the ops API and dashboard (or named keys in POSTBUD_OPS_KEYS_FILE)")
	case single != "" && len(single) < 16:
		l.fail("POSTBUD_OPS_KEY", "must be at least 16 characters")
	case single != "":
		c.OpsKeySHA256 = sha256.Sum256([]byte(single))
		add("POSTBUD_OPS_KEY", "ops", "admin", single)
	}
	for i, line := range strings.Split(list, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok1 := strings.Cut(line, ":")
		role, key, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			// Not the line itself: it holds a key.
			l.fail("POSTBUD_OPS_KEYS", "line %d: want name:role:key", i+1)
			continue
		}
		add("POSTBUD_OPS_KEYS", name, role, strings.TrimSpace(key))
	}
	c.AuditFile = l.getenv("POSTBUD_AUDIT_FILE")
	if c.OpsAddr = l.getenv("POSTBUD_OPS_ADDR"); c.OpsAddr != "" {
		if _, port, err := net.SplitHostPort(c.OpsAddr); err != nil {
			l.fail("POSTBUD_OPS_ADDR", "must be host:port or :port, got %q", c.OpsAddr)
		} else if c.OpsAddr == c.HTTPAddr && port != "0" {
			l.fail("POSTBUD_OPS_ADDR", "must differ from POSTBUD_HTTP_ADDR (%s)", c.HTTPAddr)
		}
	}
}

// String keeps an ops key's hash out of logs and %v.
func (k OpsKey) String() string { return fmt.Sprintf("%s (%s)", k.Name, k.Role) }
