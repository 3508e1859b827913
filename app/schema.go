package app

import (
	"context"
	"time"
)

// defaultSchemaEvery is how often a running replica reads the schema's
// floor: one small query, and the longest an older replica goes on
// writing after a newer one migrated past what it can run against.
const defaultSchemaEvery = 10 * time.Second

// watchSchema stops the replica (stop, with the schema's error as cause)
// once a newer tollgate has migrated the schema past what this build can
// run against. Readiness fails at once too, but the replica's background
// work — the inbox's normalizer, pollers, scheduled reports — writes
// whether or not a load balancer sends it requests, and must not go on
// writing rows the schema no longer means. A schema ahead that this build
// can still run against (additive migrations only) is said once.
func (a *App) watchSchema(ctx context.Context, stop context.CancelCauseFunc) {
	warned := false
	check := func() {
		st, err := a.DB.Schema(ctx)
		if err != nil {
			return // the database away: readiness says so, and the next check retries
		}
		if err := st.Err(); err != nil {
			a.Log.ErrorContext(ctx, "stopping: "+err.Error(), "applied", st.Applied, "floor", st.Floor, "known", st.Known)
			stop(err)
			return
		}
		if st.Ahead() && !warned {
			warned = true
			a.Log.WarnContext(ctx, "a newer tollgate migrated the schema past what this one knows; it can still run against it, but upgrade it",
				"applied", st.Applied, "known", st.Known, "floor", st.Floor, "version", Version)
		}
	}
	check()
	every(ctx, a.schemaEvery, check)
}
