package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

const usage = `usage: postbud <command> [arguments]

commands:
  serve                 run the workers and the HTTP server (configuration: POSTBUD_* variables)
  dev                   run postbud on an embedded Redis with demo citizens and local sinks
  emit [flags] [file]   send an event (JSON from file or stdin) to the HTTP API or straight into Redis
  trace <message-id>    print a letter's delivery trail
`

// run is the whole program: main only adds signals and the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, getenv, stdout, stderr, nil)
	case "dev":
		return dev(ctx, args[1:], getenv, stdout, stderr)
	case "emit":
		return emit(ctx, args[1:], getenv, stdin, stdout, stderr)
	case "trace":
		return trace(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// newLogger returns the JSON (or text) logger; personal data that slips
// into a message or attribute is redacted by redactAttr.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(strings.ToUpper(level)))
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: redactAttr}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
