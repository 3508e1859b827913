package service

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/store"
)

// deployInbox is an inbox with the servicenow and github connectors on a
// store whose policy's catalog gives payments-api to the payments team
// (so a succeeded production deployment of a normal change requires its
// review). recorded lists what OnRecorded was told, and whether the
// deployment was committed at that moment.
type deployInbox struct {
	*Inbox
	db       *store.DB
	mu       sync.Mutex
	recorded []string // run ids
	early    []string // run ids OnRecorded saw before their commit
}

func newDeployInbox(t *testing.T, url string, cfg InboxConfig, log *slog.Logger) *deployInbox {
	t.Helper()
	ctx := context.Background()
	db, maps := openInboxStore(t, url, core.SystemClock, log)
	pol := core.DefaultPolicy()
	pol.Services = map[string]core.ServiceInfo{"payments-api": {Team: "payments"}}
	policies := NewPolicies(db, log)
	if err := policies.Load(ctx, &pol); err != nil {
		t.Fatal(err)
	}
	di := &deployInbox{db: db}
	deps := NewDeployments(db, policies, core.SystemClock, log, 0)
	deps.OnRecorded = func(ctx context.Context, d core.Deployment) {
		_, err := db.GetDeployment(ctx, d.ID)
		di.mu.Lock()
		defer di.mu.Unlock()
		di.recorded = append(di.recorded, d.RunID)
		if err != nil {
			di.early = append(di.early, d.RunID)
		}
	}
	conns := []Connector{
		{Config: connectors.Config{Name: "servicenow", Type: "servicenow"}},
		{Config: connectors.Config{Name: "github", Type: "github"}},
	}
	di.Inbox = NewInbox(db, conns, maps, deps, metrics.New(), core.SystemClock, log, cfg)
	return di
}

