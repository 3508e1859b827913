// Package unjudged counts what a reconciliation report's period holds that
// the report does not judge: deployments recorded after it covered their
// start (what a schedule's late-arrivals report then judges) and runs
// their CI still holds (queued, judged once they run).
package unjudged

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Counts are the counts on one database.
type Counts struct{ base *sqldb.DB }

// New returns the counts on db.
func New(db *sqldb.DB) *Counts { return &Counts{base: db} }

// CountQueued counts the deployments of q's period and scope that are
// still queued (core.DeployQueued): runs their CI held and that reported
// no start, which no report judges (core.ReconcileSummary.QueuedDeployments).
// A partial index (migration 00034) keeps it to the queued rows.
func (c *Counts) CountQueued(ctx context.Context, q core.ReconcileQuery) (int, error) {
	scope, scopeArgs := sqldb.ScopeFilter("d", q.Environment, q.Service, q.Team)
	query := `SELECT COUNT(*) FROM deployments d WHERE d.status = ? AND d.started_at >= ? AND d.started_at < ?` + scope
	args := append([]any{core.DeployQueued, sqldb.TS(q.From), sqldb.TS(q.To)}, scopeArgs...)
	late, lateArgs := sqldb.RecordedLate("d", q)
	query += late
	args = append(args, lateArgs...)
	var n int
	if err := c.base.SQLX().GetContext(ctx, &n, c.base.Q(query), args...); err != nil {
		return 0, fmt.Errorf("count queued deployments: %w", sqldb.Translate(err))
	}
	return n, nil
}

// LateDeployments counts the deployments of environment (every one when
// "") that a schedule's late-arrivals report covers, and returns the
// earliest start among them: started before before and recorded by by,
// and either recorded after after (the previous report's cut-off) or
// started at or after uncoveredFrom (the end of the previous report's
// period: a span between the two periods no report covered; zero: none).
// A run that left its CI's queue is recorded when it left it.
func (c *Counts) LateDeployments(ctx context.Context, environment string, before, after, uncoveredFrom, by time.Time) (int, time.Time, error) {
	late, lateArgs := sqldb.RecordedLate("d", core.ReconcileQuery{RecordedAfter: after, UncoveredFrom: uncoveredFrom})
	q := `SELECT COUNT(*) AS n, MIN(started_at) AS earliest FROM deployments d WHERE started_at < ? AND created_at <= ?` + late + sqldb.Ran("d")
	args := append([]any{sqldb.TS(before), sqldb.TS(by)}, lateArgs...)
	if env := strings.TrimSpace(environment); env != "" {
		q += ` AND environment = ?`
		args = append(args, env)
	}
	var row struct {
		N        int           `db:"n"`
		Earliest sqldb.AnyTime `db:"earliest"`
	}
	if err := c.base.SQLX().GetContext(ctx, &row, c.base.Q(q), args...); err != nil {
		return 0, time.Time{}, fmt.Errorf("late deployments: %w", sqldb.Translate(err))
	}
	return row.N, row.Earliest.Time, nil
}
