// Package attempts names the later attempts of a CI run (GitHub's "Re-run
// jobs", a GitLab retry) that are recorded as deployments of their own:
// each is judged at its own start, with what was in force then, rather
// than folded into a run that finished days before.
package attempts

import (
	"context"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// span bounds how far apart two reports of one attempt say it started: a
// CI's webhook gives the job's start, the pipeline's own report its deploy
// step's.
const span = time.Hour

// RunID is the run id of the later attempt of dep's run (whose first run
// finished at firstFinished) that dep reports: an attempt already
// recorded by another reporter — started after that finish, not finished
// more than grace before dep started, the nearest to dep's start — else a
// new one, the run's id and dep's start. Each reporter giving its own
// start would otherwise split the attempt in two, the one without the
// gate's links a finding.
func RunID(ctx context.Context, db *sqldb.DB, tx *sqlx.Tx, dep core.Deployment, firstFinished time.Time, grace time.Duration) (string, error) {
	var rows []struct {
		RunID    string        `db:"run_id"`
		Started  sqldb.AnyTime `db:"started_at"`
		Finished sqldb.AnyTime `db:"finished_at"`
	}
	// By deployments_service_started: the few deployments of the service
	// that started in the window, the attempt's among them.
	if err := tx.SelectContext(ctx, &rows, db.Q(`SELECT run_id, started_at, finished_at FROM deployments
		WHERE service = ? AND started_at > ? AND started_at <= ? AND environment = ? AND provider = ?`),
		dep.Service, sqldb.TS(firstFinished), sqldb.TS(dep.StartedAt.Add(span)), dep.Environment, dep.Provider); err != nil {
		return "", err
	}
	best, gap := "", time.Duration(-1)
	for _, r := range rows {
		if !strings.HasPrefix(r.RunID, dep.RunID+"@") || (r.Finished.Valid && dep.StartedAt.After(r.Finished.Time.Add(grace))) {
			continue
		}
		if g := max(r.Started.Time.Sub(dep.StartedAt), dep.StartedAt.Sub(r.Started.Time)); gap < 0 || g < gap {
			best, gap = r.RunID, g
		}
	}
	if best == "" {
		best = dep.RunID + "@" + dep.StartedAt.UTC().Format(time.RFC3339)
	}
	return best, nil
}
