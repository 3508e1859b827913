package itsm

import (
	"testing"

	"github.com/tollgate-dev/tollgate/store/audit"
	"github.com/tollgate-dev/tollgate/store/sqldb"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

// testDB is the connectors' records on one database, with its audit
// chain (their writes are audited).
type testDB struct {
	*ITSM
	*PendingGates
	*audit.Trail
}

// forEachStore runs fn against PostgreSQL and SQLite.
func forEachStore(t *testing.T, fn func(t *testing.T, db *testDB, clock *sqldbtest.Clock)) {
	sqldbtest.ForEach(t, func(t *testing.T, base *sqldb.DB, clock *sqldbtest.Clock) {
		fn(t, &testDB{New(base), NewPendingGates(base), audit.New(base)}, clock)
	})
}
