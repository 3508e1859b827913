package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/store"
)

func newAuditCmd(c *cli) *cobra.Command {
	audit := &cobra.Command{Use: "audit", Short: "Work with the audit trail"}
	audit.AddCommand(withBundleFlag(newAuditVerifyCmd(c), c.stdout))
	return audit
}

func newAuditVerifyCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit hash chain straight from the database (exit 1 when broken)",
		Args:  cobra.NoArgs,
		RunE: c.withDB(func(ctx context.Context, db *store.DB) error {
			brk, n, err := db.VerifyAudit(ctx)
			if err != nil {
				return err
			}
			if brk != nil {
				return &exitError{code: 1, err: fmt.Errorf("audit chain BROKEN at row %d: %s (%d rows checked before it)", brk.Seq, brk.Reason, n)}
			}
			fmt.Fprintf(c.stdout, "audit chain intact: %d rows verified\n", n)
			return nil
		}),
	}
}
