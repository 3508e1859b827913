// Package store implements core's storage interfaces on PostgreSQL (the
// production store, through lib/pq) and on an embedded SQLite file (the
// pure-Go modernc.org/sqlite driver, so tollgate runs on a bare machine).
//
// A DB is one database (store/sqldb: the pool and its dialect,
// transactions, the audit chain's group commit, driver errors made core
// errors) and the repositories built on it, whose methods are the DB's:
// webhook deliveries (store/inbox), the audit chain (store/audit), tokens
// and UI sessions (store/auth), the connectors' records (store/itsm),
// holds, evidence, proposals, policy and mappings (store/governance), and
// changes and incidents (store/records). This package keeps what joins
// them: the gate's facts and their cache (store/factcache), gate
// decisions, releases and deployments, the reconciliation, and the
// wake-ups of committed writes (store/notify).
package store

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/audit"
	"github.com/tollgate-dev/tollgate/store/auth"
	"github.com/tollgate-dev/tollgate/store/envhistory"
	"github.com/tollgate-dev/tollgate/store/factcache"
	"github.com/tollgate-dev/tollgate/store/governance"
	"github.com/tollgate-dev/tollgate/store/inbox"
	"github.com/tollgate-dev/tollgate/store/itsm"
	"github.com/tollgate-dev/tollgate/store/notify"
	"github.com/tollgate-dev/tollgate/store/records"
	"github.com/tollgate-dev/tollgate/store/relmetrics"
	"github.com/tollgate-dev/tollgate/store/reviews"
	"github.com/tollgate-dev/tollgate/store/sqldb"
	"github.com/tollgate-dev/tollgate/store/unjudged"
	"github.com/tollgate-dev/tollgate/store/verdicts"
)

// Dialects.
const (
	Postgres = sqldb.Postgres
	SQLite   = sqldb.SQLite
)

// DefaultSQLitePath is where the embedded store lives when no database URL
// is configured.
const DefaultSQLitePath = sqldb.DefaultSQLitePath

// DB is a tollgate store on one database.
type DB struct {
	// The repositories, whose methods are the store's.
	*inbox.Inbox
	*audit.Trail
	*auth.Tokens
	*auth.Sessions
	*itsm.ITSM
	*itsm.PendingGates
	*governance.Holds
	*governance.Evidence
	*governance.Proposals
	*governance.Policies
	*governance.Mappings
	*records.Changes
	*records.Incidents
	*verdicts.Store
	*relmetrics.Reads
	*unjudged.Counts
	*reviews.Reviews
	*envhistory.Names

	// base is the database the repositories share (store/sqldb); db and
	// dialect are its pool and dialect, which this package's queries use.
	base     *sqldb.DB
	db       *sqlx.DB
	dialect  string
	hub      notify.Hub // in-process fan-out of fact-change notifications
	inboxHub notify.Hub // in-process fan-out of inbox wake-ups (wakeInbox)
	// factsTexts caches GateFacts' rebound statement text per shape.
	factsTexts sync.Map
	// facts is the gate's fact cache (store/factcache); nil when disabled.
	facts *factcache.Cache
	// notify sends committed writes' wake-ups to the other replicas
	// (store/notify); nil on SQLite.
	notify *notify.Notifier
	// leaseGuard, when set, keeps AcquireLease from taking or renewing
	// leases while it answers an error (GuardLeases).
	leaseGuard func() error
}

// Options configure Open.
type Options struct {
	Clock  core.Clock   // default core.SystemClock
	Logger *slog.Logger // default slog.Default()
	// MaxOpenConns caps the PostgreSQL pool (default 20), not counting the
	// audit group commit's own connection and the inbox writers' two
	// (store/inbox). SQLite always uses
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
	d := &DB{}
	d.facts = factcache.New(factSource{d}, opts.Clock, opts.FactsCacheTTL, opts.FactsCacheMaxChanges)
	base, err := sqldb.Open(ctx, url, sqldb.Options{Clock: opts.Clock, Logger: opts.Logger, MaxOpenConns: opts.MaxOpenConns, TxEnded: d.txEnded, TxBegun: d.txBegun})
	if err != nil {
		return nil, err
	}
	d.base, d.db, d.dialect = base, base.SQLX(), base.Dialect()
	d.Trail = audit.New(base)
	d.Tokens, d.Sessions = auth.NewTokens(base), auth.NewSessions(base)
	d.ITSM, d.PendingGates = itsm.New(base), itsm.NewPendingGates(base)
	d.Holds, d.Evidence = governance.NewHolds(base, d.facts), governance.NewEvidence(base)
	d.Changes, d.Incidents = records.NewChanges(base), records.NewIncidents(base)
	d.Store, d.Reads, d.Counts = verdicts.New(base), relmetrics.New(base), unjudged.New(base)
	d.Reviews, d.Names = reviews.New(base), envhistory.New(base)
	d.Proposals, d.Policies, d.Mappings = governance.NewProposals(base), governance.NewPolicies(base), governance.NewMappings(base)
	if d.dialect == SQLite {
		// One process: every write ends in this process (txEnded), so the
		// fact cache is always coherent. On PostgreSQL it goes live with
		// the notification listener (Listen).
		d.facts.SetLive(true)
	} else if d.notify, err = notify.NewNotifier(url, base.Log()); err != nil {
		base.Close()
		return nil, err
	}
	if d.Inbox, err = inbox.New(base, d.wakeInbox); err != nil {
		if d.notify != nil {
			d.notify.Close()
		}
		base.Close()
		return nil, err
	}
	return d, nil
}

// Close stores the webhook deliveries and commits the audit appends
// already queued and closes the pool, then sends the wake-ups still queued
// for other replicas. Appends after Close fail with KindUnavailable.
func (d *DB) Close() error {
	d.Inbox.Close()
	err := d.base.Close()
	if d.notify != nil {
		d.notify.Close() // after the commits, which may announce topics
	}
	return err
}

// Dialect returns Postgres or SQLite.
func (d *DB) Dialect() string { return d.dialect }

// SQLX returns the underlying pool (for tests and tools).
func (d *DB) SQLX() *sqlx.DB { return d.db }

// Ping checks that the database answers.
func (d *DB) Ping(ctx context.Context) error { return d.base.Ping(ctx) }

// Migrate applies every pending migration and returns how many it applied.
func (d *DB) Migrate(ctx context.Context) (int, error) { return d.base.Migrate(ctx) }

// ClockSkew is how far the database server's clock is from this
// process's (ok false on SQLite).
func (d *DB) ClockSkew(ctx context.Context) (time.Duration, bool, error) {
	return d.base.ClockSkew(ctx)
}

// Schema is the database's migration state as this build sees it.
type Schema = sqldb.Schema

// ErrSchemaTooNew: a newer tollgate migrated the schema past what this
// build can run against (Schema.Err, Migrate).
var ErrSchemaTooNew = sqldb.ErrSchemaTooNew

// Schema reads the database's migration state (for readiness, the
// doctor and the replica's own check that its schema is one it can run
// against).
func (d *DB) Schema(ctx context.Context) (Schema, error) { return d.base.Schema(ctx) }
