package sqldb

import (
	"database/sql"
	"fmt"
	"testing"

	"github.com/jmoiron/sqlx"
)

// TestQRebindsAndBoundsItsCache: Q gives PostgreSQL's $n placeholders
// (the same text from the cache as the first time), SQLite's ? untouched,
// and caches at most maxRebound texts.
func TestQRebindsAndBoundsItsCache(t *testing.T) {
	pg := &DB{db: sqlx.NewDb(&sql.DB{}, "postgres"), dialect: Postgres}
	lite := &DB{db: sqlx.NewDb(&sql.DB{}, "sqlite"), dialect: SQLite}
	for range 2 {
		if got, want := pg.Q("SELECT a FROM t WHERE b = ? AND c = ?"), "SELECT a FROM t WHERE b = $1 AND c = $2"; got != want {
			t.Fatalf("postgres Q = %q, want %q", got, want)
		}
		if got, want := lite.Q("SELECT a FROM t WHERE b = ?"), "SELECT a FROM t WHERE b = ?"; got != want {
			t.Fatalf("sqlite Q = %q, want %q", got, want)
		}
	}
	for i := range 2 * maxRebound {
		q := fmt.Sprintf("SELECT %d WHERE x = ?", i)
		if got, want := pg.Q(q), fmt.Sprintf("SELECT %d WHERE x = $1", i); got != want {
			t.Fatalf("Q = %q, want %q", got, want)
		}
	}
	if n := pg.reboundSize.Load(); n != maxRebound {
		t.Fatalf("cached %d texts, want the bound %d", n, maxRebound)
	}
}
