package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/digitalpost/postbud/channels/apns"
	"github.com/digitalpost/postbud/channels/email"
	"github.com/digitalpost/postbud/channels/fcm"
	"github.com/digitalpost/postbud/channels/paper"
	"github.com/digitalpost/postbud/channels/signature"
	"github.com/digitalpost/postbud/channels/sms"
	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Channels holds the optional channels; a nil one is not configured. Each
// channel owns its configuration and its Validate; Load reports their
// problems under the variables that set them.
type Channels struct {
	// Email is set when POSTBUD_SMTP_HOST is: POSTBUD_SMTP_PORT (default
	// 587), POSTBUD_SMTP_USERNAME and POSTBUD_SMTP_PASSWORD(_FILE) (SMTP
	// AUTH, optional), POSTBUD_SMTP_TLS (mandatory, opportunistic,
	// implicit or none; default mandatory), POSTBUD_SMTP_FROM (required)
	// and POSTBUD_SMTP_TIMEOUT (default 30s, one whole send).
	Email *email.Config
	// SMS is set when POSTBUD_SMS_TOKEN(_FILE) is.
	SMS *sms.Config
	// SMSReportSecret (POSTBUD_SMS_REPORT_SECRET(_FILE)) verifies the
	// gateway's signed delivery reports at POST /v1/sms/reports; without
	// it that endpoint is off.
	SMSReportSecret []byte
	// SMS2 is a second SMS gateway, taking the traffic while the first is
	// out (see Failover): set when POSTBUD_SMS_TOKEN_2(_FILE) is, with
	// POSTBUD_SMS_URL_2 (required), POSTBUD_SMS_SENDER_2 and
	// POSTBUD_SMS_CALLBACK_URL_2 (default: the first gateway's); max parts
	// and timeout are the first's. Requires SMS.
	SMS2 *sms.Config
	// SMSReportSecret2 (POSTBUD_SMS_REPORT_SECRET_2(_FILE)) verifies the
	// second gateway's delivery reports, at the same endpoint.
	SMSReportSecret2 []byte
	// Email2 is a second SMTP relay (see Failover): set when
	// POSTBUD_SMTP_HOST_2 is, with POSTBUD_SMTP_PORT_2 (default 587),
	// POSTBUD_SMTP_USERNAME_2, POSTBUD_SMTP_PASSWORD_2(_FILE) and
	// POSTBUD_SMTP_TLS_2 (default: the first relay's); from address and
	// timeout are the first's. Requires Email.
	Email2 *email.Config
	// Failover tunes the circuit breakers of channels with two providers.
	Failover Failover
	// APNs is set when POSTBUD_APNS_KEY_ID is.
	APNs *apns.Config
	// FCM is set when any app has an FCM project.
	FCM *fcm.Config
	// Paper is set when POSTBUD_PAPER_SPOOL_DIR or POSTBUD_PAPER_URL is.
	Paper *paper.Config
	// Webhooks (POSTBUD_WEBHOOK_URL_<PLATFORM>, POSTBUD_WEBHOOK_SECRET_<PLATFORM>(_FILE),
	// a whsec_ secret) send read-state changes to the platforms; nil when
	// no platform has an endpoint.
	Webhooks *webhook.Config
	// InboundSecrets (POSTBUD_INBOUND_SECRET_<PLATFORM>(_FILE)) are the
	// Standard Webhooks secrets of platforms that sign the events they
	// send; such a platform's events must carry a valid signature.
	InboundSecrets map[string][]byte
}

// Failover tunes the switch between a channel's providers
// (channels/failover).
type Failover struct {
	// Threshold (POSTBUD_FAILOVER_THRESHOLD, default 5, 1..1000) is how
	// many failures in a row take a provider out.
	Threshold int
	// OpenFor (POSTBUD_FAILOVER_OPEN_FOR, default 30s) is how long a
	// provider stays out before one send probes it.
	OpenFor time.Duration
	// OnThrottle (POSTBUD_FAILOVER_ON_THROTTLE, default true) sends to the
	// next provider while one is throttled (429, Retry-After) rather than
	// wait for it.
	OnThrottle bool
}

