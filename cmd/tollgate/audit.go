package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/anchor"
	"github.com/tollgate-dev/tollgate/store"
)

func newAuditCmd(c *cli) *cobra.Command {
	audit := &cobra.Command{Use: "audit", Short: "Work with the audit trail"}
	audit.AddCommand(withBundleFlag(newAuditVerifyCmd(c), c.stdout))
	return audit
}

func newAuditVerifyCmd(c *cli) *cobra.Command {
	var expectHead, anchors string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit hash chain and every gate decision straight from the database (exit 1 when broken)",
		Args:  cobra.NoArgs,
		RunE: c.withDB(func(ctx context.Context, db *store.DB) error {
			if anchors != "" {
				if expectHead != "" {
					return &exitError{code: 2, err: errors.New("give --expect-head or --anchors, not both")}
				}
				return verifyAnchors(ctx, db, anchors, c.stdout)
			}
			return verifyAudit(ctx, db, expectHead, c.stdout)
		}),
	}
	verify.Flags().StringVar(&expectHead, "expect-head", "", "a head kept outside (GET /api/v1/audit/head): HASH or SEQ:HASH; fail when the chain does not reach it")
	verify.Flags().StringVar(&anchors, "anchors", "", "a file of heads kept outside, one JSON line each (audit.anchor.file, or GET /api/v1/audit/head appended by cron); fail when the chain does not reach every one with its hash")
	return verify
}

// verifyAudit is `tollgate audit verify`: the chain and every gate decision,
// held to the anchor expectHead ("HASH" or "SEQ:HASH") when given.
func verifyAudit(ctx context.Context, db *store.DB, expectHead string, stdout io.Writer) error {
	head, err := parseHead(expectHead)
	if err != nil {
		return err
	}
	brk, n, err := db.VerifyAuditTo(ctx, head)
	if err := auditBroken(brk, n, err); err != nil {
		return err
	}
	if head.Hash != "" {
		fmt.Fprintf(stdout, "audit chain intact: %d rows verified, the expected head included\n", n)
		return nil
	}
	fmt.Fprintf(stdout, "audit chain intact: %d rows verified\n", n)
	return nil
}

// verifyAnchors is `tollgate audit verify --anchors FILE`: the chain and
// every gate decision, held to every anchor of the file.
func verifyAnchors(ctx context.Context, db *store.DB, path string, stdout io.Writer) error {
	heads, bad, err := anchor.ReadFile(path)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if bad > 0 {
		fmt.Fprintf(stdout, "warning: %d lines of %s are not anchors (a write torn by a crash, or an edit) and were skipped\n", bad, path)
	}
	anchors, brk := core.NewAuditAnchors(heads)
	if brk != nil {
		return auditBroken(brk, 0, nil)
	}
	newest, ok := anchors.Newest()
	if !ok {
		return &exitError{code: 2, err: fmt.Errorf("%s holds no anchor of a row: nothing to hold the chain to", path)}
	}
	brk, n, err := db.VerifyAuditAnchors(ctx, heads)
	if err := auditBroken(brk, n, err); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "audit chain intact: %d rows verified, reaching every one of the %d rows anchored in %s (the newest: row %d)\n", n, anchors.Len(), path, newest.Seq)
	return nil
}

// auditBroken turns a verification's outcome into the command's error:
// exit 1 with the first break, nil when the chain is intact.
func auditBroken(brk *core.AuditBreak, n int64, err error) error {
	switch {
	case err != nil:
		return err
	case brk != nil && brk.Seq == 0:
		return &exitError{code: 1, err: fmt.Errorf("audit trail BROKEN: %s (%d chain rows verified)", brk.Reason, n)}
	case brk != nil:
		return &exitError{code: 1, err: fmt.Errorf("audit chain BROKEN at row %d: %s (%d rows verified before it)", brk.Seq, brk.Reason, n)}
	}
	return nil
}

// parseHead reads --expect-head (core.ParseAuditHead).
func parseHead(s string) (core.AuditHead, error) {
	head, err := core.ParseAuditHead(s)
	if err != nil {
		return head, fmt.Errorf("--expect-head %q: %w", s, err)
	}
	return head, nil
}
