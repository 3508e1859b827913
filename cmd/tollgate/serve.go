package main

import (
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/app"
)

// defaultGOGC is the collector's target `serve` sets when GOGC is unset:
// fewer cycles under load take collector pauses out of the gate's p99
// (docs/benchmarks.md compares it with 400).
const defaultGOGC = 1000

// defaultMemLimit is the soft memory limit `serve` sets when GOMEMLIMIT is
// unset. With GOGC at defaultGOGC alone the heap may grow to 11x the live
// heap; under the limit the collector runs when the heap nears it instead,
// so the gateway stays small at its defaults while collecting rarely when
// memory is plentiful. A live heap above the limit does not fail: the
// runtime then caps the collector's share of the CPU and the heap grows.
const defaultMemLimit = 120 << 20

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
			tuneRuntime(c.getenv, log, debug.SetGCPercent, debug.SetMemoryLimit)
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

// tuneRuntime sets serve's collector defaults where the environment does
// not: GOGC and GOMEMLIMIT, when set, take precedence (the runtime has
// read them already).
//
// The gateway's live heap is small (tens of MB) and the gate path
// allocates per request: at the default GOGC=100 the collector ran ~8% of
// the CPU under load, and each cycle shows in the gate's p99
// (docs/benchmarks.md). Collecting at 11x the live heap trades memory for
// fewer cycles; the soft limit bounds that memory.
func tuneRuntime(getenv func(string) string, log *slog.Logger, setGCPercent func(int) int, setMemoryLimit func(int64) int64) {
	if getenv("GOGC") == "" {
		setGCPercent(defaultGOGC)
		log.Info("garbage collector target set", "gogc", defaultGOGC, "override", "GOGC")
	}
	if getenv("GOMEMLIMIT") == "" {
		setMemoryLimit(defaultMemLimit)
		log.Info("soft memory limit set", "bytes", int64(defaultMemLimit), "override", "GOMEMLIMIT")
	}
}
