// Package sqldbtest gives the store's tests their databases: a fresh one
// per test, of each dialect (a clone of testpg's migrated template on
// PostgreSQL, a new file on SQLite), so every repository's contract is
// tested against both implementations.
package sqldbtest

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// UnreachableDSN is a PostgreSQL DSN that refuses connections at once.
const UnreachableDSN = "host=127.0.0.1 port=1 sslmode=disable connect_timeout=1"

// Start is the time a test's Clock starts at.
var Start = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// Clock is a settable clock.
type Clock struct{ T time.Time }

// Now returns c.T.
func (c *Clock) Now() time.Time { return c.T }

// DiscardLog is a logger that writes nothing.
func DiscardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// URL returns a fresh database of the dialect: on PostgreSQL already
// migrated (Migrate finds nothing to do), on SQLite a new file.
func URL(t testing.TB, dialect string) string {
	t.Helper()
	if dialect == sqldb.Postgres {
		return testpg.NewMigratedDatabase(t)
	}
	return "sqlite:" + filepath.Join(t.TempDir(), "tollgate.db")
}

// Open opens and migrates a fresh database of the dialect, closed when t
// ends.
func Open(t testing.TB, dialect string, clock core.Clock) *sqldb.DB {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, URL(t, dialect), sqldb.Options{Clock: clock, Logger: DiscardLog()})
	if err != nil {
		t.Fatalf("open %s: %v", dialect, err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatalf("migrate %s: %v", dialect, err)
	}
	return db
}

// ForEachDialect runs fn in a parallel subtest per dialect.
func ForEachDialect(t *testing.T, fn func(t *testing.T, dialect string)) {
	for _, dialect := range []string{sqldb.Postgres, sqldb.SQLite} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			fn(t, dialect)
		})
	}
}

// ForEach runs fn in a parallel subtest per dialect, on a fresh migrated
// database whose clock starts at Start.
func ForEach(t *testing.T, fn func(t *testing.T, db *sqldb.DB, clock *Clock)) {
	ForEachDialect(t, func(t *testing.T, dialect string) {
		clock := &Clock{T: Start}
		fn(t, Open(t, dialect, clock), clock)
	})
}
