package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/dispatcher/event"
)

// chromium returns the path of Debian's Chromium, or skips the test
// (.ci/run installs it: apt-get install -y chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (Debian: apt-get install -y chromium): skipping the real-browser test of the dev page")
	return ""
}

// dumpDOM renders u in headless Chromium and returns the DOM after its
// scripts ran. The virtual time budget stays under the page's refresh.
func dumpDOM(t *testing.T, bin, u string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=1000", "--dump-dom", u)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\nstderr:\n%s", u, err, stderr.String())
	}
	return stdout.String()
}

// startDev runs `postbud dev` on a free port until the end of the test and
// returns its base URL once the demo citizens are registered.
func startDev(t *testing.T, extra map[string]string) string {
	t.Helper()
	addr := freeAddr(t)
	env := map[string]string{"POSTBUD_HTTP_ADDR": addr, "POSTBUD_LOG_FORMAT": "json"}
	for k, v := range extra {
		env[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev"}, func(k string) string { return env[k] }, nil, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("postbud dev: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("postbud dev did not stop within 20s")
		}
	})
	deadline := time.After(30 * time.Second)
	for !strings.Contains(stdout.String(), "postbud dev is running") {
		select {
		case err := <-done:
			t.Fatalf("postbud dev exited: %v\n%s", err, stderr.String())
		case <-deadline:
			t.Fatalf("postbud dev did not start:\n%s\n%s", stdout.String(), stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if strings.Contains(stderr.String(), "demo citizens") {
		t.Fatalf("registering the demo citizens failed:\n%s", stderr.String())
	}
	return "http://" + addr
}

func getPage(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// letterSection returns the part of the dev page about one letter.
func letterSection(page, id string) string {
	i := strings.Index(page, `<section id="m-`+id+`"`)
	if i < 0 {
		return ""
	}
	s := page[i:]
	if j := strings.Index(s, "</section>"); j >= 0 {
		s = s[:j]
	}
	return s
}

// TestDevPageShowsTheRules posts a scripted sequence of events to `postbud
// dev` and reads its page in headless Chromium: a letter to a normal
// citizen sent, one to the exempt citizen on paper with a masked address,
// one to the 14-year-old skipped with the reason, one released at night
// held until 07:00 on SMS (and until its schedule on the others), one
// right after another held for coalescing; a read on e-Boks shown as the
// letter's read state and as the webhooks the three other platforms
// received, signatures verified. Message ids link to their trail, and
// times are Copenhagen local time with the zone.
func TestDevPageShowsTheRules(t *testing.T) {
	bin := chromium(t)
	base := startDev(t, nil)
	now := time.Now()
	cit := devCitizens(now)
	anna, dorte, emil := cit[0].CPR, cit[3].CPR, cit[4].CPR
	letter := func(id, msg, cpr string, extra map[string]any) {
		t.Helper()
		data := map[string]any{"message_id": msg, "recipient": map[string]any{"cpr": cpr},
			"sender": map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"}}
		for k, v := range extra {
			data[k] = v
		}
		if code, out := post(t, base+"/v1/events", devPlatformKey, wireEvent(id, "message.received", "core", data)); code != http.StatusAccepted {
			t.Fatalf("%s: %d %v", id, code, out)
		}
	}
	const (
		sent   = "11111111-1111-4111-8111-111111111111"
		paper  = "22222222-2222-4222-8222-222222222222"
		minor  = "33333333-3333-4333-8333-333333333333"
		night  = "44444444-4444-4444-8444-444444444444"
		second = "55555555-5555-4555-8555-555555555555"
	)
	letter("l-sent", sent, anna, nil)
	eventually(t, "the first letter to be sent", 20*time.Second, func() bool {
		return strings.Contains(letterSection(getPage(t, base+"/"), sent), `class="r-sent">sent<`)
	})
	letter("l-second", second, anna, nil) // within the coalescing window the first alert opened
	letter("l-paper", paper, dorte, nil)
	letter("l-minor", minor, emil, nil)
	// Released at 23:30 tonight (Copenhagen; tomorrow night once tonight's
	// is less than 10 minutes away): SMS waits out its quiet hours until
	// 07:00, the other channels until the release.
	cph := now.In(event.Copenhagen())
	release := time.Date(cph.Year(), cph.Month(), cph.Day(), 23, 30, 0, 0, event.Copenhagen())
	if release.Before(now.Add(10 * time.Minute)) {
		release = release.AddDate(0, 0, 1)
	}
	letter("l-night", night, anna, map[string]any{"do_not_deliver_until": release.Format(time.RFC3339)})
	// Read on mit.dk, to which Anna gave consent; e-Boks has none.
	if code, out := post(t, base+"/v1/events", devPlatformKeys["mit.dk"], wireEvent("read-1", "message.read", "mit.dk",
		map[string]any{"message_id": sent, "recipient": map[string]any{"cpr": anna}, "platform": "mit.dk",
			"at": time.Now().UTC().Format(time.RFC3339Nano)})); code != http.StatusAccepted {
		t.Fatalf("read: %d %v", code, out)
	}
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the last page:\n%s", last)
		}
	})
	eventually(t, "the two webhooks and every letter's outcome", 30*time.Second, func() bool {
		p := getPage(t, base+"/")
		last = p
		return strings.Count(letterSection(p, sent), "(signature verified)") == 2 &&
			strings.Contains(letterSection(p, paper), "paper") && strings.Contains(letterSection(p, minor), "under 15") &&
			strings.Contains(letterSection(p, night), "quiet hours") && strings.Contains(letterSection(p, second), "coalescing")
	})

	dom := dumpDOM(t, bin, base+"/")
	zoned := regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T`)
	checks := []struct {
		what, section string
		want          []string
		re            []*regexp.Regexp
	}{
		{"sent letter", sent, []string{`class="r-sent">sent<`, "email", "a…@example.dk", "Read state: <b>read</b>",
			"changed on mit.dk", `href="/dev/messages/` + sent + `"`, "no consent (e-boks)",
			"borger.dk got read v1", "digital-post-app got read v1"}, []*regexp.Regexp{zoned}},
		{"exempt citizen's letter", paper, []string{`class="r-sent">paper<`, "V…, 1456 København K", "exempt"}, nil},
		{"14-year-old's letter", minor, []string{`class="r-skipped">skipped<`, "under 15"}, nil},
		{"letter released at night", night, []string{"held (quiet hours)", "held (scheduled)", "Read state: <b>unread</b>"},
			[]*regexp.Regexp{regexp.MustCompile(`quiet hours until \d{4}-\d\d-\d\d 07:00 CES?T`),
				regexp.MustCompile(`scheduled until \d{4}-\d\d-\d\d 23:30 CES?T`)}},
		{"letter right after another", second, []string{"held (coalescing)"}, nil},
	}
	for _, c := range checks {
		s := letterSection(dom, c.section)
		if s == "" {
			t.Errorf("%s: the rendered page has no section for %s:\n%s", c.what, c.section, dom)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(s, w) {
				t.Errorf("%s: the rendered section lacks %q:\n%s", c.what, w, s)
			}
		}
		for _, re := range c.re {
			if !re.MatchString(s) {
				t.Errorf("%s: the rendered section does not match %s:\n%s", c.what, re, s)
			}
		}
	}
	if s := letterSection(dom, sent); strings.Contains(s, "mit.dk got") || strings.Contains(s, "e-boks got") {
		t.Error("mit.dk, where the letter was read, got its own change back, or e-Boks (no consent) got it")
	}
	// Each platform's sink is listed; the two others with a right to it
	// received the read.
	for _, p := range []string{"borger.dk", "digital-post-app"} {
		re := regexp.MustCompile(`(?s)<h3>` + regexp.QuoteMeta(p) + ` \(1\)</h3>.*?` + sent + `.*?verified`)
		if !re.MatchString(dom) {
			t.Errorf("the webhooks of %s are not listed with the read:\n%s", p, dom)
		}
	}
	for _, p := range []string{"e-boks", "mit.dk"} {
		if !strings.Contains(dom, "<h3>"+p+" (0)</h3>") {
			t.Errorf("the %s webhook sink is not listed empty", p)
		}
	}
	// The demo citizens who show the rules.
	for _, w := range []string{emil, "14 years old (under 15)", dorte, "exempt from Digital Post"} {
		if !strings.Contains(dom, w) {
			t.Errorf("the demo citizens lack %q", w)
		}
	}
	if strings.Contains(dom, "Vestergade 12") || strings.Contains(dom, "anna@example.dk") {
		t.Error("the page shows an address unmasked")
	}

	// A message id's link shows that letter's trail.
	one := dumpDOM(t, bin, base+"/dev/messages/"+paper)
	if s := letterSection(one, paper); !strings.Contains(s, "V…, 1456 København K") || letterSection(one, sent) != "" {
		t.Errorf("the letter page of %s does not show its trail alone:\n%s", paper, one)
	}
}

// TestDevConfirmation: the demo citizens start confirmed (a letter alerts
// at once), and a new address a platform registers gets a code the dev page
// shows, which confirms it.
func TestDevConfirmation(t *testing.T) {
	base := startDev(t, nil)
	bo := devCitizens(time.Now())[1]
	const msg = "66666666-6666-4666-8666-666666666666"
	if code, out := post(t, base+"/v1/events", devPlatformKey, wireEvent("l-bo", "message.received", "core",
		map[string]any{"message_id": msg, "recipient": map[string]any{"cpr": bo.CPR},
			"sender": map[string]any{"id": "skat", "name": "Skattestyrelsen", "kind": "public"}})); code != http.StatusAccepted {
		t.Fatalf("letter: %d %v", code, out)
	}
	eventually(t, "the demo citizen's letter to be sent", 20*time.Second, func() bool {
		return strings.Contains(letterSection(getPage(t, base+"/"), msg), `class="r-sent">sent<`)
	})
	if code, out := post(t, base+"/v1/events", devPlatformKeys["borger.dk"], wireEvent("c-bo", "contact.updated", "borger.dk",
		map[string]any{"cpr": bo.CPR, "email": "bo.new@example.dk"})); code != http.StatusAccepted {
		t.Fatalf("contact.updated: %d %v", code, out)
	}
	codeRE := regexp.MustCompile(`<code class="code">([0-9]{6})</code>`)
	var code string
	eventually(t, "the code on the dev page", 20*time.Second, func() bool {
		m := codeRE.FindStringSubmatch(getPage(t, base+"/"))
		if m != nil {
			code = m[1]
		}
		return m != nil
	})
	st, out := post(t, base+"/v1/contacts/confirm", devPlatformKeys["borger.dk"],
		`{"cpr":"`+bo.CPR+`","channel":"email","code":"`+code+`"}`)
	if st != http.StatusOK || out["status"] != "confirmed" {
		t.Errorf("confirming with the code the page shows: %d %v", st, out)
	}
}

// TestDevPageShowsConsents: the demo citizens' consents to show public
// post, as stored: a consent.revoked sent in dev shows on the page.
func TestDevPageShowsConsents(t *testing.T) {
	base := startDev(t, nil)
	cit := devCitizens(time.Now())
	row := func(page, cpr string) string {
		i := strings.Index(page, "<code>"+cpr+"</code>")
		if i < 0 {
			return ""
		}
		j := strings.Index(page[i:], "</tr>")
		return page[i : i+j]
	}
	page := getPage(t, base+"/")
	for cpr, want := range map[string]string{cit[0].CPR: `class="consent">mit.dk<`, cit[1].CPR: `class="consent">e-boks, mit.dk<`,
		cit[2].CPR: `class="consent">none (`} {
		if r := row(page, cpr); !strings.Contains(r, want) {
			t.Errorf("the row of %s lacks %q:\n%s", cpr, want, r)
		}
	}
	if code, out := post(t, base+"/v1/events", devPlatformKeys["mit.dk"], wireEvent("cs-r", "consent.revoked", "mit.dk",
		map[string]any{"cpr": cit[0].CPR, "platform": "mit.dk"})); code != http.StatusAccepted {
		t.Fatalf("consent.revoked: %d %v", code, out)
	}
	eventually(t, "the revocation on the page", 20*time.Second, func() bool {
		return strings.Contains(row(getPage(t, base+"/"), cit[0].CPR), `class="consent">none (`)
	})
}
