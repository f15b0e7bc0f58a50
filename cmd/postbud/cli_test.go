package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/dispatcher/redistest"
)

// built is the postbud binary of this test run: built once, as a user gets
// it, and shared by the CLI tests (six builds cost a minute or two of a
// loaded CI machine's link time); TestMain removes it.
var built struct {
	once      sync.Once
	dir, path string
	err       error
}

// binary returns the postbud binary, building it on first use.
func binary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "postbud-cli-test-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "postbud")
		if out, err := exec.Command("go", "build", "-o", built.path, ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// postbud runs the built binary with exactly env and returns its exit
// code, stdout and stderr.
func postbud(t *testing.T, bin string, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// TestCLIHelp: -h and --help on every command print its usage and flags
// to stdout and exit 0, starting nothing (no configuration is needed).
func TestCLIHelp(t *testing.T) {
	bin := binary(t)
	for _, args := range [][]string{
		{"serve"}, {"dev"}, {"emit"}, {"trace"}, {"version"}, {"config"},
	} {
		for _, h := range []string{"-h", "--help"} {
			code, out, errOut := postbud(t, bin, nil, append(args, h)...)
			if code != 0 {
				t.Errorf("postbud %s %s: exit %d, want 0\n%s", args[0], h, code, errOut)
			}
			if !strings.HasPrefix(out, "usage: postbud "+args[0]) {
				t.Errorf("postbud %s %s: stdout %q, want its usage", args[0], h, out)
			}
		}
	}
	_, out, _ := postbud(t, bin, nil, "emit", "-h")
	for _, flag := range []string{"-letter", "-url", "-redis"} {
		if !strings.Contains(out, flag) {
			t.Errorf("emit -h does not list %s:\n%s", flag, out)
		}
	}
	if code, out, _ := postbud(t, bin, nil, "--help"); code != 0 || !strings.Contains(out, "config check") {
		t.Errorf("postbud --help: exit %d, %q", code, out)
	}
}

// TestCLIBadArguments: an unknown flag, an extra argument or an unknown
// command is exit 2 with the usage on stderr.
func TestCLIBadArguments(t *testing.T) {
	bin := binary(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"serve", "extra"}, `unexpected argument "extra"`},
		{[]string{"dev", "extra"}, `unexpected argument "extra"`},
		{[]string{"trace", "a", "b"}, `unexpected argument "b"`},
		{[]string{"emit", "-nope"}, "flag provided but not defined: -nope"},
		{[]string{"version", "x"}, `unexpected argument "x"`},
		{[]string{"config", "verify"}, "want the subcommand check"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{nil, "no command given"},
	} {
		code, out, errOut := postbud(t, bin, nil, tt.args...)
		if code != 2 {
			t.Errorf("postbud %q: exit %d, want 2\n%s", tt.args, code, errOut)
		}
		if !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, "usage: postbud") {
			t.Errorf("postbud %q: stderr lacks %q and the usage:\n%s", tt.args, tt.want, errOut)
		}
		if out != "" {
			t.Errorf("postbud %q: stdout %q, want nothing", tt.args, out)
		}
	}
}

func TestCLIVersion(t *testing.T) {
	bin := binary(t)
	code, out, errOut := postbud(t, bin, nil, "version")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	re := regexp.MustCompile(`^postbud \S+\nrevision \S+\ntime \S+\ngo go1\.\d+`)
	if !re.MatchString(out) {
		t.Errorf("postbud version printed %q, want %v", out, re)
	}
}

// TestCLIConfigCheck: config check contacts Redis and the providers and
// reports a broken one (SMTP without STARTTLS while TLS is mandatory) by
// name with the reason, exit 1; with the provider fixed, exit 0.
func TestCLIConfigCheck(t *testing.T) {
	bin := binary(t)
	rt := redistest.New(t)
	plain := emailtest.New(t)
	env := map[string]string{
		"POSTBUD_REDIS_URL":     rt.URL,
		"POSTBUD_PSEUDONYM_KEY": "test-pseudonymisation-key-0123456789",
		"POSTBUD_SEAL_KEY":      testSealKey,
		"POSTBUD_OPS_KEY":       testOpsKey,
		"POSTBUD_KEY_CORE":      testCoreKey,
		"POSTBUD_SMTP_HOST":     plain.Host(),
		"POSTBUD_SMTP_PORT":     strconv.Itoa(plain.Port()),
		"POSTBUD_SMTP_TLS":      "mandatory",
		"POSTBUD_SMTP_FROM":     "besked@digitalpost.dk",
		"POSTBUD_SMTP_TIMEOUT":  "5s",
	}
	code, out, errOut := postbud(t, bin, env, "config", "check")
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"configuration  ok", "redis          ok", "email          FAILED: "} {
		if !strings.Contains(out, want) {
			t.Errorf("config check output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?i)email +FAILED: .*starttls`).MatchString(out) {
		t.Errorf("the email line does not say STARTTLS is missing:\n%s", out)
	}

	env["POSTBUD_SMTP_TLS"] = "none"
	env["POSTBUD_SELF_SERVICE_KEYS"] = "skat:public:" + testSelfServiceKey + "\nskat:public:" + testSelfServiceKey + "-old\nretten:court:" + testCourtKey
	if code, out, errOut := postbud(t, bin, env, "config", "check"); code != 0 || !strings.Contains(out, "email          ok") ||
		!strings.Contains(out, "self-service   2 system(s): skat (public, 2 keys), retten (court)\n") ||
		strings.Contains(out, testSelfServiceKey) {
		t.Errorf("with TLS none: exit %d, want 0, email ok and the self-service systems\n%s%s", code, out, errOut)
	}

	env["POSTBUD_QUIETHOURS_SMS"] = "off"
	code, out, _ = postbud(t, bin, env, "config", "check")
	if code != 1 || !strings.Contains(out, "POSTBUD_QUIETHOURS_SMS: unknown variable") ||
		!strings.Contains(out, "did you mean POSTBUD_QUIET_HOURS_SMS?") {
		t.Errorf("a misspelt variable: exit %d, want 1 naming it and the hint:\n%s", code, out)
	}
}