// change stores a ServiceNow delivery of normal change key.
func (di *deployInbox) change(t *testing.T, key, dedupe string, at time.Time) string {
	t.Helper()
	body := fmt.Sprintf(`{"result":{"sys_class_name":"change_request","number":%q,"type":"normal","state":"-2","approval":"approved",`+
		`"sys_updated_on":%q}}`, key, at.Format("2006-01-02 15:04:05"))
	id, _, err := di.db.InsertEvent(context.Background(), core.Event{Connector: "servicenow", Type: "change_request", DedupeKey: dedupe, Body: []byte(body), ReceivedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// deployment stores a GitHub deployment_status delivery: run of
// payments-api version to production, naming changes.
func (di *deployInbox) deployment(t *testing.T, run int, version, state, changes, dedupe string, at time.Time) string {
	t.Helper()
	body := fmt.Sprintf(`{"deployment_status":{"state":%q,"environment":"production","created_at":%q},`+
		`"deployment":{"id":%d,"sha":"9f2c1e0","environment":"production","created_at":%q,"payload":{"version":%q,"changes":%q}},`+
		`"repository":{"name":"payments-api"},"sender":{"login":"octocat"}}`,
		state, at.Format(time.RFC3339), run, at.Add(-time.Minute).Format(time.RFC3339), version, changes)
	id, _, err := di.db.InsertEvent(context.Background(), core.Event{Connector: "github", Type: "deployment_status", DedupeKey: dedupe, Body: []byte(body), ReceivedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (di *deployInbox) wantProcessed(t *testing.T, ids ...string) {
	t.Helper()
	for _, id := range ids {
		e, err := di.db.GetEvent(context.Background(), id)
		if err != nil || e.Status != core.EventProcessed {
			t.Errorf("event %s: %s %q (%v), want processed", id, e.Status, e.Reason, err)
		}
	}
}

// On PostgreSQL a batch's deployments are stored with its changes in one
// transaction: their releases, the deployments and the reviews they
// require — the review of a deployment of a change stored earlier in the
// same batch too. The write-back hook hears of each deployment once it is
// committed. A deployment whose links change is recorded through the audit
// chain's group commit, so its batch is stored one event at a time: every
// event processed, the relink audited, the hook told once per event.
func TestInboxStoresDeploymentsTogether(t *testing.T) {
	ctx := context.Background()
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := InboxConfig{BatchSize: 20, Lease: time.Minute, MaxAttempts: 3}

	t.Run("one commit", func(t *testing.T) {
		di := newDeployInbox(t, testpg.NewMigratedDatabase(t), cfg, log)
		ids := []string{
			di.deployment(t, 101, "1.0.1", "success", "CHG1", "d101", at),
			di.change(t, "CHG1", "c1", at),
			di.deployment(t, 102, "1.0.2", "in_progress", "", "d102", at),
			di.change(t, "CHG2", "c2", at),
			di.deployment(t, 103, "1.0.3", "failure", "CHG2", "d103", at),
		}
		if n, err := di.ProcessBatch(ctx); err != nil || n != len(ids) {
			t.Fatalf("batch: %d %v", n, err)
		}
		di.wantProcessed(t, ids...)
		if n := testpg.Transactions(t, di.db.SQLX(), "changes", "releases", "deployments", "pirs"); n != 1 {
			t.Errorf("changes, releases, deployments and reviews written by %d transactions, want 1", n)
		}
		deps, err := di.db.ListDeployments(ctx, core.ReleaseFilter{Limit: 10})
		if err != nil || len(deps) != 3 {
			t.Fatalf("deployments: %+v %v", deps, err)
		}
		for _, d := range deps {
			_, err := di.db.GetPIR(ctx, d.ReleaseID)
			if want := d.RunID == "101"; (err == nil) != want {
				t.Errorf("review of run %s: %v, want required %v (only a succeeded deployment of a normal change)", d.RunID, err, want)
			}
		}
		if slices.Sort(di.recorded); !slices.Equal(di.recorded, []string{"101", "102", "103"}) || len(di.early) != 0 {
			t.Errorf("write-back told of %v, %v before their commit; want each run once, after it", di.recorded, di.early)
		}
	})

	t.Run("a relink", func(t *testing.T) {
		di := newDeployInbox(t, testpg.NewMigratedDatabase(t), cfg, log)
		first := di.deployment(t, 201, "2.0.1", "in_progress", "", "d201-a", at)
		if n, err := di.ProcessBatch(ctx); err != nil || n != 1 {
			t.Fatalf("first batch: %d %v", n, err)
		}
		ids := []string{
			di.change(t, "CHG7", "c7", at),
			di.deployment(t, 201, "2.0.1", "success", "CHG7", "d201-b", at.Add(time.Minute)),
			di.deployment(t, 202, "2.0.2", "success", "", "d202", at),
		}
		if n, err := di.ProcessBatch(ctx); err != nil || n != len(ids) {
			t.Fatalf("batch: %d %v", n, err)
		}
		di.wantProcessed(t, append(ids, first)...)
		entries, err := di.db.ListAudit(ctx, core.AuditFilter{Action: store.ActionDeploymentLinks, Limit: 10})
		if err != nil || len(entries) != 1 || entries[0].Actor != "connector:github" {
			t.Fatalf("audit of the relink: %+v %v", entries, err)
		}
		d, err := di.db.GetDeployment(ctx, entries[0].Subject[len("deployment:"):])
		if err != nil || d.Status != core.DeploySucceeded || !slices.Equal(d.Changes, []string{"CHG7"}) {
			t.Fatalf("the relinked deployment: %+v %v", d, err)
		}
		if _, err := di.db.GetPIR(ctx, d.ReleaseID); err != nil {
			t.Errorf("its review: %v", err)
		}
		if slices.Sort(di.recorded); !slices.Equal(di.recorded, []string{"201", "201", "202"}) || len(di.early) != 0 {
			t.Errorf("write-back told of %v, %v before their commit; want each event once, after its commit", di.recorded, di.early)
		}
	})
}

// Two replicas' normalizers, two workers each, take batches of
// deployments of a few releases in whatever order they arrived: records
// are locked in key order (deployments by their release), so no batch
// waits on another in a cycle and none falls back.
func TestInboxDeploymentBatchesNeverDeadlock(t *testing.T) {
	ctx := context.Background()
	at := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	url := testpg.NewMigratedDatabase(t)
	var fallbacks atomic.Int64
	log := slog.New(countingHandler{msg: "storing a batch's records together failed", n: &fallbacks})
	cfg := InboxConfig{Workers: 2, BatchSize: 12, Lease: time.Minute, MaxAttempts: 3, PollInterval: 10 * time.Millisecond}
	a := newDeployInbox(t, url, cfg, log)
	b := newDeployInbox(t, url, cfg, log)
	const events, releases, runs = 240, 6, 3
	// The releases exist already: two batches inserting the same new
	// release at once may meet on its id, and the loser is stored again
	// one event at a time (core.ErrOwnCommit), a race this test is not
	// about.
	for r := range releases {
		if _, err := a.db.UpsertRelease(ctx, core.Release{Service: "payments-api", Version: fmt.Sprintf("3.0.%d", r), Environment: "production"}); err != nil {
			t.Fatal(err)
		}
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	states := []string{"queued", "in_progress", "success"}
	for i := range events {
		r := rnd.IntN(releases)
		run := r*runs + rnd.IntN(runs) // a run deploys one release and always names the same change
		// One deployment per run, created once: its statuses share its
		// start (a later start after it finished would be a re-run).
		a.deployment(t, 300+run, fmt.Sprintf("3.0.%d", r), states[rnd.IntN(len(states))], fmt.Sprintf("CHG%d", r),
			fmt.Sprintf("d%d", i), at.Add(time.Duration(run)*time.Second))
	}
	if n := runUntilDrained(t, a.db, a.Inbox, b.Inbox); n != events {
		t.Errorf("%d events processed, want %d", n, events)
	}
	if n := fallbacks.Load(); n != 0 {
		t.Errorf("%d batches fell back to one event at a time", n)
	}
}
