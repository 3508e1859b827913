package app

import (
	"context"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/migrations"
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

// ReplicaLive is how lately a replica at the defaults must have recorded
// itself to count as running: three of its checks.
const ReplicaLive = 3 * defaultSchemaEvery

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
		if err != nil {
			return // the database away: readiness says so, and the next check retries
		}
		a.heartbeat(ctx, skew, ok)
		if !ok {
			return
		}
		a.Metrics.ClockSkew.Set(skew.Seconds())
		a.skew.Store(int64(skew))
		a.skewKnown.Store(true)
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

// newReplica is this process as the replicas table records it.
func newReplica(clock core.Clock) core.Replica {
	r := core.Replica{ID: replicaID(), Version: Version, StartedAt: clock.Now()}
	if vs, err := migrations.Versions(); err == nil && len(vs) > 0 {
		r.SchemaKnown = vs[len(vs)-1]
	}
	return r
}

// heartbeat records that this replica runs, with its clock's skew when
// measured.
func (a *App) heartbeat(ctx context.Context, skew time.Duration, measured bool) {
	r := a.replica
	if measured {
		ms := skew.Milliseconds()
		r.ClockSkewMS = &ms
	}
	if err := a.DB.Heartbeat(ctx, r); err != nil && ctx.Err() == nil {
		a.Log.WarnContext(ctx, "replica not recorded", "error", err.Error())
	}
}

// forgetReplica removes this replica's row when it stops, so that the
// replicas listed are those running.
func (a *App) forgetReplica() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.DB.RemoveReplica(ctx, a.replica.ID); err != nil {
		a.Log.Warn("replica not removed from the replicas table", "error", err.Error())
	}
}

// liveWithin is how lately a replica must have been seen to count as
// running: three of its checks.
func (a *App) liveWithin() time.Duration { return 3 * a.schemaEvery }

// Replicas lists the replicas the database knows (GET /api/v1/replicas).
func (a *App) Replicas(ctx context.Context) ([]core.Replica, error) {
	return a.DB.Replicas(ctx, a.liveWithin())
}

// clockUnfit refuses judging while this replica's clock, as last
// measured, is further from the database server's than
// gate.max_clock_skew (when set): the gate's checks and CI answers
// (service.Gate.Unfit) and readiness, so a load balancer takes the
// replica out while the others answer.
func (a *App) clockUnfit() error {
	max := a.Config.Gate.MaxClockSkew.D()
	if max <= 0 || !a.skewKnown.Load() {
		return nil
	}
	if skew := time.Duration(a.skew.Load()); skew.Abs() > max {
		return core.Errorf(core.KindUnavailable,
			"this replica's clock is %s from the database server's, past gate.max_clock_skew (%s): it does not judge change windows until its clock is synchronised (NTP)",
			skew.Round(time.Millisecond), max)
	}
	return nil
}
