package governance

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Proposals are the changes to policy and mappings awaiting a second
// admin's confirmation, in one database.
type Proposals struct {
	base *sqldb.DB
	db   *sqlx.DB
}

// NewProposals returns the proposals in db.
func NewProposals(db *sqldb.DB) *Proposals { return &Proposals{base: db, db: db.SQLX()} }

const proposalCols = "id, kind, target, source, status, proposed_by, proposed_at, decided_by, decided_at, base_version"

type proposalRow struct {
	ID          string       `db:"id"`
	Kind        string       `db:"kind"`
	Target      string       `db:"target"`
	Source      string       `db:"source"`
	Status      string       `db:"status"`
	ProposedBy  string       `db:"proposed_by"`
	ProposedAt  time.Time    `db:"proposed_at"`
	DecidedBy   string       `db:"decided_by"`
	DecidedAt   sql.NullTime `db:"decided_at"`
	BaseVersion int          `db:"base_version"`
}

func (r proposalRow) proposal() core.Proposal {
	return core.Proposal{ID: r.ID, Kind: r.Kind, Target: r.Target, Source: r.Source, Status: r.Status,
		ProposedBy: r.ProposedBy, ProposedAt: r.ProposedAt.UTC(), DecidedBy: r.DecidedBy, DecidedAt: sqldb.TimePtr(r.DecidedAt), BaseVersion: r.BaseVersion}
}

// CreateProposal stores a pending proposal with a "proposal.create" audit
// entry naming its proposer. Its BaseVersion is read in the same
// transaction: the newest policy version (kind policy) or the profile's
// newest version, 0 for none (mapping kinds) — what ConfirmProposal holds
// the proposal to.
func (pr *Proposals) CreateProposal(ctx context.Context, p core.Proposal) (core.Proposal, error) {
	if p.ProposedAt.IsZero() {
		p.ProposedAt = pr.base.Now()
	}
	p.ProposedAt, p.Status = sqldb.TS(p.ProposedAt), core.ProposalPending
	entries := []core.AuditEntry{{Actor: p.ProposedBy, Action: "proposal.create", Subject: "proposal:" + p.ID, At: p.ProposedAt}}
	err := pr.base.AppendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
		base := "SELECT COALESCE(MAX(version), 0) FROM policy_versions"
		args := []any(nil)
		if p.Kind != core.ProposalPolicy {
			base, args = "SELECT COALESCE(MAX(version), 0) FROM mapping_profiles WHERE name = ?", []any{p.Target}
		}
		if err := tx.GetContext(ctx, &p.BaseVersion, pr.base.Q(base), args...); err != nil {
			return fmt.Errorf("base version: %w", err)
		}
		entries[0].Data = json.RawMessage(sqldb.MustJSON(map[string]any{"kind": p.Kind, "target": p.Target, "proposed_by": p.ProposedBy,
			"base_version": p.BaseVersion, "source_sha256": sourceDigest(p.Source)}))
		_, err := tx.ExecContext(ctx, pr.base.Q("INSERT INTO proposals (id, kind, target, source, status, proposed_by, proposed_at, base_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
			p.ID, p.Kind, p.Target, p.Source, p.Status, p.ProposedBy, p.ProposedAt, p.BaseVersion)
		return err
	})
	if err != nil {
		return core.Proposal{}, fmt.Errorf("create proposal: %w", err)
	}
	return p, nil
}

// GetProposal returns proposal id.
func (pr *Proposals) GetProposal(ctx context.Context, id string) (core.Proposal, error) {
	var r proposalRow
	if err := pr.db.GetContext(ctx, &r, pr.base.Q("SELECT "+proposalCols+" FROM proposals WHERE id = ?"), id); err != nil {
		return core.Proposal{}, sqldb.NotFound(err, "proposal", id)
	}
	return r.proposal(), nil
}

// ListProposals returns proposals with status (every one when empty),
// newest first.
func (pr *Proposals) ListProposals(ctx context.Context, status string) ([]core.Proposal, error) {
	query, args := "SELECT "+proposalCols+" FROM proposals ORDER BY proposed_at DESC, id DESC", []any(nil)
	if status != "" {
		query = "SELECT " + proposalCols + " FROM proposals WHERE status = ? ORDER BY proposed_at DESC, id DESC"
		args = []any{status}
	}
	var rows []proposalRow
	if err := pr.db.SelectContext(ctx, &rows, pr.base.Q(query), args...); err != nil {
		return nil, fmt.Errorf("list proposals: %w", sqldb.Translate(err))
	}
	out := make([]core.Proposal, len(rows))
	for i, r := range rows {
		out[i] = r.proposal()
	}
	return out, nil
}

