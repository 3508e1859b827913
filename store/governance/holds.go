// Package governance stores what people decide about releases, each
// decision audited: holds that stop the gate, evidence attached to a
// release, proposals awaiting a second admin, and the versioned policy
// and mapping documents.
package governance

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/factcache"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Holds are the holds placed on releases in one database: a hold in
// force stops the gate (core's FREEZE rule).
type Holds struct {
	base  *sqldb.DB
	db    *sqlx.DB
	facts *factcache.Cache
}

// NewHolds returns the holds in db; facts is the gate's fact cache, which
// keeps the set of holds not lifted (nil: read from the database).
func NewHolds(db *sqldb.DB, facts *factcache.Cache) *Holds {
	return &Holds{base: db, db: db.SQLX(), facts: facts}
}

// topicHold is the notification topic of a hold placed or lifted: waiting
// gate checks re-evaluate.
const topicHold = "hold"

// HoldCols are the holds table's columns, in HoldRow's order.
const HoldCols = "id, scope, name, reason, until, created_by, created_at, lifted_by, lifted_at, services"

// HoldRow is a holds row as scanned (the reconciler reads holds in bulk).
type HoldRow struct {
	ID        string       `db:"id"`
	Scope     string       `db:"scope"`
	Name      string       `db:"name"`
	Reason    string       `db:"reason"`
	Until     sql.NullTime `db:"until"`
	CreatedBy string       `db:"created_by"`
	CreatedAt time.Time    `db:"created_at"`
	LiftedBy  string       `db:"lifted_by"`
	LiftedAt  sql.NullTime `db:"lifted_at"`
	Services  string       `db:"services"` // a JSON array, or "" for none
}

// Hold returns the row as a core.Hold.
func (r HoldRow) Hold() core.Hold {
	h := core.Hold{ID: r.ID, Scope: r.Scope, Name: r.Name, Reason: r.Reason, Until: sqldb.TimePtr(r.Until),
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt.UTC(), LiftedBy: r.LiftedBy, LiftedAt: sqldb.TimePtr(r.LiftedAt)}
	if r.Services != "" {
		// Written by CreateHold only; one that cannot be read holds
		// nothing more than its team.
		_ = json.Unmarshal([]byte(r.Services), &h.Services)
	}
	return h
}

// CreateHold stores h (its ID set by the caller; a zero CreatedAt becomes
// now) with a "hold.create" audit entry, and wakes waiting checks.
func (hs *Holds) CreateHold(ctx context.Context, h core.Hold, actor string) (core.Hold, error) {
	if h.CreatedAt.IsZero() {
		h.CreatedAt = hs.base.Now()
	}
	h.CreatedAt = sqldb.TS(h.CreatedAt)
	if h.CreatedBy == "" {
		h.CreatedBy = actor
	}
	entry := core.AuditEntry{Actor: actor, Action: "hold.create", Subject: "hold:" + h.ID, At: h.CreatedAt,
		Data: json.RawMessage(sqldb.MustJSON(h))}
	err := hs.base.AppendWith(ctx, []core.AuditEntry{entry}, func(ctx context.Context, tx *sqlx.Tx) error {
		services := ""
		if len(h.Services) > 0 {
			services = sqldb.MustJSON(h.Services)
		}
		if _, err := tx.ExecContext(ctx, hs.base.Q("INSERT INTO holds (id, scope, name, reason, until, created_by, created_at, services) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
			h.ID, h.Scope, h.Name, h.Reason, sqldb.NullTime(h.Until), h.CreatedBy, h.CreatedAt, services); err != nil {
			return err
		}
		hs.base.NotifyTx(tx, topicHold)
		return nil
	})
	if err != nil {
		return core.Hold{}, fmt.Errorf("create hold: %w", err)
	}
	return h, nil
}

// maxTeamServices bounds the services a team hold lists.
const maxTeamServices = 1000

// RecordedTeamServices lists the services whose releases or deployments
// were recorded with team (compared case-insensitively), sorted: what a
// team hold also holds where the policy's catalog does not list them.
func (hs *Holds) RecordedTeamServices(ctx context.Context, team string) ([]string, error) {
	var out []string
	err := hs.db.SelectContext(ctx, &out, hs.base.Q(`SELECT service FROM releases WHERE lower(team) = ?
		UNION SELECT service FROM deployments WHERE lower(team) = ? ORDER BY 1 LIMIT ?`),
		strings.ToLower(strings.TrimSpace(team)), strings.ToLower(strings.TrimSpace(team)), maxTeamServices)
	if err != nil {
		return nil, fmt.Errorf("services of team %s: %w", team, sqldb.Translate(err))
	}
	return out, nil
}

// LiftHold ends hold id now (or at at), with a "hold.lift" audit entry
// naming who lifted it. KindNotFound for an unknown id, KindConflict when
// it is already lifted.
func (hs *Holds) LiftHold(ctx context.Context, id, actor string, at time.Time) (core.Hold, error) {
	if at.IsZero() {
		at = hs.base.Now()
	}
	at = sqldb.TS(at)
	var out core.Hold
	entries := []core.AuditEntry{{Actor: actor, Action: "hold.lift", Subject: "hold:" + id, At: at}}
	err := hs.base.AppendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
		var r HoldRow
		if err := tx.GetContext(ctx, &r, hs.base.Q("SELECT "+HoldCols+" FROM holds WHERE id = ?"), id); err != nil {
			return sqldb.NotFound(err, "hold", id)
		}
		if r.LiftedAt.Valid {
			return core.Errorf(core.KindConflict, "hold %q was already lifted by %s", id, r.LiftedBy)
		}
		res, err := tx.ExecContext(ctx, hs.base.Q("UPDATE holds SET lifted_by = ?, lifted_at = ? WHERE id = ? AND lifted_at IS NULL"), actor, at, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return core.Errorf(core.KindConflict, "hold %q was already lifted", id)
		}
		out = r.Hold()
		out.LiftedBy, out.LiftedAt = actor, &at
		entries[0].Data = json.RawMessage(sqldb.MustJSON(out))
		hs.base.NotifyTx(tx, topicHold)
		return nil
	})
	if err != nil {
		return core.Hold{}, fmt.Errorf("lift hold %s: %w", id, err)
	}
	return out, nil
}

