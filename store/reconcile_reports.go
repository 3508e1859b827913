package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
)

// reportParams is a report's params column: what it was asked and with
// which thresholds.
type reportParams struct {
	Query   core.ReconcileQuery   `json:"query"`
	Options core.ReconcileOptions `json:"options"`
}

// CreateReport stores a new report's row, unfinished (its summary empty)
// until FinishReports: an unfinished report is not listed, read or counted
// as a schedule's last run. r.ID must be set.
func (d *DB) CreateReport(ctx context.Context, r core.Report) error {
	if r.ID == "" {
		return core.Invalid("id", "is required")
	}
	_, err := d.db.ExecContext(ctx, d.q(`INSERT INTO reports (id, kind, params, summary, created_at, created_by, name, policy_version, cutoff, finished)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, false)`),
		r.ID, r.Kind, mustJSON(reportParams{Query: r.Query, Options: r.Options}), mustJSON(r.Summary),
		ts(r.CreatedAt), r.CreatedBy, r.Name, r.PolicyVersion, ts(r.Query.Cutoff))
	if err != nil {
		return fmt.Errorf("create report %s: %w", r.ID, translate(err))
	}
	return nil
}

// findingsPerInsert bounds the rows of one findings INSERT (9 parameters
// each, under SQLite's and PostgreSQL's parameter limits).
const findingsPerInsert = 500

// AddFindings stores findings of a report (their IDs are their seq).
func (d *DB) AddFindings(ctx context.Context, reportID string, fs []core.ReconcileFinding) error {
	if len(fs) == 0 {
		return nil
	}
	return d.tx(ctx, func(tx *sqlx.Tx) error {
		for start := 0; start < len(fs); start += findingsPerInsert {
			chunk := fs[start:min(start+findingsPerInsert, len(fs))]
			var b strings.Builder
			b.WriteString(`INSERT INTO findings (report_id, seq, deployment_id, code, message, ref, evidence, severity, ack_by) VALUES `)
			args := make([]any, 0, len(chunk)*9)
			for i, f := range chunk {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, '')")
				f.Ack = nil
				args = append(args, reportID, f.ID, f.Deployment.ID, f.Code, f.Message, f.Ref, mustJSON(f), f.Severity)
			}
			if _, err := tx.ExecContext(ctx, d.q(b.String()), args...); err != nil {
				return fmt.Errorf("add findings to report %s: %w", reportID, err)
			}
		}
		return nil
	})
}

// AddProofs stores control proofs of a report (their IDs are their seq).
func (d *DB) AddProofs(ctx context.Context, reportID string, ps []core.ControlProof) error {
	if len(ps) == 0 {
		return nil
	}
	return d.tx(ctx, func(tx *sqlx.Tx) error {
		for start := 0; start < len(ps); start += findingsPerInsert {
			chunk := ps[start:min(start+findingsPerInsert, len(ps))]
			var b strings.Builder
			b.WriteString(`INSERT INTO report_proofs (report_id, seq, deployment_id, doc) VALUES `)
			args := make([]any, 0, len(chunk)*4)
			for i, p := range chunk {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString("(?, ?, ?, ?)")
				args = append(args, reportID, p.ID, p.Deployment.ID, mustJSON(p))
			}
			if _, err := tx.ExecContext(ctx, d.q(b.String()), args...); err != nil {
				return fmt.Errorf("add proofs to report %s: %w", reportID, err)
			}
		}
		return nil
	})
}

// ReportProofs calls fn with each control proof of the report in order,
// read in keyset pages (no cursor open while fn runs).
func (d *DB) ReportProofs(ctx context.Context, reportID string, fn func(core.ControlProof) error) error {
	after := 0
	for {
		var rows []struct {
			Seq int    `db:"seq"`
			Doc string `db:"doc"`
		}
		err := d.db.SelectContext(ctx, &rows, d.q(`SELECT seq, doc FROM report_proofs WHERE report_id = ? AND seq > ? ORDER BY seq LIMIT ?`),
			reportID, after, findingsPage)
		if err != nil {
			return fmt.Errorf("read proofs of report %s: %w", reportID, translate(err))
		}
		for _, r := range rows {
			var p core.ControlProof
			if err := json.Unmarshal([]byte(r.Doc), &p); err != nil {
				return fmt.Errorf("decode proof %d of report %s: %w", r.Seq, reportID, err)
			}
			p.ID = r.Seq
			if err := fn(p); err != nil {
				return err
			}
			after = r.Seq
		}
		if len(rows) < findingsPage {
			return nil
		}
	}
}

