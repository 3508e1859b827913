package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

func rtp(t time.Time) *time.Time { return &t }

// reconcileHistory seeds one history of changes, incidents, reviews,
// decisions and deployments through the store's own API. Every as-of case
// of the reconciler is in it; the history is the same on every dialect.
func reconcileHistory(t *testing.T, db *DB) {
	t.Helper()
	ctx := context.Background()
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC) // a Wednesday
	change := func(key string, at time.Time, edit func(c *core.Change)) {
		t.Helper()
		c := core.Change{
			Source: "snow", Key: key, Type: core.ChangeNormal, State: core.ChangeStateScheduled, Approval: core.ApprovalApproved,
			Approvals:    []core.Approval{{Approver: "cab-alice", Decision: core.ApprovalApproved, At: rtp(base.Add(-48 * time.Hour))}},
			PlannedStart: rtp(base.Add(-24 * time.Hour)), PlannedEnd: rtp(base.Add(30 * 24 * time.Hour)),
			Services: []string{"checkout"}, RequestedBy: "bob", HasRiskAssessment: true, HasBackoutPlan: true,
			SourceUpdatedAt: at,
		}
		if edit != nil {
			edit(&c)
		}
		if _, err := db.UpsertChange(ctx, c); err != nil {
			t.Fatalf("upsert change %s: %v", key, err)
		}
	}
	incident := func(key, state string, at time.Time) {
		t.Helper()
		i := core.Incident{Source: "snow", Key: key, Priority: 1, State: state, Services: []string{"checkout"}, SourceUpdatedAt: at}
		if _, err := db.UpsertIncident(ctx, i); err != nil {
			t.Fatalf("upsert incident %s: %v", key, err)
		}
	}
	n := 0
	deploy := func(env, version string, at time.Time, changes []string, decision core.Decision, edit func(d *core.Deployment)) {
		t.Helper()
		n++
		relID := core.ReleaseID("checkout", version, env)
		if decision != "" {
			dec := core.GateDecision{
				ID: fmt.Sprintf("00000000-0000-7000-8000-%012d", n), ReleaseID: relID, Decision: decision,
				PolicyVersion: 1, EvaluatedAt: at.Add(-time.Minute), Reasons: []core.Reason{},
				Request: core.GateRequest{Service: "checkout", Environment: env, Version: version, Commit: "c" + version, Team: "payments", Changes: changes},
			}
			if decision != core.Allow {
				dec.Reasons = []core.Reason{{Code: core.CodeChangeNotApproved, Message: "waiting", Ref: "CHG-B", Result: decision}}
			}
			if err := db.SaveDecision(ctx, dec, "token:ci"); err != nil {
				t.Fatalf("save decision: %v", err)
			}
		}
		if _, err := db.UpsertRelease(ctx, core.Release{Service: "checkout", Version: version, Environment: env, Team: "payments", Changes: changes}); err != nil {
			t.Fatal(err)
		}
		d := core.Deployment{
			ReleaseID: relID, Service: "checkout", Environment: env, Version: version, Commit: "c" + version, Team: "payments",
			Status: core.DeploySucceeded, StartedAt: at, FinishedAt: rtp(at.Add(10 * time.Minute)), Actor: "dora",
			Changes: changes, Provider: "github", RunID: fmt.Sprint(n), URL: fmt.Sprintf("https://ci.example/run/%d", n),
		}
		if edit != nil {
			edit(&d)
		}
		if _, _, err := db.RecordDeployment(ctx, d, "test"); err != nil {
			t.Fatalf("record deployment: %v", err)
		}
	}

	change("CHG-A", base.Add(-72*time.Hour), nil)
	// Approved an hour after its deployment.
	change("CHG-B", base.Add(-72*time.Hour), func(c *core.Change) {
		c.Approval, c.Approvals = core.ApprovalRequested, []core.Approval{{Approver: "cab-alice", Decision: core.ApprovalRequested}}
	})
	change("CHG-B", base.Add(2*time.Hour), nil)
	// Edited after its deployment: the scope cut later does not count.
	change("CHG-E", base.Add(-72*time.Hour), nil)
	change("CHG-E", base.Add(6*time.Hour), func(c *core.Change) { c.Services = []string{"ledger"} })
	// An emergency change never reviewed.
	change("CHG-F", base.Add(-72*time.Hour), func(c *core.Change) { c.Type = core.ChangeEmergency })
	// An emergency change reviewed (a later version) in time.
	change("CHG-G", base.Add(-72*time.Hour), func(c *core.Change) { c.Type = core.ChangeEmergency })
	change("CHG-G", base.Add(12*time.Hour), func(c *core.Change) { c.Type, c.ReviewedAt = core.ChangeEmergency, rtp(base.Add(12*time.Hour)) })
	// An incident active at one deployment, resolved afterwards.
	incident("INC-1", core.IncidentOpen, base.Add(3*time.Hour))
	incident("INC-1", core.IncidentResolved, base.Add(5*time.Hour))
	// An incident active before the period and resolved inside it.
	incident("INC-0", core.IncidentOpen, base.Add(-100*time.Hour))
	incident("INC-0", core.IncidentResolved, base.Add(30*time.Minute))

	// Deliveries processed out of order: INC-2's opening (7h30) arrives
	// after its resolution (8h30), so it is kept in the history only; the
	// withdrawal of CHG-H's approval (9h30) arrives after the source
	// confirmed it approved again (10h30, same content as the stored
	// version: only the stamp moves).
	incident("INC-2", core.IncidentResolved, base.Add(8*time.Hour+30*time.Minute))
	incident("INC-2", core.IncidentOpen, base.Add(7*time.Hour+30*time.Minute))
	change("CHG-H", base.Add(-72*time.Hour), nil)
	change("CHG-H", base.Add(10*time.Hour+30*time.Minute), nil)
	change("CHG-H", base.Add(9*time.Hour+30*time.Minute), func(c *core.Change) {
		c.Approval, c.Approvals = core.ApprovalRequested, []core.Approval{{Approver: "cab-alice", Decision: core.ApprovalRequested}}
	})

	deploy("production", "1.0.0", base.Add(-0*time.Hour), []string{"CHG-A"}, core.Allow, nil)            // INC-0 still open: INCIDENT_BLOCK
	deploy("production", "1.0.1", base.Add(1*time.Hour), []string{"CHG-B"}, core.Wait, nil)              // CHANGE_NOT_APPROVED, GATE_BYPASSED
	deploy("production", "1.0.2", base.Add(4*time.Hour), []string{"CHG-A"}, core.Allow, nil)             // INCIDENT_BLOCK (INC-1)
	deploy("production", "1.0.3", base.Add(4*time.Hour), []string{"CHG-E"}, "", nil)                     // GATE_BYPASSED, INCIDENT_BLOCK
	deploy("production", "1.0.4", base.Add(5*time.Hour+time.Minute), []string{"CHG-E"}, core.Allow, nil) // compliant
	deploy("production", "1.0.5", base.Add(7*time.Hour), []string{"CHG-F"}, core.Allow, nil)             // EMERGENCY_REVIEW_OVERDUE
	deploy("production", "1.0.6", base.Add(8*time.Hour), []string{"CHG-A"}, core.Allow, func(d *core.Deployment) { d.Commit = "other" })
	deploy("development", "1.0.7", base.Add(9*time.Hour), nil, "", nil)                                       // open: nothing
	deploy("production", "1.0.8", base.Add(10*time.Hour), nil, core.Allow, nil)                               // NO_CHANGE
	deploy("production", "1.0.9", base.Add(11*time.Hour), []string{"CHG-G"}, core.Allow, nil)                 // reviewed in time: compliant
	deploy("production", "1.0.10", base.Add(10*time.Hour+15*time.Minute), []string{"CHG-H"}, core.Allow, nil) // CHANGE_NOT_APPROVED: withdrawn then
	deploy("production", "1.0.11", base.Add(11*time.Hour+15*time.Minute), []string{"CHG-H"}, core.Allow, nil) // approved again: compliant
	// 1.0.12 allowed and deployed (compliant); the gate then denies the
	// same release and commit; a re-run an hour on names the old allow:
	// GATE_BYPASSED, the deny in force.
	deploy("production", "1.0.12", base.Add(12*time.Hour), []string{"CHG-A"}, core.Allow, nil)
	if err := db.SaveDecision(ctx, core.GateDecision{
		ID: "00000000-0000-7000-8000-000000000099", ReleaseID: core.ReleaseID("checkout", "1.0.12", "production"), Decision: core.Deny,
		PolicyVersion: 1, EvaluatedAt: base.Add(12*time.Hour + 30*time.Minute),
		Reasons: []core.Reason{{Code: core.CodeEvidenceFailed, Message: "the scan failed", Result: core.Deny}},
		Request: core.GateRequest{Service: "checkout", Environment: "production", Version: "1.0.12", Commit: "c1.0.12", Team: "payments", Changes: []string{"CHG-A"}},
	}, "token:ci"); err != nil {
		t.Fatalf("save decision: %v", err)
	}
	deploy("production", "1.0.12", base.Add(13*time.Hour), []string{"CHG-A"}, "", func(d *core.Deployment) {
		d.DecisionID = "00000000-0000-7000-8000-000000000013"
	})
	// A later report of 1.0.4's run (the clock is weeks on) names an
	// incident it fixed: LINKS_CHANGED_AFTER_DEPLOY.
	deploy("production", "1.0.4", base.Add(5*time.Hour+time.Minute), []string{"CHG-E"}, "", func(d *core.Deployment) {
		d.RunID, d.Incidents = "5", []string{"INC-9"}
	})
}

