package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// TestLogsDuringRedisOutage runs serve on a redis-server of its own, sends
// a letter, kills Redis for a few seconds, restarts it on the same port and
// sends another letter. Everything serve wrote to stdout and stderr must be
// one JSON object per line with unique keys at every depth (postbud's,
// asynq's and go-redis's lines alike), the outage's repeated errors must be
// rate-limited with a count, and no line may hold the citizen's CPR, email
// or phone number.
func TestLogsDuringRedisOutage(t *testing.T) {
	// The limiter's window, shortened so the outage outlasts it several
	// times over in a few seconds.
	const window = time.Second
	const outage = 5 * time.Second
	repeatIntervalOverride.Store(int64(window))
	t.Cleanup(func() { repeatIntervalOverride.Store(0) })

	srv := redistest.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	stopRedis, startRedis := srv.Kill, srv.Start

	// Everything the process writes to its own stdout and stderr while
	// serve runs, besides what serve writes to run's.
	procOut, restoreOut := captureFD(t, 1)
	procErr, restoreErr := captureFD(t, 2)

	rt := &redistest.Env{Client: rdb, URL: srv.URL, Prefix: "lo", QueuePrefix: "loq"}
	smtp := emailtest.New(t)
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	getenv := testEnv(rt, smtp, nil)
	d := &daemon{done: make(chan error, 1), logs: stderr}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.done <- run(ctx, []string{"serve"}, getenv, nil, stdout, stderr) }()
	t.Cleanup(func() { d.stop(t) })
	eventually(t, "postbud serve to start", 15*time.Second, func() bool {
		if m := servingRE.FindStringSubmatch(stderr.String()); m != nil {
			d.base = m[1]
			return true
		}
		return false
	})

	contact := func(id string) {
		t.Helper()
		code, body := post(t, d.base+"/v1/events", testCoreKey, wireEvent(id, "contact.updated", "core",
			map[string]any{"cpr": "010190-1234", "email": "anna@example.dk", "mobile": "20 12 34 56", "confirmed": true}))
		if code != http.StatusAccepted || body["status"] != "accepted" {
			t.Fatalf("contact.updated: %d %v", code, body)
		}
		waitIdle(t, rt)
	}
	letter := func(id, msgID string, n int) {
		t.Helper()
		if code, body := post(t, d.base+"/v1/events", testCoreKey, letterEvent(id, msgID)); code != http.StatusAccepted || body["status"] != "accepted" {
			t.Fatalf("message.received %s: %d %v", id, code, body)
		}
		waitMessages(t, smtp, n)
	}

	// serve's own code passes no key twice today; the line the issue saw
	// ("channel":"email","channel":"email") is sent once through the
	// daemon's logger (the one go-redis writes to) so the check below
	// covers the handler that removes the second key.
	probe := redisLog.target.Load()
	if probe == nil || !strings.Contains(stderr.String(), "postbud serving") {
		t.Fatal("serve has not installed its logger")
	}
	probe.With("channel", "email").Warn("log probe: a key given twice", "channel", "email")
	if !strings.Contains(stderr.String(), `"msg":"log probe: a key given twice"`) {
		t.Fatalf("the probe line did not reach serve's stderr:\n%s", stderr.String())
	}

	contact("contact-1")
	letter("letter-1", "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", 1)

	// The outage: Redis dies (after a snapshot, so it comes back with the
	// contact, as a restarted production Redis would); wait until serve has
	// said Redis is gone, and for at least outage.
	if err := rdb.Save(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	from := len(stderr.String())
	down := time.Now()
	stopRedis()
	eventually(t, "redis errors in the logs during the outage", outage+10*time.Second, func() bool {
		s := stderr.String()[from:]
		return time.Since(down) >= outage && (strings.Contains(s, `"level":"ERROR"`) || strings.Contains(s, `"level":"WARN"`))
	})
	startRedis()
	lasted := time.Since(down)
	to := len(stderr.String())

	letter("letter-2", "7f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", 2)
	d.stop(t)
	restoreErr()
	restoreOut()

	var lines []string
	for _, b := range []*syncBuffer{stdout, stderr, procOut, procErr} {
		if s := strings.TrimRight(b.String(), "\n"); s != "" {
			lines = append(lines, strings.Split(s, "\n")...)
		}
	}
	all := strings.Join(lines, "\n")
	assertNoPersonalData(t, all)
	for _, line := range lines {
		if !json.Valid([]byte(line)) || !strings.HasPrefix(line, "{") {
			t.Errorf("not one JSON object: %s", line)
			continue
		}
		uniqueKeys(t, line)
	}

	// During the outage, each identical warning or error (level, message,
	// error) is written at most once per window, plus slack for the
	// windows' edges.
	type key struct{ level, msg, err string }
	count := map[key]int{}
	for _, line := range strings.Split(strings.TrimRight(stderr.String()[from:to], "\n"), "\n") {
		var l struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Err   string `json:"error"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || (l.Level != "WARN" && l.Level != "ERROR") {
			continue
		}
		count[key{l.Level, l.Msg, l.Err}]++
	}
	if len(count) == 0 {
		t.Fatalf("no warning or error during a %s Redis outage:\n%s", lasted, stderr.String()[from:to])
	}
	limit := int(lasted/window) + 2
	for k, n := range count {
		if n > limit {
			t.Errorf("%d lines of %s %q (error %q) in a %s outage; at most %d with a %s window", n, k.level, k.msg, k.err,
				lasted.Round(time.Millisecond), limit, window)
		}
	}
	if !strings.Contains(all, `"repeated":`) {
		t.Errorf("no line carries the count of repeated lines held back during a %s outage (window %s)", lasted, window)
	}
	t.Logf("outage %s: %d distinct warnings/errors, %v", lasted.Round(time.Millisecond), len(count), count)
}