// FinishReports stores the reports' summaries with their audit entries
// ("report.reconciliation"), all in one commit: a schedule's run (its
// report, and those of its late arrivals and revised findings) counts as
// done, and moves the schedule on, only once every one of them is.
func (d *DB) FinishReports(ctx context.Context, rs ...core.Report) error {
	if len(rs) == 0 {
		return nil
	}
	entries := make([]core.AuditEntry, len(rs))
	for i, r := range rs {
		entries[i] = core.AuditEntry{
			Actor: r.CreatedBy, Action: "report.reconciliation", Subject: "report:" + r.ID,
			Data: json.RawMessage(mustJSON(struct {
				Query         core.ReconcileQuery   `json:"query"`
				PolicyVersion int                   `json:"policy_version"`
				Summary       core.ReconcileSummary `json:"summary"`
				Name          string                `json:"name,omitempty"`
			}{r.Query, r.PolicyVersion, r.Summary, r.Name})),
		}
	}
	err := d.appendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
		for _, r := range rs {
			res, err := tx.ExecContext(ctx, d.q(`UPDATE reports SET summary = ?, finished = true WHERE id = ?`), mustJSON(r.Summary), r.ID)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return core.NotFound("report", r.ID)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("finish report %s: %w", rs[0].ID, translate(err))
	}
	return nil
}

// DeleteReport removes a report and its findings (a run that failed
// half-way, or retention).
func (d *DB) DeleteReport(ctx context.Context, id string) error {
	return d.tx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM findings WHERE report_id = ?`), id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM report_proofs WHERE report_id = ?`), id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, d.q(`DELETE FROM reports WHERE id = ?`), id)
		return err
	})
}

