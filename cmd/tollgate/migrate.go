package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/store"
)

func newMigrateCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending database migrations",
		Args:  cobra.NoArgs,
		RunE: c.withDB(func(ctx context.Context, db *store.DB) error {
			n, err := db.Migrate(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "applied %d migrations (%s)\n", n, db.Dialect())
			return nil
		}),
	}
}
