// Package opsauth is the one gate in front of every ops endpoint (the ops
// API, the state API for ops, the dashboard): named ops keys with a role
// each, and an audit log of every ops request and every refused
// authentication.
//
// A key is kept only as its SHA-256 and compared in constant time against
// every configured key. Roles are ordered: Admin may do everything Support
// may. A request without a known key is answered 401, one whose key's role
// is below what the route needs 403; either way it is audited.
//
// The audit log is a JSON stream of its own, one object per line, each with
// "audit":true, the time in UTC, the key's name and role (empty when no key
// was recognised), the method, the route pattern (never the raw URL), the
// path values that are message ids or platform names, and the status
// answered. A path value of any other shape is written as Withheld, so a
// CPR typed where a message id belongs never reaches the log. Requests of
// other clients that are audited, the self-service systems' queries, go
// to the same log (Client, ServeClient), with what they were told.
package opsauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// Role is what an ops key may do.
type Role uint8

// Roles, least first.
const (
	// Support reads: trails, citizens, letters' state, the dashboard.
	Support Role = iota + 1
	// Admin also writes: dashboard actions, enabling platform endpoints,
	// erasing citizens.
	Admin
)

// ParseRole reads "support" or "admin".
func ParseRole(s string) (Role, error) {
	switch s {
	case "support":
		return Support, nil
	case "admin":
		return Admin, nil
	}
	return 0, fmt.Errorf("unknown role %q: want support or admin", s)
}

func (r Role) String() string {
	switch r {
	case Support:
		return "support"
	case Admin:
		return "admin"
	}
	return ""
}

// Key is one named ops key.
type Key struct {
	// Name says whose key it is; it is what the audit log records.
	Name   string
	Role   Role
	SHA256 [32]byte
}

// HashKey returns the SHA-256 of a key, as Key.SHA256 wants.
func HashKey(key string) [32]byte { return sha256.Sum256([]byte(key)) }

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidName reports whether name can name an ops key: lower case letters,
// digits, ".", "_" and "-", at most 64, starting with a letter or digit.
func ValidName(name string) bool { return namePattern.MatchString(name) }

// Guard authenticates ops requests and writes the audit log.
type Guard struct {
	keys  []Key
	audit *slog.Logger
}

// New returns a guard over keys, auditing to w (nil: no audit log). It
// refuses a key without a valid name or role, two keys with one name, and
// two names with one key (the audit log could not tell who it was).
func New(keys []Key, w io.Writer) (*Guard, error) {
	var errs []error
	names := map[string]bool{}
	sums := map[[32]byte]string{}
	for _, k := range keys {
		if !ValidName(k.Name) {
			errs = append(errs, fmt.Errorf("opsauth: key name %q: use lower case letters, digits, '.', '_' and '-'", k.Name))
		}
		if k.Role != Support && k.Role != Admin {
			errs = append(errs, fmt.Errorf("opsauth: key %q has no role", k.Name))
		}
		if names[k.Name] {
			errs = append(errs, fmt.Errorf("opsauth: two keys are named %q", k.Name))
		}
		names[k.Name] = true
		if other, ok := sums[k.SHA256]; ok {
			errs = append(errs, fmt.Errorf("opsauth: keys %q and %q are the same key", other, k.Name))
		}
		sums[k.SHA256] = k.Name
		if k.SHA256 == [32]byte{} {
			errs = append(errs, fmt.Errorf("opsauth: key %q has no hash", k.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if w == nil {
		w = io.Discard
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			a.Value = slog.StringValue(a.Value.Time().UTC().Format(time.RFC3339Nano))
		}
		return a
	}})
	return &Guard{keys: keys, audit: slog.New(h).With("audit", true)}, nil
}

// Identify returns the key the request carries as a bearer token or, when
// basic, as the password of HTTP Basic authentication (any user name).
func (g *Guard) Identify(r *http.Request, basic bool) (Key, bool) {
	var key string
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		key = strings.TrimSpace(tok)
	} else if _, pw, ok := r.BasicAuth(); ok && basic {
		key = pw
	}
	if key == "" {
		return Key{}, false
	}
	sum := HashKey(key)
	var found Key
	var ok bool
	for _, k := range g.keys {
		if subtle.ConstantTimeCompare(sum[:], k.SHA256[:]) == 1 {
			found, ok = k, true
		}
	}
	return found, ok
}

// Options says how Handler guards a route.
type Options struct {
	// Need is the least role the route needs (default Support);
	// NeedFunc, when set, decides per request.
	Need     Role
	NeedFunc func(*http.Request) Role
	// Basic also takes the key as the password of HTTP Basic
	// authentication, for pages a browser navigates to. Leave it off for
	// APIs: a browser would send Basic credentials along with a forged
	// cross-site form.
	Basic bool
	// Realm is the authentication realm of a 401 (default "postbud-ops").
	Realm string
}