// ListHolds returns the holds, newest first: those in force or starting
// later at now when all is false, every hold ever placed otherwise.
func (hs *Holds) ListHolds(ctx context.Context, all bool, now time.Time) ([]core.Hold, error) {
	query, args := "SELECT "+HoldCols+" FROM holds ORDER BY created_at DESC, id DESC", []any(nil)
	if !all {
		query = "SELECT " + HoldCols + " FROM holds WHERE lifted_at IS NULL AND (until IS NULL OR until > ?) ORDER BY created_at DESC, id DESC"
		args = []any{sqldb.TS(now)}
	}
	var rows []HoldRow
	if err := hs.db.SelectContext(ctx, &rows, hs.base.Q(query), args...); err != nil {
		return nil, fmt.Errorf("list holds: %w", sqldb.Translate(err))
	}
	out := make([]core.Hold, len(rows))
	for i, r := range rows {
		out[i] = r.Hold()
	}
	return out, nil
}

// CurrentHolds returns the holds in force now, from the fact cache when it
// may answer (the set of unlifted, unexpired holds, reloaded after any
// hold is placed or lifted), else from the database.
func (hs *Holds) CurrentHolds(ctx context.Context) ([]core.Hold, error) {
	now := hs.base.Now()
	holds, ok, err := hs.facts.Holds(ctx, hs.unliftedHolds)
	if err != nil || !ok {
		if err != nil {
			return nil, fmt.Errorf("read holds: %w", err)
		}
		return hs.HoldsAt(ctx, now)
	}
	// The set was loaded earlier: a hold may have expired since.
	var out []core.Hold
	for _, h := range holds {
		if h.ActiveAt(now) {
			out = append(out, h)
		}
	}
	return out, nil
}

// unliftedHolds reads the holds not lifted and not expired, for the cache.
func (hs *Holds) unliftedHolds(ctx context.Context) ([]core.Hold, error) {
	var rows []HoldRow
	err := hs.db.SelectContext(ctx, &rows, hs.base.Q("SELECT "+HoldCols+" FROM holds WHERE lifted_at IS NULL AND (until IS NULL OR until > ?) ORDER BY created_at, id"), hs.base.Now())
	if err != nil {
		return nil, fmt.Errorf("read holds: %w", sqldb.Translate(err))
	}
	out := make([]core.Hold, len(rows))
	for i, r := range rows {
		out[i] = r.Hold()
	}
	return out, nil
}

// HoldsAt returns the holds that are (or will be) in force at t and were
// placed by then, oldest first: not lifted by t, not expired by t. The
// gate reads them with t = now; the reconciler with a deployment's start.
func (hs *Holds) HoldsAt(ctx context.Context, t time.Time) ([]core.Hold, error) {
	t = sqldb.TS(t)
	var rows []HoldRow
	err := hs.db.SelectContext(ctx, &rows, hs.base.Q("SELECT "+HoldCols+` FROM holds
		WHERE created_at <= ? AND (lifted_at IS NULL OR lifted_at > ?) AND (until IS NULL OR until > ?)
		ORDER BY created_at, id`), t, t, t)
	if err != nil {
		return nil, fmt.Errorf("read holds: %w", sqldb.Translate(err))
	}
	if len(rows) == 0 {
		return nil, nil
	}
	out := make([]core.Hold, len(rows))
	for i, r := range rows {
		out[i] = r.Hold()
	}
	return out, nil
}
