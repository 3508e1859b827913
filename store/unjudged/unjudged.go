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
	if !q.RecordedAfter.IsZero() {
		query += ` AND d.created_at > ?`
		args = append(args, sqldb.TS(q.RecordedAfter))
	}
	var n int
	if err := c.base.SQLX().GetContext(ctx, &n, c.base.Q(query), args...); err != nil {
		return 0, fmt.Errorf("count queued deployments: %w", sqldb.Translate(err))
	}
	return n, nil
}

// LateDeployments counts the deployments of environment (every one when
// "") started before before and recorded in (after, by], and returns the
// earliest start among them: what a schedule's late-arrivals report covers.
// A run that left its CI's queue is recorded when it left it.
func (c *Counts) LateDeployments(ctx context.Context, environment string, before, after, by time.Time) (int, time.Time, error) {
	q := `SELECT COUNT(*) AS n, MIN(started_at) AS earliest FROM deployments d WHERE started_at < ? AND created_at > ? AND created_at <= ?` + sqldb.Ran("d")
	args := []any{sqldb.TS(before), sqldb.TS(after), sqldb.TS(by)}
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
