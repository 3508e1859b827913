package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/store"
)

// newBackupCmd is `tollgate backup`: an online copy of the embedded store,
// with the audit head that proves a restore of it.
func newBackupCmd(c *cli) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "backup --to FILE",
		Short: "Copy the embedded (SQLite) store to FILE while it is in use, and print the copy's audit head",
		Long: `Copy the embedded (SQLite) store to FILE, consistently, while it is in
use: a running server goes on reading and writing meanwhile. FILE must not
exist; it is created readable by its owner only. The copy's audit head
(SEQ:HASH) is printed: keep it beside the backup, and after restoring it
(stop tollgate, put the file in the store's place, start) run
"tollgate audit verify --expect-head SEQ:HASH" to prove the restored chain
is the one backed up. A PostgreSQL store is backed up with PostgreSQL's
own tools (pg_dump, base backups and WAL archiving); the same verify
checks a restore of it against a head kept outside (GET /api/v1/audit/head).`,
		Args: cobra.NoArgs,
		RunE: c.withDB(func(ctx context.Context, db *store.DB) error {
			head, err := db.Backup(ctx, to)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "backed up to %s; its audit head: %d:%s\n", to, head.Seq, head.Hash)
			fmt.Fprintf(c.stdout, "after a restore: tollgate audit verify --expect-head %d:%s\n", head.Seq, head.Hash)
			return nil
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", "the backup file to create (must not exist)")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}
