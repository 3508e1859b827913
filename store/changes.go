package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
)

// maxKeyLen bounds record keys (change and incident numbers).
const maxKeyLen = 255

// Keys (change and incident numbers) are stored exactly as given: they are
// the source system's identifiers and lookups are exact. Services are kept
// as given inside the record documents; where the store indexes them
// (incident_services) it keeps them trimmed and lower-cased, and the facts
// queries compare the service the same way, because the gate matches
// services case-insensitively.

// normService is the form in which services are indexed and compared.
func normService(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// checkKey validates a record key.
func checkKey(key string) error {
	switch {
	case strings.TrimSpace(key) == "":
		return core.Invalid("key", "is required")
	case len(key) > maxKeyLen:
		return core.Invalid("key", "is longer than %d bytes", maxKeyLen)
	case !textOK(key):
		return core.Invalid("key", "%q contains a NUL byte or invalid UTF-8", key)
	}
	return nil
}

// lookupKey reports whether key can name a stored record: one that is not
// valid text (or too long) was never stored, so a lookup answers not found
// without asking the database (which would refuse the bytes).
func lookupKey(key string) bool { return len(key) <= maxKeyLen && textOK(key) }

// normChange returns c ready to store: times in UTC at microseconds (what
// the databases keep, so a re-delivery compares equal), slices copied,
// text made valid (sqldb.CleanStrings), and SourceUpdatedAt set (now when zero).
func normChange(c core.Change, now time.Time) core.Change {
	c.PlannedStart = tsp(c.PlannedStart)
	c.PlannedEnd = tsp(c.PlannedEnd)
	c.ReviewedAt = tsp(c.ReviewedAt)
	if c.Approvals != nil {
		a := make([]core.Approval, len(c.Approvals))
		for i, ap := range c.Approvals {
			ap.At = tsp(ap.At)
			a[i] = ap
		}
		c.Approvals = a
	}
	if c.Services != nil {
		c.Services = append([]string(nil), c.Services...)
	}
	if c.SourceUpdatedAt.IsZero() {
		c.SourceUpdatedAt = now
	}
	c.SourceUpdatedAt = ts(c.SourceUpdatedAt)
	cleanStrings(&c)
	return c
}

// changeCanon is a change's content apart from its source stamp: two
// deliveries with equal canon are the same version.
func changeCanon(c core.Change) string {
	c.SourceUpdatedAt = time.Time{}
	return mustJSON(c)
}

// UpsertChange stores c as a new version unless it is older than the newest
// stored version (UpsertStale) or has the same content (UpsertUnchanged).
// A change belongs to the source that created it: a write from another
// source is refused with KindForbidden (see upsertVersioned).
func (d *DB) UpsertChange(ctx context.Context, c core.Change) (core.UpsertResult, error) {
	if err := checkKey(c.Key); err != nil {
		return "", err
	}
	if strings.TrimSpace(c.Source) == "" || !textOK(c.Source) {
		return "", core.Invalid("source", "is required (valid text)")
	}
	if c.Type != "" && !c.Type.Valid() {
		return "", core.Invalid("type", "unknown change type %q", c.Type)
	}
	c = normChange(c, d.now())
	doc := mustJSON(c)
	res, err := d.upsertVersioned(ctx, versionedUpsert{
		what:     "change",
		table:    "changes",
		versions: "change_versions",
		key:      c.Key,
		source:   c.Source,
		stamp:    c.SourceUpdatedAt,
		doc:      doc,
		canon:    changeCanon(c),
		canonOf: func(stored []byte) (string, error) {
			var old core.Change
			if err := json.Unmarshal(stored, &old); err != nil {
				return "", err
			}
			return changeCanon(old), nil
		},
		insert: func(ctx context.Context, tx *sqlx.Tx, now time.Time) (sql.Result, error) {
			return d.execTx(ctx, tx, d.q(`INSERT INTO changes (key, source, version, type, state, approval, doc, source_updated_at, updated_at)
				VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING`),
				c.Key, c.Source, string(c.Type), c.State, string(c.Approval), doc, c.SourceUpdatedAt, now)
		},
		update: func(ctx context.Context, tx *sqlx.Tx, version int, now time.Time) (sql.Result, error) {
			return d.execTx(ctx, tx, d.q(`UPDATE changes SET version = ?, type = ?, state = ?, approval = ?, doc = ?,
				source_updated_at = ?, updated_at = ? WHERE key = ? AND source = ?`),
				version, string(c.Type), c.State, string(c.Approval), doc, c.SourceUpdatedAt, now, c.Key, c.Source)
		},
	})
	if err != nil {
		return "", fmt.Errorf("upsert change %s: %w", c.Key, err)
	}
	return res, nil
}

// GetChange returns the newest version of the change.
func (d *DB) GetChange(ctx context.Context, key string) (core.Change, error) {
	if !lookupKey(key) {
		return core.Change{}, core.NotFound("change", key)
	}
	var doc []byte
	err := d.db.GetContext(ctx, &doc, d.q(`SELECT doc FROM changes WHERE key = ?`), key)
	if errors.Is(err, sql.ErrNoRows) {
		return core.Change{}, core.NotFound("change", key)
	}
	if err != nil {
		return core.Change{}, fmt.Errorf("load change %s: %w", key, translate(err))
	}
	var c core.Change
	if err := json.Unmarshal(doc, &c); err != nil {
		return core.Change{}, fmt.Errorf("decode change %s: %w", key, err)
	}
	return c, nil
}

// ChangeHistory returns every version of the change, oldest first.
func (d *DB) ChangeHistory(ctx context.Context, key string) ([]core.ChangeVersion, error) {
	if !lookupKey(key) {
		return nil, core.NotFound("change", key)
	}
	rows, err := d.history(ctx, "change_versions", key)
	if err != nil {
		return nil, fmt.Errorf("load change %s history: %w", key, err)
	}
	if len(rows) == 0 {
		return nil, core.NotFound("change", key)
	}
	out := make([]core.ChangeVersion, len(rows))
	for i, r := range rows {
		out[i] = core.ChangeVersion{Version: r.Version, ValidFrom: r.ValidFrom.UTC(), RecordedAt: r.RecordedAt.UTC()}
		if err := json.Unmarshal(r.Doc, &out[i].Change); err != nil {
			return nil, fmt.Errorf("decode change %s version %d: %w", key, r.Version, err)
		}
	}
	return out, nil
}

// versionRow is one row of a *_versions table.
type versionRow struct {
	Version    int       `db:"version"`
	ValidFrom  time.Time `db:"valid_from"`
	RecordedAt time.Time `db:"recorded_at"`
	Doc        []byte    `db:"doc"`
}

func (d *DB) history(ctx context.Context, table, key string) ([]versionRow, error) {
	var rows []versionRow
	err := d.db.SelectContext(ctx, &rows, d.q(`SELECT version, valid_from, recorded_at, doc FROM `+table+` WHERE key = ? ORDER BY version`), key)
	if err != nil {
		return nil, translate(err)
	}
	return rows, nil
}

// versionedUpsert describes one upsert of a versioned record (a change or
// an incident) for upsertVersioned.
type versionedUpsert struct {
	what            string    // "change", "incident": the notification topic prefix
	table, versions string    // current-row and history tables
	key             string    // the record key
	source          string    // the writing source (connector); it owns the record it creates
	stamp           time.Time // the record's SourceUpdatedAt, normalized
	doc             string    // the record's JSON
	canon           string    // the record's content without its stamp
	// canonOf returns the content-without-stamp of a stored document.
	canonOf func(stored []byte) (string, error)
	// insert inserts the current row as version 1 with ON CONFLICT DO
	// NOTHING; no row affected means a concurrent writer inserted it first.
	insert func(ctx context.Context, tx *sqlx.Tx, now time.Time) (sql.Result, error)
	// update rewrites the current row as version, only where the row's
	// source is the writer's (WHERE … AND source = ?): no row affected
	// means another source owns it.
	update func(ctx context.Context, tx *sqlx.Tx, version int, now time.Time) (sql.Result, error)
	// after, when set, runs after insert or update (derived rows).
	after func(ctx context.Context, tx *sqlx.Tx) error
}

// upsertVersioned runs the versioned-upsert protocol in one transaction:
// lock the current row (FOR UPDATE on PostgreSQL; SQLite transactions are
// IMMEDIATE and so already serialized), refuse a write from a source other
// than the row's (KindForbidden: a record belongs to the source that
// created it, and the row's update is conditional on that source too),
// drop an older or identical record, else append version n+1 to the
// history and rewrite the current row. The
// first insert of a key is INSERT … ON CONFLICT DO NOTHING: when a
// concurrent transaction wins that race, the loop goes back and locks the
// winner's row, so concurrent first deliveries never fail.
func (d *DB) upsertVersioned(ctx context.Context, u versionedUpsert) (core.UpsertResult, error) {
	lock := ""
	if d.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	var res core.UpsertResult
	err := d.tx(ctx, func(tx *sqlx.Tx) error {
		now := d.now()
		for attempt := 0; attempt < 5; attempt++ {
			var (
				version int
				stored  []byte
				stamp   time.Time
				owner   string
			)
			err := d.queryRowTx(ctx, tx, d.q(`SELECT version, doc, source_updated_at, source FROM `+u.table+` WHERE key = ?`+lock), u.key).
				Scan(&version, &stored, &stamp, &owner)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				r, err := u.insert(ctx, tx, now)
				if err != nil {
					return fmt.Errorf("insert: %w", err)
				}
				if n, err := r.RowsAffected(); err != nil {
					return fmt.Errorf("insert: %w", err)
				} else if n == 0 {
					continue // lost the race for the first insert: lock the winner's row
				}
				res = core.UpsertCreated
				return d.storeVersion(ctx, tx, u, 1, now)
			case err != nil:
				return fmt.Errorf("lock current row: %w", err)
			}
			if owner != u.source {
				return notOwner(u, owner)
			}
			if u.stamp.Before(stamp) {
				res = core.UpsertStale
				return nil
			}
			old, err := u.canonOf(stored)
			if err != nil {
				return fmt.Errorf("decode stored version %d: %w", version, err)
			}
			if old == u.canon {
				res = core.UpsertUnchanged
				return nil
			}
			r, err := u.update(ctx, tx, version+1, now)
			if err != nil {
				return fmt.Errorf("update current row: %w", err)
			}
			if n, err := r.RowsAffected(); err != nil {
				return fmt.Errorf("update current row: %w", err)
			} else if n == 0 {
				return notOwner(u, owner)
			}
			res = core.UpsertUpdated
			return d.storeVersion(ctx, tx, u, version+1, now)
		}
		return core.Errorf(core.KindUnavailable, "%s %s: concurrent first inserts did not settle, retry", u.what, u.key)
	})
	if err != nil {
		return "", err
	}
	return res, nil
}

// notOwner is the refusal of a write to a record another source owns.
func notOwner(u versionedUpsert, owner string) error {
	return core.Errorf(core.KindForbidden, "%s %q belongs to source %q (the connector that created it); the write from source %q is refused",
		u.what, u.key, owner, u.source)
}

// storeVersion appends version to the history, maintains derived rows and
// announces the change.
func (d *DB) storeVersion(ctx context.Context, tx *sqlx.Tx, u versionedUpsert, version int, now time.Time) error {
	if _, err := d.execTx(ctx, tx, d.q(`INSERT INTO `+u.versions+` (key, version, valid_from, recorded_at, doc) VALUES (?, ?, ?, ?, ?)`),
		u.key, version, u.stamp, now, u.doc); err != nil {
		return fmt.Errorf("insert version %d: %w", version, err)
	}
	if u.after != nil {
		if err := u.after(ctx, tx); err != nil {
			return err
		}
	}
	d.notifyTx(tx, u.what+":"+u.key)
	return nil
}
