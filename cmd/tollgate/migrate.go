package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/store"
)

func newMigrateCmd(c *cli) *cobra.Command {
	var status bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending database migrations (--status: say where the schema stands, applying nothing)",
		Long: `Apply pending database migrations (serve applies them too, when it starts).

With --status nothing is applied: it says which migration the database is
at, which this build knows, how many are pending, and the schema's floor —
the oldest build that may run against it — and exits 1 when this build may
not (a newer tollgate migrated the schema past it). Run it with a binary
before rolling back to it.`,
		Args: cobra.NoArgs,
		RunE: c.withDB(func(ctx context.Context, db *store.DB) error {
			if status {
				return c.schemaStatus(ctx, db)
			}
			n, err := db.Migrate(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "applied %d migrations (%s)\n", n, db.Dialect())
			return nil
		}),
	}
	cmd.Flags().BoolVar(&status, "status", false, "say where the schema stands and whether this build may run against it; apply nothing")
	return cmd
}

// schemaStatus prints the schema's state as this build sees it, and
// returns the schema's error when this build may not run against it.
func (c *cli) schemaStatus(ctx context.Context, db *store.DB) error {
	st, err := db.Schema(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "database:     %s, at migration %d\n", db.Dialect(), st.Applied)
	fmt.Fprintf(c.stdout, "this build:   knows up to migration %d; %d pending\n", st.Known, st.Pending)
	if st.Floor > 0 {
		fmt.Fprintf(c.stdout, "floor:        builds that know migration %d or later may run against it\n", st.Floor)
	} else {
		fmt.Fprintln(c.stdout, "floor:        none recorded yet")
	}
	switch {
	case st.Err() != nil:
		fmt.Fprintln(c.stdout, "this build:   may NOT run against it")
		return st.Err()
	case st.Ahead():
		fmt.Fprintln(c.stdout, "this build:   may run against it (a newer build migrated it with additive migrations only)")
	case st.Pending > 0:
		fmt.Fprintln(c.stdout, "this build:   may run against it once its pending migrations are applied (tollgate migrate, or serve)")
	default:
		fmt.Fprintln(c.stdout, "this build:   may run against it")
	}
	return nil
}