// appsFile is the apps part of the YAML file.
type appsFile struct {
	APNsTopic          string `yaml:"apns_topic"`
	FCMProject         string `yaml:"fcm_project"`
	FCMCredentialsFile string `yaml:"fcm_credentials_file"`
}

func (l *loader) channels(c *Channels, apps map[string]appsFile) {
	for name := range apps {
		if !event.IsApp(name) {
			l.fail("POSTBUD_CONFIG apps."+name, "unknown app (want digital-post-app, e-boks or mit.dk)")
		}
	}
	l.email(c)
	l.sms(c)
	l.failover(c)
	l.apns(c, apps)
	l.fcm(c, apps)
	l.paper(c)
	l.webhooks(c)
}

func (l *loader) webhooks(c *Channels) {
	w := &webhook.Config{Endpoints: map[string]webhook.Endpoint{}, Timeout: l.duration("POSTBUD_WEBHOOK_TIMEOUT", 0)}
	for _, rp := range event.ReadingPlatforms() {
		p := string(rp)
		suf := EnvSuffix(p)
		if raw := l.secret("POSTBUD_INBOUND_SECRET_" + suf); raw != "" {
			key, err := signature.ParseSecret(raw)
			if err != nil {
				l.fail("POSTBUD_INBOUND_SECRET_"+suf, "%v", err)
			} else {
				if c.InboundSecrets == nil {
					c.InboundSecrets = map[string][]byte{}
				}
				c.InboundSecrets[p] = key
			}
		}
		url := l.getenv("POSTBUD_WEBHOOK_URL_" + suf)
		raw := l.secret("POSTBUD_WEBHOOK_SECRET_" + suf)
		switch {
		case url == "" && raw == "":
			continue
		case url == "":
			l.fail("POSTBUD_WEBHOOK_URL_"+suf, "required with POSTBUD_WEBHOOK_SECRET_%s", suf)
			continue
		case raw == "":
			l.fail("POSTBUD_WEBHOOK_SECRET_"+suf, "required with POSTBUD_WEBHOOK_URL_%s: webhooks are always signed", suf)
			continue
		}
		key, err := signature.ParseSecret(raw)
		if err != nil {
			l.fail("POSTBUD_WEBHOOK_SECRET_"+suf, "%v", err)
			continue
		}
		w.Endpoints[p] = webhook.Endpoint{URL: url, Secret: key}
	}
	if len(w.Endpoints) == 0 {
		return
	}
	l.wrap("POSTBUD_WEBHOOK_*", w.Validate())
	c.Webhooks = w
}

// wrap reports a channel's own Validate problems under its variables.
func (l *loader) wrap(vars string, err error) {
	if err == nil {
		return
	}
	var list interface{ Unwrap() []error }
	if errors.As(err, &list) {
		for _, e := range list.Unwrap() {
			l.errs = append(l.errs, fmt.Errorf("%s: %w", vars, e))
		}
		return
	}
	l.errs = append(l.errs, fmt.Errorf("%s: %w", vars, err))
}

// email reads POSTBUD_SMTP_*. The port, timeout and TLS policy are checked
// even when email is off; the rest is the channel's own Validate.
func (l *loader) email(c *Channels) {
	e := &email.Config{
		Host:      l.getenv("POSTBUD_SMTP_HOST"),
		Port:      l.integer("POSTBUD_SMTP_PORT", email.DefaultPort, 1, 65535),
		Username:  l.getenv("POSTBUD_SMTP_USERNAME"),
		Password:  l.secret("POSTBUD_SMTP_PASSWORD"),
		TLSPolicy: email.TLSPolicy(l.str("POSTBUD_SMTP_TLS", string(email.TLSMandatory))),
		From:      l.getenv("POSTBUD_SMTP_FROM"),
		Timeout:   l.duration("POSTBUD_SMTP_TIMEOUT", 30*time.Second),
	}
	if !oneOf(string(e.TLSPolicy), "mandatory", "opportunistic", "implicit", "none") {
		l.fail("POSTBUD_SMTP_TLS", "must be one of mandatory, opportunistic, implicit, none, got %q", e.TLSPolicy)
		e.TLSPolicy = email.TLSMandatory // reported once, here
	}
	if e.Host == "" {
		return
	}
	l.wrap("POSTBUD_SMTP_*", e.Validate())
	c.Email = e
}

