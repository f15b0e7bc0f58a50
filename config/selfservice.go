package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/digitalpost/postbud/dispatcher/rules"
)

// SelfService is one of the authorities' self-service systems, allowed to
// ask whether a citizen is exempt (POST /v1/self-service/exemption) and
// nothing else.
type SelfService struct {
	// Name is whose key it is, as the audit log records it.
	Name string
	// Context is public, court or business: whether an exemption from
	// Digital Post releases the citizen from its self-service.
	Context rules.Context
	// KeySHA256 is the key's SHA-256; the key is not kept.
	KeySHA256 [32]byte
	// Rate is the queries per second it may ask of one replica.
	Rate float64
}

// String keeps the key's hash out of logs and %v.
func (s SelfService) String() string { return fmt.Sprintf("%s (%s)", s.Name, s.Context) }

// selfServiceFile is a self-service system in the YAML file.
type selfServiceFile struct {
	Context   string  `yaml:"context"`
	KeySHA256 string  `yaml:"key_sha256"`
	Rate      float64 `yaml:"rate"`
}

// selfService reads POSTBUD_SELF_SERVICE_RATE, the "name:context:key" lines
// of POSTBUD_SELF_SERVICE_KEYS(_FILE) and self_service in the YAML file.
// A name given twice with one context is a key rotation (both keys are
// valid); a key may open one kind of access only, so a self-service key
// that is also a platform's or an ops key is refused. Run after the ops
// keys and the platforms.
func (l *loader) selfService(c *Config, fromFile map[string]selfServiceFile) {
	c.SelfServiceRate = 50
	if v := l.getenv("POSTBUD_SELF_SERVICE_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
			l.fail("POSTBUD_SELF_SERVICE_RATE", "must be a number ≥ 0 (queries per second; 0 = unlimited), got %q", v)
		} else {
			c.SelfServiceRate = r
		}
	}
	contexts := map[string]rules.Context{}
	fromEnv := map[string]bool{}
	sums := map[[32]byte]string{}
	for _, p := range c.Platforms {
		sums[p.KeySHA256] = "platform " + p.Name
	}
	for _, k := range c.OpsKeys {
		sums[k.KeySHA256] = "ops key " + k.Name
	}
	add := func(where, name, ctx string, sum [32]byte, rate float64) {
		cx, err := rules.ParseContext(ctx)
		switch {
		case !opsNamePattern.MatchString(name):
			l.fail(where, "self-service system name %q: use lower case letters, digits, '.', '_' and '-'", name)
		case err != nil:
			l.fail(where, "self-service system %q: context %v", name, err)
		case contexts[name] != "" && contexts[name] != cx:
			l.fail(where, "self-service system %q is given two contexts, %s and %s", name, contexts[name], cx)
		case sums[sum] != "":
			l.fail(where, "the key of self-service system %q is also the key of %s: a key opens one kind of access only", name, sums[sum])
		default:
			contexts[name] = cx
			sums[sum] = "self-service system " + name
			c.SelfService = append(c.SelfService, SelfService{Name: name, Context: cx, KeySHA256: sum, Rate: rate})
		}
	}
	for i, line := range strings.Split(l.secret("POSTBUD_SELF_SERVICE_KEYS"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok1 := strings.Cut(line, ":")
		ctx, key, ok2 := strings.Cut(rest, ":")
		key = strings.TrimSpace(key)
		switch {
		case !ok1 || !ok2:
			// Not the line itself: it holds a key.
			l.fail("POSTBUD_SELF_SERVICE_KEYS", "line %d: want name:context:key", i+1)
		case len(key) < 16:
			l.fail("POSTBUD_SELF_SERVICE_KEYS", "line %d: the key of self-service system %q must be at least 16 characters", i+1, name)
		default:
			fromEnv[name] = true
			add("POSTBUD_SELF_SERVICE_KEYS", name, ctx, sha256.Sum256([]byte(key)), c.SelfServiceRate)
		}
	}
	for name, s := range fromFile {
		where := "POSTBUD_CONFIG self_service." + name
		raw, err := hex.DecodeString(s.KeySHA256)
		var sum [32]byte
		switch {
		case fromEnv[name]:
			l.fail(where, "given both here and in POSTBUD_SELF_SERVICE_KEYS")
		case err != nil || len(raw) != 32:
			l.fail(where+".key_sha256", "must be 64 hex digits (sha256sum of the key)")
		case s.Rate < 0 || math.IsNaN(s.Rate) || math.IsInf(s.Rate, 0):
			l.fail(where+".rate", "must be ≥ 0")
		default:
			copy(sum[:], raw)
			rate := c.SelfServiceRate
			if s.Rate > 0 {
				rate = s.Rate
			}
			add(where, name, s.Context, sum, rate)
		}
	}
}
