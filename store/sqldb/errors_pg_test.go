package sqldb_test

import (
	"context"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

// TestTranslateOutOfRangeOnPostgres: PostgreSQL's own refusals of a
// number past an integer column and a time past timestamptz's range are
// KindInvalid once translated (a finding number of 3000000000 was a 500).
func TestTranslateOutOfRangeOnPostgres(t *testing.T) {
	db := sqldbtest.Open(t, sqldb.Postgres, nil)
	tests := []struct {
		name  string
		query string
		arg   any
	}{
		{"integer overflow", "SELECT $1::integer", int64(3_000_000_000)},
		{"timestamp overflow", "SELECT $1::timestamptz", "294277-01-01T00:00:00Z"},
	}
	for _, tt := range tests {
		var out string
		err := db.SQLX().GetContext(context.Background(), &out, tt.query, tt.arg)
		if err == nil {
			t.Fatalf("%s: the database accepted %v", tt.name, tt.arg)
		}
		if k := core.KindOf(sqldb.Translate(err)); k != core.KindInvalid {
			t.Errorf("%s: %v translated to kind %q, want invalid", tt.name, err, k)
		}
	}
}
