// Package sqldb is the store's shared base: one database, PostgreSQL
// (through lib/pq) or an embedded SQLite file (the pure-Go
// modernc.org/sqlite driver), opened and migrated; queries rebound for its
// dialect and hot statements prepared; transactions; the audit chain's
// group commit that audited writes go through; and driver errors turned
// into core errors by SQLSTATE / SQLite result code, never by message
// text. The store's repositories (store/inbox, store/audit, …) are built
// on a *DB, so they share one pool, one clock and one chain.
package sqldb

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/groupcommit"
	"github.com/tollgate-dev/tollgate/store/pgconn"
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

// DB is one database with what every repository on it shares.
type DB struct {
	db      *sqlx.DB
	dialect string
	dsn     string
	// sqlitePath is the SQLite database file ("" on PostgreSQL).
	sqlitePath string
	clock      core.Clock
	log        *slog.Logger
	stmts      *stmtcache.Cache
	// commits is the audit chain's group commit (store/groupcommit).
	commits *groupcommit.Committer
	topics  txTopics
	txEnded func(topics []string, committed bool)
	txBegun func(topic string)
	// rebound caches Q's PostgreSQL texts by query (at most maxRebound):
	// the hot paths' queries are constants, rebound on every call
	// otherwise.
	rebound     sync.Map
	reboundSize atomic.Int32
}

// maxRebound bounds DB.rebound, so queries built at run time (IN lists of
// every length) cannot grow it without end.
const maxRebound = 1024

// Options configure Open.
type Options struct {
	Clock  core.Clock   // default core.SystemClock
	Logger *slog.Logger // default slog.Default()
	// MaxOpenConns caps the PostgreSQL pool (default 20), not counting the
	// audit group commit's own connection. SQLite always uses one
	// connection: it has one writer anyway, and this avoids SQLITE_BUSY.
	MaxOpenConns int
	// TxEnded, when set, is told of every transaction's end (Tx's, and the
	// group commit's interactive groups'): the topics it announced
	// (NotifyTx), and whether a commit was attempted (its outcome may be
	// unknown). The store drops those topics from its fact cache and wakes
	// their subscribers there.
	TxEnded func(topics []string, committed bool)
	// TxBegun, when set, is told of each topic a transaction announces
	// (NotifyTx) as it does, before the commit; TxEnded follows with it.
	TxBegun func(topic string)
}

// Open connects to the database named by url: "postgres://…" or
// "postgresql://…" (or a lib/pq key=value string) for PostgreSQL,
// "sqlite:PATH" for SQLite, "" for SQLite at DefaultSQLitePath, and starts
// the audit chain's group commit. It checks the connection but does not
// migrate; call Migrate.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	if opts.Clock == nil {
		opts.Clock = core.SystemClock
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := &DB{clock: opts.Clock, log: opts.Logger, txEnded: opts.TxEnded, txBegun: opts.TxBegun}
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
		b.db, b.dialect, b.dsn, b.sqlitePath = db, SQLite, dsn, path
	case strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") || strings.Contains(url, "="):
		cfg, err := pgconn.Config(url, "")
		if err != nil {
			return nil, core.Invalid("database_url", "%v", err)
		}
		pool, err := pgconn.Open(cfg)
		if err != nil {
			return nil, err
		}
		db := sqlx.NewDb(pool, "postgres")
		n := opts.MaxOpenConns
		if n <= 0 {
			n = 20
		}
		db.SetMaxOpenConns(n)
		db.SetMaxIdleConns(n)
		db.SetConnMaxIdleTime(5 * time.Minute)
		b.db, b.dialect, b.dsn = db, Postgres, url
	default:
		return nil, core.Invalid("database_url", "unsupported database URL: want postgres://…, postgresql://…, a key=value string or sqlite:PATH")
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.db.PingContext(pctx); err != nil {
		b.db.Close()
		return nil, fmt.Errorf("connect to %s database: %w", b.dialect, Translate(err))
	}
	b.stmts = stmtcache.New(b.db)
	cfg := groupcommit.Config{DB: b.db, Now: b.clock.Now, Log: b.log, Translate: Translate, TxEnded: b.ended, Prepared: b.stmts.InTx}
	if b.dialect == Postgres {
		cfg.URL = url
	}
	commits, err := groupcommit.New(cfg)
	if err != nil {
		b.db.Close()
		return nil, err
	}
	b.commits = commits
	return b, nil
}

// Close commits the audit appends already queued, then closes the pool.
// Appends after Close fail with KindUnavailable.
func (b *DB) Close() error {
	b.commits.Close()
	return b.db.Close()
}

// SQLX returns the pool.
func (b *DB) SQLX() *sqlx.DB { return b.db }

// Dialect returns Postgres or SQLite.
func (b *DB) Dialect() string { return b.dialect }

// DSN returns the URL the database was opened with (PostgreSQL) or the
// SQLite driver's data source name.
func (b *DB) DSN() string { return b.dsn }

// Log returns the store's logger.
func (b *DB) Log() *slog.Logger { return b.log }

// Stmts returns the pool's prepared statements (store/stmtcache).
func (b *DB) Stmts() *stmtcache.Cache { return b.stmts }

// Commits returns the audit chain's group commit.
func (b *DB) Commits() *groupcommit.Committer { return b.commits }

// Now returns the store clock's time in UTC, truncated to microseconds
// (what both databases keep), so values read back compare equal.
func (b *DB) Now() time.Time { return TS(b.clock.Now()) }

// Q rebinds a query written with ? placeholders for the dialect.
func (b *DB) Q(query string) string {
	if b.dialect != Postgres {
		return b.db.Rebind(query) // SQLite's ? stay as they are: nothing to cache
	}
	if q, ok := b.rebound.Load(query); ok {
		return q.(string)
	}
	q := b.db.Rebind(query)
	if b.reboundSize.Load() < maxRebound {
		if _, loaded := b.rebound.LoadOrStore(query, q); !loaded {
			b.reboundSize.Add(1)
		}
	}
	return q
}

// Ping checks that the database answers.
func (b *DB) Ping(ctx context.Context) error {
	if err := b.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", b.dialect, Translate(err))
	}
	return nil
}

// ClockSkew measures how far the database server's clock is from this
// process's (the store's clock, the one the gate judges by): the server's
// clock less the local time halfway through the round trip. ok is false on SQLite, whose clock is this host's.
// Replicas judge change windows and freezes by their own clocks; one far
// from the others' (and the database's) judges them differently.
func (b *DB) ClockSkew(ctx context.Context) (skew time.Duration, ok bool, err error) {
	if b.dialect != Postgres {
		return 0, false, nil
	}
	var server time.Time
	start := b.clock.Now()
	if err := b.db.QueryRowContext(ctx, `SELECT clock_timestamp()`).Scan(&server); err != nil {
		return 0, false, fmt.Errorf("read the database's clock: %w", Translate(err))
	}
	end := b.clock.Now()
	mid := start.Add(end.Sub(start) / 2)
	return server.Sub(mid), true, nil
}
