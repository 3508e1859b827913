package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store"
)

// scheduleWorld is a store under the default policy (production strict,
// business hours Monday–Friday 09:00–17:00 UTC), a stepped clock and a
// scheduler running one schedule, "daily", over production.
type scheduleWorld struct {
	t     *testing.T
	clock *stepClock
	db    *store.DB
	pols  *Policies
	sch   *Scheduler
}

// monday is the schedule tests' first day: Monday 2026-11-23, 06:00 UTC.
var monday = time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)

func newScheduleWorld(t *testing.T, dialect, expr string, period time.Duration, wrap func(ScheduleStore) ScheduleStore) *scheduleWorld {
	t.Helper()
	w := &scheduleWorld{t: t, clock: &stepClock{t: monday}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w.db, _ = openVerdictStore(t, dialect, w.clock)
	w.pols = NewPolicies(w.db, log)
	if err := w.pols.Load(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	c, err := cron.ParseStandard(expr)
	if err != nil {
		t.Fatal(err)
	}
	var st ScheduleStore = w.db
	if wrap != nil {
		st = wrap(st)
	}
	rec := NewReconciler(w.db, w.pols, w.clock, log, core.ReconcileOptions{})
	w.sch = NewScheduler(rec, st, []ReportSchedule{{Name: "daily", Cron: c, Period: period, Environment: "production"}}, 0, "replica-a", w.clock, log)
	return w
}

// deploy records, at recorded, a production deployment of run started
// at started (succeeded five minutes later), linking changes.
func (w *scheduleWorld) deploy(run string, started, recorded time.Time, changes ...string) {
	w.t.Helper()
	fin := started.Add(5 * time.Minute)
	w.record(run, core.DeploySucceeded, started, &fin, recorded, changes...)
}

// record records, at recorded, a production deployment of run.
func (w *scheduleWorld) record(run, status string, started time.Time, finished *time.Time, recorded time.Time, changes ...string) {
	w.t.Helper()
	w.clock.set(recorded)
	if _, _, err := w.db.RecordDeployment(context.Background(), core.Deployment{
		Service: "payments-api", Environment: "production", Version: "1." + run, Commit: "c0ffee0", Team: "red",
		Status: status, StartedAt: started, FinishedAt: finished, Actor: "dora", Changes: changes,
		Provider: "github", RunID: run, URL: "https://ci.example/runs/" + run, Source: "api",
	}, "test"); err != nil {
		w.t.Fatal(err)
	}
}

// tick runs the scheduler at at.
func (w *scheduleWorld) tick(at time.Time) error {
	w.clock.set(at)
	return w.sch.TickAt(context.Background(), at)
}

// judged returns, for each run, the findings' codes of every report that
// showed one for it, by report name.
func (w *scheduleWorld) judged() map[string]map[string][]string {
	w.t.Helper()
	ctx := context.Background()
	reports, err := w.db.ListReports(ctx, core.ReportKindReconciliation, 500, "")
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	for _, r := range reports {
		err := w.db.ReportFindings(ctx, r.ID, func(f core.ReconcileFinding) error {
			if out[f.Deployment.RunID] == nil {
				out[f.Deployment.RunID] = map[string][]string{}
			}
			out[f.Deployment.RunID][r.Name] = append(out[f.Deployment.RunID][r.Name], f.Code)
			return nil
		})
		if err != nil {
			w.t.Fatal(err)
		}
	}
	return out
}

// TestScheduleLateArrivalsCoverTheGapBetweenPeriods: with a period shorter
// than the interval between fire times (daily at 07:00, 12 hours), a
// deployment that started just after a fire and was recorded before that
// run's cut-off is in no period, and was recorded before the next run's
// previous cut-off: the next run's late arrivals judge it.
func TestScheduleLateArrivalsCoverTheGapBetweenPeriods(t *testing.T) {
	for _, dialect := range []string{store.SQLite, store.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			w := newScheduleWorld(t, dialect, "0 7 * * *", 12*time.Hour, nil)
			fire := monday.Add(time.Hour) // 07:00
			w.deploy("4101", fire.Add(10*time.Second), fire.Add(20*time.Second))
			if err := w.tick(fire.Add(30 * time.Second)); err != nil {
				t.Fatal(err)
			}
			w.deploy("4102", fire.Add(time.Hour), fire.Add(time.Hour+time.Minute)) // recorded after the cut-off
			if err := w.tick(fire.Add(24*time.Hour + 30*time.Second)); err != nil {
				t.Fatal(err)
			}
			got := w.judged()
			for _, run := range []string{"4101", "4102"} {
				if len(got[run]["daily (late arrivals)"]) == 0 {
					t.Errorf("run %s, started in the gap between two periods, judged by %v; want the late arrivals", run, got[run])
				}
			}
		})
	}
}

