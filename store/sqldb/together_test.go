package sqldb_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/store/sqldb"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

// TestTogether: the transactions begun under Together are one — their
// writes commit together, or roll back together when fn fails — and the
// topics they announce end once, with that transaction; a Tx outside
// Together is its own.
func TestTogether(t *testing.T) {
	for _, dialect := range []string{sqldb.Postgres, sqldb.SQLite} {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			var ended []string
			db, err := sqldb.Open(ctx, sqldbtest.URL(t, dialect), sqldb.Options{Logger: sqldbtest.DiscardLog(),
				TxEnded: func(topics []string, committed bool) {
					if len(topics) > 0 {
						ended = append(ended, fmt.Sprint(topics, committed))
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.SQLX().ExecContext(ctx, `CREATE TABLE together_t (k TEXT PRIMARY KEY)`); err != nil {
				t.Fatal(err)
			}
			insert := func(ctx context.Context, k string) error {
				return db.Tx(ctx, func(tx *sqlx.Tx) error {
					db.NotifyTx(tx, "t:"+k)
					_, err := tx.ExecContext(ctx, db.Q(`INSERT INTO together_t (k) VALUES (?)`), k)
					return err
				})
			}
			keys := func() []string {
				var ks []string
				if err := db.SQLX().SelectContext(ctx, &ks, `SELECT k FROM together_t ORDER BY k`); err != nil {
					t.Fatal(err)
				}
				return ks
			}
			if err := db.Together(ctx, func(ctx context.Context) error {
				return errors.Join(insert(ctx, "a"), insert(ctx, "b"))
			}); err != nil {
				t.Fatal(err)
			}
			failed := errors.New("the third write fails")
			err = db.Together(ctx, func(ctx context.Context) error {
				if err := insert(ctx, "c"); err != nil {
					return err
				}
				if err := insert(ctx, "a"); err == nil { // a duplicate key
					t.Error("a duplicate key was inserted")
				}
				return failed
			})
			if !errors.Is(err, failed) {
				t.Fatalf("Together: %v, want fn's error", err)
			}
			if err := insert(ctx, "d"); err != nil { // on its own, after
				t.Fatal(err)
			}
			if got, want := keys(), []string{"a", "b", "d"}; !slices.Equal(got, want) {
				t.Errorf("rows %q, want %q: the failed Together's writes rolled back, the others kept", got, want)
			}
			want := []string{"[t:a t:b] true", "[t:c t:a] false", "[t:d] true"}
			if !slices.Equal(ended, want) {
				t.Errorf("ended %q, want %q: one end per transaction", ended, want)
			}
		})
	}
}
