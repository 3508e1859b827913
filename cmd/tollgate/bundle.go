package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/internal/bundle"
)

// withBundleFlag gives `audit verify` its --bundle FILE mode: check an
// evidence bundle offline (no database) instead of the live chain.
func withBundleFlag(cmd *cobra.Command, stdout io.Writer) *cobra.Command {
	var path string
	cmd.Flags().StringVar(&path, "bundle", "", "verify an evidence bundle (tar.gz from GET /api/v1/reports/reconciliation/{id}/bundle) offline instead of the database")
	live := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if path == "" {
			return live(c, args)
		}
		return verifyBundleFile(path, stdout)
	}
	return cmd
}

// verifyBundleFile checks a bundle and names the first mismatch (exit 1).
func verifyBundleFile(path string, stdout io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer f.Close()
	res, err := bundle.Verify(f)
	var mm *bundle.Mismatch
	switch {
	case errors.As(err, &mm):
		return &exitError{code: 1, err: fmt.Errorf("bundle BROKEN: %s: %s", mm.File, mm.Reason)}
	case err != nil:
		return &exitError{code: 1, err: fmt.Errorf("bundle unreadable: %w", err)}
	}
	fmt.Fprintf(stdout, "bundle intact: report %s, %d files and %d audit rows verified; MANIFEST.json sha256 %s\n",
		res.Manifest.ReportID, res.Files, res.AuditRows, res.ManifestSH)
	if h := res.Manifest.AuditHead; h != nil {
		fmt.Fprintf(stdout, "audit head when the bundle was made: %d:%s (check the live chain with: tollgate audit verify --expect-head %d:%s)\n", h.Seq, h.Hash, h.Seq, h.Hash)
	}
	return nil
}
