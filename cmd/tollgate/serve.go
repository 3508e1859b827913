package main

import (
	"context"
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/app"
	"github.com/tollgate-dev/tollgate/internal/gctune"
)

func newServeCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway (HTTP API, webhooks, normalizer)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := c.load()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			gctune.Apply(c.getenv, log)
			a, err := app.New(ctx, cfg, log, app.Options{})
			if err != nil {
				return err
			}
			defer a.Close()
			ln, err := net.Listen("tcp", cfg.Addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
			}
			if cfg.DebugAddr != "" {
				dln, err := net.Listen("tcp", cfg.DebugAddr)
				if err != nil {
					ln.Close()
					return fmt.Errorf("debug_addr: listen on %s: %w", cfg.DebugAddr, err)
				}
				dctx, stop := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() {
					defer close(done)
					if err := a.ServeDebug(dctx, dln); err != nil {
						log.Error("the profiler's listener stopped", "error", err.Error())
					}
				}()
				defer func() { stop(); <-done }() // closed before the app is
			}
			return a.Serve(ctx, ln)
		},
	}
}
