// Package papertest is a fake print provider for tests of the paper channel
// and of the dispatcher end to end. Server speaks the URL mode of the
// print-job contract (see package paper) on loopback: it checks the bearer
// token and the job, records what it accepted, answers a repeated
// Idempotency-Key with 409, and can be told to fail or to stall. ReadSpool
// reads the jobs of a spool directory.
package papertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/digitalpost/postbud/channels/paper"
)

// Path is the path jobs are POSTed to; Server.URL includes it.
const Path = "/v1/print-jobs"

// Accepted is one job the fake accepted.
type Accepted struct {
	// ID is the id the fake answered with ("pj-1", "pj-2", ...).
	ID string
	// IdempotencyKey is the request's Idempotency-Key header.
	IdempotencyKey string
	// Authorization is the request's Authorization header.
	Authorization string
	// Body is the raw request body.
	Body []byte
	// Job is Body decoded.
	Job paper.Job
}

// Server is a fake print provider. It is safe for concurrent use.
type Server struct {
	srv  *httptest.Server
	stop chan struct{} // closed at cleanup: releases stalled requests

	mu       sync.Mutex
	token    string
	accepted []Accepted
	seen     map[string]string // Idempotency-Key → id
	fails    []failure
	stalled  bool
	requests int
	changed  chan struct{} // closed and replaced on every accept
}

type failure struct {
	status     int
	retryAfter string
}

// New starts a fake print provider that requires "Authorization: Bearer
// <token>" (no check when token is empty). It is closed by t.Cleanup.
func New(t testing.TB, token string) *Server {
	t.Helper()
	s := &Server{
		stop:    make(chan struct{}),
		token:   token,
		seen:    make(map[string]string),
		changed: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc(Path, s.handle)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(s.stop)
		s.srv.Close()
	})
	return s
}

// URL is the endpoint to POST jobs to: paper.Config.URL.
func (s *Server) URL() string { return s.srv.URL + Path }

// Client is an HTTP client for the server: paper.Config.HTTPClient.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// SetToken changes the token the server requires, as a provider that
// rotated its credentials.
func (s *Server) SetToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// FailNext makes the next n job requests fail with status, and with the
// Retry-After header retryAfter when it is not empty. Failures queue up in
// the order they were asked for.
func (s *Server) FailNext(n, status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.fails = append(s.fails, failure{status: status, retryAfter: retryAfter})
	}
}

// Stall makes the server hold every later request until the client gives
// up or the test ends.
func (s *Server) Stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalled = true
}

// Accepted returns the jobs accepted so far, in order.
func (s *Server) Accepted() []Accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Accepted(nil), s.accepted...)
}

// Jobs returns the decoded jobs accepted so far, in order.
func (s *Server) Jobs() []paper.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return jobsOf(s.accepted)
}

// Payloads returns the raw bodies accepted so far, in order.
func (s *Server) Payloads() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]byte, len(s.accepted))
	for i, a := range s.accepted {
		out[i] = a.Body
	}
	return out
}

// Requests returns how many requests reached the server, whatever their
// answer.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// WaitJobs waits until at least n jobs are accepted and returns them, or
// returns ctx's error.
func (s *Server) WaitJobs(ctx context.Context, n int) ([]paper.Job, error) {
	for {
		s.mu.Lock()
		if len(s.accepted) >= n {
			jobs := jobsOf(s.accepted)
			s.mu.Unlock()
			return jobs, nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("papertest: waiting for %d jobs: %w", n, ctx.Err())
		}
	}
}

func jobsOf(acc []Accepted) []paper.Job {
	jobs := make([]paper.Job, len(acc))
	for i, a := range acc {
		jobs[i] = a.Job
	}
	return jobs
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	stalled := s.stalled
	s.mu.Unlock()
	if stalled {
		select {
		case <-r.Context().Done():
		case <-s.stop:
		}
		return
	}

	s.mu.Lock()
	token := s.token
	var f *failure
	if r.Method == http.MethodPost && len(s.fails) > 0 {
		f = &s.fails[0]
		s.fails = s.fails[1:]
	}
	s.mu.Unlock()

	if f != nil {
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		problem(w, f.status, "injected failure")
		return
	}
	if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
		problem(w, http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		problem(w, http.StatusMethodNotAllowed, "POST print jobs here")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		problem(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		problem(w, http.StatusBadRequest, "Idempotency-Key is missing")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		problem(w, http.StatusBadRequest, "unreadable body")
		return
	}
	var job paper.Job
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&job); err != nil {
		problem(w, http.StatusBadRequest, "body is not a print job")
		return
	}
	if job.JobID != key {
		problem(w, http.StatusBadRequest, "job_id differs from Idempotency-Key")
		return
	}
	if err := job.Validate(); err != nil {
		problem(w, http.StatusUnprocessableEntity, "invalid print job")
		return
	}

	s.mu.Lock()
	if id, ok := s.seen[key]; ok {
		s.mu.Unlock()
		reply(w, http.StatusConflict, id)
		return
	}
	id := fmt.Sprintf("pj-%d", len(s.accepted)+1)
	s.seen[key] = id
	s.accepted = append(s.accepted, Accepted{
		ID:             id,
		IdempotencyKey: key,
		Authorization:  r.Header.Get("Authorization"),
		Body:           body,
		Job:            job,
	})
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	reply(w, http.StatusCreated, id)
}

func reply(w http.ResponseWriter, status int, id string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"id": id})
}

func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "detail": detail})
}

// ReadSpool returns the jobs spooled in dir, sorted by file name. It reads
// the "*.json" files only (a collector skips the hidden temporary files),
// decodes each strictly, and fails t when one does not decode or is not
// named after its job_id.
func ReadSpool(t testing.TB, dir string) []paper.Job {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("papertest: read spool: %v", err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); !strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".json") && e.Type().IsRegular() {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	jobs := make([]paper.Job, 0, len(names))
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatalf("papertest: read spool file %s: %v", n, err)
		}
		var j paper.Job
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&j); err != nil {
			t.Fatalf("papertest: spool file %s is not a print job: %v", n, err)
		}
		if n != j.JobID+".json" {
			t.Errorf("papertest: spool file %s holds job_id %q", n, j.JobID)
		}
		jobs = append(jobs, j)
	}
	return jobs
}
