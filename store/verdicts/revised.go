package verdicts

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	segjson "github.com/segmentio/encoding/json"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// A schedule's revised findings (docs/reconciliation.md, "Revised
// findings") judge again the deployments its earlier reports judged that
// something recorded since may have given a finding. Which records can is
// markVerdicts' test: a change version, a review or an incident version
// stored since with an earlier validity, or the deployment's own row
// updated; the emergency timers are the service's to read
// (EmergencyDeployments).

// revisionFilter is the WHERE clause of the deployments q may revise:
// started before q.Before, recorded by q.Since, of q's environment, run.
func revisionFilter(q core.RevisionQuery) (string, []any) {
	w := `d.started_at < ? AND d.created_at <= ?` + sqldb.Ran("d")
	args := []any{sqldb.TS(q.Before), sqldb.TS(q.Since)}
	if env := strings.TrimSpace(q.Environment); env != "" {
		w += ` AND d.environment = ?`
		args = append(args, env)
	}
	return w, args
}

// RevisedDeployments returns the deployments of q (the latest started
// first, at most q.Limit; truncated says more matched) that a record
// stored in (q.Since, q.Cutoff] may have given a finding: their row was
// updated; or they link a change with a version valid by their start; or
// a review holding their team or service back was required by their
// start; or an incident version valid by their start that keep takes
// (the policy's major incidents, active) — each valid before q.Before,
// read by the recorded_at / updated_at indexes first, as markVerdicts
// reads them.
func (d *Store) RevisedDeployments(ctx context.Context, q core.RevisionQuery, keep func(core.Incident) bool) ([]core.DeploymentStart, bool, error) {
	out, truncated, err := d.revisedDeployments(ctx, q, keep)
	if err != nil {
		return nil, false, fmt.Errorf("revised deployments: %w", sqldb.Translate(err))
	}
	return out, truncated, nil
}

func (d *Store) revisedDeployments(ctx context.Context, q core.RevisionQuery, keep func(core.Incident) bool) ([]core.DeploymentStart, bool, error) {
	var conds []revisionCond
	conds = append(conds, revisionCond{`d.updated_at > ?`, []any{sqldb.TS(q.Since)}})
	lr, err := readLateRecords(ctx, d.base, d.db, q.Since, q.Cutoff, q.Before)
	if err != nil {
		return nil, false, err
	}
	if lr.changesFrom.Valid {
		conds = append(conds, revisionCond{`d.started_at >= ?`, []any{sqldb.TS(lr.changesFrom.Time)}})
	}
	linked := linkedSQL(d.base.Dialect())
	for _, c := range lr.changes {
		conds = append(conds, revisionCond{`d.started_at >= ? AND ` + linked, []any{sqldb.TS(c.From.Time), c.Key}})
	}
	for _, col := range []string{"team", "service"} {
		for _, t := range lr.held[col] {
			conds = append(conds, revisionCond{`lower(d.` + col + `) = ? AND d.started_at >= ?`, []any{t.Key, sqldb.TS(t.From.Time)}})
		}
	}
	from, err := d.lateIncidentsFrom(ctx, q, keep)
	if err != nil {
		return nil, false, err
	}
	if !from.IsZero() {
		conds = append(conds, revisionCond{`d.started_at >= ?`, []any{sqldb.TS(from)}})
	}
	return d.collectStarts(ctx, q, conds)
}

// revisionCond is one condition on deployments d, with its arguments.
type revisionCond struct {
	where string
	args  []any
}

