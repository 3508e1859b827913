package sqldb_test

import (
	"context"
	"testing"

	"github.com/tollgate-dev/tollgate/store/sqldb"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

// TestPostgresSessionsRunWithoutJIT: the store's sessions run with jit off
// (store/pgconn says why) unless the database URL asks for it.
func TestPostgresSessionsRunWithoutJIT(t *testing.T) {
	ctx := context.Background()
	url := sqldbtest.URL(t, sqldb.Postgres)
	for _, tt := range []struct{ url, want string }{{url, "off"}, {url + "&jit=on", "on"}} {
		db, err := sqldb.Open(ctx, tt.url, sqldb.Options{Logger: sqldbtest.DiscardLog()})
		if err != nil {
			t.Fatal(err)
		}
		var jit string
		if err := db.SQLX().GetContext(ctx, &jit, "SHOW jit"); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if jit != tt.want {
			t.Errorf("%s: jit = %s, want %s", tt.url, jit, tt.want)
		}
	}
}
