package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/store"
)

// On PostgreSQL a deployment event is stored with one commit: its
// release, the deployment and the review its success requires. A later
// report that changes the deployment's links is recorded alone, through
// the audit chain, and audited.
func TestDeploymentRecordedWithOneCommit(t *testing.T) {
	ctx := context.Background()
	db, policies, log := openDeploymentStore(t)
	now := time.Now().UTC().Truncate(time.Second)
	for _, key := range []string{"CHG1", "CHG2"} {
		if _, err := db.UpsertChange(ctx, core.Change{Source: "snow", Key: key, Type: core.ChangeNormal, State: core.ChangeStateScheduled,
			Approval: core.ApprovalApproved, Services: []string{"payments-api"}, SourceUpdatedAt: now.Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	var recorded []core.Deployment
	deps := NewDeployments(db, policies, core.SystemClock, log, 0)
	deps.OnRecorded = func(_ context.Context, d core.Deployment) { recorded = append(recorded, d) }

	d := core.Deployment{Service: "payments-api", Environment: "production", Version: "1.4.2", Team: "payments",
		Status: core.DeploySucceeded, StartedAt: now.Add(-time.Minute), FinishedAt: &now, Provider: "github", RunID: "7",
		Changes: []string{"CHG1"}, Source: "api"}
	first, created, err := deps.Record(ctx, d, "token:ci")
	if err != nil || !created {
		t.Fatalf("record: %+v %v %v", first, created, err)
	}
	if p, err := db.GetPIR(ctx, first.ReleaseID); err != nil || p.Status != core.PIRPending {
		t.Fatalf("review: %+v %v", p, err)
	}
	if txs := testpg.Transactions(t, db.SQLX(), "releases", "deployments", "pirs"); txs != 1 {
		t.Errorf("release, deployment and review written by %d transactions, want 1", txs)
	}

	d.Changes = []string{"CHG1", "CHG2"}
	again, created, err := deps.Record(ctx, d, "token:ci")
	if err != nil || created || again.ID != first.ID || !slices.Equal(again.Changes, d.Changes) {
		t.Fatalf("relink: %+v %v %v", again, created, err)
	}
	entries, err := db.ListAudit(ctx, core.AuditFilter{Action: store.ActionDeploymentLinks, Limit: 10})
	if err != nil || len(entries) != 1 || entries[0].Subject != "deployment:"+first.ID || entries[0].Actor != "token:ci" {
		t.Fatalf("the relink's audit entry: %+v %v", entries, err)
	}
	if len(recorded) != 2 || recorded[0].ID != first.ID || !slices.Equal(recorded[1].Changes, d.Changes) {
		t.Errorf("OnRecorded told of %+v, want both reports, after their commits", recorded)
	}
}

// openDeploymentStore opens a migrated PostgreSQL store, closed when t
// ends, with its default policy loaded.
func openDeploymentStore(t *testing.T) (*store.DB, *Policies, *slog.Logger) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(context.Background(), testpg.NewMigratedDatabase(t), store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	policies := NewPolicies(db, log)
	if err := policies.Load(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return db, policies, log
}

// togetherFails is a store whose shared transaction fails with err
// without writing.
type togetherFails struct {
	*store.DB
	err   error
	calls int
}

func (f *togetherFails) Together(context.Context, func(context.Context) error) error {
	f.calls++
	return f.err
}

// A shared transaction that loses a race (a deadlock, a relink that needs
// the audit chain) is made again alone; one that fails because the
// database is down is not, and the error is the caller's.
func TestDeploymentStoreRedoesALostRaceAlone(t *testing.T) {
	ctx := context.Background()
	db, policies, log := openDeploymentStore(t)
	now := time.Now().UTC().Truncate(time.Second)
	for i, tt := range []struct {
		name   string
		err    error
		stored bool
	}{
		{"deadlock", core.Wrap(core.KindUnavailable, errors.New("pq: deadlock detected"), "database conflict, retry"), true},
		{"needs its own commit", core.ErrOwnCommit, true},
		{"database down", core.StoreDown(errors.New("dial tcp: connection refused"), "database unavailable"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := &togetherFails{DB: db, err: tt.err}
			deps := NewDeployments(fs, policies, core.SystemClock, log, 0)
			d := core.Deployment{Service: "payments-api", Environment: "staging", Version: fmt.Sprintf("2.%d.0", i),
				Status: core.DeployStarted, StartedAt: now, Provider: "github", RunID: fmt.Sprint(900 + i), Source: "api"}
			got, _, err := deps.Record(ctx, d, "token:ci")
			if fs.calls != 1 {
				t.Fatalf("Together called %d times, want 1", fs.calls)
			}
			if !tt.stored {
				if !core.IsStoreDown(err) {
					t.Fatalf("err %v, want the database down", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("record: %v", err)
			}
			if _, err := db.GetDeployment(ctx, got.ID); err != nil {
				t.Fatalf("the deployment made alone: %v", err)
			}
		})
	}
}
