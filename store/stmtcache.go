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
// Never call stmt inside a transaction of the same DB: on SQLite the
// transaction holds the only connection.
type stmtCache struct {
	mu sync.Mutex
	m  map[string]*sqlx.Stmt
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
