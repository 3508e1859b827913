package inbox

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/notify"
	"github.com/tollgate-dev/tollgate/store/sqldb"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

// Dialects, as the tests name them.
const (
	Postgres = sqldb.Postgres
	SQLite   = sqldb.SQLite
)

// testDB is an inbox on a fresh migrated database, with the wake-ups it
// sends.
type testDB struct {
	*Inbox
	inbox notify.Hub
}

func (db *testDB) Dialect() string   { return db.base.Dialect() }
func (db *testDB) SQLX() *sqlx.DB    { return db.db }
func (db *testDB) q(s string) string { return db.base.Q(s) }

// newInbox starts an inbox on base, closed when t ends (before base).
func newInbox(t testing.TB, base *sqldb.DB) *testDB {
	t.Helper()
	db := &testDB{}
	var err error
	if db.Inbox, err = New(base, db.inbox.Broadcast); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// newTestDB is an inbox on a fresh migrated database of the dialect.
func newTestDB(t testing.TB, dialect string, clock core.Clock) *testDB {
	return newInbox(t, sqldbtest.Open(t, dialect, clock))
}

// forEachStore runs fn against PostgreSQL and SQLite.
func forEachStore(t *testing.T, fn func(t *testing.T, db *testDB, clock *sqldbtest.Clock)) {
	sqldbtest.ForEach(t, func(t *testing.T, base *sqldb.DB, clock *sqldbtest.Clock) { fn(t, newInbox(t, base), clock) })
}

func newEvent(connector, key string, at time.Time) core.Event {
	return core.Event{Connector: connector, Type: "push", DedupeKey: key, Headers: map[string]string{"X-Delivery": key},
		Body: json.RawMessage(`{"k":"` + key + `"}`), ReceivedAt: at}
}
