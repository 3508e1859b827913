// Package store implements core's storage interfaces on PostgreSQL (the
// production store, through lib/pq) and on an embedded SQLite file (the
// pure-Go modernc.org/sqlite driver, so tollgate runs on a bare machine).
// Both speak sqlx; the few places where the dialects differ (advisory locks,
// SKIP LOCKED, LISTEN/NOTIFY) are behind the dialect checks in this package.
// Driver errors become core errors by SQLSTATE / SQLite result code, never
// by message text.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/migrations"
	"github.com/tollgate-dev/tollgate/store/factcache"
	"github.com/tollgate-dev/tollgate/store/groupcommit"
	"github.com/tollgate-dev/tollgate/store/stmtcache"
)

// Dialects.
const (
	Postgres = "postgres"
	SQLite   = "sqlite"
)

// DefaultSQLitePath is where the embedded store lives when no database URL
// is configured.
const DefaultSQLitePath = "./data/tollgate.db"

// DB is a tollgate store on one database.
type DB struct {
	db      *sqlx.DB
	dialect string
	dsn     string
	// sqlitePath is the SQLite database file ("" on PostgreSQL).
	sqlitePath string
	clock      core.Clock
	log        *slog.Logger
	hub        hub // in-process fan-out of fact-change notifications
	inbox      hub // in-process fan-out of inbox wake-ups (notify.go)
	// commits is the audit chain's group commit (store/groupcommit).
	commits *groupcommit.Committer
	stmts   *stmtcache.Cache
	// factsTexts caches GateFacts' rebound statement text per shape.
	factsTexts sync.Map
	// facts is the gate's fact cache (store/factcache); nil when disabled.
	facts    *factcache.Cache
	txTopics txTopics
	// events is the group commit of webhook deliveries (eventbatch.go).
	events *eventBatcher
	// notify sends committed writes' wake-ups to the other replicas
	// (notifier.go); nil on SQLite.
	notify *notifier
}

// Options configure Open.
type Options struct {
	Clock  core.Clock   // default core.SystemClock
	Logger *slog.Logger // default slog.Default()
	// MaxOpenConns caps the PostgreSQL pool (default 20), not counting the
	// audit group commit's own connection and the inbox writers' two
	// (eventbatch.go). SQLite always uses
	// one connection: it has one writer anyway, and this avoids SQLITE_BUSY.
	MaxOpenConns int
	// FactsCacheTTL bounds how long the gate's fact cache keeps an entry
	// (default 30s; negative disables the cache). See store/factcache.
	FactsCacheTTL time.Duration
	// FactsCacheMaxChanges caps the changes the cache holds (default factcache.DefaultMaxChanges).
	FactsCacheMaxChanges int
}

// Open connects to the database named by url: "postgres://…" or
// "postgresql://…" (or a lib/pq key=value string) for PostgreSQL,
// "sqlite:PATH" for SQLite, "" for SQLite at DefaultSQLitePath. It checks
// the connection but does not migrate; call Migrate.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	if opts.Clock == nil {
		opts.Clock = core.SystemClock
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &DB{clock: opts.Clock, log: opts.Logger}
	d.facts = factcache.New(factSource{d}, opts.Clock, opts.FactsCacheTTL, opts.FactsCacheMaxChanges)
	switch {
	case url == "" || strings.HasPrefix(url, "sqlite:"):
		path, synchronous, err := SQLiteOptions(url)
		if err != nil {
			return nil, core.Invalid("database_url", "%v", err)
		}
		if path != ":memory:" {
			// Two processes opening a fresh file at once race to switch it
			// to WAL (SQLITE_BUSY, disk I/O errors): the first connection
			// is made under the file lock migrations take.
			unlock, err := lockSQLite(ctx, path)
			if err != nil {
				return nil, fmt.Errorf("open sqlite: %w", err)
			}
			defer unlock() // after the ping below
			if err := createPrivate(path, opts.Logger); err != nil {
				return nil, fmt.Errorf("open sqlite: %w", err)
			}
		}
		dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(" + synchronous + ")&_txlock=immediate"
		db, err := sqlx.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		db.SetMaxOpenConns(1)
		d.db, d.dialect, d.dsn, d.sqlitePath = db, SQLite, dsn, path
		// One process: every write ends in this process (txEnded), so the
		// fact cache is always coherent. On PostgreSQL it goes live with
		// the notification listener (Listen).
		d.facts.SetLive(true)
	case strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") || strings.Contains(url, "="):
		db, err := sqlx.Open("postgres", url)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		n := opts.MaxOpenConns
		if n <= 0 {
			n = 20
		}
		db.SetMaxOpenConns(n)
		db.SetMaxIdleConns(n)
		db.SetConnMaxIdleTime(5 * time.Minute)
		d.db, d.dialect, d.dsn = db, Postgres, url
	default:
		return nil, core.Invalid("database_url", "unsupported database URL: want postgres://…, postgresql://…, a key=value string or sqlite:PATH")
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.db.PingContext(pctx); err != nil {
		d.db.Close()
		return nil, fmt.Errorf("connect to %s database: %w", d.dialect, translate(err))
	}
	d.stmts = stmtcache.New(d.db)
	cfg := groupcommit.Config{DB: d.db, Now: d.clock.Now, Log: d.log, Translate: translate, TxEnded: d.txEnded, Prepared: d.stmts.InTx}
	if d.dialect == Postgres {
		cfg.URL = url
	}
	commits, err := groupcommit.New(cfg)
	if err != nil {
		d.db.Close()
		return nil, err
	}
	d.commits = commits
	if d.dialect == Postgres {
		if d.notify, err = newNotifier(url, d.log); err != nil {
			d.commits.Close()
			d.db.Close()
			return nil, err
		}
	}
	if d.events, err = newEventBatcher(d, url); err != nil {
		if d.notify != nil {
			d.notify.close()
		}
		d.commits.Close()
		d.db.Close()
		return nil, err
	}
	return d, nil
}

