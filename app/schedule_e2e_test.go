package app_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/service"
)

// TestScheduledReportsOneReplica: two replicas on one PostgreSQL tick at
// the same moment; the lease lets exactly one run the due schedule, which
// posts a Slack/Teams-compatible summary without any secret.
func TestScheduledReportsOneReplica(t *testing.T) {
	var (
		mu    sync.Mutex
		posts []string
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, string(b))
		mu.Unlock()
	}))
	defer hook.Close()
	cfg := `
reports:
  - name: every-minute
    cron: "* * * * *"
    period: 7d
    environment: production
    webhook_url: ` + hook.URL + `/services/T0/B0/SECRETPART
`
	url := testpg.NewDatabase(t)
	a, b := bootURL(t, url, cfg), bootURL(t, url, cfg)
	seedReconcileHistory(t, a)
	now := time.Now().Add(2 * time.Minute)
	var wg sync.WaitGroup
	for _, s := range []*server{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.app.Scheduler.TickAt(context.Background(), now); err != nil {
				t.Errorf("tick: %v", err)
			}
		}()
	}
	wg.Wait()
	reports, err := a.app.DB.ListReports(context.Background(), core.ReportKindReconciliation, 10, "")
	if err != nil || len(reports) != 1 || reports[0].Name != "every-minute" || reports[0].Query.Environment != "production" ||
		reports[0].Query.To.Sub(reports[0].Query.From) != 7*24*time.Hour || reports[0].CreatedBy != "schedule:every-minute" {
		t.Fatalf("reports after two replicas ticked: %+v %v", reports, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 1 || !strings.Contains(posts[0], `"text":"tollgate reconciliation report every-minute`) ||
		!strings.Contains(posts[0], "3 findings") || strings.Contains(posts[0], "SECRETPART") || strings.Contains(posts[0], adminSecret) {
		t.Fatalf("webhook posts: %q", posts)
	}
}

// TestReportsRetention: reports older than reports_retention are deleted by
// the scheduler's tick.
func TestReportsRetention(t *testing.T) {
	s := boot(t, "sqlite", "reports_retention: 30d\n")
	from, to := seedReconcileHistory(t, s)
	cm, _ := s.token(core.RoleChangeManager)
	var rep reportAnswer
	if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": from, "to": to}, &rep); st != http.StatusCreated {
		t.Fatalf("run: %d", st)
	}
	if err := s.app.Scheduler.TickAt(context.Background(), time.Now().Add(29*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if st := s.do("GET", "/api/v1/reports/reconciliation/"+rep.ID, cm, nil, nil); st != http.StatusOK {
		t.Fatalf("report within retention: %d", st)
	}
	if err := s.app.Scheduler.TickAt(context.Background(), time.Now().Add(31*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if st := s.do("GET", "/api/v1/reports/reconciliation/"+rep.ID, cm, nil, nil); st != http.StatusNotFound {
		t.Fatalf("report past retention: %d, want 404", st)
	}
}

// TestScheduledReportLateArrivals: a deployment recorded after a
// schedule's report although it started before the period the next one
// covers (a pipeline reporting at its end, after the report ran) is judged
// by a "late arrivals" report the next run makes beside its own; one
// recorded before the last report is not judged again, and a run with no
// late arrival makes none.
func TestScheduledReportLateArrivals(t *testing.T) {
	eachDialect(t, func(t *testing.T, dialect string) { testLateArrivals(t, dialect) })
}

func testLateArrivals(t *testing.T, dialect string) {
	s := boot(t, dialect, `
reports:
  - name: hourly
    cron: "0 * * * *"
    period: 1h
    environment: production
`)
	ci, _ := s.token(core.RoleCI)
	deploy := func(run string, started time.Time) {
		t.Helper()
		if st := s.do("POST", "/api/v1/deployments", ci, map[string]any{"service": "payments-api", "environment": "production", "version": "9." + run,
			"status": "succeeded", "started_at": started, "provider": "github", "run_id": run}, nil); st != http.StatusCreated {
			t.Fatalf("deployment %s: %d", run, st)
		}
	}
	ctx := context.Background()
	reports := func() []core.Report {
		t.Helper()
		rs, err := s.app.DB.ListReports(ctx, core.ReportKindReconciliation, 10, "")
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	early := time.Now().UTC().Add(-3 * time.Hour)
	deploy("8801", early) // recorded before the first report: not late for any
	tick := time.Now().Add(61 * time.Minute)
	if err := s.app.Scheduler.TickAt(ctx, tick); err != nil {
		t.Fatal(err)
	}
	if rs := reports(); len(rs) != 1 || rs[0].Name != "hourly" {
		t.Fatalf("after the first run: %+v", rs)
	}
	deploy("8802", early.Add(time.Minute)) // started before the next period, recorded after the report
	if err := s.app.Scheduler.TickAt(ctx, tick.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rs := reports()
	if len(rs) != 3 || rs[0].Name != "hourly (late arrivals)" || rs[1].Name != "hourly" {
		t.Fatalf("after the second run: %+v", rs)
	}
	late := rs[0]
	if late.Summary.DeploymentsChecked != 1 || late.Query.RecordedAfter.IsZero() || !late.Query.To.Equal(rs[1].Query.From) || late.Query.From.After(early.Add(time.Minute)) {
		t.Fatalf("late arrivals report %+v, want deployment 8802 only", late)
	}
	var runs []string
	if err := s.app.DB.ReportFindings(ctx, late.ID, func(f core.ReconcileFinding) error {
		runs = append(runs, f.Deployment.RunID)
		return nil
	}); err != nil || len(runs) == 0 {
		t.Fatalf("late findings: %v %v", runs, err)
	}
	for _, run := range runs {
		if run != "8802" {
			t.Errorf("finding of run %s in the late arrivals report, want 8802's only", run)
		}
	}
	if err := s.app.Scheduler.TickAt(ctx, tick.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if rs := reports(); len(rs) != 4 || rs[0].Name != "hourly" {
		t.Fatalf("a run without late arrivals: %+v", rs)
	}
}

// TestReportCountsQuarantinedDeployments: a deployment delivery the inbox
// quarantined (an environment the policy does not know) is judged by no
// report; the report over its period counts it, and says so in the
// summary its schedule posts.
func TestReportCountsQuarantinedDeployments(t *testing.T) {
	eachDialect(t, func(t *testing.T, dialect string) { testQuarantinedDeployments(t, dialect) })
}

func testQuarantinedDeployments(t *testing.T, dialect string) {
	s := boot(t, dialect, "connectors:\n  - {name: pipelines, type: generic, webhook_secret: "+authoritySecret+"}\ninbox: {poll_interval: 50ms}\n")
	from := time.Now().UTC().Add(-time.Minute)
	body := func(env, run string) []byte {
		return []byte(`{"service":"payments-api","environment":"` + env + `","version":"1.0.0","status":"succeeded","started_at":"` +
			time.Now().UTC().Format(time.RFC3339) + `","provider":"github","run_id":"` + run + `"}`)
	}
	if e := s.settled(s.mustHook("pipelines", body("moon", "9901"))); e.Status != core.EventQuarantined {
		t.Fatalf("a deployment to an unknown environment: %s (%s)", e.Status, e.Reason)
	}
	if e := s.settled(s.mustHook("pipelines", body("production", "9902"))); e.Status != core.EventProcessed {
		t.Fatalf("a deployment to production: %s (%s)", e.Status, e.Reason)
	}
	cm, _ := s.token(core.RoleChangeManager)
	var rep reportAnswer
	if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": from, "to": time.Now().UTC().Add(time.Minute)}, &rep); st != http.StatusCreated {
		t.Fatalf("report: %d", st)
	}
	if rep.Summary.QuarantinedEvents != 1 || rep.Summary.DeploymentsChecked != 1 {
		t.Fatalf("summary %+v, want 1 deployment checked and 1 quarantined delivery", rep.Summary)
	}
	if text := service.SummaryText("daily", core.Report{ID: rep.ID, Query: rep.Query, Summary: rep.Summary}); !strings.Contains(text, "1 deployment deliveries of the period quarantined") {
		t.Errorf("posted summary %q does not say what no report judged", text)
	}
}

// TestScheduleAfterAReplicaDiedMidReport: a replica killed while judging a
// scheduled report leaves the report's row unfinished. The schedule's
// next tick still runs the period (the row does not count as its last
// run), the row is never listed as a report that found nothing, and it
// is removed once stale.
func TestScheduleAfterAReplicaDiedMidReport(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, `
reports:
  - name: every-minute
    cron: "* * * * *"
    period: 7d
    environment: production
`)
			seedReconcileHistory(t, s)
			ctx := context.Background()
			// The dead row was begun in the minute of the tick: were it
			// taken for the last run, the next fire would be a minute on.
			now := time.Now().Add(3 * time.Minute).Truncate(time.Minute).Add(30 * time.Second)
			dead := core.Report{ID: "01DEADREPORT", Kind: core.ReportKindReconciliation, Name: "every-minute", PolicyVersion: 1,
				CreatedAt: now.Add(-20 * time.Second).UTC(), CreatedBy: "schedule:every-minute", Summary: core.NewReconcileSummary(),
				Query: core.ReconcileQuery{From: now.Add(-7 * 24 * time.Hour), To: now, Cutoff: now}}
			if err := s.app.DB.CreateReport(ctx, dead); err != nil {
				t.Fatal(err)
			}
			if err := s.app.Scheduler.TickAt(ctx, now); err != nil {
				t.Fatal(err)
			}
			reports, err := s.app.DB.ListReports(ctx, core.ReportKindReconciliation, 10, "")
			if err != nil || len(reports) != 1 || reports[0].ID == dead.ID || reports[0].Summary.Findings != 3 {
				t.Fatalf("reports after the tick: %+v %v, want the period reported (3 findings), not the dead row", reports, err)
			}
			if _, err := s.app.DB.GetReport(ctx, dead.ID); !core.IsKind(err, core.KindNotFound) {
				t.Errorf("the dead row read: %v", err)
			}
			// An hour and more on, the next tick removes it.
			if err := s.app.Scheduler.TickAt(ctx, now.Add(2*time.Hour)); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := s.app.DB.SQLX().GetContext(ctx, &n, s.app.DB.SQLX().Rebind(`SELECT COUNT(*) FROM reports WHERE id = ?`), dead.ID); err != nil || n != 0 {
				t.Errorf("the dead row is still stored (%d, %v)", n, err)
			}
		})
	}
}
