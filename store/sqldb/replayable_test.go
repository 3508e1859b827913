package sqldb_test

import (
	"context"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

// TestReplayableWritesCommitWithoutWaiting: on PostgreSQL a transaction
// begun under core.WithReplayableWrites (alone or as Together's) commits
// without waiting for its flush, and only that transaction: the session
// it ran on and every other transaction keep the server's setting. On
// SQLite the flag changes nothing and the writes still commit.
func TestReplayableWritesCommitWithoutWaiting(t *testing.T) {
	ctx := context.Background()
	replay := core.WithReplayableWrites(ctx)
	t.Run(sqldb.Postgres, func(t *testing.T) {
		// One connection: the transactions below and the checks after them
		// share a session, so a setting that outlived its transaction shows.
		db, err := sqldb.Open(ctx, sqldbtest.URL(t, sqldb.Postgres), sqldb.Options{Logger: sqldbtest.DiscardLog(), MaxOpenConns: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var server string
		if err := db.SQLX().GetContext(ctx, &server, "SHOW synchronous_commit"); err != nil {
			t.Fatal(err)
		}
		if server == "off" {
			t.Fatal("the test server's synchronous_commit is off: nothing to tell apart")
		}
		inTx := func(ctx context.Context) string {
			var got string
			if err := db.Tx(ctx, func(tx *sqlx.Tx) error { return tx.GetContext(ctx, &got, "SHOW synchronous_commit") }); err != nil {
				t.Fatal(err)
			}
			return got
		}
		inTogether := func(ctx context.Context) string {
			var got string
			if err := db.Together(ctx, func(ctx context.Context) error { got = inTx(ctx); return nil }); err != nil {
				t.Fatal(err)
			}
			return got
		}
		for _, tt := range []struct {
			name string
			got  func() string
			want string
		}{
			{"a transaction", func() string { return inTx(ctx) }, server},
			{"a replayable transaction", func() string { return inTx(replay) }, "off"},
			{"the session after it", func() string { return inTx(ctx) }, server},
			{"a replayable Together", func() string { return inTogether(replay) }, "off"},
			{"a Together", func() string { return inTogether(ctx) }, server},
		} {
			if got := tt.got(); got != tt.want {
				t.Errorf("%s: synchronous_commit = %s, want %s", tt.name, got, tt.want)
			}
		}
	})
	t.Run(sqldb.SQLite, func(t *testing.T) {
		db, err := sqldb.Open(ctx, sqldbtest.URL(t, sqldb.SQLite), sqldb.Options{Logger: sqldbtest.DiscardLog()})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.SQLX().ExecContext(ctx, `CREATE TABLE replay_t (k TEXT PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		if err := db.Tx(replay, func(tx *sqlx.Tx) error {
			_, err := tx.ExecContext(replay, `INSERT INTO replay_t (k) VALUES ('a')`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.SQLX().GetContext(ctx, &n, `SELECT count(*) FROM replay_t`); err != nil || n != 1 {
			t.Fatalf("rows = %d, %v; want the replayable write committed", n, err)
		}
	})
}
