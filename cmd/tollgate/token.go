package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
)

func newTokenCmd(c *cli) *cobra.Command {
	token := &cobra.Command{Use: "token", Short: "Manage API tokens"}
	token.AddCommand(newTokenCreateCmd(c))
	return token
}

func newTokenCreateCmd(c *cli) *cobra.Command {
	var role, name string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an API token and print it (shown once)",
		Args:  cobra.NoArgs,
		RunE: c.withDB(func(ctx context.Context, db *store.DB) error {
			if _, err := db.Migrate(ctx); err != nil {
				return err
			}
			secret, t, err := service.NewTokens(db, core.SystemClock).Create(ctx, name, core.Role(role), "cli:"+currentUser())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "%s\n", secret)
			fmt.Fprintf(c.stderr, "created token %s (name %q, role %s); store it now, it is not shown again\n", t.ID, t.Name, t.Role)
			return nil
		}),
	}
	create.Flags().StringVar(&role, "role", "", "admin, change_manager, auditor or ci (required)")
	create.Flags().StringVar(&name, "name", "", "a name for the token (required)")
	_ = create.MarkFlagRequired("role")
	_ = create.MarkFlagRequired("name")
	return create
}
