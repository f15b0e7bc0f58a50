package apns

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
)

// DefaultTimeout is the default time limit of one send.
const DefaultTimeout = 10 * time.Second

// Config configures the APNs channel. It uses token-based authentication: one
// .p8 signing key of the Apple developer team serves every app.
type Config struct {
	// KeyFile is the path of the .p8 signing key (PKCS#8 PEM). Exactly one
	// of KeyFile and Key is required.
	KeyFile string
	// Key is the .p8 signing key itself (PKCS#8 PEM bytes), e.g. read from
	// an environment variable. Exactly one of KeyFile and Key is required.
	Key []byte
	// KeyID is the 10-character id of the signing key. Required.
	KeyID string
	// TeamID is the 10-character Apple developer team id. Required.
	TeamID string
	// Apps maps each app name of channels.Address.App
	// ("digital-post-app", "e-boks", "mit.dk") to its settings. At least
	// one is required.
	Apps map[string]App
	// ProductionURL is the base URL of the production APNs service;
	// default apns2.HostProduction ("https://api.push.apple.com").
	ProductionURL string
	// SandboxURL is the base URL of the development APNs service, used for
	// tokens whose Environment is "sandbox"; default apns2.HostDevelopment
	// ("https://api.sandbox.push.apple.com").
	SandboxURL string
	// Timeout is the time limit of one send (and of Ping); default
	// DefaultTimeout (10s).
	Timeout time.Duration
	// TLSConfig, if set, is the client TLS configuration (tests use it to
	// trust a fake's certificate); default: the system roots.
	TLSConfig *tls.Config
}

// App is one iOS app that receives alerts.
type App struct {
	// Topic is the app's bundle id, sent as apns-topic. Required.
	Topic string
}

// Validate reports every problem of c at once, each naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("apns.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch {
	case c.KeyFile == "" && len(c.Key) == 0:
		bad("key_file", "required (or apns.key)")
	case c.KeyFile != "" && len(c.Key) != 0:
		bad("key", "set only one of apns.key and apns.key_file")
	case len(c.Key) != 0:
		if _, err := token.AuthKeyFromBytes(c.Key); err != nil {
			bad("key", "not a PKCS#8 PEM ECDSA key (.p8)")
		}
	}
	for field, v := range map[string]string{"key_id": c.KeyID, "team_id": c.TeamID} {
		if problem := checkAppleID(v); problem != "" {
			bad(field, "%s", problem)
		}
	}
	if len(c.Apps) == 0 {
		bad("apps", "required: at least one app")
	}
	for _, name := range slices.Sorted(maps.Keys(c.Apps)) {
		topic := c.Apps[name].Topic
		switch {
		case strings.TrimSpace(name) == "":
			bad("apps", "empty app name")
		case topic == "":
			bad(fmt.Sprintf("apps[%s].topic", name), "required")
		case strings.IndexFunc(topic, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
			bad(fmt.Sprintf("apps[%s].topic", name), "must be a bundle id without spaces")
		}
	}
	for field, v := range map[string]string{"production_url": c.ProductionURL, "sandbox_url": c.SandboxURL} {
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			bad(field, "must be an https base URL such as %s", apns2.HostProduction)
		}
	}
	if c.Timeout < 0 {
		bad("timeout", "must not be negative")
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// withDefaults returns c with every zero field that has a default set.
func (c Config) withDefaults() Config {
	if c.ProductionURL == "" {
		c.ProductionURL = apns2.HostProduction
	}
	if c.SandboxURL == "" {
		c.SandboxURL = apns2.HostDevelopment
	}
	c.ProductionURL = strings.TrimSuffix(c.ProductionURL, "/")
	c.SandboxURL = strings.TrimSuffix(c.SandboxURL, "/")
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// checkAppleID checks a key id or team id: ten upper-case letters or
// digits.
func checkAppleID(v string) string {
	if v == "" {
		return "required"
	}
	if len(v) != 10 {
		return "must be 10 characters"
	}
	for _, r := range v {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return "must be upper-case letters and digits"
		}
	}
	return ""
}