// collectStarts returns the deployments of q meeting any of conds, the
// latest started first, at most q.Limit.
func (d *Store) collectStarts(ctx context.Context, q core.RevisionQuery, conds []revisionCond) ([]core.DeploymentStart, bool, error) {
	base, baseArgs := revisionFilter(q)
	seen := map[string]bool{}
	var out []core.DeploymentStart
	for _, c := range conds {
		var rows []struct {
			ID        string        `db:"id"`
			StartedAt sqldb.AnyTime `db:"started_at"`
		}
		args := append(append(slices.Clone(baseArgs), c.args...), q.Limit+1)
		if err := d.db.SelectContext(ctx, &rows, d.base.Q(`SELECT d.id, d.started_at FROM deployments d WHERE `+base+` AND `+c.where+
			` ORDER BY d.started_at DESC LIMIT ?`), args...); err != nil {
			return nil, false, err
		}
		for _, r := range rows {
			if !seen[r.ID] {
				seen[r.ID] = true
				out = append(out, core.DeploymentStart{ID: r.ID, StartedAt: r.StartedAt.Time})
			}
		}
	}
	slices.SortFunc(out, func(a, b core.DeploymentStart) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(out) > q.Limit {
		return out[:q.Limit], true, nil
	}
	return out, false, nil
}

// lateIncidentsFrom returns the earliest validity of the incident
// versions stored in (q.Since, q.Cutoff], valid before q.Before, that keep
// takes and that are active (zero: none): a blocking incident the reports
// did not know of when they judged the deployments since then. Versions
// that resolve or downgrade an incident only take findings away.
func (d *Store) lateIncidentsFrom(ctx context.Context, q core.RevisionQuery, keep func(core.Incident) bool) (time.Time, error) {
	doc := "doc"
	if d.base.Dialect() == sqldb.Postgres {
		doc = "doc::text"
	}
	rs, err := d.db.QueryContext(ctx, d.base.Q(`SELECT valid_from, `+doc+` FROM incident_versions
		WHERE recorded_at > ? AND recorded_at <= ? AND valid_from < ?`), sqldb.TS(q.Since), sqldb.TS(q.Cutoff), sqldb.TS(q.Before))
	if err != nil {
		return time.Time{}, err
	}
	defer rs.Close()
	var earliest time.Time
	for rs.Next() {
		var (
			from sqldb.AnyTime
			body []byte
			inc  core.Incident
		)
		if err := rs.Scan(&from, &body); err != nil {
			return time.Time{}, err
		}
		if err := segjson.Unmarshal(body, &inc); err != nil {
			return time.Time{}, fmt.Errorf("decode incident version: %w", err)
		}
		if inc.Active() && (keep == nil || keep(inc)) && (earliest.IsZero() || from.Time.Before(earliest)) {
			earliest = from.Time
		}
	}
	return earliest, rs.Err()
}

// EmergencyDeployments returns the deployments of q started in [from, to)
// that link a change whose type is emergency (as stored now): those whose
// emergency timers may have run out since q.Since. The range is the
// deployments' start index's; each one's changes are looked up by key.
func (d *Store) EmergencyDeployments(ctx context.Context, q core.RevisionQuery, from, to time.Time) ([]core.DeploymentStart, bool, error) {
	emergency := `EXISTS (SELECT 1 FROM jsonb_array_elements_text(d.changes) k(key) JOIN changes c ON c.key = k.key WHERE c.type = ?)`
	if d.base.Dialect() == sqldb.SQLite {
		emergency = `EXISTS (SELECT 1 FROM json_each(d.changes) j JOIN changes c ON c.key = j.value WHERE c.type = ?)`
	}
	out, truncated, err := d.collectStarts(ctx, q, []revisionCond{{`d.started_at >= ? AND d.started_at < ? AND ` + emergency,
		[]any{sqldb.TS(from), sqldb.TS(to), string(core.ChangeEmergency)}}})
	if err != nil {
		return nil, false, fmt.Errorf("emergency deployments: %w", sqldb.Translate(err))
	}
	return out, truncated, nil
}

// ReportedFindings calls fn with the deployment, code and ref of each
// finding on the deployments ids that a finished report of kind named one
// of names, created at or after from, showed: what a schedule has
// reported of them. A report that judged a deployment was made after it
// started, so from is the earliest start among ids; the reports are found
// by reports_kind_created, their findings by their key.
func (d *Store) ReportedFindings(ctx context.Context, kind string, names []string, from time.Time, ids []string, fn func(deployment, code, ref string)) error {
	if len(ids) == 0 || len(names) == 0 {
		return nil
	}
	for chunk := range slices.Chunk(ids, maxInList) {
		args := []any{kind, sqldb.TS(from)}
		for _, n := range names {
			args = append(args, n)
		}
		for _, id := range chunk {
			args = append(args, id)
		}
		rs, err := d.db.QueryContext(ctx, d.base.Q(`SELECT f.deployment_id, f.code, f.ref FROM reports r JOIN findings f ON f.report_id = r.id
			WHERE r.kind = ? AND r.created_at >= ? AND r.finished AND r.name IN (`+placeholders(len(names))+`)
			AND f.deployment_id IN (`+placeholders(len(chunk))+`)`), args...)
		if err != nil {
			return fmt.Errorf("findings reported: %w", sqldb.Translate(err))
		}
		for rs.Next() {
			var dep, code, ref string
			if err := rs.Scan(&dep, &code, &ref); err != nil {
				rs.Close()
				return fmt.Errorf("findings reported: %w", sqldb.Translate(err))
			}
			fn(dep, code, ref)
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return fmt.Errorf("findings reported: %w", sqldb.Translate(err))
		}
	}
	return nil
}
