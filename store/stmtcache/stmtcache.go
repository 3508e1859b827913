// Package stmtcache keeps one prepared statement per query text for a
// store's hot paths (gate facts, release upsert, the group commit's
// inserts), so PostgreSQL parses and plans them once per connection
// instead of on every call. The texts come from code, so a cache is
// bounded by the number of query shapes.
package stmtcache

import (
	"context"
	"sync"

	"github.com/jmoiron/sqlx"
)

// Cache holds the prepared statements of one pool. Never call Get inside
// a transaction of the same pool (on SQLite the transaction holds the only
// connection; on PostgreSQL preparing takes a second one): inside a
// transaction use InTx.
type Cache struct {
	db        *sqlx.DB
	mu        sync.Mutex
	m         map[string]*sqlx.Stmt
	preparing map[string]bool // texts being prepared in the background
}

// New returns an empty cache on db.
func New(db *sqlx.DB) *Cache {
	return &Cache{db: db, m: map[string]*sqlx.Stmt{}, preparing: map[string]bool{}}
}

// InTx returns the prepared statement for query bound to tx when it is
// prepared already; otherwise it starts preparing it in the background and
// returns nil (the caller executes the text unprepared this once).
// Preparing needs a pool connection of its own: a transaction waiting for
// one while holding the audit chain lock could wait forever when every
// other connection waits for that lock.
func (c *Cache) InTx(ctx context.Context, tx *sqlx.Tx, query string) *sqlx.Stmt {
	c.mu.Lock()
	s := c.m[query]
	if s == nil && !c.preparing[query] {
		c.preparing[query] = true
		go func() {
			_, _ = c.Get(context.Background(), query)
			c.mu.Lock()
			delete(c.preparing, query)
			c.mu.Unlock()
		}()
	}
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	return tx.StmtxContext(ctx, s)
}

// Get returns the prepared statement for query, preparing it once.
func (c *Cache) Get(ctx context.Context, query string) (*sqlx.Stmt, error) {
	c.mu.Lock()
	s := c.m[query]
	c.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err := c.db.PreparexContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[query]; old != nil {
		s.Close()
		return old, nil
	}
	c.m[query] = s
	return s, nil
}
