package app

import (
	"context"
	"time"
)

// clockSkewWarn is the distance from the database's clock past which a
// replica says its clock is off: change windows and freezes are judged by
// the replica's clock, and an NTP-synchronised host is within
// milliseconds.
const clockSkewWarn = time.Second

// defaultSchemaEvery is how often a running replica reads the schema's
// floor: one small query, and the longest an older replica goes on
// writing after a newer one migrated past what it can run against.
const defaultSchemaEvery = 10 * time.Second

// watchDatabase checks, every schemaEvery, that the replica may still run
// against the schema (schemaCheck) and how far its clock is from the
// database's (tollgate_clock_skew_seconds, and a warning past
// clockSkewWarn).
func (a *App) watchDatabase(ctx context.Context, stop context.CancelCauseFunc) {
	schema := a.schemaCheck(ctx, stop)
	skewed := false
	check := func() {
		schema()
		skew, ok, err := a.DB.ClockSkew(ctx)
		if !ok || err != nil {
			return
		}
		a.Metrics.ClockSkew.Set(skew.Seconds())
		if off := skew.Abs() > clockSkewWarn; off != skewed {
			skewed = off
			if off {
				a.Log.WarnContext(ctx, "this host's clock is off from the database's: change windows and freezes are judged by it; synchronise it (NTP)", "skew", skew.Round(time.Millisecond).String())
			} else {
				a.Log.InfoContext(ctx, "this host's clock agrees with the database's again", "skew", skew.Round(time.Millisecond).String())
			}
		}
	}
	check()
	every(ctx, a.schemaEvery, check)
}

// schemaCheck returns the check that stops the replica (stop, with the
// schema's error as cause) once a newer tollgate has migrated the schema
// past what this build can run against. Readiness fails at once too, but the replica's background
// work — the inbox's normalizer, pollers, scheduled reports — writes
// whether or not a load balancer sends it requests, and must not go on
// writing rows the schema no longer means. A schema ahead that this build
// can still run against (additive migrations only) is said once.
func (a *App) schemaCheck(ctx context.Context, stop context.CancelCauseFunc) func() {
	warned := false
	return func() {
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
}
