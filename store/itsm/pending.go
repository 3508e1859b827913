package itsm

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// PendingGates are the gate requests a CI waits on at its own gate (GitHub
// deployment protection rules, GitLab deployment approvals), kept until
// they are answered so that any replica, or this one after a restart,
// answers them.
type PendingGates struct {
	base *sqldb.DB
	db   *sqlx.DB
}

// NewPendingGates returns the pending gate requests in db.
func NewPendingGates(db *sqldb.DB) *PendingGates { return &PendingGates{base: db, db: db.SQLX()} }

const pendingCols = `id, connector, provider, external_id, repository, request, target, run_url, state, decision, decision_id,
	reasons, comment, created_at, deadline, next_check_at, attempts, last_error, answered_at, claimed_until`

type pendingRow struct {
	ID          string       `db:"id"`
	Connector   string       `db:"connector"`
	Provider    string       `db:"provider"`
	ExternalID  string       `db:"external_id"`
	Repository  string       `db:"repository"`
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
	Claimed     sql.NullTime `db:"claimed_until"`
}

func (r pendingRow) pending() (core.PendingGate, error) {
	p := core.PendingGate{
		ID: r.ID, Connector: r.Connector, Provider: r.Provider, ExternalID: r.ExternalID, Repository: r.Repository, RunURL: r.RunURL,
		State: r.State, Decision: core.Decision(r.Decision), DecisionID: r.DecisionID, Comment: r.Comment,
		CreatedAt: r.CreatedAt.UTC(), Deadline: r.Deadline.UTC(), NextCheckAt: r.NextCheckAt.UTC(),
		Attempts: r.Attempts, LastError: r.LastError, AnsweredAt: sqldb.TimePtr(r.AnsweredAt),
	}
	if r.Claimed.Valid {
		p.Claim = r.Claimed.Time.UTC()
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
// A request stored decided (answering, refused on arrival) keeps its
// decision, reasons and comment.
func (g *PendingGates) InsertPendingGate(ctx context.Context, p core.PendingGate) (core.PendingGate, bool, error) {
	if p.ID == "" {
		p.ID = sqldb.NewID()
	}
	if p.Reasons == nil {
		p.Reasons = []core.Reason{}
	}
	if p.State == "" {
		p.State = core.PendingWaiting
	}
	sqldb.CleanStrings(&p)
	res, err := g.db.ExecContext(ctx, g.base.Q(`INSERT INTO pending_gates (id, connector, provider, external_id, repository, request, target, run_url,
		state, decision, reasons, comment, created_at, deadline, next_check_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (connector, external_id) DO NOTHING`),
		p.ID, p.Connector, p.Provider, p.ExternalID, p.Repository, sqldb.MustJSON(p.Request), sqldb.MustJSON(p.Target), sqldb.CleanText(p.RunURL),
		p.State, string(p.Decision), sqldb.MustJSON(p.Reasons), sqldb.CleanText(p.Comment), sqldb.TS(p.CreatedAt), sqldb.TS(p.Deadline), sqldb.TS(p.NextCheckAt))
	if err != nil {
		return p, false, fmt.Errorf("store pending gate %s: %w", p.ExternalID, sqldb.Translate(err))
	}
	if n, _ := res.RowsAffected(); n == 1 {
		got, err := g.GetPendingGate(ctx, p.ID)
		return got, true, err
	}
	var row pendingRow
	if err := g.db.GetContext(ctx, &row, g.base.Q(`SELECT `+pendingCols+` FROM pending_gates WHERE connector = ? AND external_id = ?`),
		p.Connector, p.ExternalID); err != nil {
		return p, false, sqldb.NotFound(err, "pending gate", p.ExternalID)
	}
	got, err := row.pending()
	return got, false, err
}

// GetPendingGate returns one gate request.
func (g *PendingGates) GetPendingGate(ctx context.Context, id string) (core.PendingGate, error) {
	var row pendingRow
	if err := g.db.GetContext(ctx, &row, g.base.Q(`SELECT `+pendingCols+` FROM pending_gates WHERE id = ?`), id); err != nil {
		return core.PendingGate{}, sqldb.NotFound(err, "pending gate", id)
	}
	return row.pending()
}

// ClaimPendingGates leases to the caller, until now+lease, up to limit
// open gate requests that are due: waiting ones whose next check has come
// (or every waiting one with all, after a fact changed), and answering
// ones whose next delivery attempt has come. Requests another claimer
// holds are skipped (SKIP LOCKED on PostgreSQL, and the lease), so one
// request is worked on by one replica at a time.
func (g *PendingGates) ClaimPendingGates(ctx context.Context, all bool, limit int, lease time.Duration) ([]core.PendingGate, error) {
	if limit <= 0 || lease <= 0 {
		return nil, core.Invalid("limit", "limit and lease must be positive")
	}
	now := g.base.Now()
	skipLocked := ""
	if g.base.Dialect() == sqldb.Postgres {
		skipLocked = " FOR UPDATE SKIP LOCKED"
	}
	var rows []pendingRow
	err := g.db.SelectContext(ctx, &rows, g.base.Q(`UPDATE pending_gates SET claimed_until = ?
		WHERE id IN (SELECT id FROM pending_gates
			WHERE state IN ('pending', 'answering') AND (claimed_until IS NULL OR claimed_until < ?)
			AND (next_check_at <= ? OR (state = 'pending' AND ?))
			ORDER BY next_check_at, id LIMIT ?`+skipLocked+`)
		RETURNING `+pendingCols), sqldb.TS(now.Add(lease)), now, now, all, limit)
	if err != nil {
		return nil, fmt.Errorf("claim pending gates: %w", sqldb.Translate(err))
	}
	return pendingList(rows)
}

// CountWaitingGates counts connector's requests from repository that
// wait for their decision (state pending).
func (g *PendingGates) CountWaitingGates(ctx context.Context, connector, repository string) (int, error) {
	var n int
	if err := g.db.GetContext(ctx, &n, g.base.Q(`SELECT count(*) FROM pending_gates WHERE connector = ? AND repository = ? AND state = 'pending'`),
		connector, repository); err != nil {
		return 0, fmt.Errorf("count waiting gates of %s: %w", repository, sqldb.Translate(err))
	}
	return n, nil
}

// CountOpenGates counts the open requests (waiting, or answering) by
// provider.
func (g *PendingGates) CountOpenGates(ctx context.Context) (map[string]int, error) {
	var rows []struct {
		Provider string `db:"provider"`
		N        int    `db:"n"`
	}
	if err := g.db.SelectContext(ctx, &rows, `SELECT provider, count(*) AS n FROM pending_gates WHERE state IN ('pending', 'answering') GROUP BY provider`); err != nil {
		return nil, fmt.Errorf("count open gates: %w", sqldb.Translate(err))
	}
	out := map[string]int{}
	for _, r := range rows {
		out[r.Provider] = r.N
	}
	return out, nil
}

// WaitingGatesAfter returns up to limit waiting requests whose id sorts
// after after ("": from the first), by id: a caller reads every one a
// page at a time.
func (g *PendingGates) WaitingGatesAfter(ctx context.Context, after string, limit int) ([]core.PendingGate, error) {
	var rows []pendingRow
	if err := g.db.SelectContext(ctx, &rows, g.base.Q(`SELECT `+pendingCols+` FROM pending_gates
		WHERE state = 'pending' AND id > ? ORDER BY id LIMIT ?`), after, limit); err != nil {
		return nil, fmt.Errorf("list waiting gates: %w", sqldb.Translate(err))
	}
	return pendingList(rows)
}

// MarkAllPendingDue makes every waiting request due now (a fact any of
// them may depend on changed: an incident, a PIR, the policy).
func (g *PendingGates) MarkAllPendingDue(ctx context.Context) error {
	now := g.base.Now()
	if _, err := g.db.ExecContext(ctx, g.base.Q(`UPDATE pending_gates SET next_check_at = ? WHERE state = 'pending' AND next_check_at > ?`),
		now, now); err != nil {
		return fmt.Errorf("mark pending gates due: %w", sqldb.Translate(err))
	}
	return nil
}

// MarkPendingDue makes the waiting requests named by ids due now (a fact
// they depend on changed), so the next claim takes them.
func (g *PendingGates) MarkPendingDue(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	args := []any{g.base.Now()}
	for _, id := range ids {
		args = append(args, id)
	}
	if _, err := g.db.ExecContext(ctx, g.base.Q(`UPDATE pending_gates SET next_check_at = ?
		WHERE state = 'pending' AND id IN (?`+repeatArg(len(ids)-1)+`)`), args...); err != nil {
		return fmt.Errorf("mark pending gates due: %w", sqldb.Translate(err))
	}
	return nil
}

// ErrClaimLost is SavePendingGate's and RenewPendingClaim's answer for a
// copy whose claim has ended and was taken over (or the request settled)
// meanwhile: its outcome is not the one to keep.
var ErrClaimLost = core.Errorf(core.KindConflict, "the pending gate's claim was taken over")

// SavePendingGate writes a request's outcome (state, decision, reasons,
// next check, delivery attempts) and ends the claim. A claimed copy
// (p.Claim set) is saved only while its claim holds: ErrClaimLost
// otherwise.
func (g *PendingGates) SavePendingGate(ctx context.Context, p core.PendingGate) error {
	if p.Reasons == nil {
		p.Reasons = []core.Reason{}
	}
	sqldb.CleanStrings(&p)
	fence, args := "", []any{p.State, string(p.Decision), p.DecisionID, sqldb.MustJSON(p.Reasons), sqldb.CleanText(p.Comment),
		sqldb.TS(p.NextCheckAt), p.Attempts, sqldb.CleanText(p.LastError), sqldb.NullTime(p.AnsweredAt), p.ID}
	if !p.Claim.IsZero() {
		fence, args = " AND claimed_until = ?", append(args, sqldb.TS(p.Claim))
	}
	res, err := g.db.ExecContext(ctx, g.base.Q(`UPDATE pending_gates SET state = ?, decision = ?, decision_id = ?, reasons = ?,
		comment = ?, next_check_at = ?, attempts = ?, last_error = ?, answered_at = ?, claimed_until = NULL WHERE id = ?`+fence), args...)
	if err != nil {
		return fmt.Errorf("save pending gate %s: %w", p.ID, sqldb.Translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if !p.Claim.IsZero() {
			return fmt.Errorf("save pending gate %s: %w", p.ID, ErrClaimLost)
		}
		return core.NotFound("pending gate", p.ID)
	}
	return nil
}

// RenewPendingClaim extends the claim p was read under to now+lease, so
// long as it still holds (ErrClaimLost otherwise), and records the new
// end in p.Claim: a replica renews before each slow step (an evaluation
// with ITSM read-backs, a delivery to the CI), so no other replica works
// the request meanwhile.
func (g *PendingGates) RenewPendingClaim(ctx context.Context, p *core.PendingGate, lease time.Duration) error {
	until := sqldb.TS(g.base.Now().Add(lease))
	res, err := g.db.ExecContext(ctx, g.base.Q(`UPDATE pending_gates SET claimed_until = ? WHERE id = ? AND claimed_until = ?`),
		until, p.ID, sqldb.TS(p.Claim))
	if err != nil {
		return fmt.Errorf("renew the claim of pending gate %s: %w", p.ID, sqldb.Translate(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("renew the claim of pending gate %s: %w", p.ID, ErrClaimLost)
	}
	p.Claim = until
	return nil
}

// ListPendingGates lists the gate requests in the given states (all
// states when none), oldest first, at most limit.
func (g *PendingGates) ListPendingGates(ctx context.Context, states []string, limit int) ([]core.PendingGate, error) {
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
	if err := g.db.SelectContext(ctx, &rows, g.base.Q(q), args...); err != nil {
		return nil, fmt.Errorf("list pending gates: %w", sqldb.Translate(err))
	}
	return pendingList(rows)
}

// GateRequestFor returns a connector's gate request by its CI-side
// identity (external id), in whatever state it is, or KindNotFound.
func (g *PendingGates) GateRequestFor(ctx context.Context, connector, externalID string) (core.PendingGate, error) {
	var row pendingRow
	err := g.db.GetContext(ctx, &row, g.base.Q(`SELECT `+pendingCols+` FROM pending_gates WHERE connector = ? AND external_id = ?`),
		connector, externalID)
	if errors.Is(err, sql.ErrNoRows) {
		return core.PendingGate{}, core.NotFound("gate request", externalID)
	}
	if err != nil {
		return core.PendingGate{}, fmt.Errorf("gate request %s: %w", externalID, sqldb.Translate(err))
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
