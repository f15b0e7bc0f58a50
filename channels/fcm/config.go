package fcm

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
)

// Defaults and limits.
const (
	// DefaultEndpoint is the FCM HTTP v1 API base URL the client library
	// uses when Config.Endpoint is empty.
	DefaultEndpoint = "https://fcm.googleapis.com/v1"
	// DefaultTimeout bounds one send when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// MinQuotaRetryAfter is the least wait after QUOTA_EXCEEDED: FCM asks
	// senders to back off at least 60 seconds whatever Retry-After says.
	MinQuotaRetryAfter = 60 * time.Second
	// MaxTTL is the longest time to live FCM accepts (28 days).
	MaxTTL = 28 * 24 * time.Hour
)

// Config configures the FCM channel.
type Config struct {
	// Apps maps each citizen app ("digital-post-app", "e-boks", "mit.dk")
	// to its Firebase project; a token is sent through the project of the
	// app it was registered by (channels.Address.App). Required: at least
	// one app.
	Apps map[string]App
	// Endpoint overrides the FCM API base URL, up to and including the API
	// version, e.g. a fake's "http://127.0.0.1:port/v1". Default
	// DefaultEndpoint. Plain http is accepted for loopback hosts only.
	Endpoint string
	// Timeout bounds every send (and Ping), including the OAuth2 token
	// exchange and the client library's own retries of 503 responses, which
	// would otherwise go on for about 7 s. Default DefaultTimeout (10 s).
	Timeout time.Duration
	// HTTPClient, if set, supplies the transport for FCM requests and the
	// OAuth2 token exchange. Only its Transport is used: authentication
	// is layered on top of it, so the service account's token exchange
	// still runs. Default: a clone of http.DefaultTransport. (When the
	// environment switches on google.golang.org/api's new auth library,
	// GOOGLE_API_GO_EXPERIMENTAL_ENABLE_NEW_AUTH_LIB=true, that library
	// makes the token exchange with its own client.)
	HTTPClient *http.Client
}

// App is one citizen app's Firebase project and the service account that
// may send for it.
type App struct {
	// ProjectID is the Firebase project ID ("digital-post-prod"). Required.
	ProjectID string
	// CredentialsFile is the path of the service account's JSON key file.
	// Exactly one of CredentialsFile and Credentials is required.
	CredentialsFile string
	// Credentials is the service account's JSON key itself (as read from
	// a *_FILE secret). Exactly one of CredentialsFile and Credentials is
	// required.
	Credentials []byte
}

// serviceAccount is the part of a Google service-account key file postbud
// checks before handing it to the client library.
type serviceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// parseServiceAccount checks that b is a Google service-account key. It
// refuses other credential types (external accounts, user credentials),
// which would make the library fetch tokens from URLs the file names.
func parseServiceAccount(b []byte) (serviceAccount, error) {
	var sa serviceAccount
	if err := json.Unmarshal(b, &sa); err != nil {
		return sa, errors.New("not valid JSON")
	}
	var errs []error
	if sa.Type != "service_account" {
		errs = append(errs, fmt.Errorf("type is %q, want \"service_account\"", sa.Type))
	}
	if sa.ClientEmail == "" {
		errs = append(errs, errors.New("client_email is empty"))
	}
	if blk, _ := pem.Decode([]byte(sa.PrivateKey)); blk == nil {
		errs = append(errs, errors.New("private_key is not a PEM key"))
	}
	if sa.TokenURI != "" {
		if u, err := url.Parse(sa.TokenURI); err != nil || !u.IsAbs() {
			errs = append(errs, errors.New("token_uri is not an absolute URL"))
		}
	}
	return sa, errors.Join(errs...)
}

// Validate reports every problem with c at once, each naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("fcm: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(c.Apps) == 0 {
		bad("Apps", "at least one app is required")
	}
	names := make([]string, 0, len(c.Apps))
	for name := range c.Apps {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		a := c.Apps[name]
		field := fmt.Sprintf("Apps[%q]", name)
		if strings.TrimSpace(name) == "" {
			bad("Apps", "an app name is empty")
		}
		switch {
		case a.ProjectID == "":
			bad(field+".ProjectID", "is required")
		case strings.ContainsAny(a.ProjectID, "/?#% ") || a.ProjectID != strings.TrimSpace(a.ProjectID):
			bad(field+".ProjectID", "%q is not a project ID", a.ProjectID)
		}
		switch {
		case a.CredentialsFile == "" && len(a.Credentials) == 0:
			bad(field+".Credentials", "one of CredentialsFile and Credentials is required")
		case a.CredentialsFile != "" && len(a.Credentials) > 0:
			bad(field+".Credentials", "set only one of CredentialsFile and Credentials")
		case len(a.Credentials) > 0:
			if _, err := parseServiceAccount(a.Credentials); err != nil {
				bad(field+".Credentials", "not a service-account key: %v", err)
			}
		}
	}
	if c.Endpoint != "" {
		if err := checkEndpoint(c.Endpoint); err != nil {
			bad("Endpoint", "%v", err)
		}
	}
	if c.Timeout < 0 {
		bad("Timeout", "must not be negative, got %v", c.Timeout)
	}
	return errors.Join(errs...)
}

func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must not have a query or fragment", s)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("%q: plain http is allowed for loopback hosts only", s)
		}
	default:
		return fmt.Errorf("%q: scheme must be https", s)
	}
	return nil
}

// credentials returns the app's service-account key, read from its file if
// need be, checked.
func (a App) credentials(field string) ([]byte, error) {
	b := a.Credentials
	if a.CredentialsFile != "" {
		var err error
		if b, err = os.ReadFile(a.CredentialsFile); err != nil {
			return nil, fmt.Errorf("fcm: %s.CredentialsFile: %w", field, err)
		}
	}
	if _, err := parseServiceAccount(b); err != nil {
		return nil, fmt.Errorf("fcm: %s: not a service-account key: %w", field, err)
	}
	return b, nil
}
