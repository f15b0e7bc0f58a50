// Command postbud is the Digital Post notification hub: it takes mailbox
// events in, sends "you have new Digital Post" alerts by email, SMS and push,
// and keeps read state the same on all platforms.
//
//	postbud serve            workers + HTTP (ingest, ops API, health)
//	postbud dev              the same on an embedded Redis with demo data
//	postbud emit [flags]     send an event from the shell
//	postbud trace <msg-id>   print a letter's delivery trail
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "postbud:", err)
		os.Exit(1)
	}
}
