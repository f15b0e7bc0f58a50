package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

const usage = `usage: postbud <command> [arguments]

commands:
  serve                 run the workers and the HTTP server (configuration: POSTBUD_* variables)
  dev                   run postbud on an embedded Redis with demo citizens and local sinks
  emit [flags] [file]   send an event (JSON from file or stdin) to the HTTP API or straight into Redis
  trace <message-id>    print a letter's delivery trail
  config check          load the configuration, contact Redis and every configured provider, report each
  reseal [flags]        seal every citizen's contact data again under POSTBUD_SEAL_KEY (key rotation)
  version               print postbud's version, revision and Go version

"postbud <command> -h" describes a command and its flags.
`

// usageError is a command line that postbud does not understand: main
// exits 2 for it (1 for every other failure).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// errHelp is returned after -h/--help printed a command's usage: main exits
// 0 and nothing was started.
var errHelp = errors.New("help printed")

// run is the whole program: main only adds signals and the exit code.
// It does not check the environment for unknown POSTBUD_* names (tests
// pass a getenv of their own); runEnv does.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	return runEnv(ctx, args, getenv, nil, stdin, stdout, stderr)
}

// runEnv is run with the environment's names (os.Environ): a POSTBUD_*
// variable postbud does not know is then a configuration error. A nil
// environ skips that check.
func runEnv(ctx context.Context, args []string, getenv func(string) string, environ func() []string, stdin io.Reader, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, env{get: getenv, names: environ}, stdin, stdout, stderr)
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// env is the process environment: get reads one variable, names lists
// them (nil: unknown).
type env struct {
	get   func(string) string
	names func() []string
}

func dispatch(ctx context.Context, args []string, e env, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command given")}
	}
	switch args[0] {
	case "serve":
		fs := newFlagSet("serve", "", "Runs the workers and the HTTP server until SIGINT or SIGTERM. "+
			"Configuration comes from POSTBUD_* variables (README, Configuration).")
		if err := parse(fs, args[1:], 0, stdout, stderr); err != nil {
			return err
		}
		return serve(ctx, e, stdout, stderr, nil)
	case "dev":
		return dev(ctx, args[1:], e, stdout, stderr)
	case "emit":
		return emit(ctx, args[1:], e.get, stdin, stdout, stderr)
	case "trace":
		return trace(ctx, args[1:], e.get, stdout, stderr)
	case "config":
		return configCmd(ctx, args[1:], e, stdout, stderr)
	case "reseal":
		return reseal(ctx, args[1:], e, stdout, stderr)
	case "version":
		fs := newFlagSet("version", "", "Prints postbud's version, VCS revision and time, and the Go version it was built with.")
		if err := parse(fs, args[1:], 0, stdout, stderr); err != nil {
			return err
		}
		b := readBuild()
		fmt.Fprintf(stdout, "postbud %s\nrevision %s\ntime %s\ngo %s\n", b.Version, b.Revision, b.Time, b.GoVersion)
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Errorf("unknown command %q", args[0])}
}

// newFlagSet returns a command's flag set; its usage names the command,
// its arguments and what it does, then its flags.
func newFlagSet(name, arguments, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		line := "usage: postbud " + name
		if hasFlags(fs) {
			line += " [flags]"
		}
		if arguments != "" {
			line += " " + arguments
		}
		fmt.Fprintf(w, "%s\n\n%s\n", line, about)
		if hasFlags(fs) {
			fmt.Fprintln(w, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parse parses a command's flags and allows at most maxArgs arguments
// after them. -h/--help prints the usage to stdout and returns errHelp; a
// bad flag or an extra argument prints the problem and the usage to stderr
// and returns a usageError.
func parse(fs *flag.FlagSet, args []string, maxArgs int, stdout, stderr io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return errHelp
	}
	if err == nil && fs.NArg() > maxArgs {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(maxArgs))
	}
	if err != nil {
		fs.SetOutput(stderr)
		fmt.Fprintf(stderr, "postbud %s: %v\n", fs.Name(), err)
		fs.Usage()
		return usageError{fmt.Errorf("%s: %w", fs.Name(), err)}
	}
	return nil
}

// repeatInterval is how often one repeated warning or error line (the
// same message and error) is written; the lines between are counted.
const repeatInterval = 30 * time.Second

// newLogger returns the JSON (or text) logger: personal data that slips
// into a message or attribute is redacted by redactAttr, a key a line
// already has is dropped (uniqueHandler) and repeated identical warnings
// and errors are rate-limited (repeatHandler).
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(strings.ToUpper(level)))
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: redactAttr}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(&uniqueHandler{next: newRepeatHandler(h, repeatInterval)})
}
