// Package dashboard serves the asynq dashboard (github.com/hibiken/asynqmon)
// for ops, under a path prefix, behind the ops key and read-only by default.
//
// asynqmon has no authentication of its own: the dashboard sits behind the
// ops gate (dispatcher/opsauth), which audits every request. Browsers cannot
// send a bearer token when navigating, so the dashboard takes an ops key
// either as the password of HTTP Basic authentication (any user name) or as
// "Authorization: Bearer <ops key>"; everything under the prefix (the UI,
// its static files and its /api) needs it. A support key may read; writes
// need an admin key and a writable dashboard. Task payloads are shown through
// PayloadFormatter, which reveals the task type and a postbud letter's
// message id and nothing else: no CPR, no citizen key, no address.
package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/opsauth"
)

// DefaultRootPath is where the dashboard is mounted unless told otherwise.
const DefaultRootPath = "/monitoring/"

// Config configures the dashboard.
type Config struct {
	// RedisClient is the Redis holding the asynq queues; the dashboard
	// uses it as it is and never closes it. It must be a *redis.Client
	// (plain or Sentinel failover) or a *redis.ClusterClient for the
	// dashboard's Redis page to work.
	RedisClient redis.UniversalClient
	// RootPath is the path prefix the dashboard is served under (default
	// DefaultRootPath). It must start with "/"; New adds the trailing
	// "/" if it is missing. Mount the handler at RootPath with the
	// trailing slash, e.g. mux.Handle("/monitoring/", h).
	RootPath string
	// Writable allows ops to change tasks and queues from the dashboard
	// (run, archive, delete, pause). The zero value is read-only: then
	// asynqmon hides its buttons and refuses writes to its API, and the
	// dashboard answers any request other than GET or HEAD with 403 too.
	Writable bool
	// Guard authenticates ops keys and audits each request; it is
	// required. Reading needs a support key, writing an admin key.
	Guard *opsauth.Guard
	// Realm is the HTTP authentication realm (default "postbud").
	Realm string
	// PrometheusAddress, when set, lets the dashboard chart queue metrics
	// from that Prometheus server (asynqmon's Metrics page).
	PrometheusAddress string
}

// New returns the dashboard's handler. It refuses to build a dashboard
// without an ops key.
func New(cfg Config) (http.Handler, error) {
	var errs []error
	if cfg.RedisClient == nil {
		errs = append(errs, errors.New("dashboard: RedisClient is required"))
	}
	if cfg.Guard == nil {
		errs = append(errs, errors.New("dashboard: Guard is required: no dashboard without authentication"))
	}
	if cfg.RootPath == "" {
		cfg.RootPath = DefaultRootPath
	}
	if !strings.HasPrefix(cfg.RootPath, "/") || strings.ContainsAny(cfg.RootPath, "{}*?#% \t\r\n") ||
		strings.Contains(cfg.RootPath, "//") || strings.Contains(cfg.RootPath, "/../") || strings.Contains(cfg.RootPath, "/./") {
		errs = append(errs, fmt.Errorf("dashboard: RootPath %q must be a clean absolute path such as %q", cfg.RootPath, DefaultRootPath))
	}
	if cfg.Realm == "" {
		cfg.Realm = "postbud"
	}
	if strings.ContainsFunc(cfg.Realm, func(r rune) bool { return r == '"' || r == '\\' || r < ' ' || r == 0x7f }) {
		errs = append(errs, fmt.Errorf("dashboard: Realm %q must not hold quotes, backslashes or control characters", cfg.Realm))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	root := strings.TrimSuffix(cfg.RootPath, "/")
	mon := asynqmon.New(asynqmon.Options{
		RootPath:          root,
		RedisConnOpt:      sharedClient{cfg.RedisClient},
		PayloadFormatter:  asynqmon.PayloadFormatterFunc(FormatPayload),
		ResultFormatter:   asynqmon.ResultFormatterFunc(FormatResult),
		PrometheusAddress: cfg.PrometheusAddress,
		ReadOnly:          !cfg.Writable,
	})
	// A browser session authenticated with Basic credentials would send
	// them along with a forged cross-site form too: refuse cross-origin
	// writes.
	csrf := http.NewCrossOriginProtection()
	h := &handler{root: root, writable: cfg.Writable, next: csrf.Handler(mon)}
	guarded := cfg.Guard.Handler(h, opsauth.Options{Basic: true, Realm: cfg.Realm, NeedFunc: func(r *http.Request) opsauth.Role {
		if readOnly(r.Method) {
			return opsauth.Support
		}
		return opsauth.Admin
	}})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != root && !strings.HasPrefix(r.URL.Path, root+"/") {
			http.NotFound(w, r)
			return
		}
		hdr := w.Header()
		hdr.Set("Cache-Control", "no-store")
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("X-Frame-Options", "DENY")
		hdr.Set("Content-Security-Policy", "frame-ancestors 'none'")
		hdr.Set("Referrer-Policy", "no-referrer")
		guarded.ServeHTTP(w, r)
	}), nil
}