// Close stores the webhook deliveries and commits the audit appends
// already queued, sends the wake-ups
// still queued for other replicas, then closes the pool.
// Appends after Close fail with KindUnavailable.
func (d *DB) Close() error {
	d.events.close()
	d.commits.Close()
	if d.notify != nil {
		d.notify.close() // after the commits, which may announce topics
	}
	return d.db.Close()
}

// Dialect returns Postgres or SQLite.
func (d *DB) Dialect() string { return d.dialect }

// SQLX returns the underlying pool (for tests and tools).
func (d *DB) SQLX() *sqlx.DB { return d.db }

// Ping checks that the database answers.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", d.dialect, translate(err))
	}
	return nil
}

func (d *DB) provider() (*goose.Provider, error) {
	fsys, err := migrations.FS(d.dialect)
	if err != nil {
		return nil, fmt.Errorf("migrations for %s: %w", d.dialect, err)
	}
	var opts []goose.ProviderOption
	dialect := goose.DialectSQLite3
	if d.dialect == Postgres {
		dialect = goose.DialectPostgres
		// Two replicas starting at once: the second waits on a session
		// advisory lock instead of racing the first.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
		if err != nil {
			return nil, fmt.Errorf("migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, d.db.DB, fsys, opts...)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}

// Migrate applies every pending migration and returns how many it applied.
func (d *DB) Migrate(ctx context.Context) (int, error) {
	p, err := d.provider()
	if err != nil {
		return 0, err
	}
	unlock, err := d.lockMigrations(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	res, err := p.Up(ctx)
	if err != nil {
		return len(res), fmt.Errorf("migrate %s: %w", d.dialect, translate(err))
	}
	for _, r := range res {
		d.log.InfoContext(ctx, "migration applied", "dialect", d.dialect, "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	return len(res), nil
}

// MigrationsPending reports how many migrations are not applied yet (for
// readiness).
func (d *DB) MigrationsPending(ctx context.Context) (int, error) {
	p, err := d.provider()
	if err != nil {
		return 0, err
	}
	has, err := p.HasPending(ctx)
	if err != nil {
		return 0, fmt.Errorf("migration status: %w", translate(err))
	}
	if !has {
		return 0, nil
	}
	st, err := p.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("migration status: %w", translate(err))
	}
	n := 0
	for _, s := range st {
		if s.State == goose.StatePending {
			n++
		}
	}
	return n, nil
}

// translate turns a driver error into a core error by SQLSTATE or SQLite
// result code. The original error stays in the chain for the log.
func translate(err error) error {
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
	var pe *pq.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return core.Wrap(core.KindConflict, err, "already exists")
		case "23503", "23502", "23514", "22P02", "22001", // FK, not null, check, bad text repr, too long
			"22021", "22P05": // NUL or invalid UTF-8 in text, \u0000 in jsonb
			return core.Wrap(core.KindInvalid, err, "rejected by the database")
		case "40001", "40P01": // serialization failure, deadlock
			return core.Wrap(core.KindUnavailable, err, "database conflict, retry")
		}
		switch {
		case strings.HasPrefix(string(pe.Code), "08") || strings.HasPrefix(string(pe.Code), "57P"):
			return core.StoreDown(err, "database unavailable")
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
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return core.Wrap(core.KindConflict, err, "already exists")
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
