package inbox

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/store/notify"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Dialects, as the tests name them.
const (
	Postgres = sqldb.Postgres
	SQLite   = sqldb.SQLite
)

// testClock is a settable clock.
type testClock struct{ t time.Time }

func (c *testClock) Now() time.Time { return c.t }

// testDB is an inbox on a fresh migrated database, with the wake-ups it
// sends.
type testDB struct {
	*Inbox
	inbox notify.Hub
}

func (db *testDB) Dialect() string   { return db.base.Dialect() }
func (db *testDB) SQLX() *sqlx.DB    { return db.db }
func (db *testDB) q(s string) string { return db.base.Q(s) }

// newTestDB opens an inbox on a fresh migrated database of the dialect
// (a clone of testpg's template on PostgreSQL), closed when t ends.
func newTestDB(t testing.TB, dialect string, clock core.Clock) *testDB {
	t.Helper()
	url := "sqlite:" + filepath.Join(t.TempDir(), "tollgate.db")
	if dialect == Postgres {
		url = testpg.NewMigratedDatabase(t)
	}
	ctx := context.Background()
	base, err := sqldb.Open(ctx, url, sqldb.Options{Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("open %s: %v", dialect, err)
	}
	if _, err := base.Migrate(ctx); err != nil {
		t.Fatalf("migrate %s: %v", dialect, err)
	}
	db := &testDB{}
	if db.Inbox, err = New(base, db.inbox.Broadcast); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		base.Close()
	})
	return db
}

// forEachStore runs fn against PostgreSQL and SQLite.
func forEachStore(t *testing.T, fn func(t *testing.T, db *testDB, clock *testClock)) {
	for _, dialect := range []string{Postgres, SQLite} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			clock := &testClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
			fn(t, newTestDB(t, dialect, clock), clock)
		})
	}
}

func newEvent(connector, key string, at time.Time) core.Event {
	return core.Event{Connector: connector, Type: "push", DedupeKey: key, Headers: map[string]string{"X-Delivery": key},
		Body: json.RawMessage(`{"k":"` + key + `"}`), ReceivedAt: at}
}