// failover reads POSTBUD_FAILOVER_* and the second providers,
// POSTBUD_SMS_*_2 and POSTBUD_SMTP_*_2.
func (l *loader) failover(c *Channels) {
	c.Failover = Failover{
		Threshold:  l.integer("POSTBUD_FAILOVER_THRESHOLD", 5, 1, 1000),
		OpenFor:    l.duration("POSTBUD_FAILOVER_OPEN_FOR", 30*time.Second),
		OnThrottle: l.boolean("POSTBUD_FAILOVER_ON_THROTTLE", true),
	}
	l.sms2(c)
	l.email2(c)
}

func (l *loader) email2(c *Channels) {
	host := l.getenv("POSTBUD_SMTP_HOST_2")
	if host == "" {
		for _, v := range []string{"POSTBUD_SMTP_PORT_2", "POSTBUD_SMTP_USERNAME_2", "POSTBUD_SMTP_TLS_2"} {
			if l.getenv(v) != "" {
				l.fail(v, "set, but there is no second SMTP relay: POSTBUD_SMTP_HOST_2 is not set")
			}
		}
		if l.secret("POSTBUD_SMTP_PASSWORD_2") != "" {
			l.fail("POSTBUD_SMTP_PASSWORD_2", "set, but there is no second SMTP relay: POSTBUD_SMTP_HOST_2 is not set")
		}
		return
	}
	if c.Email == nil {
		l.fail("POSTBUD_SMTP_HOST_2", "a second SMTP relay needs the first: set POSTBUD_SMTP_HOST")
		return
	}
	e := *c.Email
	e.Host = host
	e.Port = l.integer("POSTBUD_SMTP_PORT_2", email.DefaultPort, 1, 65535)
	e.Username = l.getenv("POSTBUD_SMTP_USERNAME_2")
	e.Password = l.secret("POSTBUD_SMTP_PASSWORD_2")
	e.TLSPolicy = email.TLSPolicy(l.str("POSTBUD_SMTP_TLS_2", string(c.Email.TLSPolicy)))
	if !oneOf(string(e.TLSPolicy), "mandatory", "opportunistic", "implicit", "none") {
		l.fail("POSTBUD_SMTP_TLS_2", "must be one of mandatory, opportunistic, implicit, none, got %q", e.TLSPolicy)
		e.TLSPolicy = email.TLSMandatory
	}
	l.wrap("POSTBUD_SMTP_*_2", e.Validate())
	c.Email2 = &e
}

