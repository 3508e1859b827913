package store

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/migrations"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

// testClock is a settable clock for store tests.
type testClock struct{ t time.Time }

func (c *testClock) Now() time.Time { return c.t }

// newTestDB opens and migrates a fresh store of the given dialect. A
// PostgreSQL store is a clone of testpg's migrated template, so its
// Migrate must find nothing to do.
func newTestDB(t testing.TB, dialect string, clock core.Clock) *DB {
	t.Helper()
	db := openTestDB(t, sqldbtest.URL(t, dialect), clock)
	n, err := db.Migrate(context.Background())
	if err != nil {
		t.Fatalf("migrate %s: %v", dialect, err)
	}
	if dialect == Postgres && n != 0 {
		t.Fatalf("the migrated template database lacked %d migrations: testpg migrates differently from the store", n)
	}
	return db
}

// openTestDB opens the store at url (closed when t ends), without migrating.
func openTestDB(t testing.TB, url string, clock core.Clock) *DB {
	t.Helper()
	db, err := Open(context.Background(), url, Options{Clock: clock, Logger: quietLog()})
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func quietLog() *slog.Logger { return sqldbtest.DiscardLog() }

// forEachStore runs the contract test fn against PostgreSQL and SQLite:
// one store contract, two implementations.
func forEachStore(t *testing.T, fn func(t *testing.T, db *DB, clock *testClock)) {
	sqldbtest.ForEachDialect(t, func(t *testing.T, dialect string) {
		clock := &testClock{t: sqldbtest.Start}
		fn(t, newTestDB(t, dialect, clock), clock)
	})
}

func TestMigrateTwiceIsNoop(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		n, err := db.Migrate(ctx)
		if err != nil || n != 0 {
			t.Fatalf("second migrate: applied %d, err %v", n, err)
		}
		st, err := db.Schema(ctx)
		if err != nil || st.Pending != 0 {
			t.Fatalf("pending %d, err %v", st.Pending, err)
		}
	})
}

// TestSchemaFloor: a schema a newer build migrated with additive
// migrations only is run against; one whose floor is above what this build
// knows is refused — by Migrate, which leaves it as it is, and by Err,
// which readiness and the replica's own check read — and a build never
// lowers the floor.
func TestSchemaFloor(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		floor, err := migrations.OldestReader()
		if err != nil {
			t.Fatal(err)
		}
		st, err := db.Schema(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending != 0 || st.Applied != st.Known || st.Floor != floor || st.Ahead() || st.Err() != nil {
			t.Fatalf("migrated: %+v (ahead %v, err %v), want floor %d and nothing pending", st, st.Ahead(), st.Err(), floor)
		}
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := db.SQLX().ExecContext(ctx, db.SQLX().Rebind(q), args...); err != nil {
				t.Fatal(err)
			}
		}
		// A newer build's additive migration: this one still runs.
		exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, ?)`, st.Known+1, true)
		if st, err = db.Schema(ctx); err != nil || !st.Ahead() || st.Err() != nil || st.Pending != 0 {
			t.Fatalf("an additive migration ahead: %+v (ahead %v, err %v / %v)", st, st.Ahead(), st.Err(), err)
		}
		if n, err := db.Migrate(ctx); n != 0 || err != nil {
			t.Fatalf("migrate against a schema ahead: applied %d, err %v", n, err)
		}
		// One this build cannot run against.
		exec(`UPDATE schema_floor SET oldest_reader = ?`, st.Known+1)
		st, err = db.Schema(ctx)
		if err != nil || !errors.Is(st.Err(), ErrSchemaTooNew) || core.KindOf(st.Err()) != core.KindUnavailable {
			t.Fatalf("a floor above this build: %+v, err %v / %v", st, st.Err(), err)
		}
		if !strings.Contains(st.Err().Error(), "upgrade it") {
			t.Errorf("the refusal says not what to do: %v", st.Err())
		}
		if _, err := db.Migrate(ctx); !errors.Is(err, ErrSchemaTooNew) {
			t.Fatalf("migrate against a floor above this build: %v", err)
		}
		if st, _ := db.Schema(ctx); st.Floor != st.Known+1 {
			t.Fatalf("the floor was lowered to %d", st.Floor)
		}
	})
}

// TestConcurrentMigrateOnPostgres: replicas starting at once migrate one
// database without racing (goose's session advisory lock).
func TestConcurrentMigrateOnPostgres(t *testing.T) {
	url := testpg.NewDatabase(t)
	ctx := context.Background()
	const replicas = 4
	errs := make(chan error, replicas)
	applied := make(chan int, replicas)
	for i := 0; i < replicas; i++ {
		go func() {
			db, err := Open(ctx, url, Options{Logger: quietLog()})
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			n, err := db.Migrate(ctx)
			applied <- n
			errs <- err
		}()
	}
	total := 0
	for i := 0; i < replicas; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	close(applied)
	for n := range applied {
		total += n
	}
	db := openTestDB(t, url, nil)
	st, err := db.Schema(ctx)
	if err != nil || st.Pending != 0 {
		t.Fatalf("pending %d, err %v", st.Pending, err)
	}
	files, _ := migrationCount(Postgres)
	if total != files {
		t.Fatalf("replicas applied %d migrations in all, want each of the %d exactly once", total, files)
	}
}

func migrationCount(dialect string) (int, error) {
	fsys, err := migrations.FS(dialect)
	if err != nil {
		return 0, err
	}
	names, err := fs.Glob(fsys, "*.sql")
	return len(names), err
}
