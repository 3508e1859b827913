package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
)

func newTokenCmd(c *cli) *cobra.Command {
	token := &cobra.Command{Use: "token", Short: "Manage API tokens"}
	token.AddCommand(newTokenCreateCmd(c), newTokenListCmd(c), newTokenRevokeCmd(c))
	return token
}

func newTokenListCmd(c *cli) *cobra.Command {
	var jsonOut bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List API tokens (ids, names, roles, revocation; never secrets)",
		Args:  cobra.NoArgs,
		RunE: c.withDB(func(ctx context.Context, db *store.DB) error {
			if _, err := db.Migrate(ctx); err != nil {
				return err
			}
			ts, err := service.NewTokens(db, core.SystemClock).List(ctx)
			if err != nil {
				return err
			}
			if jsonOut {
				if ts == nil {
					ts = []core.Token{}
				}
				return printJSON(c.stdout, map[string]any{"items": ts})
			}
			w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tNAME\tROLE\tCREATED\tCREATED BY\tREVOKED")
			for _, t := range ts {
				revoked := "-"
				if t.RevokedAt != nil {
					revoked = t.RevokedAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, t.CreatedAt.UTC().Format(time.RFC3339), t.CreatedBy, revoked)
			}
			return w.Flush()
		}),
	}
	list.Flags().BoolVar(&jsonOut, "json", false, `print {"items":[…]} as the API does`)
	return list
}

func newTokenRevokeCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API token by id (a running server stops accepting it within " + service.CacheTTL.String() + ")",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withDB(func(ctx context.Context, db *store.DB) error {
				if _, err := db.Migrate(ctx); err != nil {
					return err
				}
				if err := service.NewTokens(db, core.SystemClock).Revoke(ctx, args[0], "cli:"+currentUser()); err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "revoked token %s\n", args[0])
				return nil
			})(cmd, args)
		},
	}
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