// failLate is a schedule store whose late-arrivals count fails while
// fail > 0: the database lost after a run's own report was judged.
type failLate struct {
	ScheduleStore
	fail int
}

func (f *failLate) LateDeployments(ctx context.Context, env string, before, after, uncovered, by time.Time) (int, time.Time, error) {
	if f.fail > 0 {
		f.fail--
		return 0, time.Time{}, errors.New("connection lost")
	}
	return f.ScheduleStore.LateDeployments(ctx, env, before, after, uncovered, by)
}

// TestScheduleRunWithAFailedLatePassRunsAgain: a run whose late-arrivals
// pass fails after its own report was judged stores neither, and stays
// due: the next tick runs it again, and the deployment that arrived late
// is judged. Had the run's report counted as the schedule's last, no
// later run would look for what arrived before it.
func TestScheduleRunWithAFailedLatePassRunsAgain(t *testing.T) {
	var fl *failLate
	w := newScheduleWorld(t, store.SQLite, "0 7 * * *", 24*time.Hour, func(s ScheduleStore) ScheduleStore {
		fl = &failLate{ScheduleStore: s}
		return fl
	})
	fire := monday.Add(time.Hour)
	if err := w.tick(fire.Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	w.deploy("4201", fire.Add(-time.Hour), fire.Add(2*time.Hour)) // started in the first period, recorded after its report
	fl.fail = 1
	if err := w.tick(fire.Add(24*time.Hour + 30*time.Second)); err == nil {
		t.Fatal("the run whose late pass failed reported no error")
	}
	reports, err := w.db.ListReports(context.Background(), core.ReportKindReconciliation, 10, "")
	if err != nil || len(reports) != 1 {
		t.Fatalf("reports after the failed run: %d %v; want the first run's alone", len(reports), err)
	}
	for _, at := range []time.Duration{24*time.Hour + time.Minute, 48*time.Hour + 30*time.Second} {
		if err := w.tick(fire.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	got := w.judged()
	if names := got["4201"]; len(names["daily (late arrivals)"]) == 0 {
		t.Fatalf("run 4201, recorded late, judged by %v; want the late arrivals of the run that failed, run again", names)
	}
	reports, err = w.db.ListReports(context.Background(), core.ReportKindReconciliation, 10, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range reports {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	if want := []string{"daily", "daily", "daily", "daily (late arrivals)"}; !slices.Equal(names, want) {
		t.Errorf("reports %v, want %v", names, want)
	}
}

// TestScheduleRevisesEmergencyReviewOverdue: an emergency deployment an
// hour before a daily report's fire has 24 business hours for its
// retrospective review, a deadline (Wednesday 17:00) after the next two
// cut-offs; no period's own report can call it missed. The run after the
// deadline shows it in the schedule's revised findings, once, and without
// the findings the deployment's own report already showed. Likewise an
// emergency deployment still running at the fire, never validated: its
// four hours end after the cut-off, and the next run's revised findings
// show EMERGENCY_VALIDATION_OVERDUE.
func TestScheduleRevisesEmergencyReviewOverdue(t *testing.T) {
	for _, dialect := range []string{store.SQLite, store.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			w := newScheduleWorld(t, dialect, "0 7 * * *", 24*time.Hour, nil)
			ctx := context.Background()
			fire := monday.Add(time.Hour)
			window := fire.Add(-3 * time.Hour)
			end := fire.Add(3 * time.Hour)
			if _, err := w.db.UpsertChange(ctx, core.Change{Source: "snow", Key: "CHG9001", Type: core.ChangeEmergency, State: core.ChangeStateImplement,
				Approval: core.ApprovalApproved, Approvals: []core.Approval{{Approver: "ana", Decision: core.ApprovalApproved}}, RequestedBy: "carla",
				PlannedStart: &window, PlannedEnd: &end, Services: []string{"payments-api"}, HasRiskAssessment: true, HasBackoutPlan: true,
				SourceUpdatedAt: fire.Add(-2 * time.Hour)}); err != nil {
				t.Fatal(err)
			}
			w.deploy("4301", fire.Add(-time.Hour), fire.Add(-59*time.Minute), "CHG9001")
			w.record("4302", core.DeployStarted, fire.Add(-time.Hour), nil, fire.Add(-58*time.Minute), "CHG9001")
			for day := range 5 {
				if err := w.tick(fire.Add(time.Duration(day)*24*time.Hour + 30*time.Second)); err != nil {
					t.Fatal(err)
				}
				if day == 2 {
					if n := count(w.judged()["4301"], core.CodeEmergencyReviewOverdue); n != 0 {
						t.Fatalf("EMERGENCY_REVIEW_OVERDUE shown %d times before its deadline", n)
					}
				}
			}
			got := w.judged()["4301"]
			if n := count(got, core.CodeEmergencyReviewOverdue); n != 1 {
				t.Fatalf("run 4301's findings by report %v: EMERGENCY_REVIEW_OVERDUE shown %d times, want once", got, n)
			}
			if revised := got["daily (revised)"]; !slices.Equal(revised, []string{core.CodeEmergencyReviewOverdue}) {
				t.Errorf("revised findings of run 4301 %v, want EMERGENCY_REVIEW_OVERDUE alone (the rest was reported with its period)", revised)
			}
			if len(got["daily"]) == 0 {
				t.Errorf("run 4301 has no finding in its own period's report: %v", got)
			}
			unvalidated := w.judged()["4302"]
			if n := count(unvalidated, core.CodeEmergencyValidationOverdue); n != 1 || !slices.Contains(unvalidated["daily (revised)"], core.CodeEmergencyValidationOverdue) {
				t.Errorf("run 4302's findings by report %v: want EMERGENCY_VALIDATION_OVERDUE once, in the revised findings", unvalidated)
			}
		})
	}
}

// TestScheduleRevisesALateIncident: a P1 incident opened ten minutes
// before a daily report's fire, whose webhook was lost and which a poll
// recorded after the report's cut-off, blocked the deployment started
// between the two: the next run's revised findings show INCIDENT_BLOCK on
// it (and nothing its own report showed); a deployment started before the
// incident has none.
func TestScheduleRevisesALateIncident(t *testing.T) {
	for _, dialect := range []string{store.SQLite, store.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			w := newScheduleWorld(t, dialect, "0 7 * * *", 24*time.Hour, nil)
			ctx := context.Background()
			fire := monday.Add(time.Hour)
			w.deploy("4401", fire.Add(-5*time.Minute), fire.Add(-4*time.Minute))
			w.deploy("4402", fire.Add(-20*time.Minute), fire.Add(-19*time.Minute))
			if err := w.tick(fire.Add(30 * time.Second)); err != nil {
				t.Fatal(err)
			}
			opened := fire.Add(-10 * time.Minute)
			w.clock.set(fire.Add(10 * time.Minute))
			if _, err := w.db.UpsertIncident(ctx, core.Incident{Source: "snow", Key: "INC9001", Priority: 1, State: core.IncidentOpen,
				Services: []string{"payments-api"}, OpenedAt: &opened, SourceUpdatedAt: opened}); err != nil {
				t.Fatal(err)
			}
			if err := w.tick(fire.Add(24*time.Hour + 30*time.Second)); err != nil {
				t.Fatal(err)
			}
			got := w.judged()
			if revised := got["4401"]["daily (revised)"]; !slices.Equal(revised, []string{core.CodeIncidentBlock}) {
				t.Errorf("revised findings of run 4401 %v (all: %v), want INCIDENT_BLOCK alone", revised, got["4401"])
			}
			if n := count(got["4402"], core.CodeIncidentBlock); n != 0 {
				t.Errorf("run 4402, started before the incident, has INCIDENT_BLOCK: %v", got["4402"])
			}
		})
	}
}

// count is how many findings of code the reports showed.
func count(byReport map[string][]string, code string) int {
	n := 0
	for _, codes := range byReport {
		for _, c := range codes {
			if c == code {
				n++
			}
		}
	}
	return n
}
