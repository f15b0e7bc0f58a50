package papertest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/digitalpost/postbud/channels/paper/papertest"
)

// The fake refuses what a real provider would refuse, and records none of
// it.
func TestServerRefuses(t *testing.T) {
	const job = `{"job_id":"j1","message_id":"m1","sender":"S","address":"A\nB","language":"da","created_at":"2025-01-02T03:04:05Z"}`
	tests := []struct {
		name   string
		method string
		header map[string]string
		body   string
		want   int
	}{
		{"accepted", "POST", map[string]string{"Idempotency-Key": "j1"}, job, http.StatusCreated},
		{"wrong token", "POST", map[string]string{"Idempotency-Key": "j1", "Authorization": "Bearer nope"}, job, http.StatusUnauthorized},
		{"GET", "GET", nil, "", http.StatusMethodNotAllowed},
		{"not JSON", "POST", map[string]string{"Idempotency-Key": "j1", "Content-Type": "text/plain"}, job, http.StatusUnsupportedMediaType},
		{"no Idempotency-Key", "POST", nil, job, http.StatusBadRequest},
		{"key differs from job_id", "POST", map[string]string{"Idempotency-Key": "j2"}, job, http.StatusBadRequest},
		{"unknown field", "POST", map[string]string{"Idempotency-Key": "j1"}, strings.Replace(job, `"sender"`, `"cpr":"x","sender"`, 1), http.StatusBadRequest},
		{"empty address", "POST", map[string]string{"Idempotency-Key": "j1"}, strings.Replace(job, `A\nB`, ``, 1), http.StatusUnprocessableEntity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := papertest.New(t, "tok")
			req, err := http.NewRequestWithContext(t.Context(), tt.method, fake.URL(), strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer tok")
			req.Header.Set("Content-Type", "application/json")
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := fake.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.want)
			}
			wantJobs := 0
			if tt.want == http.StatusCreated {
				wantJobs = 1
			}
			if got := len(fake.Jobs()); got != wantJobs {
				t.Errorf("fake recorded %d jobs, want %d", got, wantJobs)
			}
		})
	}
}
