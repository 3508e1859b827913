// Package reviews stores post-implementation reviews (PIRs): one for each
// release and commit whose deployment required it — a review signed off
// for one commit says nothing about other code shipped later under the
// same version label — signed off through the audit chain.
package reviews

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Cols are a review row's columns, in Row's order.
const Cols = `release_id, service, version, environment, team, status, required_at, signed_off_by, signed_off_at, summary, commit_sha`

// Row is one stored review.
type Row struct {
	ReleaseID   string       `db:"release_id"`
	Service     string       `db:"service"`
	Version     string       `db:"version"`
	Environment string       `db:"environment"`
	Team        string       `db:"team"`
	Status      string       `db:"status"`
	RequiredAt  time.Time    `db:"required_at"`
	SignedOffBy string       `db:"signed_off_by"`
	SignedOffAt sql.NullTime `db:"signed_off_at"`
	Summary     string       `db:"summary"`
	Commit      string       `db:"commit_sha"`
}

// PIR is the row as the model's review.
func (r Row) PIR() core.PIR {
	return core.PIR{
		ReleaseID: r.ReleaseID, Service: r.Service, Version: r.Version, Environment: r.Environment,
		Team: r.Team, Commit: r.Commit, Status: r.Status, RequiredAt: r.RequiredAt.UTC(),
		SignedOffBy: r.SignedOffBy, SignedOffAt: sqldb.TimePtr(r.SignedOffAt), Summary: r.Summary,
	}
}

// Reviews are the reviews on one database.
type Reviews struct{ base *sqldb.DB }

// New returns the reviews on db.
func New(db *sqldb.DB) *Reviews { return &Reviews{base: db} }

// RequirePIR records that the release's review is required (pending) for
// the code p.Commit names. The service, version and environment come from
// the release; the team is p.Team, or the release's when empty. A review
// already required for the same code (core.SameCommit: also one naming no
// commit), pending or signed off, makes it a no-op; other code under the
// same version needs a review of its own. A zero RequiredAt means now.
// KindNotFound when the release does not exist.
func (r *Reviews) RequirePIR(ctx context.Context, p core.PIR) error {
	id := strings.TrimSpace(p.ReleaseID)
	if id == "" {
		return core.Invalid("release_id", "is required")
	}
	at := p.RequiredAt
	if at.IsZero() {
		at = r.base.Now()
	}
	commit := strings.ToLower(strings.TrimSpace(p.Commit))
	err := r.base.Tx(ctx, func(tx *sqlx.Tx) error {
		if r.base.Dialect() == sqldb.Postgres {
			// Two deployments of one commit, one naming it short and one in
			// full, must not each add a review: they take turns on the
			// release's row (SQLite's transactions are serialized anyway).
			if _, err := tx.ExecContext(ctx, r.base.Q(`SELECT 1 FROM releases WHERE id = ? FOR UPDATE`), id); err != nil {
				return fmt.Errorf("lock release: %w", err)
			}
		}
		var commits []string
		if err := tx.SelectContext(ctx, &commits, r.base.Q(`SELECT commit_sha FROM pirs WHERE release_id = ?`), id); err != nil {
			return fmt.Errorf("load: %w", err)
		}
		if slices.ContainsFunc(commits, func(c string) bool { return core.SameCommit(c, commit) }) {
			return nil // already required for this code
		}
		// updated_at tells the reconciler's stored verdicts that a review
		// changed (store/verdicts).
		res, err := tx.ExecContext(ctx, r.base.Q(`INSERT INTO pirs (`+Cols+`, updated_at)
			SELECT r.id, r.service, r.version, r.environment, CASE WHEN ? <> '' THEN ? ELSE r.team END, ?, ?, '', NULL, '', ?, ?
			FROM releases r WHERE r.id = ?
			ON CONFLICT (release_id, commit_sha) DO NOTHING`),
			p.Team, p.Team, core.PIRPending, sqldb.TS(at), commit, r.base.Now(), id)
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("insert: %w", err)
		} else if n == 1 {
			r.base.NotifyTx(tx, "pir:"+id)
			return nil
		}
		var exists int
		if err := tx.GetContext(ctx, &exists, r.base.Q(`SELECT COUNT(*) FROM releases WHERE id = ?`), id); err != nil {
			return fmt.Errorf("check release: %w", err)
		}
		if exists == 0 {
			return core.NotFound("release", id)
		}
		return nil // a concurrent writer required it
	})
	if err != nil {
		return fmt.Errorf("require PIR for release %s: %w", id, err)
	}
	return nil
}