// DeleteUnfinishedReports removes the reports begun before t and never
// finished — their replica died while judging — with the findings they
// had written, and returns how many.
func (d *DB) DeleteUnfinishedReports(ctx context.Context, t time.Time) (int, error) {
	var n int64
	err := d.tx(ctx, func(tx *sqlx.Tx) error {
		const stale = `SELECT id FROM reports WHERE NOT finished AND created_at < ?`
		for _, table := range []string{"report_proofs", "findings"} {
			if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM `+table+` WHERE report_id IN (`+stale+`)`), ts(t)); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, d.q(`DELETE FROM reports WHERE NOT finished AND created_at < ?`), ts(t))
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete unfinished reports begun before %s: %w", t.Format(time.RFC3339), translate(err))
	}
	return int(n), nil
}

// DeleteReportsBefore removes the reports of kind created before t, with
// their findings, and returns how many (retention).
func (d *DB) DeleteReportsBefore(ctx context.Context, kind string, t time.Time) (int, error) {
	var n int64
	err := d.tx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM report_proofs WHERE report_id IN (SELECT id FROM reports WHERE kind = ? AND created_at < ?)`), kind, ts(t)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM findings WHERE report_id IN (SELECT id FROM reports WHERE kind = ? AND created_at < ?)`), kind, ts(t)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, d.q(`DELETE FROM reports WHERE kind = ? AND created_at < ?`), kind, ts(t))
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete reports before %s: %w", t.Format(time.RFC3339), err)
	}
	return int(n), nil
}

const reportCols = `id, kind, name, params, summary, policy_version, created_at, created_by`

type reportRow struct {
	ID            string    `db:"id"`
	Kind          string    `db:"kind"`
	Name          string    `db:"name"`
	Params        string    `db:"params"`
	Summary       string    `db:"summary"`
	PolicyVersion int       `db:"policy_version"`
	CreatedAt     time.Time `db:"created_at"`
	CreatedBy     string    `db:"created_by"`
}

func (r reportRow) report() (core.Report, error) {
	out := core.Report{ID: r.ID, Kind: r.Kind, Name: r.Name, PolicyVersion: r.PolicyVersion, CreatedAt: r.CreatedAt.UTC(), CreatedBy: r.CreatedBy}
	var p reportParams
	if err := json.Unmarshal([]byte(r.Params), &p); err != nil {
		return core.Report{}, fmt.Errorf("decode report %s params: %w", r.ID, err)
	}
	out.Query, out.Options = p.Query, p.Options
	out.Summary = core.NewReconcileSummary()
	if err := json.Unmarshal([]byte(r.Summary), &out.Summary); err != nil {
		return core.Report{}, fmt.Errorf("decode report %s summary: %w", r.ID, err)
	}
	return out, nil
}

func (d *DB) reportCols() string {
	if d.dialect == Postgres {
		return strings.NewReplacer("params", "params::text AS params", "summary", "summary::text AS summary").Replace(reportCols)
	}
	return reportCols
}

// GetReport returns a report with its acknowledged count as of now.
func (d *DB) GetReport(ctx context.Context, id string) (core.Report, error) {
	var row reportRow
	err := d.db.GetContext(ctx, &row, d.q(`SELECT `+d.reportCols()+` FROM reports WHERE id = ? AND finished`), id)
	if errors.Is(err, sql.ErrNoRows) {
		return core.Report{}, core.NotFound("report", id)
	}
	if err != nil {
		return core.Report{}, fmt.Errorf("load report %s: %w", id, translate(err))
	}
	r, err := row.report()
	if err != nil {
		return core.Report{}, err
	}
	if err := d.db.GetContext(ctx, &r.Summary.Acknowledged, d.q(`SELECT COUNT(*) FROM findings WHERE report_id = ? AND ack_by <> ''`), id); err != nil {
		return core.Report{}, fmt.Errorf("count acknowledged findings of %s: %w", id, translate(err))
	}
	return r, nil
}

// ListReports returns reports of kind, newest first, a page of limit
// (default 50, at most 500) after the report id before (exclusive; "" for
// the first page).
func (d *DB) ListReports(ctx context.Context, kind string, limit int, before string) ([]core.Report, error) {
	limit, err := listLimit(limit)
	if err != nil {
		return nil, err
	}
	where, args := `WHERE kind = ? AND finished`, []any{kind}
	if before != "" {
		where += ` AND id < ?`
		args = append(args, before)
	}
	var rows []reportRow
	if err := d.db.SelectContext(ctx, &rows, d.q(`SELECT `+d.reportCols()+` FROM reports `+where+` ORDER BY id DESC LIMIT ?`), append(args, limit)...); err != nil {
		return nil, fmt.Errorf("list reports: %w", translate(err))
	}
	out := make([]core.Report, 0, len(rows))
	for _, row := range rows {
		r, err := row.report()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// findingsPage is how many findings ReportFindings reads at a time.
const findingsPage = 1000

// ReportFindings calls fn with each finding of the report in order, read in
// keyset pages (no cursor open while fn runs).
func (d *DB) ReportFindings(ctx context.Context, reportID string, fn func(core.ReconcileFinding) error) error {
	return d.reportFindings(ctx, reportID, "", fn)
}

// ReportFindingsOfCode calls fn with each finding of a report with the
// given code, in order (the HTML report renders a code at a time).
func (d *DB) ReportFindingsOfCode(ctx context.Context, reportID, code string, fn func(core.ReconcileFinding) error) error {
	if code == "" {
		return core.Invalid("code", "is required")
	}
	return d.reportFindings(ctx, reportID, code, fn)
}

func (d *DB) reportFindings(ctx context.Context, reportID, code string, fn func(core.ReconcileFinding) error) error {
	evidence := "evidence"
	if d.dialect == Postgres {
		evidence = "evidence::text"
	}
	after := 0
	for {
		var rows []findingRow
		err := d.db.SelectContext(ctx, &rows, d.q(`SELECT seq, `+evidence+` AS evidence, ack_by, ack_at, ack_comment FROM findings
			WHERE report_id = ? AND (? = '' OR code = ?) AND seq > ? ORDER BY seq LIMIT ?`), reportID, code, code, after, findingsPage)
		if err != nil {
			return fmt.Errorf("read findings of report %s: %w", reportID, translate(err))
		}
		for _, r := range rows {
			f, err := r.finding()
			if err != nil {
				return err
			}
			if err := fn(f); err != nil {
				return err
			}
			after = r.Seq
		}
		if len(rows) < findingsPage {
			return nil
		}
	}
}

type findingRow struct {
	Seq        int          `db:"seq"`
	Evidence   string       `db:"evidence"`
	AckBy      string       `db:"ack_by"`
	AckAt      sql.NullTime `db:"ack_at"`
	AckComment string       `db:"ack_comment"`
}

func (r findingRow) finding() (core.ReconcileFinding, error) {
	var f core.ReconcileFinding
	if err := json.Unmarshal([]byte(r.Evidence), &f); err != nil {
		return f, fmt.Errorf("decode finding %d: %w", r.Seq, err)
	}
	f.ID = r.Seq
	if r.AckBy != "" {
		f.Ack = &core.Acknowledgement{By: r.AckBy, Comment: r.AckComment}
		if r.AckAt.Valid {
			f.Ack.At = r.AckAt.Time.UTC()
		}
	}
	return f, nil
}

// AckFinding records a change manager's acknowledgement of one finding,
// with its audit entry ("report.finding.ack"), and returns the finding.
// KindNotFound when the report has no such finding; KindConflict when it
// is already acknowledged (an acknowledgement is never overwritten).
func (d *DB) AckFinding(ctx context.Context, reportID string, id int, by, comment string, at time.Time) (core.ReconcileFinding, error) {
	at = ts(at)
	entry := core.AuditEntry{
		Actor: by, Action: core.ActionFindingAck, Subject: "report:" + reportID, At: at,
		Data: json.RawMessage(mustJSON(struct {
			Finding int    `json:"finding"`
			Comment string `json:"comment"`
		}{id, comment})),
	}
	entries := []core.AuditEntry{entry}
	err := d.appendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
		var ackBy string
		err := tx.GetContext(ctx, &ackBy, d.q(`SELECT ack_by FROM findings WHERE report_id = ? AND seq = ?`), reportID, id)
		if errors.Is(err, sql.ErrNoRows) {
			return core.NotFound("finding", reportID+"/"+strconv.Itoa(id))
		}
		if err != nil {
			return err
		}
		if ackBy != "" {
			return core.Errorf(core.KindConflict, "finding %d of report %s is already acknowledged by %s", id, reportID, ackBy)
		}
		_, err = tx.ExecContext(ctx, d.q(`UPDATE findings SET ack_by = ?, ack_at = ?, ack_comment = ? WHERE report_id = ? AND seq = ? AND ack_by = ''`),
			by, at, comment, reportID, id)
		return err
	})
	if err != nil {
		return core.ReconcileFinding{}, fmt.Errorf("acknowledge finding %d of report %s: %w", id, reportID, translate(err))
	}
	var row findingRow
	evidence := "evidence"
	if d.dialect == Postgres {
		evidence = "evidence::text"
	}
	if err := d.db.GetContext(ctx, &row, d.q(`SELECT seq, `+evidence+` AS evidence, ack_by, ack_at, ack_comment FROM findings WHERE report_id = ? AND seq = ?`), reportID, id); err != nil {
		return core.ReconcileFinding{}, fmt.Errorf("reload finding %d of report %s: %w", id, reportID, translate(err))
	}
	return row.finding()
}

// LastReport returns the newest finished report of kind made by the named
// schedule (ok false when there is none).
func (d *DB) LastReport(ctx context.Context, kind, name string) (core.Report, bool, error) {
	var row reportRow
	err := d.db.GetContext(ctx, &row, d.q(`SELECT `+d.reportCols()+` FROM reports WHERE kind = ? AND name = ? AND finished
		ORDER BY created_at DESC, id DESC LIMIT 1`), kind, name)
	if errors.Is(err, sql.ErrNoRows) {
		return core.Report{}, false, nil
	}
	if err != nil {
		return core.Report{}, false, fmt.Errorf("last report of schedule %s: %w", name, translate(err))
	}
	r, err := row.report()
	return r, err == nil, err
}
