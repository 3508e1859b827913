package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/lib/pq"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tollgate-dev/tollgate/core"
)

// Translate turns a driver error into a core error by SQLSTATE or SQLite
// result code. The original error stays in the chain for the log.
func Translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return core.Wrap(core.KindNotFound, err, "not found")
	}
	var ce *core.Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, driver.ErrBadConn) {
		return core.StoreDown(err, "database connection lost")
	}
	if IsUniqueViolation(err) {
		return core.Wrap(core.KindConflict, err, "already exists")
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23503", "23502", "23514", "22P02", "22001", // FK, not null, check, bad text repr, too long
			"22021", "22P05", // NUL or invalid UTF-8 in text, \u0000 in jsonb
			"22003", "22008": // a number past its column (3000000000 in an integer), a time past timestamptz's range
			return core.Wrap(core.KindInvalid, err, "rejected by the database")
		case "40001", "40P01", "55P03": // serialization failure, deadlock, lock wait timed out (lock_timeout)
			return core.Wrap(core.KindUnavailable, err, "database conflict, retry")
		}
		switch {
		case strings.HasPrefix(string(pe.Code), "08") || strings.HasPrefix(string(pe.Code), "57P"):
			return core.StoreDown(err, "database unavailable")
		case pe.Code == "57014": // query_canceled: a statement_timeout, or a cancel request
			return core.StoreDown(err, "database statement timed out or was cancelled")
		case pe.Code == "53100": // disk_full
			return core.StoreDown(err, "database disk is full")
		case strings.HasPrefix(string(pe.Code), "53"): // out of memory, too many connections
			return core.StoreDown(err, "database out of resources")
		case pe.Code == "25006": // read_only_sql_transaction: a read-only database or a standby
			return core.StoreDown(err, "database is read-only")
		}
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY, sqlite3.SQLITE_CONSTRAINT_NOTNULL, sqlite3.SQLITE_CONSTRAINT_CHECK:
			return core.Wrap(core.KindInvalid, err, "rejected by the database")
		}
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return core.Wrap(core.KindUnavailable, err, "database busy, retry")
		case sqlite3.SQLITE_FULL:
			return core.StoreDown(err, "database disk is full")
		case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR:
			return core.StoreDown(err, "database unavailable")
		case sqlite3.SQLITE_READONLY:
			return core.StoreDown(err, "database is read-only")
		}
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, sql.ErrConnDone) {
		return core.StoreDown(err, "database unavailable")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return core.Wrap(core.KindUnavailable, err, "database unavailable")
	}
	return err
}

// IsUniqueViolation reports whether err is the database refusing a row
// whose key a unique index already holds (SQLSTATE 23505; SQLite's unique
// and primary key constraints). Translate makes it KindConflict.
func IsUniqueViolation(err error) bool {
	var pe *pq.Error
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// NotFound maps a missing row to core.NotFound(what, key) and wraps any
// other driver error with context.
func NotFound(err error, what, key string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return core.NotFound(what, key)
	}
	return fmt.Errorf("%s %s: %w", what, key, Translate(err))
}
