// Command reconcilebench times one reconciliation report over a seeded
// store (scripts/seed -profile reconcile) and prints the deployments
// checked, findings, elapsed time, rate and the process's peak resident
// memory. The method is in docs/benchmarks.md.
//
// Usage:
//
//	go run ./scripts/reconcilebench -db 'postgres://…/tollgate_recon?sslmode=disable' [-page 1000] [-runs 3]
//	go run ./scripts/reconcilebench -db 'postgres://…' -scan-only   # the store's scan alone: no evaluation, nothing written
//	go run ./scripts/reconcilebench -db 'postgres://…' -copy-to-sqlite /tmp/recon.db   # then -db sqlite:/tmp/recon.db
//
// Each run also prints the process's CPU time (user + system) over it: on
// a shared machine wall time measures the neighbours too. It runs under
// the collector settings `tollgate serve` uses (internal/gctune: GOGC and
// GOMEMLIMIT from the environment, else serve's defaults), since the
// reconciler runs inside serve.
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
	"syscall"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/gctune"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
)

func main() {
	dbURL := flag.String("db", os.Getenv("TOLLGATE_DATABASE_URL"), "seeded database (postgres://… or sqlite:PATH)")
	page := flag.Int("page", store.DefaultReconcilePage, "deployments per page")
	runs := flag.Int("runs", 3, "reports to run (each is timed)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the runs to this file")
	scanOnly := flag.Bool("scan-only", false, "time store.ReconcileScan alone (reading and assembling the facts), not the report")
	afresh := flag.Bool("afresh", false, "judge every deployment in every run, neither reusing nor storing verdicts (service.Reconciler.NoStoredVerdicts)")
	clear := flag.Bool("clear", false, "delete the stored verdicts first: the first run judges every deployment and stores its verdict")
	copyTo := flag.String("copy-to-sqlite", "", "instead of timing, copy the seeded PostgreSQL store (-db) into a new SQLite store at this path")
	flag.Parse()
	gctune.Apply(os.Getenv, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
	if err := run(context.Background(), *dbURL, *page, *runs, *scanOnly, *afresh, *clear); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "reconcilebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dbURL string, page, runs int, scanOnly, afresh, clear bool) error {
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
	rec.PageSize, rec.NoStoredVerdicts = page, afresh
	if clear {
		if err := db.ClearVerdicts(ctx); err != nil {
			return err
		}
	}
	now := time.Now().UTC()
	q := core.ReconcileQuery{From: now.Add(-5 * 365 * 24 * time.Hour), To: now.Add(time.Minute)}
	for i := 0; i < runs; i++ {
		start, cpu0 := time.Now(), cpuTime()
		if scanOnly {
			n := 0
			q.Cutoff = time.Now().UTC()
			err := db.ReconcileScan(ctx, q, pols.Current().IsMajor, page, func(p []core.DeploymentFacts) error {
				n += len(p)
				return nil
			})
			if err != nil {
				return err
			}
			el := time.Since(start)
			fmt.Printf("scan %d: %d deployments in %.2fs = %.0f deployments/s; CPU %.2fs; peak RSS %s\n",
				i+1, n, el.Seconds(), float64(n)/el.Seconds(), (cpuTime() - cpu0).Seconds(), peakRSS())
			continue
		}
		rep, err := rec.Run(ctx, q, "reconcilebench", "")
		if err != nil {
			return err
		}
		el := time.Since(start)
		s := rep.Summary
		fmt.Printf("run %d: %d deployments, %d findings (%v) in %.2fs = %.0f deployments/s; CPU %.2fs; peak RSS %s\n",
			i+1, s.DeploymentsChecked, s.Findings, s.ByCode, el.Seconds(), float64(s.DeploymentsChecked)/el.Seconds(),
			(cpuTime() - cpu0).Seconds(), peakRSS())
		if err := db.DeleteReport(ctx, rep.ID); err != nil {
			return err
		}
	}
	return nil
}

// cpuTime is the process's CPU time so far (user + system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
