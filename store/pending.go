package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// Pending gates: the gate requests a CI waits on at its own gate (GitHub
// deployment protection rules, GitLab deployment approvals), kept until
// they are answered so that any replica, or this one after a restart,
// answers them.

const pendingCols = `id, connector, provider, external_id, request, target, run_url, state, decision, decision_id,
	reasons, comment, created_at, deadline, next_check_at, attempts, last_error, answered_at`

type pendingRow struct {
	ID          string       `db:"id"`
	Connector   string       `db:"connector"`
	Provider    string       `db:"provider"`
	ExternalID  string       `db:"external_id"`
	Request     string       `db:"request"`
	Target      string       `db:"target"`
	RunURL      string       `db:"run_url"`
	State       string       `db:"state"`
	Decision    string       `db:"decision"`
	DecisionID  string       `db:"decision_id"`
	Reasons     string       `db:"reasons"`
	Comment     string       `db:"comment"`
	CreatedAt   time.Time    `db:"created_at"`
	Deadline    time.Time    `db:"deadline"`
	NextCheckAt time.Time    `db:"next_check_at"`
	Attempts    int          `db:"attempts"`
	LastError   string       `db:"last_error"`
	AnsweredAt  sql.NullTime `db:"answered_at"`
}

func (r pendingRow) pending() (core.PendingGate, error) {
	p := core.PendingGate{
		ID: r.ID, Connector: r.Connector, Provider: r.Provider, ExternalID: r.ExternalID, RunURL: r.RunURL,
		State: r.State, Decision: core.Decision(r.Decision), DecisionID: r.DecisionID, Comment: r.Comment,
		CreatedAt: r.CreatedAt.UTC(), Deadline: r.Deadline.UTC(), NextCheckAt: r.NextCheckAt.UTC(),
		Attempts: r.Attempts, LastError: r.LastError, AnsweredAt: timePtr(r.AnsweredAt),
	}
	if err := json.Unmarshal([]byte(r.Request), &p.Request); err != nil {
		return p, fmt.Errorf("pending gate %s request: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(r.Target), &p.Target); err != nil {
		return p, fmt.Errorf("pending gate %s target: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(r.Reasons), &p.Reasons); err != nil {
		return p, fmt.Errorf("pending gate %s reasons: %w", r.ID, err)
	}
	return p, nil
}

func pendingList(rows []pendingRow) ([]core.PendingGate, error) {
	out := make([]core.PendingGate, 0, len(rows))
	for _, r := range rows {
		p, err := r.pending()
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// InsertPendingGate stores a new gate request, or returns the stored one
// (created false) when the connector already holds one with the same
// external id: a redelivered webhook is one request. The unique index
// decides, so two replicas normalizing the same delivery store it once.
func (d *DB) InsertPendingGate(ctx context.Context, p core.PendingGate) (core.PendingGate, bool, error) {
	if p.ID == "" {
		p.ID = newID()
	}
	if p.Reasons == nil {
		p.Reasons = []core.Reason{}
	}
	if p.State == "" {
		p.State = core.PendingWaiting
	}
	cleanStrings(&p)
	res, err := d.db.ExecContext(ctx, d.q(`INSERT INTO pending_gates (id, connector, provider, external_id, request, target, run_url,
		state, reasons, created_at, deadline, next_check_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (connector, external_id) DO NOTHING`),
		p.ID, p.Connector, p.Provider, p.ExternalID, mustJSON(p.Request), mustJSON(p.Target), cleanText(p.RunURL),
		p.State, mustJSON(p.Reasons), ts(p.CreatedAt), ts(p.Deadline), ts(p.NextCheckAt))
	if err != nil {
		return p, false, fmt.Errorf("store pending gate %s: %w", p.ExternalID, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 1 {
		got, err := d.GetPendingGate(ctx, p.ID)
		return got, true, err
	}
	var row pendingRow
	if err := d.db.GetContext(ctx, &row, d.q(`SELECT `+pendingCols+` FROM pending_gates WHERE connector = ? AND external_id = ?`),
		p.Connector, p.ExternalID); err != nil {
		return p, false, notFound(err, "pending gate", p.ExternalID)
	}
	got, err := row.pending()
	return got, false, err
}

// GetPendingGate returns one gate request.
func (d *DB) GetPendingGate(ctx context.Context, id string) (core.PendingGate, error) {
	var row pendingRow
	if err := d.db.GetContext(ctx, &row, d.q(`SELECT `+pendingCols+` FROM pending_gates WHERE id = ?`), id); err != nil {
		return core.PendingGate{}, notFound(err, "pending gate", id)
	}
	return row.pending()
}

// ClaimPendingGates leases to the caller, until now+lease, up to limit
// open gate requests that are due: waiting ones whose next check has come
// (or every waiting one with all, after a fact changed), and answering
// ones whose next delivery attempt has come. Requests another claimer
// holds are skipped (SKIP LOCKED on PostgreSQL, and the lease), so one
// request is worked on by one replica at a time.
func (d *DB) ClaimPendingGates(ctx context.Context, all bool, limit int, lease time.Duration) ([]core.PendingGate, error) {
	if limit <= 0 || lease <= 0 {
		return nil, core.Invalid("limit", "limit and lease must be positive")
	}
	now := d.now()
	skipLocked := ""
	if d.dialect == Postgres {
		skipLocked = " FOR UPDATE SKIP LOCKED"
	}
	var rows []pendingRow
	err := d.db.SelectContext(ctx, &rows, d.q(`UPDATE pending_gates SET claimed_until = ?
		WHERE id IN (SELECT id FROM pending_gates
			WHERE state IN ('pending', 'answering') AND (claimed_until IS NULL OR claimed_until < ?)
			AND (next_check_at <= ? OR (state = 'pending' AND ?))
			ORDER BY next_check_at, id LIMIT ?`+skipLocked+`)
		RETURNING `+pendingCols), ts(now.Add(lease)), now, now, all, limit)
	if err != nil {
		return nil, fmt.Errorf("claim pending gates: %w", translate(err))
	}
	return pendingList(rows)
}

// MarkPendingDue makes the waiting requests named by ids due now (a fact
// they depend on changed), so the next claim takes them.
func (d *DB) MarkPendingDue(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	args := []any{d.now()}
	for _, id := range ids {
		args = append(args, id)
	}
	if _, err := d.db.ExecContext(ctx, d.q(`UPDATE pending_gates SET next_check_at = ?
		WHERE state = 'pending' AND id IN (?`+repeatArg(len(ids)-1)+`)`), args...); err != nil {
		return fmt.Errorf("mark pending gates due: %w", translate(err))
	}
	return nil
}

// SavePendingGate writes a claimed request's outcome (state, decision,
// reasons, next check, delivery attempts) and ends the claim.
func (d *DB) SavePendingGate(ctx context.Context, p core.PendingGate) error {
	if p.Reasons == nil {
		p.Reasons = []core.Reason{}
	}
	cleanStrings(&p)
	res, err := d.db.ExecContext(ctx, d.q(`UPDATE pending_gates SET state = ?, decision = ?, decision_id = ?, reasons = ?,
		comment = ?, next_check_at = ?, attempts = ?, last_error = ?, answered_at = ?, claimed_until = NULL WHERE id = ?`),
		p.State, string(p.Decision), p.DecisionID, mustJSON(p.Reasons), cleanText(p.Comment), ts(p.NextCheckAt),
		p.Attempts, cleanText(p.LastError), nullTime(p.AnsweredAt), p.ID)
	if err != nil {
		return fmt.Errorf("save pending gate %s: %w", p.ID, translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return core.NotFound("pending gate", p.ID)
	}
	return nil
}

// ListPendingGates lists the gate requests in the given states (all
// states when none), oldest first, at most limit.
func (d *DB) ListPendingGates(ctx context.Context, states []string, limit int) ([]core.PendingGate, error) {
	if limit <= 0 {
		limit = 1000
	}
	q := `SELECT ` + pendingCols + ` FROM pending_gates`
	args := []any{}
	if len(states) > 0 {
		q += ` WHERE state IN (?` + repeatArg(len(states)-1) + `)`
		for _, s := range states {
			args = append(args, s)
		}
	}
	q += ` ORDER BY created_at, id LIMIT ?`
	args = append(args, limit)
	var rows []pendingRow
	if err := d.db.SelectContext(ctx, &rows, d.q(q), args...); err != nil {
		return nil, fmt.Errorf("list pending gates: %w", translate(err))
	}
	return pendingList(rows)
}

// AnsweredGateFor returns the answered allow of a connector's gate request
// for a CI-side identity (external id prefix match is not needed: the
// caller names the request), or KindNotFound.
func (d *DB) AnsweredGateFor(ctx context.Context, connector, externalID string) (core.PendingGate, error) {
	var row pendingRow
	err := d.db.GetContext(ctx, &row, d.q(`SELECT `+pendingCols+` FROM pending_gates WHERE connector = ? AND external_id = ?`),
		connector, externalID)
	if errors.Is(err, sql.ErrNoRows) {
		return core.PendingGate{}, core.NotFound("gate request", externalID)
	}
	if err != nil {
		return core.PendingGate{}, fmt.Errorf("gate request %s: %w", externalID, translate(err))
	}
	return row.pending()
}

func repeatArg(n int) string {
	s := ""
	for i := 0; i < n; i++ {
		s += ", ?"
	}
	return s
}
