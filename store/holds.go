package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
)

// topicHold is the notification topic of a hold placed or lifted: waiting
// gate checks re-evaluate.
const topicHold = "hold"

const holdCols = "id, scope, name, reason, until, created_by, created_at, lifted_by, lifted_at"

type holdRow struct {
	ID        string       `db:"id"`
	Scope     string       `db:"scope"`
	Name      string       `db:"name"`
	Reason    string       `db:"reason"`
	Until     sql.NullTime `db:"until"`
	CreatedBy string       `db:"created_by"`
	CreatedAt time.Time    `db:"created_at"`
	LiftedBy  string       `db:"lifted_by"`
	LiftedAt  sql.NullTime `db:"lifted_at"`
}

func (r holdRow) hold() core.Hold {
	return core.Hold{ID: r.ID, Scope: r.Scope, Name: r.Name, Reason: r.Reason, Until: timePtr(r.Until),
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt.UTC(), LiftedBy: r.LiftedBy, LiftedAt: timePtr(r.LiftedAt)}
}

// CreateHold stores h (its ID set by the caller; a zero CreatedAt becomes
// now) with a "hold.create" audit entry, and wakes waiting checks.
func (d *DB) CreateHold(ctx context.Context, h core.Hold, actor string) (core.Hold, error) {
	if h.CreatedAt.IsZero() {
		h.CreatedAt = d.now()
	}
	h.CreatedAt = ts(h.CreatedAt)
	if h.CreatedBy == "" {
		h.CreatedBy = actor
	}
	entry := core.AuditEntry{Actor: actor, Action: "hold.create", Subject: "hold:" + h.ID, At: h.CreatedAt,
		Data: json.RawMessage(mustJSON(h))}
	err := d.appendWith(ctx, []core.AuditEntry{entry}, func(ctx context.Context, tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, d.q("INSERT INTO holds (id, scope, name, reason, until, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"),
			h.ID, h.Scope, h.Name, h.Reason, nullTime(h.Until), h.CreatedBy, h.CreatedAt); err != nil {
			return err
		}
		d.notifyTx(tx, topicHold)
		return nil
	})
	if err != nil {
		return core.Hold{}, fmt.Errorf("create hold: %w", err)
	}
	return h, nil
}

// LiftHold ends hold id now (or at at), with a "hold.lift" audit entry
// naming who lifted it. KindNotFound for an unknown id, KindConflict when
// it is already lifted.
func (d *DB) LiftHold(ctx context.Context, id, actor string, at time.Time) (core.Hold, error) {
	if at.IsZero() {
		at = d.now()
	}
	at = ts(at)
	var out core.Hold
	entries := []core.AuditEntry{{Actor: actor, Action: "hold.lift", Subject: "hold:" + id, At: at}}
	err := d.appendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
		var r holdRow
		if err := tx.GetContext(ctx, &r, d.q("SELECT "+holdCols+" FROM holds WHERE id = ?"), id); err != nil {
			return notFound(err, "hold", id)
		}
		if r.LiftedAt.Valid {
			return core.Errorf(core.KindConflict, "hold %q was already lifted by %s", id, r.LiftedBy)
		}
		res, err := tx.ExecContext(ctx, d.q("UPDATE holds SET lifted_by = ?, lifted_at = ? WHERE id = ? AND lifted_at IS NULL"), actor, at, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return core.Errorf(core.KindConflict, "hold %q was already lifted", id)
		}
		out = r.hold()
		out.LiftedBy, out.LiftedAt = actor, &at
		entries[0].Data = json.RawMessage(mustJSON(out))
		d.notifyTx(tx, topicHold)
		return nil
	})
	if err != nil {
		return core.Hold{}, fmt.Errorf("lift hold %s: %w", id, err)
	}
	return out, nil
}

// ListHolds returns the holds, newest first: those in force or starting
// later at now when all is false, every hold ever placed otherwise.
func (d *DB) ListHolds(ctx context.Context, all bool, now time.Time) ([]core.Hold, error) {
	query, args := "SELECT "+holdCols+" FROM holds ORDER BY created_at DESC, id DESC", []any(nil)
	if !all {
		query = "SELECT " + holdCols + " FROM holds WHERE lifted_at IS NULL AND (until IS NULL OR until > ?) ORDER BY created_at DESC, id DESC"
		args = []any{ts(now)}
	}
	var rows []holdRow
	if err := d.db.SelectContext(ctx, &rows, d.q(query), args...); err != nil {
		return nil, fmt.Errorf("list holds: %w", translate(err))
	}
	out := make([]core.Hold, len(rows))
	for i, r := range rows {
		out[i] = r.hold()
	}
	return out, nil
}

// currentHolds returns the holds in force now, from the fact cache when it
// may answer (the set of unlifted, unexpired holds, reloaded after any
// hold is placed or lifted), else from the database.
func (d *DB) currentHolds(ctx context.Context) ([]core.Hold, error) {
	now := d.now()
	holds, ok, err := d.facts.Holds(ctx, d.unliftedHolds)
	if err != nil || !ok {
		if err != nil {
			return nil, fmt.Errorf("read holds: %w", err)
		}
		return d.holdsAt(ctx, now)
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
func (d *DB) unliftedHolds(ctx context.Context) ([]core.Hold, error) {
	var rows []holdRow
	err := d.db.SelectContext(ctx, &rows, d.q("SELECT "+holdCols+" FROM holds WHERE lifted_at IS NULL AND (until IS NULL OR until > ?) ORDER BY created_at, id"), d.now())
	if err != nil {
		return nil, fmt.Errorf("read holds: %w", translate(err))
	}
	out := make([]core.Hold, len(rows))
	for i, r := range rows {
		out[i] = r.hold()
	}
	return out, nil
}

// holdsAt returns the holds that are (or will be) in force at t and were
// placed by then, oldest first: not lifted by t, not expired by t. The
// gate reads them with t = now; the reconciler with a deployment's start.
func (d *DB) holdsAt(ctx context.Context, t time.Time) ([]core.Hold, error) {
	t = ts(t)
	var rows []holdRow
	err := d.db.SelectContext(ctx, &rows, d.q("SELECT "+holdCols+` FROM holds
		WHERE created_at <= ? AND (lifted_at IS NULL OR lifted_at > ?) AND (until IS NULL OR until > ?)
		ORDER BY created_at, id`), t, t, t)
	if err != nil {
		return nil, fmt.Errorf("read holds: %w", translate(err))
	}
	if len(rows) == 0 {
		return nil, nil
	}
	out := make([]core.Hold, len(rows))
	for i, r := range rows {
		out[i] = r.hold()
	}
	return out, nil
}
