// Command postbud is the Digital Post notification hub: it takes mailbox
// events in, sends "you have new Digital Post" alerts by email, SMS and push,
// and keeps read state the same on all platforms.
//
//	postbud serve            workers + HTTP (ingest, ops API, health)
//	postbud dev              the same on an embedded Redis with demo data
//	postbud emit [flags]     send an event from the shell
//	postbud trace <msg-id>   print a letter's delivery trail
//	postbud config check     check the configuration and every provider
//	postbud reseal           seal the contact data again under the current key
//	postbud version          print the build's version
//
// Exit codes: 0 success (and -h), 1 failure, 2 a command line postbud does
// not understand.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := runEnv(ctx, os.Args[1:], os.Getenv, os.Environ, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "postbud:", err)
		if errors.As(err, new(usageError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