// sharedClient hands asynqmon the existing client (asynqmon.Options wants
// an asynq.RedisConnOpt and makes its client from it).
type sharedClient struct{ c redis.UniversalClient }

func (s sharedClient) MakeRedisClient() any { return s.c }

func readOnly(method string) bool { return method == http.MethodGet || method == http.MethodHead }

// handler runs behind the guard.
type handler struct {
	root     string // without the trailing slash
	writable bool
	next     http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.writable && !readOnly(r.Method) {
		http.Error(w, "the dashboard is read-only", http.StatusForbidden)
		return
	}
	h.next.ServeHTTP(w, r)
}

// Hidden is what the dashboard shows instead of a payload or result it
// does not know to be free of personal data.
const Hidden = "(hidden)"

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// FormatPayload is the dashboard's payload formatter. For a postbud task
// it shows the task type and the letter's message id (a MeMo UUID), as
// JSON ({"type": "postbud:delivery", "message_id": "…"}), and nothing
// else of the payload: not the CPR an inbound event holds, not the citizen
// key, not an address. The message id is read from "m" (postbud:delivery,
// postbud:sync, postbud:badge), "message.message_id" or "read.message_id"
// (postbud:event) and "data.message_id" (postbud:inbound); a value that is
// not a UUID is left out. A payload that does not parse, or of a task type
// that is not postbud's, shows as Hidden.
func FormatPayload(taskType string, payload []byte) string {
	var id string
	switch taskType {
	case dispatcher.TypeDelivery, dispatcher.TypeSync, dispatcher.TypeBadge:
		var p struct {
			M json.RawMessage `json:"m"`
		}
		if json.Unmarshal(payload, &p) != nil {
			return Hidden
		}
		id = messageID(p.M)
	case dispatcher.TypeEvent:
		var p struct {
			Message *struct {
				ID json.RawMessage `json:"message_id"`
			} `json:"message"`
			Read *struct {
				ID json.RawMessage `json:"message_id"`
			} `json:"read"`
		}
		if json.Unmarshal(payload, &p) != nil {
			return Hidden
		}
		switch {
		case p.Message != nil:
			id = messageID(p.Message.ID)
		case p.Read != nil:
			id = messageID(p.Read.ID)
		}
	case dispatcher.TypeInbound:
		var p struct {
			Data *struct {
				ID json.RawMessage `json:"message_id"`
			} `json:"data"`
		}
		if json.Unmarshal(payload, &p) != nil {
			return Hidden
		}
		if p.Data != nil {
			id = messageID(p.Data.ID)
		}
	default:
		return Hidden
	}
	out := struct {
		Type      string `json:"type"`
		MessageID string `json:"message_id,omitempty"`
	}{taskType, id}
	b, _ := json.Marshal(out)
	return string(b)
}

// messageID returns raw when it is a JSON string holding a UUID.
func messageID(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil || !uuidPattern.MatchString(s) {
		return ""
	}
	return strings.ToLower(s)
}

// FormatResult is the dashboard's result formatter: a task's result is
// never shown (Hidden), only whether there is one.
func FormatResult(_ string, result []byte) string {
	if len(result) == 0 {
		return ""
	}
	return Hidden
}
