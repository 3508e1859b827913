package envhistory

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/tollgate-dev/tollgate/store/sqldb"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

// TestHistoryEnvironments: the distinct environments of the stored
// releases and deployments, as stored (case kept), sorted; none on an
// empty store.
func TestHistoryEnvironments(t *testing.T) {
	sqldbtest.ForEach(t, func(t *testing.T, db *sqldb.DB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		h := New(db)
		if got, err := h.HistoryEnvironments(ctx); err != nil || len(got) != 0 {
			t.Fatalf("empty store: %v %v", got, err)
		}
		release := func(env string, i int) {
			t.Helper()
			if _, err := db.SQLX().ExecContext(ctx, db.Q(`INSERT INTO releases (id, service, version, environment, created_at, updated_at)
				VALUES (?, 'pay', ?, ?, ?, ?)`), fmt.Sprintf("r%d", i), fmt.Sprint(i), env, clock.T, clock.T); err != nil {
				t.Fatal(err)
			}
		}
		deployment := func(env string, i int) {
			t.Helper()
			if _, err := db.SQLX().ExecContext(ctx, db.Q(`INSERT INTO deployments (id, service, environment, version, status, started_at,
				provider, run_id, created_at, updated_at) VALUES (?, 'pay', ?, ?, 'succeeded', ?, 'api', ?, ?, ?)`),
				fmt.Sprintf("d%d", i), env, fmt.Sprint(i), clock.T, fmt.Sprint(i), clock.T, clock.T); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 30 {
			release([]string{"production", "staging"}[i%2], i)
			deployment([]string{"production", "Prod-EU", "dev"}[i%3], i)
		}
		release("qa-old", 99) // checked there, never deployed
		got, err := h.HistoryEnvironments(ctx)
		if want := []string{"Prod-EU", "dev", "production", "qa-old", "staging"}; err != nil || !slices.Equal(got, want) {
			t.Fatalf("%v %v, want %v", got, err, want)
		}
	})
}
