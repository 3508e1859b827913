package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// DebugHandler serves Go's profiler (net/http/pprof) under /debug/pprof/:
// CPU and heap profiles, goroutines, the execution trace. It is served on
// a listener of its own (debug_addr, loopback only), never on the API's,
// so none of the API's routes, roles or limits apply to it.
func DebugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also heap, goroutine, allocs, block, mutex, threadcreate
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// ServeDebug serves DebugHandler on ln until ctx ends.
func (a *App) ServeDebug(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           DebugHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: a CPU profile or trace answers after the
		// seconds it was asked to record.
		ErrorLog: slog.NewLogLogger(a.Log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.Log.InfoContext(ctx, "profiler listening (debug_addr; no authentication: keep it on loopback)", "addr", ln.Addr().String())
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = srv.Close() // a profile being recorded is cut short: the process is stopping
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
