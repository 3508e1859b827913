package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/groupcommit"
)

// Tx runs fn in a transaction, committing when fn returns nil. Driver
// errors come back translated. Under Together's context fn runs in
// Together's transaction instead, which commits or rolls back as a whole.
func (b *DB) Tx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	if t, ok := ctx.Value(togetherKey{}).(together); ok && t.db == b {
		return Translate(fn(t.tx))
	}
	tx, err := b.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", Translate(err))
	}
	committed := false
	defer func() { b.ended(tx, committed) }()
	if err := b.replayable(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return Translate(err)
	}
	committed = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", Translate(err))
	}
	return nil
}

// replayable lets tx commit without waiting for its WAL flush when ctx is
// under core.WithReplayableWrites (PostgreSQL; SQLite has one writer and
// one setting for the file). The commit stays atomic, and WAL order keeps
// what depends on it behind it: a durable commit of any session that saw
// these writes flushes them too.
func (b *DB) replayable(ctx context.Context, tx *sqlx.Tx) error {
	if b.dialect != Postgres || !core.ReplayableWrites(ctx) {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
		return fmt.Errorf("begin: %w", Translate(err))
	}
	return nil
}

// Together runs fn with a context under which every Tx of b is one
// transaction, committed when fn returns nil and rolled back, with all of
// fn's writes, when it returns an error: many small writes share one
// commit. A write that fails aborts them all (PostgreSQL refuses any
// statement after a failed one), so fn returns the first error and the
// caller redoes the writes one transaction each. Writes outside Tx (the
// audit chain's group commit, statements on the pool) are not part of it,
// except those that ask for TogetherTx. A Together under another joins it.
func (b *DB) Together(ctx context.Context, fn func(ctx context.Context) error) error {
	return b.Tx(ctx, func(tx *sqlx.Tx) error {
		return fn(context.WithValue(ctx, togetherKey{}, together{db: b, tx: tx}))
	})
}

// TogetherTx returns the transaction of the Together ctx is under, or nil:
// a write made on the pool or a prepared statement of its own goes through
// it, so that it commits with the rest.
func (b *DB) TogetherTx(ctx context.Context) *sqlx.Tx {
	if t, ok := ctx.Value(togetherKey{}).(together); ok && t.db == b {
		return t.tx
	}
	return nil
}

type togetherKey struct{}

type together struct {
	db *DB
	tx *sqlx.Tx
}

// ExecTx runs a hot statement of a transaction prepared (once per
// connection, stmtcache), or, until it is prepared, as text. query is
// already rebound (Q).
func (b *DB) ExecTx(ctx context.Context, tx *sqlx.Tx, query string, args ...any) (sql.Result, error) {
	if st := b.stmts.InTx(ctx, tx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// QueryRowTx is ExecTx for a statement returning one row.
func (b *DB) QueryRowTx(ctx context.Context, tx *sqlx.Tx, query string, args ...any) *sqlx.Row {
	if st := b.stmts.InTx(ctx, tx, query); st != nil {
		return st.QueryRowxContext(ctx, args...)
	}
	return tx.QueryRowxContext(ctx, query, args...)
}

// AppendWith commits entries to the audit chain together with the writes
// fn makes, in one transaction of the group commit: the record and its
// audit rows are durable together or not at all. fn may be nil; see
// groupcommit.Request.Write for what it may do.
func (b *DB) AppendWith(ctx context.Context, entries []core.AuditEntry, fn func(ctx context.Context, tx *sqlx.Tx) error) error {
	return b.commits.Submit(ctx, groupcommit.Request{Entries: entries, Write: fn})
}

// NotifyTx announces that tx changes the facts named by topic (e.g.
// "change:CHG0000024"): at once to Options.TxBegun (the fact cache stops
// answering for the topic from memory), and when tx ends, the
// topics it announced go to Options.TxEnded (the store drops them from
// its fact cache and, once committed, wakes their subscribers on every
// replica).
func (b *DB) NotifyTx(tx *sqlx.Tx, topic string) {
	b.topics.add(tx, topic)
	if b.txBegun != nil {
		b.txBegun(topic)
	}
}

// ended hands what tx announced to Options.TxEnded, whether it committed
// or not (dropping too much from a cache only costs a read).
func (b *DB) ended(tx *sqlx.Tx, committed bool) {
	topics := b.topics.take(tx)
	if b.txEnded != nil {
		b.txEnded(topics, committed)
	}
}

// txTopics remembers the topics a transaction announced (NotifyTx), so
// the fact cache can drop them, and SQLite's subscribers be woken, when the
// transaction ends in this process (read-your-writes, without waiting for
// the NOTIFY to come back).
type txTopics struct {
	mu sync.Mutex
	m  map[*sqlx.Tx][]string
}

func (t *txTopics) add(tx *sqlx.Tx, topic string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[*sqlx.Tx][]string{}
	}
	t.m[tx] = append(t.m[tx], topic)
}

func (t *txTopics) take(tx *sqlx.Tx) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	topics := t.m[tx]
	delete(t.m, tx)
	return topics
}
