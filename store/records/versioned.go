package records

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// maxKeyLen bounds record keys (change and incident numbers).
const maxKeyLen = 255

// Keys (change and incident numbers) are stored exactly as given: they are
// the source system's identifiers and lookups are exact. Services are kept
// as given inside the record documents; where the store indexes them
// (incident_services) it keeps them trimmed and lower-cased, and the facts
// queries compare the service the same way, because the gate matches
// services case-insensitively.

// NormService is the form in which services are indexed and compared.
func NormService(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// checkKey validates a record key.
func checkKey(key string) error {
	switch {
	case strings.TrimSpace(key) == "":
		return core.Invalid("key", "is required")
	case len(key) > maxKeyLen:
		return core.Invalid("key", "is longer than %d bytes", maxKeyLen)
	case !sqldb.TextOK(key):
		return core.Invalid("key", "%q contains a NUL byte or invalid UTF-8", key)
	}
	return nil
}

// lookupKey reports whether key can name a stored record: one that is not
// valid text (or too long) was never stored, so a lookup answers not found
// without asking the database (which would refuse the bytes).
func lookupKey(key string) bool { return len(key) <= maxKeyLen && sqldb.TextOK(key) }

// versionRow is one row of a *_versions table.
type versionRow struct {
	Version    int       `db:"version"`
	ValidFrom  time.Time `db:"valid_from"`
	RecordedAt time.Time `db:"recorded_at"`
	Doc        []byte    `db:"doc"`
}

// history reads every version of key from table in the order they became
// true (valid_from; versions recorded late, older than the newest, are
// numbered in the order they were recorded).
func history(ctx context.Context, db *sqldb.DB, table, key string) ([]versionRow, error) {
	var rows []versionRow
	err := db.SQLX().SelectContext(ctx, &rows, db.Q(`SELECT version, valid_from, recorded_at, doc FROM `+table+` WHERE key = ? ORDER BY valid_from, version`), key)
	if err != nil {
		return nil, sqldb.Translate(err)
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
func upsertVersioned(ctx context.Context, db *sqldb.DB, u versionedUpsert) (core.UpsertResult, error) {
	lock := ""
	if db.Dialect() == sqldb.Postgres {
		lock = " FOR UPDATE"
	}
	var res core.UpsertResult
	err := db.Tx(ctx, func(tx *sqlx.Tx) error {
		now := db.Now()
		for attempt := 0; attempt < 5; attempt++ {
			var (
				version int
				stored  []byte
				stamp   time.Time
				owner   string
			)
			err := db.QueryRowTx(ctx, tx, db.Q(`SELECT version, doc, source_updated_at, source FROM `+u.table+` WHERE key = ?`+lock), u.key).
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
				return storeVersion(ctx, db, tx, u, 1, now)
			case err != nil:
				return fmt.Errorf("lock current row: %w", err)
			}
			if owner != u.source {
				return notOwner(u, owner)
			}
			if u.stamp.Before(stamp) {
				var err error
				res, err = recordPast(ctx, db, tx, u, stamp, stored, now)
				return err
			}
			old, err := u.canonOf(stored)
			if err != nil {
				return fmt.Errorf("decode stored version %d: %w", version, err)
			}
			if old == u.canon {
				res = core.UpsertUnchanged
				if !u.stamp.After(stamp) {
					return nil
				}
				// The source says the content still stood at the newer
				// stamp: keep it, or a delivery from between the two
				// stamps arriving late would pass for newer and rewrite
				// what the source now says.
				if _, err := db.ExecTx(ctx, tx, db.Q(`UPDATE `+u.table+` SET doc = ?, source_updated_at = ? WHERE key = ?`),
					u.doc, u.stamp, u.key); err != nil {
					return fmt.Errorf("advance the stamp: %w", err)
				}
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
			return storeVersion(ctx, db, tx, u, version+1, now)
		}
		return core.Errorf(core.KindUnavailable, "%s %s: concurrent first inserts did not settle, retry", u.what, u.key)
	})
	if err != nil {
		return "", err
	}
	return res, nil
}

// recordPast handles a delivery older than the current row (stamped
// current): the current state stays, but the delivery says what was true
// from its stamp, so the history keeps it (the reconciler and the gate's
// facts as of a moment read the history by valid_from) unless the version
// in force at its stamp already says the same (UpsertStale). Versions are
// numbered in the order they were recorded, so this one takes the next
// number. When no recorded version became true after it, the history
// would now end on it and contradict the current row, whose content was
// confirmed at a later stamp without a version of its own (an unchanged
// delivery only advances the row's stamp): the current content is then
// recorded again at that stamp.
func recordPast(ctx context.Context, db *sqldb.DB, tx *sqlx.Tx, u versionedUpsert, current time.Time, currentDoc []byte, now time.Time) (core.UpsertResult, error) {
	var prior []byte
	err := db.QueryRowTx(ctx, tx, db.Q(`SELECT doc FROM `+u.versions+` WHERE key = ? AND valid_from <= ?
		ORDER BY valid_from DESC, version DESC LIMIT 1`), u.key, u.stamp).Scan(&prior)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return "", fmt.Errorf("read the version in force at %s: %w", u.stamp.Format(time.RFC3339Nano), err)
	default:
		c, err := u.canonOf(prior)
		if err != nil {
			return "", fmt.Errorf("decode the version in force at %s: %w", u.stamp.Format(time.RFC3339Nano), err)
		}
		if c == u.canon {
			return core.UpsertStale, nil
		}
	}
	var last int
	var later bool
	if err := db.QueryRowTx(ctx, tx, db.Q(`SELECT COALESCE(MAX(version), 0), COALESCE(MAX(CASE WHEN valid_from > ? THEN 1 ELSE 0 END), 0)
		FROM `+u.versions+` WHERE key = ?`), u.stamp, u.key).Scan(&last, &later); err != nil {
		return "", fmt.Errorf("read the history: %w", err)
	}
	last++
	if err := insertVersion(ctx, db, tx, u, last, u.stamp, now, u.doc); err != nil {
		return "", err
	}
	if !later {
		last++
		if err := insertVersion(ctx, db, tx, u, last, current, now, string(currentDoc)); err != nil {
			return "", fmt.Errorf("the current content again: %w", err)
		}
	}
	// The current row carries the newest version number, so the next
	// update numbers its version after every recorded one.
	if _, err := db.ExecTx(ctx, tx, db.Q(`UPDATE `+u.table+` SET version = ? WHERE key = ?`), last, u.key); err != nil {
		return "", fmt.Errorf("renumber the current row: %w", err)
	}
	return core.UpsertPast, nil
}

// insertVersion appends one row to u's history.
func insertVersion(ctx context.Context, db *sqldb.DB, tx *sqlx.Tx, u versionedUpsert, version int, validFrom, now time.Time, doc string) error {
	if _, err := db.ExecTx(ctx, tx, db.Q(`INSERT INTO `+u.versions+` (key, version, valid_from, recorded_at, doc) VALUES (?, ?, ?, ?, ?)`),
		u.key, version, validFrom, now, doc); err != nil {
		return fmt.Errorf("insert version %d: %w", version, err)
	}
	return nil
}

// notOwner is the refusal of a write to a record another source owns.
func notOwner(u versionedUpsert, owner string) error {
	return core.Errorf(core.KindForbidden, "%s %q belongs to source %q (the connector that created it); the write from source %q is refused",
		u.what, u.key, owner, u.source)
}

// storeVersion appends version to the history, maintains derived rows and
// announces the change.
func storeVersion(ctx context.Context, db *sqldb.DB, tx *sqlx.Tx, u versionedUpsert, version int, now time.Time) error {
	if err := insertVersion(ctx, db, tx, u, version, u.stamp, now, u.doc); err != nil {
		return err
	}
	if u.after != nil {
		if err := u.after(ctx, tx); err != nil {
			return err
		}
	}
	db.NotifyTx(tx, u.what+":"+u.key)
	return nil
}
