package service

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/store"
)

// openVerdictStore opens a migrated store and returns it with its SQLite
// file ("" on PostgreSQL).
func openVerdictStore(t *testing.T, dialect string, clock core.Clock) (*store.DB, string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.db")
	url := "sqlite:" + path
	if dialect == store.Postgres {
		url, path = testpg.NewMigratedDatabase(t), ""
	}
	db, err := store.Open(ctx, url, store.Options{Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db, path
}

// verdictHistory is a production and staging history over a week (in
// hours from base): changes approved and not, an emergency change without
// its review, a major incident, a pending review of one team, and
// deployments of four services by two teams, some with an allow.
type verdictHistory struct {
	base       time.Time
	from, to   time.Time
	oldRelease string // its review is pending from hour 10
}

func seedVerdictHistory(t *testing.T, db *store.DB, clock *stepClock) verdictHistory {
	t.Helper()
	ctx := context.Background()
	base := clock.Now().Add(-10 * 24 * time.Hour).Truncate(time.Hour)
	h := verdictHistory{base: base, from: base.Add(-time.Hour), to: base.Add(9 * 24 * time.Hour)}
	at := func(hours float64) time.Time { return base.Add(time.Duration(hours * float64(time.Hour))) }
	tp := func(hours float64) *time.Time { v := at(hours); return &v }
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	services := []string{"payments-api", "ledger", "search", "checkout"}
	for i, svc := range services {
		approval := core.ApprovalApproved
		if i == 2 {
			approval = core.ApprovalRequested // CHG2 waits for approval: findings until the late approval
		}
		must(db.UpsertChange(ctx, core.Change{
			Source: "snow", Key: fmt.Sprintf("CHG%d", i), Type: core.ChangeNormal, State: core.ChangeStateScheduled, Approval: approval,
			Approvals: []core.Approval{{Approver: "ana", Decision: core.ApprovalApproved}}, RequestedBy: "carla",
			PlannedStart: tp(0), PlannedEnd: tp(24 * 8), Services: []string{svc}, HasRiskAssessment: true, HasBackoutPlan: true,
			SourceUpdatedAt: at(-1),
		}))
	}
	must(db.UpsertChange(ctx, core.Change{
		Source: "snow", Key: "CHGE", Type: core.ChangeEmergency, State: core.ChangeStateImplement, Approval: core.ApprovalApproved,
		Approvals: []core.Approval{{Approver: "ana", Decision: core.ApprovalApproved}}, RequestedBy: "carla",
		PlannedStart: tp(0), PlannedEnd: tp(24 * 8), Services: []string{"ledger"}, HasRiskAssessment: true, HasBackoutPlan: true,
		SourceUpdatedAt: at(-1),
	}))
	must(db.UpsertIncident(ctx, core.Incident{Source: "snow", Key: "INC1", Priority: 1, Major: true, State: core.IncidentOpen,
		Services: []string{"search"}, OpenedAt: tp(30), SourceUpdatedAt: at(30)}))
	old, err := db.UpsertRelease(ctx, core.Release{Service: "checkout", Version: "0.9", Environment: "production", Team: "blue"})
	must(nil, err)
	h.oldRelease = old.ID
	if err := db.RequirePIR(ctx, core.PIR{ReleaseID: old.ID, Team: "blue", RequiredAt: at(10)}); err != nil {
		t.Fatal(err)
	}
	n := 0
	for hour := 1.0; hour < 24*8; hour += 3.5 {
		n++
		svc := services[n%len(services)]
		env, team := "production", "red"
		if n%5 == 0 {
			env = "staging"
		}
		if svc == "checkout" || svc == "search" {
			team = "blue"
		}
		changes := []string{fmt.Sprintf("CHG%d", n%len(services))}
		if n%11 == 0 {
			changes = append(changes, "CHGE")
		}
		if n%13 == 0 {
			changes = nil
		}
		status := core.DeploySucceeded
		if n%7 == 0 || n%11 == 0 {
			status = core.DeployStarted
		}
		_, _, err = db.RecordDeployment(ctx, core.Deployment{
			Service: svc, Environment: env, Version: fmt.Sprintf("1.%d", n), Commit: "c0ffee", Team: team, Status: status,
			StartedAt: at(hour), FinishedAt: tp(hour + 0.2), Actor: "dora", Changes: changes, Provider: "github",
			RunID: fmt.Sprint(n), URL: "https://ci.example/runs/" + fmt.Sprint(n), Source: "api",
		}, "test")
		must(nil, err)
	}
	return h
}

// verdictWorld is a store seeded with verdictHistory, its policies and a
// clock an hour after the history was recorded.
type verdictWorld struct {
	clock *stepClock
	db    *store.DB
	path  string // the SQLite file ("" on PostgreSQL)
	pols  *Policies
	log   *slog.Logger
	h     verdictHistory
}

func newVerdictWorld(t *testing.T, dialect string) verdictWorld {
	t.Helper()
	w := verdictWorld{clock: &stepClock{t: time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	w.db, w.path = openVerdictStore(t, dialect, w.clock)
	w.pols = NewPolicies(w.db, w.log)
	if err := w.pols.Load(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	w.h = seedVerdictHistory(t, w.db, w.clock)
	w.clock.add(time.Hour)
	return w
}

// TestStoredVerdictsMatchJudgingAfresh: a report that reuses stored
// verdicts says exactly what a report judging every deployment afresh
// says (the same findings, numbered alike, and the same summary) — on
// its first run, on a run that reuses every verdict, with filters, and
// after each kind of record that changes the past arrives late: a change
// approved with an earlier stamp, an incident resolved with an earlier
// stamp, a review signed off with an earlier time, a deployment's row
// updated. Each late record changes the findings, so a stale verdict
// would show. The emergency timers run on (volatile verdicts).
func TestStoredVerdictsMatchJudgingAfresh(t *testing.T) {
	for _, c := range []struct {
		dialect string
		byID    int // Reconciler.MaxJudgedByID: 2 makes most reports judge their whole period
	}{{store.Postgres, 0}, {store.SQLite, 0}, {store.Postgres, 2}, {store.SQLite, 2}} {
		dialect := c.dialect
		t.Run(fmt.Sprintf("%s/by-id-max-%d", dialect, c.byID), func(t *testing.T) {
			ctx := context.Background()
			w := newVerdictWorld(t, dialect)
			clock, db, pols, log, h := w.clock, w.db, w.pols, w.log, w.h
			reuse := NewReconciler(db, pols, clock, log, core.ReconcileOptions{})
			afresh := NewReconciler(db, pols, clock, log, core.ReconcileOptions{})
			reuse.PageSize, afresh.PageSize, afresh.NoStoredVerdicts = 7, 7, true
			reuse.MaxJudgedByID = c.byID

			same := func(step string, q core.ReconcileQuery) []core.ReconcileFinding {
				t.Helper()
				got, gotSum := runReport(t, reuse, q)
				want, wantSum := runReport(t, afresh, q)
				if a, b := mustJSON(t, gotSum), mustJSON(t, wantSum); a != b {
					t.Fatalf("%s: summary with stored verdicts\n%s\njudged afresh\n%s", step, a, b)
				}
				if a, b := mustJSON(t, got), mustJSON(t, want); a != b {
					t.Fatalf("%s: findings with stored verdicts differ from judging afresh:\n%s\n---\n%s", step, a, b)
				}
				if len(got) == 0 {
					t.Fatalf("%s: no findings: the history proves nothing", step)
				}
				return got
			}
			q := core.ReconcileQuery{From: h.from, To: h.to}
			first := same("first report", q)
			same("second report (every verdict reused)", q)
			same("one team", core.ReconcileQuery{From: h.from, To: h.to, Team: "blue"})
			same("one environment", core.ReconcileQuery{From: h.from, To: h.to, Environment: "staging"})
			if codes := findingCodes(first); !slices.Contains(codes, core.CodeIncidentBlock) || !slices.Contains(codes, core.CodePIRPending) ||
				!slices.Contains(codes, core.CodeChangeNotApproved) || !slices.Contains(codes, core.CodeEmergencyValidationOverdue) {
				t.Fatalf("the history lacks a code the late records change: %v", codes)
			}

			prev := first
			late := []struct {
				name   string
				record func()
			}{
				{"a change approved with an earlier stamp", func() {
					c := core.Change{Source: "snow", Key: "CHG2", Type: core.ChangeNormal, State: core.ChangeStateScheduled, Approval: core.ApprovalApproved,
						Approvals: []core.Approval{{Approver: "ana", Decision: core.ApprovalApproved}}, RequestedBy: "carla",
						PlannedStart: ptr(h.base), PlannedEnd: ptr(h.base.Add(24 * 8 * time.Hour)), Services: []string{"search"},
						HasRiskAssessment: true, HasBackoutPlan: true, SourceUpdatedAt: h.base.Add(48 * time.Hour)}
					if _, err := db.UpsertChange(ctx, c); err != nil {
						t.Fatal(err)
					}
				}},
				{"an incident resolved with an earlier stamp", func() {
					if _, err := db.UpsertIncident(ctx, core.Incident{Source: "snow", Key: "INC1", Priority: 1, Major: true, State: core.IncidentResolved,
						Services: []string{"search"}, OpenedAt: ptr(h.base.Add(30 * time.Hour)), ResolvedAt: ptr(h.base.Add(60 * time.Hour)),
						SourceUpdatedAt: h.base.Add(60 * time.Hour)}); err != nil {
						t.Fatal(err)
					}
				}},
				{"a review signed off with an earlier time", func() {
					if _, err := db.SignOffPIR(ctx, h.oldRelease, "ana", "done", h.base.Add(90*time.Hour)); err != nil {
						t.Fatal(err)
					}
				}},
				// Beside more late changes than the check follows one by
				// one, valid only after the deployments: the check then
				// marks from the earliest of them, and must still mark
				// what the review holds back before it.
				{"a review required late of a release without a team (held back by its service), beside many late changes", func() {
					for i := range 201 {
						c := core.Change{Source: "snow", Key: fmt.Sprintf("CHG9%04d", i), Type: core.ChangeNormal, State: core.ChangeStateNew,
							Approval: core.ApprovalRequested, Services: []string{"other"}, SourceUpdatedAt: h.base.Add(200 * time.Hour)}
						if _, err := db.UpsertChange(ctx, c); err != nil {
							t.Fatal(err)
						}
					}
					rel, err := db.UpsertRelease(ctx, core.Release{Service: "Payments-API", Version: "0.8", Environment: "production"})
					if err != nil {
						t.Fatal(err)
					}
					if err := db.RequirePIR(ctx, core.PIR{ReleaseID: rel.ID, RequiredAt: h.base.Add(20 * time.Hour)}); err != nil {
						t.Fatal(err)
					}
				}},
				{"a deployment's row updated", func() {
					// run 21: ledger to production at hour 71, still "started"
					if _, _, err := db.RecordDeployment(ctx, core.Deployment{Service: "ledger", Environment: "production", Version: "1.21",
						Status: core.DeployFailed, StartedAt: h.base.Add(71 * time.Hour), FinishedAt: ptr(h.base.Add(72 * time.Hour)),
						Provider: "github", RunID: "21", Source: "api"}, "test"); err != nil {
						t.Fatal(err)
					}
				}},
			}
			for _, l := range late {
				clock.add(10 * time.Minute)
				l.record()
				// Past the check's margin: the next step's check no longer
				// reads this record, so each step shows its own kind.
				clock.add(core.VerdictSettle + time.Minute)
				got := same("after "+l.name, q)
				if mustJSON(t, got) == mustJSON(t, prev) {
					t.Fatalf("%s changed no finding: the step proves nothing", l.name)
				}
				prev = got
			}
			clock.add(3 * 24 * time.Hour) // the emergency review's deadline passes
			same("days later", q)
			same("one environment, days later", core.ReconcileQuery{From: h.from, To: h.to, Environment: "production"})
			newPolicyVersion(t, pols)
			same("under a new policy version", q)
			same("under a new policy version, again", q)
		})
	}
}

// TestStoredVerdictIsWhatTheNextReportReads: a report does reuse the
// verdicts stored before it — by the scheduler's refresh (a verdict
// altered in the store shows in the next report) — and a new policy
// version judges afresh.
func TestStoredVerdictIsWhatTheNextReportReads(t *testing.T) {
	ctx := context.Background()
	w := newVerdictWorld(t, store.SQLite)
	clock, db, path, pols, log, h := w.clock, w.db, w.path, w.pols, w.log, w.h
	rec := NewReconciler(db, pols, clock, log, core.ReconcileOptions{})
	q := core.ReconcileQuery{From: h.from, To: h.to}
	// The scheduler's refresh judges every deployment; the next refresh
	// only those whose verdicts serve one report (emergency timers).
	all, err := rec.RefreshVerdicts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	clock.add(time.Minute)
	again, err := rec.RefreshVerdicts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if all < 50 || again == 0 || again >= all/5 {
		t.Fatalf("the refreshes judged %d, then %d deployments", all, again)
	}
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.ExecContext(ctx, `UPDATE reconcile_verdict_findings SET doc = json_set(doc, '$.message', 'from the store')`); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Minute)
	second, sum := runReport(t, rec, q)
	stored := 0
	for _, f := range second {
		if f.Message == "from the store" {
			stored++
		}
	}
	if sum.DeploymentsChecked != all {
		t.Fatalf("the report checked %d deployments; the refresh judged %d", sum.DeploymentsChecked, all)
	}
	if stored == 0 || stored == len(second) {
		t.Fatalf("%d of %d findings came from stored verdicts; want all but the volatile ones", stored, len(second))
	}
	newPolicyVersion(t, pols)
	clock.add(time.Minute)
	third, _ := runReport(t, rec, q)
	for _, f := range third {
		if f.Message == "from the store" {
			t.Fatalf("a new policy version reused a verdict: %+v", f)
		}
	}
}

// newPolicyVersion puts the policy in force again, as a new version.
func newPolicyVersion(t *testing.T, pols *Policies) {
	t.Helper()
	ctx := context.Background()
	src, err := pols.Source(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pols.Put(ctx, []byte(src.Source+"\n"), "admin"); err != nil {
		t.Fatal(err)
	}
}

func runReport(t *testing.T, rec *Reconciler, q core.ReconcileQuery) ([]core.ReconcileFinding, core.ReconcileSummary) {
	t.Helper()
	ctx := context.Background()
	r, err := rec.Run(ctx, q, "test", "")
	if err != nil {
		t.Fatal(err)
	}
	var fs []core.ReconcileFinding
	if err := rec.Findings(ctx, r.ID, func(f core.ReconcileFinding) error { fs = append(fs, f); return nil }); err != nil {
		t.Fatal(err)
	}
	return fs, r.Summary
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }

// TestSchedulerRefreshesVerdicts: the reports lease holder's first
// refresh comes a minute after it starts, not amid it, then every
// VerdictsEvery.
func TestSchedulerRefreshesVerdicts(t *testing.T) {
	ctx := context.Background()
	w := newVerdictWorld(t, store.SQLite)
	clock, db, path, pols, log := w.clock, w.db, w.path, w.pols, w.log
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	stored := func() (n int) {
		t.Helper()
		if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM reconcile_verdicts`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	start := clock.Now()
	sch := NewScheduler(NewReconciler(db, pols, clock, log, core.ReconcileOptions{}), db, nil, 0, "replica-a", clock, log)
	sch.VerdictsEvery = 5 * time.Minute
	for _, step := range []struct {
		after time.Duration
		want  bool // verdicts stored by then
	}{{0, false}, {30 * time.Second, false}, {time.Minute, true}} {
		clock.set(start.Add(step.after))
		if err := sch.TickAt(ctx, clock.Now()); err != nil {
			t.Fatal(err)
		}
		if got := stored() > 0; got != step.want {
			t.Fatalf("%v after start: verdicts stored %v, want %v", step.after, got, step.want)
		}
	}
}

// TestSchedulerReleaseMetrics: the lease holder hands the release metrics
// over a minute after it starts, then every MetricsEvery; never at 0.
func TestSchedulerReleaseMetrics(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		every time.Duration
		steps []time.Duration // ticks after start
		want  []int           // metrics handed over by each tick
	}{
		{10 * time.Minute, []time.Duration{0, 30 * time.Second, time.Minute, 5 * time.Minute, 11 * time.Minute}, []int{0, 0, 1, 1, 2}},
		{0, []time.Duration{time.Minute, 2 * time.Hour}, []int{0, 0}},
	} {
		w := newVerdictWorld(t, store.SQLite)
		start := w.clock.Now()
		sch := NewScheduler(NewReconciler(w.db, w.pols, w.clock, w.log, core.ReconcileOptions{}), w.db, nil, 0, "replica-a", w.clock, w.log)
		sch.MetricsEvery = tt.every
		got := 0
		sch.OnMetrics = func(core.ReleaseMetrics) { got++ }
		for i, after := range tt.steps {
			w.clock.set(start.Add(after))
			if err := sch.TickAt(ctx, w.clock.Now()); err != nil {
				t.Fatal(err)
			}
			if got != tt.want[i] {
				t.Fatalf("every %v, %v after start: metrics handed over %d times, want %d", tt.every, after, got, tt.want[i])
			}
		}
	}
}

// TestSchedulerPurgesInbox: the lease holder deletes the settled
// deliveries older than InboxRetention, at most hourly; pending and
// quarantined ones, and recent ones, stay; 0 keeps every one.
func TestSchedulerPurgesInbox(t *testing.T) {
	ctx := context.Background()
	for _, retention := range []time.Duration{30 * 24 * time.Hour, 0} {
		w := newVerdictWorld(t, store.SQLite)
		start := w.clock.Now()
		add := func(key, status string) string {
			t.Helper()
			id, _, err := w.db.InsertEvent(ctx, core.Event{Connector: "itsm", Type: "change", DedupeKey: key, Body: []byte(`{}`), ReceivedAt: w.clock.Now()})
			if err != nil {
				t.Fatal(err)
			}
			if status != core.EventPending {
				if err := w.db.FinishEvent(ctx, id, status, "", ""); err != nil {
					t.Fatal(err)
				}
			}
			return id
		}
		old := []string{add("old-processed", core.EventProcessed), add("old-ignored", core.EventIgnored)}
		kept := []string{add("old-pending", core.EventPending), add("old-quarantined", core.EventQuarantined)}
		w.clock.set(start.Add(40 * 24 * time.Hour))
		kept = append(kept, add("new-processed", core.EventProcessed))
		sch := NewScheduler(NewReconciler(w.db, w.pols, w.clock, w.log, core.ReconcileOptions{}), w.db, nil, 0, "replica-a", w.clock, w.log)
		sch.InboxRetention = retention
		if err := sch.TickAt(ctx, w.clock.Now()); err != nil {
			t.Fatal(err)
		}
		for _, id := range old {
			_, err := w.db.GetEvent(ctx, id)
			if gone := core.IsKind(err, core.KindNotFound); gone != (retention > 0) {
				t.Errorf("retention %v: old settled delivery %s gone %v", retention, id, gone)
			}
		}
		for _, id := range kept {
			if _, err := w.db.GetEvent(ctx, id); err != nil {
				t.Errorf("retention %v: delivery %s: %v, want kept", retention, id, err)
			}
		}
	}
}