// Handler returns next behind the guard: 401 without a known key, 403
// when the key's role is below what the request needs; every request,
// refused or not, is audited with the status answered.
func (g *Guard) Handler(next http.Handler, opt Options) http.Handler {
	realm := opt.Realm
	if realm == "" {
		realm = "postbud-ops"
	}
	scheme := "Bearer"
	if opt.Basic {
		scheme = "Basic"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need := opt.Need
		if opt.NeedFunc != nil {
			need = opt.NeedFunc(r)
		}
		if need == 0 {
			need = Support
		}
		k, ok := g.Identify(r, opt.Basic)
		if !ok {
			w.Header().Set("WWW-Authenticate", scheme+` realm="`+realm+`"`)
			Problem(w, http.StatusUnauthorized, "unauthorized", "this endpoint needs an ops key")
			g.Refused(r, "", http.StatusUnauthorized)
			return
		}
		if k.Role < need {
			Problem(w, http.StatusForbidden, "forbidden", fmt.Sprintf("this needs the %s role; key %s has %s", need, k.Name, k.Role))
			g.record(r, k, http.StatusForbidden, "refused")
			return
		}
		g.Serve(w, r, k, next)
	})
}

// Serve runs next for a request already authenticated with key k and
// audits it with the status next answered.
func (g *Guard) Serve(w http.ResponseWriter, r *http.Request, k Key, next http.Handler) {
	sw := &statusWriter{ResponseWriter: w}
	defer func() { g.record(r, k, sw.status(), "ops request") }()
	next.ServeHTTP(sw, r)
}

// Refused audits a refused authentication that happened outside Handler
// (a platform's key or signature); who names the key holder when known.
func (g *Guard) Refused(r *http.Request, who string, status int) {
	g.record(r, Key{Name: who}, status, "refused")
}

// Client audits a request of a client that is neither an ops key nor a
// platform (a self-service system), authenticated by the caller: who
// names it, role says what kind of client it is, status is the answer and
// attrs what it was told. attrs must hold no personal data.
func (g *Guard) Client(r *http.Request, who, role string, status int, msg string, attrs ...slog.Attr) {
	g.write(r, who, role, status, msg, attrs)
}

// ServeClient runs next for a request of such a client and audits it
// with the status next answered and the attributes next returns.
func (g *Guard) ServeClient(w http.ResponseWriter, r *http.Request, who, role, msg string,
	next func(w http.ResponseWriter) []slog.Attr) {
	sw := &statusWriter{ResponseWriter: w}
	attrs := next(sw)
	g.write(r, who, role, sw.status(), msg, attrs)
}

func (g *Guard) record(r *http.Request, k Key, status int, msg string) {
	g.write(r, k.Name, k.Role.String(), status, msg, nil)
}

func (g *Guard) write(r *http.Request, who, role string, status int, msg string, extra []slog.Attr) {
	attrs := []slog.Attr{
		slog.String("key", who),
		slog.String("role", role),
		slog.String("method", r.Method),
		slog.String("route", Route(r)),
		slog.Int("status", status),
	}
	attrs = append(attrs, extra...)
	for _, name := range pathNames(r.Pattern) {
		attrs = append(attrs, slog.String(name, pathValue(r.PathValue(name))))
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs = append(attrs, slog.String("remote", host))
	}
	level := slog.LevelInfo
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		level = slog.LevelWarn
	}
	g.audit.LogAttrs(r.Context(), level, msg, attrs...)
}

// Route is what the audit log records as the request's route: the
// pattern it matched (e.g. "GET /v1/messages/{id}/trail"), or, for a
// request that matched none, "(unmatched)". Never the raw path.
func Route(r *http.Request) string {
	if r.Pattern == "" {
		return "(unmatched)"
	}
	return r.Pattern
}

var pathNamePattern = regexp.MustCompile(`\{([a-zA-Z_][a-zA-Z0-9_]*)(\.\.\.)?\}`)

func pathNames(pattern string) []string {
	var out []string
	for _, m := range pathNamePattern.FindAllStringSubmatch(pattern, -1) {
		out = append(out, m[1])
	}
	return out
}

// Withheld is what the audit log writes for a path value that is neither a
// message id (a UUID) nor a name of letters, dots and dashes.
const Withheld = "(withheld)"

var (
	uuidPattern  = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	lettersShape = regexp.MustCompile(`^[a-z][a-z.-]{0,31}$`)
)

// pathValue keeps only values that cannot be a CPR number.
func pathValue(v string) string {
	if uuidPattern.MatchString(v) || lettersShape.MatchString(v) {
		return strings.ToLower(v)
	}
	return Withheld
}

// Problem writes an RFC 9457 problem document.
func Problem(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": title, "status": status, "detail": detail})
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
