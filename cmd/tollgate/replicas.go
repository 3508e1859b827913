package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/app"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/migrations"
	"github.com/tollgate-dev/tollgate/store"
)

func newReplicasCmd(c *cli) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "replicas",
		Short: "List the replicas running on the database: build, migration known, last seen, clock (reading only)",
		Long: `List the tollgate replicas the database knows, as GET /api/v1/replicas
does, straight from the database: each records itself every 10 s while it
runs. During an upgrade it shows which still run the older build.`,
		Args: cobra.NoArgs,
		RunE: c.withDB(func(ctx context.Context, db *store.DB) error {
			st, err := db.Schema(ctx)
			if err != nil {
				return err
			}
			reps := []core.Replica{}
			if st.Applied >= migrations.ReplicasSince {
				if reps, err = db.Replicas(ctx, app.ReplicaLive); err != nil {
					return err
				}
			}
			if jsonOut {
				return printJSON(c.stdout, map[string]any{"items": reps})
			}
			w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tLIVE\tVERSION\tMIGRATION\tSTARTED\tLAST SEEN\tCLOCK SKEW")
			for _, r := range reps {
				skew := "-"
				if r.ClockSkewMS != nil {
					skew = fmt.Sprintf("%d ms", *r.ClockSkewMS)
				}
				fmt.Fprintf(w, "%s\t%v\t%s\t%d\t%s\t%s\t%s\n", r.ID, r.Live, r.Version, r.SchemaKnown,
					r.StartedAt.Format(time.RFC3339), r.SeenAt.Format(time.RFC3339), skew)
			}
			return w.Flush()
		}),
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, `print {"items":[…]} as the API does`)
	return cmd
}
