package dashboard_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/dispatcher"
)

// chromium returns the path of the Chromium binary, or skips the test.
// CI installs it (Debian: apt-get install -y chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (Debian: apt-get install -y chromium): skipping the real-browser test of the dashboard")
	return ""
}

// headless runs Chromium on u with extra flags, bounded by a minute, and
// returns its standard output.
func headless(t *testing.T, bin, u string, flags ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=10000"}, flags...)
	cmd := exec.CommandContext(ctx, bin, append(args, u)...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v (context: %v)\nstderr:\n%s", u, err, ctx.Err(), stderr.String())
	}
	return stdout.Bytes()
}

// TestBrowser renders the dashboard's archived-tasks page of a queue in
// headless Chromium: the page shows the queue, the archived task's type
// and message id, and not the CPR its payload holds.
func TestBrowser(t *testing.T) {
	bin := chromium(t)
	e := newEnv(t, false)
	page := "/monitoring/queues/" + url.PathEscape(e.queue) + "?status=archived"

	// Chromium takes the credentials from the URL (user info) and answers
	// the Basic challenge with them, for the page, its scripts and its API
	// calls.
	u, err := url.Parse(e.srv.URL + page)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("ops", opsKey)
	e.log.take()
	dom := string(headless(t, bin, u.String(), "--dump-dom"))
	for _, want := range []string{e.queue, dispatcher.TypeInbound, messageID} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q:\n%s", want, dom)
		}
	}
	for _, secret := range []string{cpr, "0101011234", "Skattestyrelsen", "årsopgørelse"} {
		if strings.Contains(dom, secret) {
			t.Errorf("the rendered page shows %q", secret)
		}
	}
	// The page's scripts and its API calls were authenticated too.
	apiPath := "/monitoring/api/queues/" + e.queue + "/archived_tasks"
	var api, script bool
	for _, s := range e.log.take() {
		api = api || s.path == apiPath && s.code == http.StatusOK
		script = script || strings.HasPrefix(s.path, "/monitoring/static/js/") && s.code == http.StatusOK
	}
	if !api || !script {
		t.Errorf("the browser did not load the scripts (%v) or call %s (%v) with credentials", script, apiPath, api)
	}

	// Without credentials the browser gets 401 and nothing of the
	// dashboard (headless Chromium gives up on the Basic challenge and
	// shows an empty page).
	dom = string(headless(t, bin, e.srv.URL+page, "--dump-dom"))
	for _, leak := range []string{e.queue, messageID, "FLAG_ROOT_PATH", "Asynq"} {
		if strings.Contains(dom, leak) {
			t.Errorf("without credentials the page shows %q:\n%s", leak, dom)
		}
	}
	reqs := e.log.take()
	if len(reqs) == 0 {
		t.Error("without credentials: the browser made no request")
	}
	for _, s := range reqs {
		if s.code != http.StatusUnauthorized {
			t.Errorf("without credentials: %s answered %d, want 401", s.path, s.code)
		}
	}

	// A screenshot to look at: kept when POSTBUD_DASHBOARD_SCREENSHOT
	// names a file.
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if p := os.Getenv("POSTBUD_DASHBOARD_SCREENSHOT"); p != "" {
		shot = p
	}
	headless(t, bin, u.String(), "--screenshot="+shot, "--window-size=1280,800", "--hide-scrollbars")
	st, err := os.Stat(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if st.Size() < 10_000 {
		t.Errorf("screenshot %s is %d bytes: a blank page?", shot, st.Size())
	}
}