func (l *loader) sms2(c *Channels) {
	token := l.secret("POSTBUD_SMS_TOKEN_2")
	secret := l.secret("POSTBUD_SMS_REPORT_SECRET_2")
	if token == "" {
		for _, v := range []string{"POSTBUD_SMS_SENDER_2", "POSTBUD_SMS_URL_2", "POSTBUD_SMS_CALLBACK_URL_2"} {
			if l.getenv(v) != "" {
				l.fail(v, "set, but there is no second SMS gateway: POSTBUD_SMS_TOKEN_2 is not set")
			}
		}
		if secret != "" {
			l.fail("POSTBUD_SMS_REPORT_SECRET_2", "set, but there is no second SMS gateway: POSTBUD_SMS_TOKEN_2 is not set")
		}
		return
	}
	if c.SMS == nil {
		l.fail("POSTBUD_SMS_TOKEN_2", "a second SMS gateway needs the first: set POSTBUD_SMS_TOKEN")
		return
	}
	s := *c.SMS
	s.Token = token
	s.BaseURL = l.getenv("POSTBUD_SMS_URL_2")
	s.Sender = l.str("POSTBUD_SMS_SENDER_2", c.SMS.Sender)
	s.CallbackURL = l.str("POSTBUD_SMS_CALLBACK_URL_2", c.SMS.CallbackURL)
	if s.BaseURL == "" {
		l.fail("POSTBUD_SMS_URL_2", "required with POSTBUD_SMS_TOKEN_2: the second gateway's base URL")
	}
	if secret != "" {
		c.SMSReportSecret2 = []byte(secret)
	}
	if s.CallbackURL != "" && secret == "" {
		l.fail("POSTBUD_SMS_REPORT_SECRET_2", "required with a callback URL for the second gateway (POSTBUD_SMS_CALLBACK_URL_2, "+
			"else POSTBUD_SMS_CALLBACK_URL): unsigned delivery reports are refused")
	}
	if secret != "" && c.SMSReportSecret != nil && secret == string(c.SMSReportSecret) {
		l.fail("POSTBUD_SMS_REPORT_SECRET_2", "must differ from POSTBUD_SMS_REPORT_SECRET: each gateway signs with its own")
	}
	l.wrap("POSTBUD_SMS_*_2", s.Validate())
	c.SMS2 = &s
}

func (l *loader) sms(c *Channels) {
	token := l.secret("POSTBUD_SMS_TOKEN")
	if secret := l.secret("POSTBUD_SMS_REPORT_SECRET"); secret != "" {
		c.SMSReportSecret = []byte(secret)
	}
	if token == "" {
		for _, v := range []string{"POSTBUD_SMS_SENDER", "POSTBUD_SMS_URL", "POSTBUD_SMS_CALLBACK_URL"} {
			if l.getenv(v) != "" {
				l.fail(v, "set, but SMS is off: POSTBUD_SMS_TOKEN is not set")
			}
		}
		return
	}
	s := &sms.Config{
		BaseURL:     l.str("POSTBUD_SMS_URL", "https://gatewayapi.com"),
		Token:       token,
		Sender:      l.str("POSTBUD_SMS_SENDER", "DigitalPost"),
		CallbackURL: l.getenv("POSTBUD_SMS_CALLBACK_URL"),
		MaxParts:    l.integer("POSTBUD_SMS_MAX_PARTS", 1, 1, 10),
		Timeout:     l.duration("POSTBUD_SMS_TIMEOUT", 0),
	}
	if s.CallbackURL != "" && c.SMSReportSecret == nil {
		l.fail("POSTBUD_SMS_REPORT_SECRET", "required with POSTBUD_SMS_CALLBACK_URL: unsigned delivery reports are refused")
	}
	l.wrap("POSTBUD_SMS_*", s.Validate())
	c.SMS = s
}

func sortedApps() []string {
	names := event.Apps()
	sort.Strings(names)
	return names
}

