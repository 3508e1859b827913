// Package gctune holds the garbage collector's defaults of tollgate's
// long-running work — `tollgate serve`, and the benchmarks that run its
// code (scripts/reconcilebench) — so both run under the same settings.
package gctune

import (
	"log/slog"
	"runtime/debug"
)

// GOGC is the collector's target set when GOGC is unset: the gateway's
// live heap is small (tens of MB) and the gate path allocates per
// request, so at Go's default of 100 the collector ran ~8% of the CPU under
// load and each cycle showed in the gate's p99 (docs/benchmarks.md).
const GOGC = 1000

// MemLimit is the soft memory limit set when GOMEMLIMIT is unset. With GOGC
// alone the heap may grow to 11x the live heap; under the limit the
// collector runs as the heap nears it instead, so the process stays small
// at its defaults while collecting rarely when memory is plentiful. A live
// heap above the limit does not fail: the runtime then caps the
// collector's share of the CPU and the heap grows.
const MemLimit = 120 << 20

// Apply sets GOGC and MemLimit where the environment does not: GOGC and
// GOMEMLIMIT, when set, take precedence (the runtime has read them).
func Apply(getenv func(string) string, log *slog.Logger) {
	apply(getenv, log, debug.SetGCPercent, debug.SetMemoryLimit)
}

func apply(getenv func(string) string, log *slog.Logger, setGCPercent func(int) int, setMemoryLimit func(int64) int64) {
	if getenv("GOGC") == "" {
		setGCPercent(GOGC)
		log.Info("garbage collector target set", "gogc", GOGC, "override", "GOGC")
	}
	if getenv("GOMEMLIMIT") == "" {
		setMemoryLimit(MemLimit)
		log.Info("soft memory limit set", "bytes", int64(MemLimit), "override", "GOMEMLIMIT")
	}
}
