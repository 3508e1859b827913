// Command reconcilebench times one reconciliation report over a seeded
// store (scripts/seed -profile reconcile) and prints the deployments
// checked, findings, elapsed time, rate and the process's peak resident
// memory. The method is in docs/benchmarks.md.
//
// Usage:
//
//	go run ./scripts/reconcilebench -db 'postgres://…/tollgate_recon?sslmode=disable' [-page 1000] [-runs 3]
//	go run ./scripts/reconcilebench -db 'postgres://…' -copy-to-sqlite /tmp/recon.db   # then -db sqlite:/tmp/recon.db
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
)

func main() {
	dbURL := flag.String("db", os.Getenv("TOLLGATE_DATABASE_URL"), "seeded database (postgres://… or sqlite:PATH)")
	page := flag.Int("page", store.DefaultReconcilePage, "deployments per page")
	runs := flag.Int("runs", 3, "reports to run (each is timed)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the runs to this file")
	copyTo := flag.String("copy-to-sqlite", "", "instead of timing, copy the seeded PostgreSQL store (-db) into a new SQLite store at this path")
	flag.Parse()
	if *copyTo != "" {
		if err := copyToSQLite(context.Background(), *dbURL, "sqlite:"+*copyTo); err != nil {
			fmt.Fprintln(os.Stderr, "reconcilebench:", err)
			os.Exit(1)
		}
		return
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "reconcilebench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "reconcilebench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(context.Background(), *dbURL, *page, *runs); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "reconcilebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dbURL string, page, runs int) error {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(ctx, dbURL, store.Options{Logger: log})
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		return err
	}
	pols := service.NewPolicies(db, log)
	if err := pols.Load(ctx, nil); err != nil {
		return err
	}
	rec := service.NewReconciler(db, pols, core.SystemClock, log, core.ReconcileOptions{})
	rec.PageSize = page
	now := time.Now().UTC()
	q := core.ReconcileQuery{From: now.Add(-5 * 365 * 24 * time.Hour), To: now.Add(time.Minute)}
	for i := 0; i < runs; i++ {
		start := time.Now()
		rep, err := rec.Run(ctx, q, "reconcilebench", "")
		if err != nil {
			return err
		}
		el := time.Since(start)
		s := rep.Summary
		fmt.Printf("run %d: %d deployments, %d findings (%v) in %.2fs = %.0f deployments/s; peak RSS %s\n",
			i+1, s.DeploymentsChecked, s.Findings, s.ByCode, el.Seconds(), float64(s.DeploymentsChecked)/el.Seconds(), peakRSS())
		if err := db.DeleteReport(ctx, rep.ID); err != nil {
			return err
		}
	}
	return nil
}

// peakRSS reads the process's peak resident set (VmHWM) on Linux.
func peakRSS() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "n/a"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "n/a"
}
