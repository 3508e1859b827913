package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/app"
	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/store"
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

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

// cli is what every command shares: the output streams, the environment
// and the root's --config flag. Each command has its own constructor
// (newServeCmd, newTokenCmd, …) taking it.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	cfgPath        string
}

func newRoot(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	c := &cli{stdout: stdout, stderr: stderr, getenv: getenv}
	root := &cobra.Command{
		Use:           "tollgate",
		Short:         "tollgate: change-approval gate between ITSM (ServiceNow, Jira) and CI/CD",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&c.cfgPath, "config", "", "config file (env TOLLGATE_CONFIG; default config/tollgate.yaml when present)")
	root.AddCommand(
		newServeCmd(c),
		newMigrateCmd(c),
		newReplicasCmd(c),
		newTokenCmd(c),
		newAuditCmd(c),
		newVersionCmd(c),
		newHealthcheckCmd(c),
		newCheckCmd(stdout, stderr, getenv),
		newAttestCmd(stdout, stderr, getenv),
		newReconcileCmd(stdout, stderr, getenv),
		newMappingCmd(stdout),
		newConfigCmd(c),
		newDoctorCmd(c),
		newBackupCmd(c),
	)
	return root
}

// load reads the configuration and builds the logger; it logs the
// effective configuration (secrets masked).
func (c *cli) load() (*config.Config, *slog.Logger, error) {
	cfg, path, err := config.Load(c.cfgPath, c.getenv)
	if err != nil {
		return nil, nil, err
	}
	lvl, _ := config.ParseLevel(cfg.LogLevel)
	log := logging.New(c.stderr, lvl)
	if path == "" {
		path = "(none: built-in defaults)"
	}
	log.Info("configuration loaded", "file", path, "config", cfg)
	return cfg, log, nil
}

// withDB runs fn on the configured database (closed afterwards): the
// offline commands work on the same store the server uses.
func (c *cli) withDB(fn func(ctx context.Context, db *store.DB) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		cfg, log, err := c.load()
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

func newVersionCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and the Go that built it",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(c.stdout, "tollgate", app.Version, "("+runtime.Version()+")")
			if g := app.OlderGo(runtime.Version()); g != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: built with %s, older than tollgate's toolchain %s: %s\n", g, app.Toolchain, app.OlderGoAdvice)
			}
		},
	}
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}

// printJSON writes v as indented JSON, as the commands' --json print it.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
