package config

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestUnknownVariable: a misspelt POSTBUD_ variable is an error naming it
// and the closest known name.
func TestUnknownVariable(t *testing.T) {
	env := base()
	env["POSTBUD_QUIETHOURS_SMS"] = "off"
	env["POSTBUD_SMTP_HOSTNAME"] = "smtp.example.dk"
	env["OTHER_PROGRAM_VAR"] = "x"
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	_, err := LoadEnviron(func(k string) string { return env[k] }, func() []string { return environ })
	if err == nil {
		t.Fatal("LoadEnviron accepts unknown variables")
	}
	for _, want := range []string{
		"POSTBUD_QUIETHOURS_SMS: unknown variable: postbud does not read it; did you mean POSTBUD_QUIET_HOURS_SMS?",
		"POSTBUD_SMTP_HOSTNAME: unknown variable: postbud does not read it; did you mean POSTBUD_SMTP_HOST?",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "OTHER_PROGRAM_VAR") {
		t.Errorf("a variable without the POSTBUD_ prefix is reported:\n%v", err)
	}
	delete(env, "POSTBUD_QUIETHOURS_SMS")
	delete(env, "POSTBUD_SMTP_HOSTNAME")
	environ = nil
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	if _, err := LoadEnviron(func(k string) string { return env[k] }, func() []string { return environ }); err != nil {
		t.Errorf("LoadEnviron refuses a known environment: %v", err)
	}
}

// TestReadsOnlyKnownNames: every name Load asks for, with every channel
// on, is one of Names (so Unknown never refuses a variable Load reads).
func TestReadsOnlyKnownNames(t *testing.T) {
	asked := map[string]bool{}
	_, _ = Load(func(k string) string {
		asked[k] = true
		return "x" // every branch on: each channel sees its variables set
	})
	known := Names()
	for k := range asked {
		if _, ok := slices.BinarySearch(known, k); !ok {
			t.Errorf("Load reads %s, which is not in config.variables (and README's table)", k)
		}
	}
	if len(asked) < 50 {
		t.Errorf("Load asked for only %d names; the probe no longer turns every channel on", len(asked))
	}
}

// TestSourceNamesKnown: every POSTBUD_ literal in config's code is a known
// pattern or the start of one (names built from a prefix and a suffix).
func TestSourceNamesKnown(t *testing.T) {
	lit := regexp.MustCompile(`"(POSTBUD_[A-Z0-9_]*)"`)
	files, _ := filepath.Glob("*.go")
	patterns := Patterns()
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "names.go" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range lit.FindAllStringSubmatch(string(b), -1) {
			n++
			if !slices.ContainsFunc(patterns, func(p string) bool { return strings.HasPrefix(p, m[1]) }) {
				t.Errorf("%s reads %s, which is not in config.variables (and README's table)", f, m[1])
			}
		}
	}
	if n < 50 {
		t.Errorf("found only %d POSTBUD_ literals; the scanner is broken", n)
	}
}

// TestREADMETable: README's configuration table lists exactly the
// variables postbud reads, each with a default column.
func TestREADMETable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "| variable | default | meaning |")
	if !ok {
		t.Fatal("README.md has no configuration table")
	}
	name := regexp.MustCompile("^`(POSTBUD_[A-Z0-9_<>]+)(\\(_FILE\\))?`$")
	var got []string
	for _, line := range strings.Split(after, "\n")[2:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cols := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cols) != 3 {
			t.Errorf("README row %q: want 3 columns", line)
			continue
		}
		m := name.FindStringSubmatch(strings.TrimSpace(cols[0]))
		if m == nil {
			t.Errorf("README row %q: the first column must be one `POSTBUD_…` name", line)
			continue
		}
		if strings.TrimSpace(cols[1]) == "" {
			t.Errorf("README row %s: no default", m[1])
		}
		got = append(got, m[1])
		if m[2] != "" {
			got = append(got, m[1]+"_FILE")
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff(Patterns(), got); diff != "" {
		t.Errorf("README's configuration table vs the variables postbud reads (-code +README):\n%s", diff)
	}
}

func TestClosest(t *testing.T) {
	if got := closest("POSTBUD_ZZZZZZZZZZZZZZZZZZZZZ", Names()); got != "" {
		t.Errorf("closest of a name like no other = %q, want none", got)
	}
}
