package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// This package's files call the shared base's helpers (store/sqldb) by
// their short names.

func (d *DB) q(query string) string { return d.base.Q(query) }

func (d *DB) tx(ctx context.Context, fn func(tx *sqlx.Tx) error) error { return d.base.Tx(ctx, fn) }

func (d *DB) now() time.Time { return d.base.Now() }

// Together runs fn with a context under which the store's transactions
// are one (sqldb.DB.Together): the normalizer stores a batch's records
// with one commit.
func (d *DB) Together(ctx context.Context, fn func(ctx context.Context) error) error {
	return d.base.Together(ctx, fn)
}

// SharesCommits reports whether Together is worth its lock time: on
// PostgreSQL it saves a commit (and its WAL flush) per write; SQLite's
// one connection serves every request, so a transaction held across many
// writes would hold up the webhooks and gate checks behind it.
func (d *DB) SharesCommits() bool { return d.base.Dialect() == sqldb.Postgres }

func (d *DB) notifyTx(tx *sqlx.Tx, topic string) { d.base.NotifyTx(tx, topic) }

func (d *DB) appendWith(ctx context.Context, entries []core.AuditEntry, fn func(ctx context.Context, tx *sqlx.Tx) error) error {
	return d.base.AppendWith(ctx, entries, fn)
}

func translate(err error) error            { return sqldb.Translate(err) }
func newID() string                        { return sqldb.NewID() }
func ts(t time.Time) time.Time             { return sqldb.TS(t) }
func tsp(t *time.Time) *time.Time          { return sqldb.TSP(t) }
func nullTime(t *time.Time) sql.NullTime   { return sqldb.NullTime(t) }
func timePtr(n sql.NullTime) *time.Time    { return sqldb.TimePtr(n) }
func mustJSON(v any) string                { return sqldb.MustJSON(v) }
func mustJSONBytes(v any) []byte           { return sqldb.MustJSONBytes(v) }
func decodeDoc(b []byte, v any) error      { return sqldb.DecodeDoc(b, v) }
func strList(v []string) string            { return sqldb.StrList(v) }
func parseList(s string) ([]string, error) { return sqldb.ParseList(s) }

// txBegun tells the fact cache a transaction writes topic: until the
// transaction ends (txEnded), the cache reads it from the database, so a
// check that follows the commit never gets the cache's older answer.
func (d *DB) txBegun(topic string) { d.facts.Begin(topic) }

// txEnded drops from the cache what a transaction announced, whether it
// committed or not (dropping too much only costs a read), then, if a
// commit was attempted (its outcome may be unknown: a spurious wake-up
// costs a re-check, a lost one a waiter), wakes the subscribers
// (announceEnded).
func (d *DB) txEnded(topics []string, committed bool) {
	for _, topic := range topics {
		d.facts.End(topic)
	}
	if committed {
		d.announceEnded(topics)
	}
}
