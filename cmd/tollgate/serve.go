package main

import (
	"fmt"
	"net"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/app"
)

// defaultGOGC is the collector's target `serve` sets when GOGC is unset:
// against 400, p99 at 20 connections 8.3–10.7 ms instead of 11.1–12.0 ms,
// for a peak resident size of ~400 MB instead of ~190 (docs/benchmarks.md).
const defaultGOGC = 1000

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
			if c.getenv("GOGC") == "" {
				// The gateway's live heap is small (tens of MB) and the gate
				// path allocates per request: at the default GOGC=100 the
				// collector ran ~8% of the CPU under load, and each cycle
				// shows in the gate's p99 (docs/benchmarks.md). Collecting
				// at 11x the live heap trades a few hundred MB for fewer
				// cycles; GOGC and GOMEMLIMIT in the environment take
				// precedence (GOMEMLIMIT caps the heap whatever GOGC says).
				debug.SetGCPercent(defaultGOGC)
				log.Info("garbage collector target set", "gogc", defaultGOGC, "override", "GOGC")
			}
			a, err := app.New(ctx, cfg, log, app.Options{})
			if err != nil {
				return err
			}
			defer a.Close()
			ln, err := net.Listen("tcp", cfg.Addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
			}
			return a.Serve(ctx, ln)
		},
	}
}
