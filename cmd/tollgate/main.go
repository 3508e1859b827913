// Command tollgate is the one binary: the gateway (serve), its database
// tools (migrate, token create, audit verify), the pipeline client (check)
// and the mapping tester (mapping test).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
