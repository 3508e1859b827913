package app_test

import (
	"context"
	"database/sql"
	"log/slog"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/app"
)

// TestPolicyNoticeLost: a policy version stored without its notification
// reaching this replica (the writer killed between its commit and the
// send, a reload that failed, the listener's queue full) is put in force
// by the replica's own recheck, without a restart.
func TestPolicyNoticeLost(t *testing.T) {
	url := newDatabase(t, "postgres")
	cfg := replicaConfig(t, url, "")
	ctx, cancel, a, ln := newApp(t, cfg, slog.New(slog.DiscardHandler), app.Options{PolicyEvery: 50 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		a.Close()
	})
	before := a.Policies.Current().Version()

	// A new version written as another replica would, but with no NOTIFY.
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(),
		`INSERT INTO policy_versions (version, source, created_at, created_by)
		 SELECT version + 1, source, now(), 'another-replica' FROM policy_versions ORDER BY version DESC LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stored policy version in force", func() bool { return a.Policies.Current().Version() == before+1 })
}
