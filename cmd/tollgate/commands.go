package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/app"
	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// defaultGOGC is the collector's target `serve` sets when GOGC is unset:
// against 400, p99 at 20 connections 8.3–10.7 ms instead of 11.1–12.0 ms,
// for a peak resident size of ~400 MB instead of ~190 (docs/benchmarks.md).
const defaultGOGC = 1000

// run executes the command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	root := newRoot(stdout, stderr, getenv)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "tollgate:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "tollgate:", err)
	return 1
}

func newRoot(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	var cfgPath string
	root := &cobra.Command{
		Use:           "tollgate",
		Short:         "tollgate: change-approval gate between ITSM (ServiceNow, Jira) and CI/CD",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&cfgPath, "config", "", "config file (env TOLLGATE_CONFIG; default config/tollgate.yaml when present)")
	load := func() (*config.Config, *slog.Logger, error) {
		cfg, path, err := config.Load(cfgPath, getenv)
		if err != nil {
			return nil, nil, err
		}
		lvl, _ := config.ParseLevel(cfg.LogLevel)
		log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
		if path == "" {
			path = "(none: built-in defaults)"
		}
		log.Info("configuration loaded", "file", path, "config", cfg)
		return cfg, log, nil
	}
	// withDB runs fn on the configured database (closed afterwards): the
	// offline commands work on the same store the server uses.
	withDB := func(fn func(ctx context.Context, db *store.DB) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := load()
			if err != nil {
				return err
			}
			db, err := store.Open(cmd.Context(), cfg.DatabaseURL, store.Options{Logger: log})
			if err != nil {
				return err
			}
			defer db.Close()
			return fn(cmd.Context(), db)
		}
	}

	root.AddCommand(&cobra.Command{
		Use:   "serve",
		Short: "Run the gateway (HTTP API, webhooks, normalizer)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := load()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if getenv("GOGC") == "" {
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
	})

	root.AddCommand(&cobra.Command{
		Use:   "migrate",
		Short: "Apply pending database migrations",
		Args:  cobra.NoArgs,
		RunE: withDB(func(ctx context.Context, db *store.DB) error {
			n, err := db.Migrate(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "applied %d migrations (%s)\n", n, db.Dialect())
			return nil
		}),
	})

	token := &cobra.Command{Use: "token", Short: "Manage API tokens"}
	var role, name string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an API token and print it (shown once)",
		Args:  cobra.NoArgs,
		RunE: withDB(func(ctx context.Context, db *store.DB) error {
			if _, err := db.Migrate(ctx); err != nil {
				return err
			}
			secret, t, err := service.NewTokens(db, core.SystemClock).Create(ctx, name, core.Role(role), "cli:"+currentUser())
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s\n", secret)
			fmt.Fprintf(stderr, "created token %s (name %q, role %s); store it now, it is not shown again\n", t.ID, t.Name, t.Role)
			return nil
		}),
	}
	create.Flags().StringVar(&role, "role", "", "admin, change_manager, auditor or ci (required)")
	create.Flags().StringVar(&name, "name", "", "a name for the token (required)")
	_ = create.MarkFlagRequired("role")
	_ = create.MarkFlagRequired("name")
	token.AddCommand(create)
	root.AddCommand(token)

	audit := &cobra.Command{Use: "audit", Short: "Work with the audit trail"}
	audit.AddCommand(withBundleFlag(&cobra.Command{
		Use:   "verify",
		Short: "Verify the audit hash chain straight from the database (exit 1 when broken)",
		Args:  cobra.NoArgs,
		RunE: withDB(func(ctx context.Context, db *store.DB) error {
			brk, n, err := db.VerifyAudit(ctx)
			if err != nil {
				return err
			}
			if brk != nil {
				return &exitError{code: 1, err: fmt.Errorf("audit chain BROKEN at row %d: %s (%d rows checked before it)", brk.Seq, brk.Reason, n)}
			}
			fmt.Fprintf(stdout, "audit chain intact: %d rows verified\n", n)
			return nil
		}),
	}, stdout))
	root.AddCommand(audit)

	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { fmt.Fprintln(stdout, "tollgate", app.Version) },
	})
	var hcURL string
	hc := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 when the gateway's URL answers 200 (for container health checks)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, hcURL, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s answered %d", hcURL, resp.StatusCode)
			}
			return nil
		},
	}
	hc.Flags().StringVar(&hcURL, "url", "http://127.0.0.1:8080/readyz", "URL to probe")
	root.AddCommand(hc)
	root.AddCommand(newCheckCmd(stdout, stderr, getenv))
	root.AddCommand(newReconcileCmd(stdout, stderr, getenv))
	root.AddCommand(newMappingCmd(stdout))
	return root
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}