func (l *loader) apns(c *Channels, apps map[string]appsFile) {
	keyID := l.getenv("POSTBUD_APNS_KEY_ID")
	if keyID == "" {
		for _, v := range []string{"POSTBUD_APNS_TEAM_ID", "POSTBUD_APNS_KEY_FILE"} {
			if l.getenv(v) != "" {
				l.fail(v, "set, but APNs is off: POSTBUD_APNS_KEY_ID is not set")
			}
		}
		return
	}
	a := &apns.Config{KeyFile: l.getenv("POSTBUD_APNS_KEY_FILE"), KeyID: keyID,
		TeamID: l.getenv("POSTBUD_APNS_TEAM_ID"), Apps: map[string]apns.App{},
		ProductionURL: l.getenv("POSTBUD_APNS_PRODUCTION_URL"), SandboxURL: l.getenv("POSTBUD_APNS_SANDBOX_URL"),
		Timeout: l.duration("POSTBUD_APNS_TIMEOUT", 0)}
	if k := l.getenv("POSTBUD_APNS_KEY"); k != "" {
		a.Key = []byte(k)
	}
	if a.KeyFile != "" && !filepath.IsAbs(a.KeyFile) {
		l.fail("POSTBUD_APNS_KEY_FILE", "must be an absolute path")
	}
	for _, app := range sortedApps() {
		topic := l.getenv("POSTBUD_APNS_TOPIC_" + EnvSuffix(app))
		if y := apps[app].APNsTopic; y != "" {
			if topic != "" {
				l.fail("POSTBUD_APNS_TOPIC_"+EnvSuffix(app), "topic given both here and in POSTBUD_CONFIG apps.%s.apns_topic", app)
			}
			topic = y
		}
		if topic != "" {
			a.Apps[app] = apns.App{Topic: topic}
		}
	}
	if ca := l.getenv("POSTBUD_APNS_CA_FILE"); ca != "" {
		pool, err := loadCA(ca)
		if err != nil {
			l.fail("POSTBUD_APNS_CA_FILE", "%v", err)
		}
		a.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	l.wrap("POSTBUD_APNS_*", a.Validate())
	c.APNs = a
}

func loadCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the file: %v", errors.Unwrap(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("holds no PEM certificate")
	}
	return pool, nil
}

func (l *loader) fcm(c *Channels, apps map[string]appsFile) {
	f := &fcm.Config{Apps: map[string]fcm.App{}, Endpoint: l.getenv("POSTBUD_FCM_ENDPOINT"),
		Timeout: l.duration("POSTBUD_FCM_TIMEOUT", 0)}
	for _, app := range sortedApps() {
		suf := EnvSuffix(app)
		project := l.getenv("POSTBUD_FCM_PROJECT_" + suf)
		creds := l.getenv("POSTBUD_FCM_CREDENTIALS_" + suf + "_FILE")
		if y := apps[app]; y.FCMProject != "" || y.FCMCredentialsFile != "" {
			if project != "" || creds != "" {
				l.fail("POSTBUD_FCM_PROJECT_"+suf, "FCM for %s given both here and in POSTBUD_CONFIG apps.%s", app, app)
			}
			project, creds = y.FCMProject, y.FCMCredentialsFile
		}
		switch {
		case project == "" && creds == "":
			continue
		case project == "":
			l.fail("POSTBUD_FCM_PROJECT_"+suf, "required with POSTBUD_FCM_CREDENTIALS_%s_FILE", suf)
		case creds == "":
			l.fail("POSTBUD_FCM_CREDENTIALS_"+suf+"_FILE", "required with POSTBUD_FCM_PROJECT_%s (a service-account JSON file)", suf)
		}
		f.Apps[app] = fcm.App{ProjectID: project, CredentialsFile: creds}
	}
	if len(f.Apps) == 0 {
		if f.Endpoint != "" {
			l.fail("POSTBUD_FCM_ENDPOINT", "set, but no app has an FCM project")
		}
		return
	}
	l.wrap("POSTBUD_FCM_*", f.Validate())
	c.FCM = f
}

func (l *loader) paper(c *Channels) {
	dir, url := l.getenv("POSTBUD_PAPER_SPOOL_DIR"), l.getenv("POSTBUD_PAPER_URL")
	token := l.secret("POSTBUD_PAPER_TOKEN")
	if dir == "" && url == "" {
		if token != "" {
			l.fail("POSTBUD_PAPER_TOKEN", "set, but paper is off: set POSTBUD_PAPER_URL")
		}
		return
	}
	p := &paper.Config{SpoolDir: dir, URL: url, Token: token, Timeout: l.duration("POSTBUD_PAPER_TIMEOUT", 0)}
	l.wrap("POSTBUD_PAPER_*", p.Validate())
	c.Paper = p
}
