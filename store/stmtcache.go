package store

import (
	"context"
	"sync"

	"github.com/jmoiron/sqlx"
)

// stmtCache keeps one prepared statement per query text for the hot paths
// (gate facts, release upsert, decision insert), so PostgreSQL parses and
// plans them once per connection instead of on every call. The texts come
// from code, so the cache is bounded by the number of query shapes.
// Never call stmt inside a transaction of the same DB (on SQLite the
// transaction holds the only connection; on PostgreSQL preparing takes a
// second one): inside a transaction use stmtInTx.
type stmtCache struct {
	mu        sync.Mutex
	m         map[string]*sqlx.Stmt
	preparing map[string]bool // texts being prepared in the background
}

// stmtInTx returns the prepared statement for query bound to tx when it is
// prepared already; otherwise it starts preparing it in the background and
// returns nil (the caller executes the text unprepared this once).
// Preparing needs a pool connection of its own: a transaction waiting for
// one while holding the audit chain lock could wait forever when every
// other connection waits for that lock.
func (d *DB) stmtInTx(ctx context.Context, tx *sqlx.Tx, query string) *sqlx.Stmt {
	d.stmts.mu.Lock()
	s := d.stmts.m[query]
	if s == nil && !d.stmts.preparing[query] {
		if d.stmts.preparing == nil {
			d.stmts.preparing = map[string]bool{}
		}
		d.stmts.preparing[query] = true
		go func() {
			_, _ = d.stmt(context.Background(), query)
			d.stmts.mu.Lock()
			delete(d.stmts.preparing, query)
			d.stmts.mu.Unlock()
		}()
	}
	d.stmts.mu.Unlock()
	if s == nil {
		return nil
	}
	return tx.StmtxContext(ctx, s)
}

// stmt returns the cached prepared statement for query, preparing it once.
func (d *DB) stmt(ctx context.Context, query string) (*sqlx.Stmt, error) {
	d.stmts.mu.Lock()
	s := d.stmts.m[query]
	d.stmts.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err := d.db.PreparexContext(ctx, query)
	if err != nil {
		return nil, err
	}
	d.stmts.mu.Lock()
	defer d.stmts.mu.Unlock()
	if old := d.stmts.m[query]; old != nil {
		s.Close()
		return old, nil
	}
	if d.stmts.m == nil {
		d.stmts.m = map[string]*sqlx.Stmt{}
	}
	d.stmts.m[query] = s
	return s, nil
}
