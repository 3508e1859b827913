// Package verdicts keeps the reconciler's stored verdicts: each
// deployment's findings as a report judged them, reused by the next report
// while nothing they were judged by changes (docs/reconciliation.md,
// "Stored verdicts").
package verdicts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Stored verdicts (migration 00025, docs/reconciliation.md#stored-verdicts)
// keep each deployment's findings as a report judged them, so that the
// next report over the same deployments copies them instead of reading
// every deployment's facts and judging it again. A verdict holds while
// nothing it was judged by changes: CheckVerdicts marks for a recheck
// those a record stored since the last check could change, before a
// report reads any.
//
// What can change a settled deployment's verdict is a record whose
// validity starts before the deployment but that was stored after the
// verdict: a change or incident version (valid_from is the source's
// stamp), a review required or signed off with an earlier time, or the
// deployment's own row updated. Gate decisions, holds and evidence take
// effect when tollgate stamps them, so nothing stored after a verdict
// predates a settled deployment; the policy (and the code judging by it)
// is part of a verdict's key.

// Store is the stored verdicts in one database.
type Store struct {
	base *sqldb.DB
	db   *sqlx.DB
}

// New returns the stored verdicts in db.
func New(db *sqldb.DB) *Store { return &Store{base: db, db: db.SQLX()} }

// maxInList bounds the values of one IN (…) list.
const maxInList = 1000

// placeholders returns "?, ?, …" for n values.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// verdictStateID is the one row of reconcile_verdict_state.
const verdictStateID = 1

// CheckVerdicts marks for a recheck the stored verdicts that a record
// stored since the last check (less core.VerdictSettle) could change, and
// records that the rest hold as of at. It returns the time from which it
// read records; with no check on record, or with at before the last one
// (the clock went back), it deletes every verdict and returns the zero
// time.
func (d *Store) CheckVerdicts(ctx context.Context, at time.Time) (time.Time, error) {
	at = sqldb.TS(at)
	var since time.Time
	err := d.base.Tx(ctx, func(tx *sqlx.Tx) error {
		lock := ""
		if d.base.Dialect() == sqldb.Postgres {
			lock = " FOR UPDATE"
		}
		var last sqldb.AnyTime
		err := tx.QueryRowContext(ctx, d.base.Q(`SELECT validated_at FROM reconcile_verdict_state WHERE id = ?`+lock), verdictStateID).Scan(&last)
		switch {
		case errors.Is(err, sql.ErrNoRows) || (err == nil && at.Before(last.Time)):
			for _, s := range d.clearVerdicts() {
				if _, err := tx.ExecContext(ctx, s); err != nil {
					return fmt.Errorf("clear verdicts: %w", err)
				}
			}
		case err != nil:
			return fmt.Errorf("read the verdicts' check: %w", err)
		default:
			since = sqldb.TS(last.Time.Add(-core.VerdictSettle))
			if err := d.markVerdicts(ctx, tx, since); err != nil {
				return fmt.Errorf("check verdicts: %w", err)
			}
		}
		_, err = tx.ExecContext(ctx, d.base.Q(`INSERT INTO reconcile_verdict_state (id, validated_at) VALUES (?, ?)
			ON CONFLICT (id) DO UPDATE SET validated_at = excluded.validated_at`), verdictStateID, at)
		return err
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("check stored verdicts: %w", err)
	}
	return since, nil
}

// maxLateChanges is how many changes with versions recorded since the
// last check markVerdicts follows one by one; past it, every verdict from
// the earliest version's validity on is marked.
const maxLateChanges = 200

// markVerdicts marks for a recheck the verdicts the records stored since
// could change: that of a deployment updated (its period and filter
// columns copied); those of deployments linking a change with a version
// stored since, started at or after its validity; those of every
// deployment started at or after the validity of an incident version
// stored since (the policy decides which incidents block which services);
// those of a team's or a service's deployments started at or after a
// review holding them back (core.PIR.HoldsBack) required or signed off
// since was required. The records since are read first (few, by the
// recorded_at / updated_at indexes), so each marking is an index range of
// the verdicts, whatever the planner knows of them.
func (d *Store) markVerdicts(ctx context.Context, tx *sqlx.Tx, since time.Time) error {
	mark := func(query string, args ...any) error {
		_, err := tx.ExecContext(ctx, d.base.Q(`UPDATE reconcile_verdicts SET recheck = TRUE WHERE NOT recheck AND `+query), args...)
		return err
	}
	if _, err := tx.ExecContext(ctx, d.base.Q(`UPDATE reconcile_verdicts SET recheck = TRUE, started_at = d.started_at,
		environment = d.environment, service = d.service, team = d.team
		FROM deployments d WHERE d.id = reconcile_verdicts.deployment_id AND d.updated_at > ?`), since); err != nil {
		return err
	}
	var incidents sqldb.AnyTime
	if err := tx.QueryRowContext(ctx, d.base.Q(`SELECT min(valid_from) FROM incident_versions WHERE recorded_at > ?`), since).Scan(&incidents); err != nil {
		return err
	}
	if incidents.Valid {
		if err := mark(`started_at >= ?`, sqldb.TS(incidents.Time)); err != nil {
			return err
		}
	}
	lr, err := readLateRecords(ctx, d.base, tx, since, time.Time{}, time.Time{})
	if err != nil {
		return err
	}
	if lr.changesFrom.Valid { // lr.changes is then empty; reviews follow
		if err := mark(`started_at >= ?`, sqldb.TS(lr.changesFrom.Time)); err != nil {
			return err
		}
	}
	linked := linkedSQL(d.base.Dialect())
	for _, c := range lr.changes {
		if err := mark(`deployment_id IN (SELECT d.id FROM deployments d WHERE d.started_at >= ? AND `+linked+`)`, sqldb.TS(c.From.Time), c.Key); err != nil {
			return err
		}
	}
	// A review holds back its team's releases and its service's
	// (core.PIR.HoldsBack, case-insensitively): both kinds of verdict from
	// the earliest time a changed review was required.
	for _, col := range []string{"team", "service"} {
		for _, t := range lr.held[col] {
			if err := mark(`lower(`+col+`) = ? AND started_at >= ?`, t.Key, sqldb.TS(t.From.Time)); err != nil {
				return err
			}
		}
	}
	return nil
}

// late is a record key and the earliest validity among its records
// stored late.
type late struct {
	Key  string        `db:"key"`
	From sqldb.AnyTime `db:"valid_from"`
}

// lateRecords are the change versions and reviews stored in a span whose
// validity may reach back before deployments they could judge otherwise:
// per change key, its earliest version's valid_from (or, with more than
// maxLateChanges keys, changesFrom: the earliest of all), and per
// lower-cased team and service ("team", "service"), the earliest time a
// review stored then was required. markVerdicts marks the verdicts they
// could change; a schedule's revised findings judge those deployments
// again (RevisedDeployments).
type lateRecords struct {
	changes     []late
	changesFrom sqldb.AnyTime
	held        map[string][]late
}

// readLateRecords reads the lateRecords stored after since and, when
// until is set, by until; when before is set, only those valid before it.
func readLateRecords(ctx context.Context, base *sqldb.DB, q sqlx.QueryerContext, since, until, before time.Time) (lateRecords, error) {
	where := func(stored, valid string) (string, []any) {
		w, args := stored+` > ?`, []any{sqldb.TS(since)}
		if !until.IsZero() {
			w += ` AND ` + stored + ` <= ?`
			args = append(args, sqldb.TS(until))
		}
		if !before.IsZero() {
			w += ` AND ` + valid + ` < ?`
			args = append(args, sqldb.TS(before))
		}
		return w, args
	}
	lr := lateRecords{held: map[string][]late{}}
	cw, cargs := where("recorded_at", "valid_from")
	if err := sqlx.SelectContext(ctx, q, &lr.changes, base.Q(`SELECT key, min(valid_from) AS valid_from FROM change_versions
		WHERE `+cw+` GROUP BY key ORDER BY key LIMIT ?`), append(cargs, maxLateChanges+1)...); err != nil {
		return lr, err
	}
	if len(lr.changes) > maxLateChanges {
		lr.changes = nil
		if err := sqlx.GetContext(ctx, q, &lr.changesFrom, base.Q(`SELECT min(valid_from) FROM change_versions WHERE `+cw), cargs...); err != nil {
			return lr, err
		}
	}
	pw, pargs := where("updated_at", "required_at")
	for _, col := range []string{"team", "service"} {
		var held []late
		if err := sqlx.SelectContext(ctx, q, &held, base.Q(`SELECT lower(`+col+`) AS key, min(required_at) AS valid_from FROM pirs
			WHERE `+pw+` AND `+col+` <> '' GROUP BY lower(`+col+`)`), pargs...); err != nil {
			return lr, err
		}
		lr.held[col] = held
	}
	return lr, nil
}

// linkedSQL is the condition that deployment d links the change key given
// as its one argument.
func linkedSQL(dialect string) string {
	if dialect == sqldb.SQLite {
		return `EXISTS (SELECT 1 FROM json_each(d.changes) j WHERE j.value = ?)`
	}
	return `d.changes @> jsonb_build_array(?::text)`
}

// ClearVerdicts deletes every stored verdict: the next report judges each
// deployment afresh.
func (d *Store) ClearVerdicts(ctx context.Context) error {
	return d.base.Tx(ctx, func(tx *sqlx.Tx) error {
		for _, s := range d.clearVerdicts() {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("clear stored verdicts: %w", err)
			}
		}
		return nil
	})
}

// clearVerdicts are the statements that delete every verdict; on
// PostgreSQL a TRUNCATE, which leaves no dead rows for the next report's
// writes to wade through.
func (d *Store) clearVerdicts() []string {
	if d.base.Dialect() == sqldb.Postgres {
		return []string{`TRUNCATE reconcile_verdict_findings, reconcile_verdicts`}
	}
	return []string{`DELETE FROM reconcile_verdict_findings`, `DELETE FROM reconcile_verdicts`}
}

// verdictFilter is the WHERE clause of q's period and filters over
// deployments (alias d) or verdicts (alias v), with its arguments.
func verdictFilter(alias string, q core.ReconcileQuery) (string, []any) {
	var b strings.Builder
	b.WriteString(alias + ".started_at >= ? AND " + alias + ".started_at < ?")
	args := []any{sqldb.TS(q.From), sqldb.TS(q.To)}
	scope, scopeArgs := sqldb.ScopeFilter(alias, q.Environment, q.Service, q.Team)
	if alias == "d" {
		// Verdicts are only ever stored for deployments that ran.
		scope = sqldb.Ran(alias) + scope
	}
	b.WriteString(scope)
	return b.String(), append(args, scopeArgs...)
}

// PlanVerdicts finds what a report over q (with its cut-off) must judge
// with the verdicts stored under key, after CheckVerdicts returned since:
// the deployments whose verdict is marked for a recheck or was judged
// under another key, and those without one — found among the
// deployments updated since, else (a period not judged before) by an
// anti-join. It counts the settled verdicts the report reuses. With more
// than limit to judge, the plan is to judge the whole period.
func (d *Store) PlanVerdicts(ctx context.Context, q core.ReconcileQuery, key string, since time.Time, limit int) (core.VerdictPlan, error) {
	plan, err := d.planVerdicts(ctx, q, key, since, limit)
	if err != nil {
		return core.VerdictPlan{}, fmt.Errorf("plan the stored verdicts: %w", sqldb.Translate(err))
	}
	return plan, nil
}

func (d *Store) planVerdicts(ctx context.Context, q core.ReconcileQuery, key string, since time.Time, limit int) (core.VerdictPlan, error) {
	whereD, argsD := verdictFilter("d", q)
	whereV, argsV := verdictFilter("v", q)
	var deployments, rows, reused, compliant, otherKey sql.NullInt64
	if err := d.db.QueryRowContext(ctx, d.base.Q(`SELECT count(*) FROM deployments d WHERE `+whereD), argsD...).Scan(&deployments); err != nil {
		return core.VerdictPlan{}, err
	}
	if err := d.db.QueryRowContext(ctx, d.base.Q(`SELECT count(*),
		sum(CASE WHEN v.policy_key = ? AND NOT v.recheck THEN 1 ELSE 0 END),
		sum(CASE WHEN v.policy_key = ? AND NOT v.recheck AND v.findings = 0 THEN 1 ELSE 0 END),
		sum(CASE WHEN v.policy_key <> ? THEN 1 ELSE 0 END)
		FROM reconcile_verdicts v WHERE `+whereV), append([]any{key, key, key}, argsV...)...).Scan(&rows, &reused, &compliant, &otherKey); err != nil {
		return core.VerdictPlan{}, err
	}
	full := core.VerdictPlan{}
	if int(otherKey.Int64) > limit {
		return full, nil
	}
	type unjudged struct {
		id      string
		started sqldb.AnyTime
		created sqldb.AnyTime
	}
	var todo []unjudged
	collect := func(query string, args ...any) error {
		rs, err := d.db.QueryContext(ctx, d.base.Q(query), args...)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var u unjudged
			if err := rs.Scan(&u.id, &u.started, &u.created); err != nil {
				return err
			}
			todo = append(todo, u)
		}
		return rs.Err()
	}
	stale := ` AND v.recheck`
	if otherKey.Int64 > 0 {
		stale = ` AND (v.recheck OR v.policy_key <> ?)`
		argsV = append(argsV, key)
	}
	if err := collect(`SELECT v.deployment_id, v.started_at, v.computed_at FROM reconcile_verdicts v WHERE `+whereV+stale+` LIMIT ?`, append(argsV, limit+1)...); err != nil {
		return core.VerdictPlan{}, err
	}
	if len(todo) > limit {
		return full, nil
	}
	if missing := int(deployments.Int64 - rows.Int64); missing > 0 {
		if missing > limit-len(todo) {
			return full, nil
		}
		// Those updated since the last check, unless that finds fewer than
		// are missing (a period not judged before): then all of them.
		n := len(todo)
		noVerdict := ` AND NOT EXISTS (SELECT 1 FROM reconcile_verdicts v WHERE v.deployment_id = d.id) LIMIT ?`
		if !since.IsZero() {
			if err := collect(`SELECT d.id, d.started_at, d.created_at FROM deployments d WHERE d.updated_at > ? AND `+whereD+noVerdict,
				append(append([]any{sqldb.TS(since)}, argsD...), missing+1)...); err != nil {
				return core.VerdictPlan{}, err
			}
		}
		if len(todo)-n < missing {
			todo = todo[:n]
			if err := collect(`SELECT d.id, d.started_at, d.created_at FROM deployments d WHERE `+whereD+noVerdict, append(argsD, missing+1)...); err != nil {
				return core.VerdictPlan{}, err
			}
		}
	}
	cutoff := sqldb.TS(q.Cutoff)
	todo = slices.DeleteFunc(todo, func(u unjudged) bool { return u.created.Time.After(cutoff) })
	slices.SortFunc(todo, func(a, b unjudged) int {
		if c := a.started.Time.Compare(b.started.Time); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	plan := core.VerdictPlan{ByID: true, Deployments: make([]string, len(todo)), Reused: int(reused.Int64), ReusedCompliant: int(compliant.Int64)}
	for i, u := range todo {
		plan.Deployments[i] = u.id
	}
	return plan, nil
}

// verdictsPerInsert bounds the rows of one SQLite verdict INSERT (under
// its parameter limit).
const verdictsPerInsert = 500

// SaveVerdicts stores the verdicts of one page of a report under key,
// judged as of at, replacing the deployments' earlier ones (an upsert of
// the verdict, its findings deleted and written anew). fresh says the
// deployments have none (ForgetVerdicts): on PostgreSQL they are then
// written with COPY, several times faster than an upsert per row.
func (d *Store) SaveVerdicts(ctx context.Context, key string, at time.Time, vs []core.Verdict, fresh bool) error {
	if len(vs) == 0 {
		return nil
	}
	at = sqldb.TS(at)
	err := d.base.Tx(ctx, func(tx *sqlx.Tx) error {
		if fresh && d.base.Dialect() == sqldb.Postgres {
			return copyVerdicts(ctx, tx, key, at, vs)
		}
		if !fresh {
			ids := make([]string, len(vs))
			for i, v := range vs {
				ids[i] = v.DeploymentID
			}
			if err := d.deleteVerdicts(ctx, tx, ids); err != nil {
				return err
			}
		}
		if d.base.Dialect() == sqldb.Postgres {
			return d.insertVerdictsPG(ctx, tx, key, at, vs)
		}
		return d.insertVerdictsSQLite(ctx, tx, key, at, vs)
	})
	if err != nil {
		return fmt.Errorf("store verdicts: %w", err)
	}
	return nil
}

// ForgetVerdicts deletes the verdicts of q's deployments (its period and
// filters), before a report judges them all.
func (d *Store) ForgetVerdicts(ctx context.Context, q core.ReconcileQuery) error {
	where, args := verdictFilter("v", q)
	err := d.base.Tx(ctx, func(tx *sqlx.Tx) error {
		if d.base.Dialect() == sqldb.Postgres && len(args) == 2 {
			// The whole history, as after a new policy: a TRUNCATE,
			// where a DELETE of every row takes longer than judging them.
			var outside bool
			if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM reconcile_verdicts WHERE started_at < $1)
				OR EXISTS (SELECT 1 FROM reconcile_verdicts WHERE started_at >= $2)`, args...).Scan(&outside); err != nil {
				return err
			}
			if !outside {
				_, err := tx.ExecContext(ctx, `TRUNCATE reconcile_verdict_findings, reconcile_verdicts`)
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, d.base.Q(`DELETE FROM reconcile_verdict_findings WHERE deployment_id IN
			(SELECT v.deployment_id FROM reconcile_verdicts v WHERE v.findings > 0 AND `+where+`)`), args...); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, d.base.Q(`DELETE FROM reconcile_verdicts WHERE deployment_id IN
			(SELECT v.deployment_id FROM reconcile_verdicts v WHERE `+where+`)`), args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("forget the stored verdicts: %w", sqldb.Translate(err))
	}
	return nil
}

// copyVerdicts writes new verdicts and their findings with COPY.
func copyVerdicts(ctx context.Context, tx *sqlx.Tx, key string, at time.Time, vs []core.Verdict) error {
	copyIn := func(table string, cols []string, rows func(add func(args ...any) error) error) error {
		st, err := tx.PrepareContext(ctx, pq.CopyIn(table, cols...))
		if err != nil {
			return err
		}
		defer st.Close()
		if err := rows(func(args ...any) error { _, err := st.ExecContext(ctx, args...); return err }); err != nil {
			return err
		}
		_, err = st.ExecContext(ctx)
		return err
	}
	err := copyIn("reconcile_verdicts", []string{"deployment_id", "started_at", "environment", "service", "team", "policy_key", "computed_at", "recheck", "findings"},
		func(add func(args ...any) error) error {
			for _, v := range vs {
				if err := add(v.DeploymentID, sqldb.TS(v.StartedAt), v.Environment, v.Service, v.Team, key, at, v.Volatile, len(v.Findings)); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return err
	}
	return copyIn("reconcile_verdict_findings", []string{"deployment_id", "idx", "code", "severity", "message", "ref", "doc"},
		func(add func(args ...any) error) error {
			for _, v := range vs {
				for i, f := range v.Findings {
					if err := add(v.DeploymentID, i, f.Code, f.Severity, f.Message, f.Ref, findingDoc(f)); err != nil {
						return err
					}
				}
			}
			return nil
		})
}

func (d *Store) deleteVerdicts(ctx context.Context, tx *sqlx.Tx, ids []string) error {
	if d.base.Dialect() == sqldb.Postgres {
		_, err := tx.ExecContext(ctx, `DELETE FROM reconcile_verdict_findings WHERE deployment_id = ANY($1::text[])`, pq.Array(ids))
		return err
	}
	for chunk := range slices.Chunk(ids, maxInList) {
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM reconcile_verdict_findings WHERE deployment_id IN (`+placeholders(len(chunk))+`)`, args...); err != nil {
			return err
		}
	}
	return nil
}

// upsertVerdict ends a verdict INSERT: a deployment's verdict replaces its
// earlier one.
const upsertVerdict = ` ON CONFLICT (deployment_id) DO UPDATE SET started_at = excluded.started_at, environment = excluded.environment,
	service = excluded.service, team = excluded.team, policy_key = excluded.policy_key, computed_at = excluded.computed_at,
	recheck = excluded.recheck, findings = excluded.findings`

// findingDoc is a verdict's finding as stored: the document a report
// copies into its findings, without the report's number or acknowledgement.
func findingDoc(f core.ReconcileFinding) string {
	f.ID, f.Ack = 0, nil
	return sqldb.MustJSON(f)
}

// verdictRows are a page's verdicts and findings as column arrays.
type verdictRows struct {
	ids, started, envs, services, teams []string
	recheck                             []bool
	counts                              []int64
	fIDs, fCodes, fSev, fMsg, fRef      []string
	fDocs                               []string
	fIdx                                []int64
}

func newVerdictRows(vs []core.Verdict) verdictRows {
	var r verdictRows
	for _, v := range vs {
		r.ids = append(r.ids, v.DeploymentID)
		r.started = append(r.started, sqldb.TS(v.StartedAt).Format(time.RFC3339Nano))
		r.envs, r.services, r.teams = append(r.envs, v.Environment), append(r.services, v.Service), append(r.teams, v.Team)
		r.recheck, r.counts = append(r.recheck, v.Volatile), append(r.counts, int64(len(v.Findings)))
		for i, f := range v.Findings {
			r.fIDs, r.fIdx = append(r.fIDs, v.DeploymentID), append(r.fIdx, int64(i))
			r.fCodes, r.fSev, r.fMsg, r.fRef = append(r.fCodes, f.Code), append(r.fSev, f.Severity), append(r.fMsg, f.Message), append(r.fRef, f.Ref)
			r.fDocs = append(r.fDocs, findingDoc(f))
		}
	}
	return r
}

func (d *Store) insertVerdictsPG(ctx context.Context, tx *sqlx.Tx, key string, at time.Time, vs []core.Verdict) error {
	r := newVerdictRows(vs)
	if _, err := tx.ExecContext(ctx, `INSERT INTO reconcile_verdicts (deployment_id, started_at, environment, service, team, policy_key, computed_at, recheck, findings)
		SELECT u.id, u.s::timestamptz, u.e, u.sv, u.t, $6, $7, u.v, u.n
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $8::bool[], $9::int[]) AS u(id, s, e, sv, t, v, n)`+upsertVerdict,
		pq.Array(r.ids), pq.Array(r.started), pq.Array(r.envs), pq.Array(r.services), pq.Array(r.teams), key, at,
		pq.Array(r.recheck), pq.Array(r.counts)); err != nil {
		return err
	}
	if len(r.fIDs) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO reconcile_verdict_findings (deployment_id, idx, code, severity, message, ref, doc)
		SELECT u.id, u.i, u.c, u.s, u.m, u.r, u.d::jsonb
		FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS u(id, i, c, s, m, r, d)`,
		pq.Array(r.fIDs), pq.Array(r.fIdx), pq.Array(r.fCodes), pq.Array(r.fSev), pq.Array(r.fMsg), pq.Array(r.fRef), pq.Array(r.fDocs))
	return err
}

func (d *Store) insertVerdictsSQLite(ctx context.Context, tx *sqlx.Tx, key string, at time.Time, vs []core.Verdict) error {
	for chunk := range slices.Chunk(vs, verdictsPerInsert) {
		args := make([]any, 0, len(chunk)*9)
		for _, v := range chunk {
			args = append(args, v.DeploymentID, sqldb.TS(v.StartedAt), v.Environment, v.Service, v.Team, key, at, v.Volatile, len(v.Findings))
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO reconcile_verdicts (deployment_id, started_at, environment, service, team, policy_key, computed_at, recheck, findings) VALUES `+
			rowsOf(len(chunk), 9)+upsertVerdict, args...); err != nil {
			return err
		}
	}
	r := newVerdictRows(vs)
	for start := 0; start < len(r.fIDs); start += verdictsPerInsert {
		end := min(start+verdictsPerInsert, len(r.fIDs))
		args := make([]any, 0, (end-start)*7)
		for i := start; i < end; i++ {
			args = append(args, r.fIDs[i], r.fIdx[i], r.fCodes[i], r.fSev[i], r.fMsg[i], r.fRef[i], r.fDocs[i])
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO reconcile_verdict_findings (deployment_id, idx, code, severity, message, ref, doc) VALUES `+
			rowsOf(end-start, 7), args...); err != nil {
			return err
		}
	}
	return nil
}

// rowsOf returns "(?, …), (?, …)": n rows of cols placeholders.
func rowsOf(n, cols int) string {
	row := "(" + placeholders(cols) + ")"
	return strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
}

// AddVerdictFindings gives report reportID the findings of q's verdicts
// stored under key — those settled, and those the report judged itself
// (as of its cut-off) — numbered from 1 in deployment order, and returns
// how many there are by code and severity.
func (d *Store) AddVerdictFindings(ctx context.Context, reportID string, q core.ReconcileQuery, key string) (core.ReconcileSummary, error) {
	sum := core.NewReconcileSummary()
	where, args := verdictFilter("v", q)
	where += " AND v.findings > 0 AND v.policy_key = ? AND (NOT v.recheck OR v.computed_at = ?)"
	args = append(args, key, sqldb.TS(q.Cutoff))
	err := d.base.Tx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, d.base.Q(`INSERT INTO findings (report_id, seq, deployment_id, code, message, ref, evidence, severity, ack_by)
			SELECT ?, row_number() OVER (ORDER BY v.started_at, v.deployment_id, f.idx), f.deployment_id, f.code, f.message, f.ref, f.doc, f.severity, ''
			FROM reconcile_verdicts v JOIN reconcile_verdict_findings f ON f.deployment_id = v.deployment_id
			WHERE `+where), append([]any{reportID}, args...)...); err != nil {
			return fmt.Errorf("copy findings: %w", err)
		}
		rs, err := tx.QueryContext(ctx, d.base.Q(`SELECT code, severity, count(*) FROM findings WHERE report_id = ? GROUP BY code, severity`), reportID)
		if err != nil {
			return fmt.Errorf("count findings: %w", err)
		}
		defer rs.Close()
		for rs.Next() {
			var code, sev string
			var n int
			if err := rs.Scan(&code, &sev, &n); err != nil {
				return fmt.Errorf("count findings: %w", err)
			}
			sum.Findings += n
			sum.ByCode[code] += n
			sum.BySeverity[sev] += n
		}
		return rs.Err()
	})
	if err != nil {
		return sum, fmt.Errorf("add stored findings to report %s: %w", reportID, sqldb.Translate(err))
	}
	return sum, nil
}