// SignOffPIR marks the release's reviews pending at at (one per commit that
// required one, required by then) signed off by by, with an audit entry
// naming their commits committed in the same transaction, and returns the
// one required last. A zero at means now; a review required after at (a
// source's sign-off of earlier code, delivered again) stays pending.
// KindNotFound when no review is required for the release; KindConflict
// when none was pending at at.
func (r *Reviews) SignOffPIR(ctx context.Context, releaseID, by, summary string, at time.Time) (core.PIR, error) {
	id, by := strings.TrimSpace(releaseID), strings.TrimSpace(by)
	switch {
	case id == "":
		return core.PIR{}, core.Invalid("release_id", "is required")
	case by == "":
		return core.PIR{}, core.Invalid("by", "is required")
	}
	if at.IsZero() {
		at = r.base.Now()
	}
	at = sqldb.TS(at)
	// The commits signed off are known once the rows are: the entry's data
	// is filled in then, before the chain appends it (a group commit's
	// Write may fill its entries in).
	entries := []core.AuditEntry{{Actor: by, Action: "pir.sign_off", Subject: "release:" + id}}
	var out core.PIR
	err := r.base.AppendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
		var rows []Row
		err := tx.SelectContext(ctx, &rows, r.base.Q(`UPDATE pirs SET status = ?, signed_off_by = ?, signed_off_at = ?, summary = ?, updated_at = ?
			WHERE release_id = ? AND status = ? AND required_at <= ? RETURNING `+Cols),
			core.PIRSignedOff, by, at, summary, r.base.Now(), id, core.PIRPending, at)
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		if len(rows) == 0 {
			cur, err := r.latest(ctx, tx, id)
			if err != nil {
				return err
			}
			if cur.Status == core.PIRPending {
				return core.Errorf(core.KindConflict, "the PIR for release %s pending since %s was required after the sign-off's time %s",
					id, cur.RequiredAt.UTC().Format(time.RFC3339), at.Format(time.RFC3339))
			}
			return core.Errorf(core.KindConflict, "the PIR for release %s is already signed off by %s", id, cur.SignedOffBy)
		}
		commits := make([]string, len(rows))
		for i, row := range rows {
			commits[i] = row.Commit
		}
		entries[0].Data = []byte(sqldb.MustJSON(struct {
			SignedOffAt time.Time `json:"signed_off_at"`
			Summary     string    `json:"summary,omitempty"`
			Commits     []string  `json:"commits"`
		}{at, summary, commits}))
		out = slices.MaxFunc(rows, func(a, b Row) int { return a.RequiredAt.Compare(b.RequiredAt) }).PIR()
		r.base.NotifyTx(tx, "pir:"+id)
		return nil
	})
	if err != nil {
		return core.PIR{}, fmt.Errorf("sign off PIR for release %s: %w", id, err)
	}
	return out, nil
}

// GetPIR returns the release's review: the pending one required last, else
// the one required last.
func (r *Reviews) GetPIR(ctx context.Context, releaseID string) (core.PIR, error) {
	row, err := r.latest(ctx, r.base.SQLX(), releaseID)
	if err != nil {
		return core.PIR{}, fmt.Errorf("load PIR for release %s: %w", releaseID, err)
	}
	return row.PIR(), nil
}

// latest reads the review GetPIR returns.
func (r *Reviews) latest(ctx context.Context, q sqlx.QueryerContext, releaseID string) (Row, error) {
	var row Row
	err := sqlx.GetContext(ctx, q, &row, r.base.Q(`SELECT `+Cols+` FROM pirs WHERE release_id = ?
		ORDER BY CASE WHEN status = ? THEN 0 ELSE 1 END, required_at DESC LIMIT 1`), releaseID, core.PIRPending)
	if errors.Is(err, sql.ErrNoRows) {
		return Row{}, core.NotFound("PIR for release", releaseID)
	}
	if err != nil {
		return Row{}, sqldb.Translate(err)
	}
	return row, nil
}
