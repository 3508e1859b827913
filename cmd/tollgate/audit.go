package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store"
)

func newAuditCmd(c *cli) *cobra.Command {
	audit := &cobra.Command{Use: "audit", Short: "Work with the audit trail"}
	audit.AddCommand(withBundleFlag(newAuditVerifyCmd(c), c.stdout))
	return audit
}

func newAuditVerifyCmd(c *cli) *cobra.Command {
	var expectHead string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit hash chain and every gate decision straight from the database (exit 1 when broken)",
		Args:  cobra.NoArgs,
		RunE: c.withDB(func(ctx context.Context, db *store.DB) error {
			return verifyAudit(ctx, db, expectHead, c.stdout)
		}),
	}
	verify.Flags().StringVar(&expectHead, "expect-head", "", "a head kept outside (GET /api/v1/audit/head): HASH or SEQ:HASH; fail when the chain does not reach it")
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
	switch {
	case err != nil:
		return err
	case brk != nil && brk.Seq == 0:
		return &exitError{code: 1, err: fmt.Errorf("audit trail BROKEN: %s (%d chain rows verified)", brk.Reason, n)}
	case brk != nil:
		return &exitError{code: 1, err: fmt.Errorf("audit chain BROKEN at row %d: %s (%d rows verified before it)", brk.Seq, brk.Reason, n)}
	}
	if head.Hash != "" {
		fmt.Fprintf(stdout, "audit chain intact: %d rows verified, the expected head included\n", n)
		return nil
	}
	fmt.Fprintf(stdout, "audit chain intact: %d rows verified\n", n)
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
