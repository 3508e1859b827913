package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// replicaForget is how long after it was last seen a replica's row is
// kept: a replica killed (no graceful stop to remove it) is listed as not
// live meanwhile.
const replicaForget = 24 * time.Hour

// Heartbeat records that replica r runs now (seen_at), and forgets the
// replicas not seen for a day.
func (d *DB) Heartbeat(ctx context.Context, r core.Replica) error {
	now := d.now()
	var skew sql.NullInt64
	if r.ClockSkewMS != nil {
		skew = sql.NullInt64{Int64: *r.ClockSkewMS, Valid: true}
	}
	_, err := d.db.ExecContext(ctx, d.q(`INSERT INTO replicas (id, version, schema_known, started_at, seen_at, clock_skew_ms)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET version = excluded.version, schema_known = excluded.schema_known,
			seen_at = excluded.seen_at, clock_skew_ms = excluded.clock_skew_ms`),
		r.ID, r.Version, r.SchemaKnown, ts(r.StartedAt), ts(now), skew)
	if err != nil {
		return fmt.Errorf("record replica %s: %w", r.ID, translate(err))
	}
	if _, err := d.db.ExecContext(ctx, d.q(`DELETE FROM replicas WHERE seen_at < ?`), ts(now.Add(-replicaForget))); err != nil {
		return fmt.Errorf("forget old replicas: %w", translate(err))
	}
	return nil
}

// RemoveReplica forgets replica id (a graceful stop).
func (d *DB) RemoveReplica(ctx context.Context, id string) error {
	if _, err := d.db.ExecContext(ctx, d.q(`DELETE FROM replicas WHERE id = ?`), id); err != nil {
		return fmt.Errorf("remove replica %s: %w", id, translate(err))
	}
	return nil
}

// Replicas lists the replicas known, oldest started first; those seen
// within live are Live.
func (d *DB) Replicas(ctx context.Context, live time.Duration) ([]core.Replica, error) {
	var rows []struct {
		ID          string        `db:"id"`
		Version     string        `db:"version"`
		SchemaKnown int64         `db:"schema_known"`
		StartedAt   time.Time     `db:"started_at"`
		SeenAt      time.Time     `db:"seen_at"`
		ClockSkewMS sql.NullInt64 `db:"clock_skew_ms"`
	}
	if err := d.db.SelectContext(ctx, &rows, `SELECT id, version, schema_known, started_at, seen_at, clock_skew_ms
		FROM replicas ORDER BY started_at, id`); err != nil {
		return nil, fmt.Errorf("list replicas: %w", translate(err))
	}
	now := d.now()
	out := make([]core.Replica, 0, len(rows))
	for _, r := range rows {
		rep := core.Replica{ID: r.ID, Version: r.Version, SchemaKnown: r.SchemaKnown, StartedAt: r.StartedAt.UTC(), SeenAt: r.SeenAt.UTC(),
			Live: now.Sub(r.SeenAt) <= live}
		if r.ClockSkewMS.Valid {
			v := r.ClockSkewMS.Int64
			rep.ClockSkewMS = &v
		}
		out = append(out, rep)
	}
	return out, nil
}