// ConfirmProposal puts a pending proposal in force as actor in one
// transaction: the change itself (a new policy or profile version, with
// its own "policy.put", "mapping.put" or "mapping.delete" entry, and the
// notification to every replica) and the proposal's "proposal.confirmed".
// The policy or profile must still be at the proposal's BaseVersion —
// confirming a change made against an older version would silently undo
// what came between — and the proposal still pending (a concurrent
// confirmation or withdrawal wins): KindConflict otherwise, and nothing
// is written. It returns the proposal and the version put in force.
func (pr *Proposals) ConfirmProposal(ctx context.Context, id, actor string, at time.Time) (core.Proposal, int, error) {
	cur, err := pr.GetProposal(ctx, id)
	if err != nil {
		return core.Proposal{}, 0, err
	}
	if at.IsZero() {
		at = pr.base.Now()
	}
	at = sqldb.TS(at)
	change := core.AuditEntry{Actor: actor, Action: "policy.put", Subject: "policy", At: at}
	switch cur.Kind {
	case core.ProposalMapping:
		change.Action, change.Subject = "mapping.put", "mapping:"+cur.Target
	case core.ProposalMappingDelete:
		change.Action, change.Subject = "mapping.delete", "mapping:"+cur.Target
	}
	entries := []core.AuditEntry{change, {Actor: actor, Action: "proposal." + core.ProposalConfirmed, Subject: "proposal:" + id, At: at}}
	var version int
	out := cur
	err = versionedPut(func() error {
		return pr.base.AppendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
			// The proposal first: its row lock orders a concurrent
			// withdrawal before or after this confirmation, never between.
			if err := pr.decide(ctx, tx, id, core.ProposalConfirmed, actor, at); err != nil {
				return err
			}
			var err error
			switch cur.Kind {
			case core.ProposalPolicy:
				version, err = insertPolicy(ctx, pr.base, tx, cur.Source, actor, cur.BaseVersion, &entries[0])
			case core.ProposalMapping:
				version, err = insertMapping(ctx, pr.base, tx, cur.Target, cur.Source, actor, false, cur.BaseVersion, &entries[0])
			case core.ProposalMappingDelete:
				version, err = insertMapping(ctx, pr.base, tx, cur.Target, "", actor, true, cur.BaseVersion, &entries[0])
			default:
				err = core.Invalid("kind", "unknown proposal kind %q", cur.Kind)
			}
			if err != nil {
				return err
			}
			out.Status, out.DecidedBy, out.DecidedAt = core.ProposalConfirmed, actor, &at
			entries[1].Data = json.RawMessage(sqldb.MustJSON(map[string]any{"kind": out.Kind, "target": out.Target,
				"proposed_by": out.ProposedBy, "decided_by": actor, "status": core.ProposalConfirmed, "version": version}))
			return nil
		})
	})
	if err != nil {
		return core.Proposal{}, 0, fmt.Errorf("confirm proposal %s: %w", id, err)
	}
	return out, version, nil
}

// DecideProposal moves a pending proposal to status (confirmed or
// withdrawn) by actor, with a "proposal.<status>" audit entry naming both
// the proposer and actor. KindConflict when it is no longer pending (two
// admins confirming at once: one wins).
func (pr *Proposals) DecideProposal(ctx context.Context, id, status, actor string, at time.Time) (core.Proposal, error) {
	if at.IsZero() {
		at = pr.base.Now()
	}
	at = sqldb.TS(at)
	var out core.Proposal
	entries := []core.AuditEntry{{Actor: actor, Action: "proposal." + status, Subject: "proposal:" + id, At: at}}
	err := pr.base.AppendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
		var r proposalRow
		if err := tx.GetContext(ctx, &r, pr.base.Q("SELECT "+proposalCols+" FROM proposals WHERE id = ?"), id); err != nil {
			return sqldb.NotFound(err, "proposal", id)
		}
		if r.Status != core.ProposalPending {
			return core.Errorf(core.KindConflict, "proposal %q is already %s", id, r.Status)
		}
		if err := pr.decide(ctx, tx, id, status, actor, at); err != nil {
			return err
		}
		out = r.proposal()
		out.Status, out.DecidedBy, out.DecidedAt = status, actor, &at
		entries[0].Data = json.RawMessage(sqldb.MustJSON(map[string]any{"kind": out.Kind, "target": out.Target,
			"proposed_by": out.ProposedBy, "decided_by": actor, "status": status}))
		return nil
	})
	if err != nil {
		return core.Proposal{}, fmt.Errorf("%s proposal %s: %w", status, id, err)
	}
	return out, nil
}

// decide moves proposal id from pending to status in tx; KindConflict
// when it is no longer pending (decided by a concurrent writer).
func (pr *Proposals) decide(ctx context.Context, tx *sqlx.Tx, id, status, actor string, at time.Time) error {
	res, err := tx.ExecContext(ctx, pr.base.Q("UPDATE proposals SET status = ?, decided_by = ?, decided_at = ? WHERE id = ? AND status = ?"),
		status, actor, at, id, core.ProposalPending)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return core.Errorf(core.KindConflict, "proposal %q is no longer pending", id)
	}
	return nil
}