// reconcileAll runs a report's scan over the seeded history in pages of
// pageSize and returns the findings as JSON lines without the ids a store
// assigns (deployment ids), plus the summary.
func reconcileAll(t *testing.T, db *DB, pageSize int) ([]string, core.ReconcileSummary) {
	t.Helper()
	cp, err := core.Compile(core.DefaultPolicy(), 1)
	if err != nil {
		t.Fatal(err)
	}
	cutoff := time.Date(2026, 12, 20, 0, 0, 0, 0, time.UTC)
	q := core.ReconcileQuery{From: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), Cutoff: cutoff}
	var lines []string
	sum := core.NewReconcileSummary()
	err = db.ReconcileScan(context.Background(), q, cp.IsMajor, pageSize, func(page []core.DeploymentFacts) error {
		for _, df := range page {
			fs := core.ReconcileDeployment(cp, df, cutoff, core.ReconcileOptions{})
			sum.Add(fs)
			for _, f := range fs {
				f.Deployment.ID = ""
				b, _ := json.Marshal(f)
				lines = append(lines, string(b))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return lines, sum
}

func findingKey(line string) string {
	var f core.ReconcileFinding
	_ = json.Unmarshal([]byte(line), &f)
	return f.Deployment.Version + " " + f.Code + " " + f.Ref
}

// TestReconcileScanSameOnBothDialects: the same seeded history reconciled
// on PostgreSQL and SQLite gives identical findings, in any page size, and
// the expected ones (every as-of case).
func TestReconcileScanSameOnBothDialects(t *testing.T) {
	want := []string{
		"1.0.0 INCIDENT_BLOCK INC-0",
		"1.0.1 CHANGE_NOT_APPROVED CHG-B",
		"1.0.1 GATE_BYPASSED 00000000-0000-7000-8000-000000000002",
		"1.0.2 INCIDENT_BLOCK INC-1",
		"1.0.3 INCIDENT_BLOCK INC-1",
		"1.0.3 GATE_BYPASSED ",
		"1.0.4 LINKS_CHANGED_AFTER_DEPLOY ",
		"1.0.5 EMERGENCY_REVIEW_OVERDUE CHG-F",
		"1.0.6 INCIDENT_BLOCK INC-2",
		"1.0.6 GATE_BYPASSED 00000000-0000-7000-8000-000000000007",
		"1.0.8 NO_CHANGE ",
		"1.0.10 CHANGE_NOT_APPROVED CHG-H",
		"1.0.12 GATE_BYPASSED 00000000-0000-7000-8000-000000000099",
	}
	results := map[string][]string{}
	for _, dialect := range []string{Postgres, SQLite} {
		clock := &testClock{t: time.Date(2026, 12, 19, 0, 0, 0, 0, time.UTC)}
		db := newTestDB(t, dialect, clock)
		reconcileHistory(t, db)
		for _, page := range []int{1, 2, 1000} {
			lines, sum := reconcileAll(t, db, page)
			var keys []string
			for _, l := range lines {
				keys = append(keys, findingKey(l))
			}
			if !slices.Equal(keys, want) {
				t.Fatalf("%s page %d: findings\n%q\nwant\n%q", dialect, page, keys, want)
			}
			if sum.DeploymentsChecked != 14 || sum.Compliant != 4 || sum.Findings != len(want) {
				t.Errorf("%s page %d: summary %+v", dialect, page, sum)
			}
			if prev, ok := results[dialect]; ok && !slices.Equal(prev, lines) {
				t.Errorf("%s: page size %d changed the findings", dialect, page)
			}
			results[dialect] = lines
		}
	}
	if !slices.Equal(results[Postgres], results[SQLite]) {
		for i := range results[Postgres] {
			if i < len(results[SQLite]) && results[Postgres][i] != results[SQLite][i] {
				t.Errorf("first difference at %d:\npostgres %s\nsqlite   %s", i, results[Postgres][i], results[SQLite][i])
				break
			}
		}
		t.Fatal("PostgreSQL and SQLite disagree")
	}
	// The judged change version and lineage survive the trip.
	var f core.ReconcileFinding
	_ = json.Unmarshal([]byte(results[Postgres][1]), &f)
	if f.ChangeKey != "CHG-B" || f.ChangeVersion != 1 || len(f.Lineage.Changes) != 1 || f.Lineage.Decision == nil ||
		f.Lineage.Decision.Decision != core.Wait || f.Lineage.Decision.Commit != "c1.0.1" || len(f.Lineage.Decision.Reasons) != 1 {
		t.Errorf("finding lineage: %+v", f)
	}
}

// TestUnfinishedReport: a report begun and never finished (its replica
// died while judging) is not read, listed or counted as its schedule's
// last run, and is removed once stale, with the findings it had written.
func TestUnfinishedReport(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		report := func(at time.Time) core.Report {
			return core.Report{ID: newID(), Kind: core.ReportKindReconciliation, Name: "nightly", PolicyVersion: 1, CreatedAt: at, CreatedBy: "scheduler",
				Query: core.ReconcileQuery{From: at.Add(-time.Hour), To: at, Cutoff: at}, Summary: core.NewReconcileSummary()}
		}
		done, dead := report(clock.t.Add(-2*time.Hour)), report(clock.t.Add(-90*time.Minute))
		for _, r := range []core.Report{done, dead} {
			if err := db.CreateReport(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.FinishReports(ctx, done); err != nil {
			t.Fatal(err)
		}
		if err := db.AddFindings(ctx, dead.ID, []core.ReconcileFinding{{ID: 1, Code: core.CodeNoChange, Severity: core.SeverityHigh, Message: "m",
			Deployment: core.DeploymentRef{ID: "d1", Service: "s"}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetReport(ctx, dead.ID); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("an unfinished report read: %v, want not found", err)
		}
		if list, err := db.ListReports(ctx, core.ReportKindReconciliation, 10, ""); err != nil || len(list) != 1 || list[0].ID != done.ID {
			t.Errorf("list %+v %v, want the finished report only", list, err)
		}
		if last, ok, err := db.LastReport(ctx, core.ReportKindReconciliation, "nightly"); err != nil || !ok || !last.CreatedAt.Equal(done.CreatedAt) {
			t.Errorf("last report at %v %v %v, want the finished one's %v", last, ok, err, done.CreatedAt)
		}
		if n, err := db.DeleteUnfinishedReports(ctx, dead.CreatedAt); err != nil || n != 0 {
			t.Errorf("removed %d, %v, want none begun before its own start", n, err)
		}
		if n, err := db.DeleteUnfinishedReports(ctx, clock.t); err != nil || n != 1 {
			t.Errorf("removed %d, %v, want the unfinished one", n, err)
		}
		var findings int
		if err := db.db.GetContext(ctx, &findings, db.q(`SELECT COUNT(*) FROM findings WHERE report_id = ?`), dead.ID); err != nil || findings != 0 {
			t.Errorf("%d findings of the removed report left, %v", findings, err)
		}
		if _, err := db.GetReport(ctx, done.ID); err != nil {
			t.Errorf("the finished report: %v", err)
		}
	})
}

// TestReportStorage: findings stored with a report read back in order, an
// acknowledgement is kept (and audited), never overwritten, and counted.
func TestReportStorage(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		r := core.Report{ID: newID(), Kind: core.ReportKindReconciliation, PolicyVersion: 1, CreatedAt: clock.t, CreatedBy: "token:cm",
			Query: core.ReconcileQuery{From: clock.t.Add(-time.Hour), To: clock.t, Cutoff: clock.t}, Summary: core.NewReconcileSummary()}
		if err := db.CreateReport(ctx, r); err != nil {
			t.Fatal(err)
		}
		var fs []core.ReconcileFinding
		for i := 1; i <= 3; i++ {
			fs = append(fs, core.ReconcileFinding{ID: i, Code: core.CodeNoChange, Severity: core.SeverityHigh, Message: "m",
				Deployment: core.DeploymentRef{ID: fmt.Sprint("d", i), Service: "s"}})
		}
		if err := db.AddFindings(ctx, r.ID, fs); err != nil {
			t.Fatal(err)
		}
		r.Summary.Findings = 3
		if err := db.FinishReports(ctx, r); err != nil {
			t.Fatal(err)
		}
		f, err := db.AckFinding(ctx, r.ID, 2, "token:cm", "accepted: hotfix", clock.t)
		if err != nil || f.Ack == nil || f.Ack.Comment != "accepted: hotfix" {
			t.Fatalf("ack: %+v %v", f, err)
		}
		if _, err := db.AckFinding(ctx, r.ID, 2, "token:other", "again", clock.t); !core.IsKind(err, core.KindConflict) {
			t.Errorf("second ack: %v, want conflict", err)
		}
		if _, err := db.AckFinding(ctx, r.ID, 9, "token:cm", "x", clock.t); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("ack of a missing finding: %v, want not found", err)
		}
		got, err := db.GetReport(ctx, r.ID)
		if err != nil || got.Summary.Findings != 3 || got.Summary.Acknowledged != 1 {
			t.Fatalf("report: %+v %v", got, err)
		}
		var ids []int
		var acked int
		if err := db.ReportFindings(ctx, r.ID, func(f core.ReconcileFinding) error {
			ids = append(ids, f.ID)
			if f.Ack != nil {
				acked = f.ID
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids, []int{1, 2, 3}) || acked != 2 {
			t.Errorf("findings %v acked %d", ids, acked)
		}
		audit, err := db.ListAudit(ctx, core.AuditFilter{Subject: "report:" + r.ID})
		if err != nil || len(audit) != 2 || audit[0].Action != "report.reconciliation" || audit[1].Action != "report.finding.ack" {
			t.Errorf("audit: %+v %v", audit, err)
		}
		list, err := db.ListReports(ctx, core.ReportKindReconciliation, 10, "")
		if err != nil || len(list) != 1 {
			t.Errorf("list: %v %v", list, err)
		}
		if n, err := db.DeleteReportsBefore(ctx, core.ReportKindReconciliation, clock.t.Add(time.Second)); err != nil || n != 1 {
			t.Errorf("retention deleted %d, %v", n, err)
		}
	})
}
