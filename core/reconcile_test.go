package core

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// recPolicy is the reconciliation tests' policy: UTC, Monday–Friday
// 09:00–17:00 with 2026-12-01 a holiday, a dated freeze in December.
func recPolicy(t testing.TB) *CompiledPolicy {
	t.Helper()
	p := DefaultPolicy()
	p.BusinessHours.Holidays = []string{"2026-12-01"}
	p.Freezes = []Freeze{{Name: "peak", Dated: []DatedWindow{{From: "2026-12-10T00:00", To: "2026-12-12T00:00"}}}}
	cp, err := Compile(p, 3)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// recStart is the deployments' start: Wednesday 2026-11-25 10:00 UTC.
var recStart = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func recChange(key string, at time.Time) Change {
	return Change{
		Source: "snow", Key: key, Type: ChangeNormal, State: ChangeStateScheduled, Approval: ApprovalApproved,
		Approvals:    []Approval{{Approver: "cab-alice", Decision: ApprovalApproved, At: tp(at.Add(-48 * time.Hour))}},
		PlannedStart: tp(at.Add(-2 * time.Hour)), PlannedEnd: tp(at.Add(4 * time.Hour)),
		Services: []string{"checkout"}, RequestedBy: "bob", HasRiskAssessment: true, HasBackoutPlan: true,
	}
}

// history is a record's stored versions; asOf picks them as the store does.
type recCase struct {
	name       string
	start      time.Time
	changes    []ChangeVersion   // every version of every linked change
	incidents  []IncidentVersion // every version of every incident
	pirs       []PIR
	decision   *DecisionRef
	holds      []Hold     // as the store reads them around the start
	evidence   []Evidence // the release's evidence recorded by the start
	mutate     func(d *Deployment)
	cutoff     time.Time
	want       []string // finding codes, in order
	wantChange int      // the change version the first finding was judged against (0: not checked)
	check      func(t *testing.T, fs []ReconcileFinding)
}

func v(n int, from time.Time, c Change) ChangeVersion {
	return ChangeVersion{Version: n, ValidFrom: from, RecordedAt: from, Change: c}
}

func allow(at time.Time) *DecisionRef {
	return &DecisionRef{ID: "dec-1", ReleaseID: ReleaseID("checkout", "1.2.3", "production"), Decision: Allow, EvaluatedAt: at, Commit: "abc123"}
}

// runRecCase assembles a deployment's facts from full histories the way
// the store does (ChangeAsOf, IncidentTimeline, PIRsPendingAt) and
// reconciles it.
func runRecCase(t *testing.T, cp *CompiledPolicy, tc recCase) []ReconcileFinding {
	t.Helper()
	start := tc.start
	if start.IsZero() {
		start = recStart
	}
	d := Deployment{
		ID: "dep-1", ReleaseID: ReleaseID("checkout", "1.2.3", "production"), Service: "checkout", Environment: "production",
		Version: "1.2.3", Commit: "abc123", Team: "payments", Status: DeploySucceeded, StartedAt: start,
		FinishedAt: tp(start.Add(20 * time.Minute)), Actor: "deployer", Changes: []string{"CHG1"},
		Provider: "github", RunID: "42", URL: "https://ci.example/run/42",
	}
	if tc.mutate != nil {
		tc.mutate(&d)
	}
	cutoff := tc.cutoff
	if cutoff.IsZero() {
		cutoff = start.Add(30 * 24 * time.Hour)
	}
	df := DeploymentFacts{Deployment: d, ChangesAtCutoff: map[string]ChangeVersion{}, Decision: tc.decision, Holds: tc.holds, Evidence: tc.evidence}
	byKey := map[string][]ChangeVersion{}
	for _, cv := range tc.changes {
		byKey[cv.Change.Key] = append(byKey[cv.Change.Key], cv)
	}
	for _, k := range d.Changes {
		if cv, ok := ChangeAsOf(byKey[k], d.StartedAt); ok {
			df.Changes = append(df.Changes, cv)
			if later, ok := ChangeAsOf(byKey[k], cutoff); ok {
				df.ChangesAtCutoff[k] = later
			}
		}
	}
	tl := NewIncidentTimeline(cp.IsMajor)
	for _, iv := range tc.incidents {
		tl.Add(iv)
	}
	df.Incidents = tl.ActiveAt(d.StartedAt)
	df.PendingPIRs = PIRsPendingAt(tc.pirs, d.Team, d.ReleaseID, d.Service, d.Version, d.Environment, d.Commit, d.StartedAt)
	return ReconcileDeployment(cp, df, cutoff, ReconcileOptions{})
}

func codes(fs []ReconcileFinding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Code)
	}
	return out
}

func TestReconcileDeployment(t *testing.T) {
	cp := recPolicy(t)
	good := recChange("CHG1", recStart)
	requested := good
	requested.Approval, requested.Approvals = ApprovalRequested, []Approval{{Approver: "cab-alice", Decision: ApprovalRequested}}
	emergency := good
	emergency.Type = ChangeEmergency
	friday := time.Date(2026, 11, 27, 16, 0, 0, 0, time.UTC) // 1 business hour left that day
	emergencyFri := recChange("CHG1", friday)
	emergencyFri.Type = ChangeEmergency
	reviewed := func(c Change, at time.Time) Change { c.ReviewedAt = tp(at); return c }
	major := Incident{Source: "snow", Key: "INC1", Priority: 1, State: IncidentOpen, Services: []string{"checkout"}}
	resolved := major
	resolved.State, resolved.ResolvedAt = IncidentResolved, tp(recStart.Add(time.Hour))

	cases := []recCase{
		{name: "compliant", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)}, decision: allow(recStart.Add(-time.Minute)), want: []string{}},
		{name: "NO_CHANGE", mutate: func(d *Deployment) { d.Changes = nil }, decision: allow(recStart.Add(-time.Minute)), want: []string{CodeNoChange}},
		{name: "CHANGE_NOT_FOUND", decision: allow(recStart.Add(-time.Minute)), want: []string{CodeChangeNotFound}},
		{name: "CHANGE_NOT_FOUND: created after the deploy", changes: []ChangeVersion{v(1, recStart.Add(time.Minute), good)},
			decision: allow(recStart.Add(-time.Minute)), want: []string{CodeChangeNotFound}},
		{name: "CHANGE_NOT_APPROVED: approved an hour after the deploy",
			changes:  []ChangeVersion{v(1, recStart.Add(-24*time.Hour), requested), v(2, recStart.Add(time.Hour), good)},
			decision: allow(recStart.Add(-time.Minute)), want: []string{CodeChangeNotApproved}, wantChange: 1},
		{name: "CHANGE_INCOMPLETE", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), func() Change { c := good; c.HasBackoutPlan = false; return c }())},
			decision: allow(recStart.Add(-time.Minute)), want: []string{CodeChangeIncomplete}},
		{name: "change edited after the deploy: judged by the version then (window missed)",
			changes: []ChangeVersion{
				v(1, recStart.Add(-24*time.Hour), func() Change { c := good; c.PlannedEnd = tp(recStart.Add(-time.Hour)); return c }()),
				v(2, recStart.Add(2*time.Hour), good), // window widened afterwards
			},
			decision: allow(recStart.Add(-time.Minute)), want: []string{CodeOutsideWindow}, wantChange: 1},
		{name: "change edited after the deploy: a later scope cut does not matter",
			changes: []ChangeVersion{v(1, recStart.Add(-24*time.Hour), good),
				v(2, recStart.Add(time.Hour), func() Change { c := good; c.Services = []string{"ledger"}; return c }())},
			decision: allow(recStart.Add(-time.Minute)), want: []string{}},
		{name: "SCOPE_MISMATCH", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), func() Change { c := good; c.Services = []string{"ledger"}; return c }())},
			decision: allow(recStart.Add(-time.Minute)), want: []string{CodeScopeMismatch}},
		{name: "INCIDENT_BLOCK: incident resolved after the deploy still blocked it",
			changes:   []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			incidents: []IncidentVersion{{Version: 1, ValidFrom: recStart.Add(-time.Hour), Incident: major}, {Version: 2, ValidFrom: recStart.Add(time.Hour), Incident: resolved}},
			decision:  allow(recStart.Add(-time.Minute)), want: []string{CodeIncidentBlock}},
		{name: "incident resolved before the deploy",
			changes:   []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			incidents: []IncidentVersion{{Version: 1, ValidFrom: recStart.Add(-3 * time.Hour), Incident: major}, {Version: 2, ValidFrom: recStart.Add(-time.Hour), Incident: resolved}},
			decision:  allow(recStart.Add(-time.Minute)), want: []string{}},
		{name: "incident opened after the deploy",
			changes:   []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			incidents: []IncidentVersion{{Version: 1, ValidFrom: recStart.Add(time.Minute), Incident: major}},
			decision:  allow(recStart.Add(-time.Minute)), want: []string{}},
		{name: "PIR_PENDING: signed off only after the deploy",
			changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			pirs: []PIR{{ReleaseID: "rel-0", Service: "checkout", Version: "1.2.2", Environment: "production", Team: "payments",
				Status: PIRSignedOff, RequiredAt: recStart.Add(-48 * time.Hour), SignedOffAt: tp(recStart.Add(time.Hour))}},
			decision: allow(recStart.Add(-time.Minute)), want: []string{CodePIRPending}},
		{name: "PIR_PENDING: the release's own review, of another commit (the version reused)",
			changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			pirs: []PIR{{ReleaseID: ReleaseID("checkout", "1.2.3", "production"), Service: "checkout", Version: "1.2.3", Environment: "production", Team: "payments",
				Commit: "fff999", Status: PIRPending, RequiredAt: recStart.Add(-48 * time.Hour)}},
			decision: allow(recStart.Add(-time.Minute)), want: []string{CodePIRPending}},
		{name: "the release's own review, of its own commit",
			changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			pirs: []PIR{{ReleaseID: ReleaseID("checkout", "1.2.3", "production"), Service: "checkout", Version: "1.2.3", Environment: "production", Team: "payments",
				Commit: "ABC123", Status: PIRPending, RequiredAt: recStart.Add(-48 * time.Hour)}},
			decision: allow(recStart.Add(-time.Minute)), want: []string{}},
		{name: "PIR signed off before the deploy",
			changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			pirs: []PIR{{ReleaseID: "rel-0", Service: "checkout", Version: "1.2.2", Environment: "production", Team: "payments",
				Status: PIRSignedOff, RequiredAt: recStart.Add(-48 * time.Hour), SignedOffAt: tp(recStart.Add(-time.Hour))}},
			decision: allow(recStart.Add(-time.Minute)), want: []string{}},
		{name: "FREEZE", start: time.Date(2026, 12, 10, 10, 0, 0, 0, time.UTC),
			changes:  []ChangeVersion{v(1, time.Date(2026, 12, 10, 9, 0, 0, 0, time.UTC), recChange("CHG1", time.Date(2026, 12, 10, 10, 0, 0, 0, time.UTC)))},
			mutate:   func(d *Deployment) {},
			decision: allow(time.Date(2026, 12, 10, 9, 59, 0, 0, time.UTC)), want: []string{CodeFreeze}},
		{name: "freeze that started after the deploy", start: time.Date(2026, 12, 9, 23, 0, 0, 0, time.UTC),
			changes:  []ChangeVersion{v(1, time.Date(2026, 12, 9, 22, 0, 0, 0, time.UTC), recChange("CHG1", time.Date(2026, 12, 9, 23, 0, 0, 0, time.UTC)))},
			decision: allow(time.Date(2026, 12, 9, 22, 59, 0, 0, time.UTC)), want: []string{}},
		{name: "SELF_APPROVAL", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), func() Change {
			c := good
			c.Approvals = []Approval{{Approver: "Deployer", Decision: ApprovalApproved}}
			return c
		}())}, decision: allow(recStart.Add(-time.Minute)), want: []string{CodeSelfApproval}},
		{name: "SELF_APPROVAL: the second approval came after the deploy", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), func() Change {
			c := good
			c.Approvals = []Approval{{Approver: "Deployer", Decision: ApprovalApproved, At: tp(recStart.Add(-2 * time.Hour))},
				{Approver: "cab-alice", Decision: ApprovalApproved, At: tp(recStart.Add(time.Hour))}}
			return c
		}())}, decision: allow(recStart.Add(-time.Minute)), want: []string{CodeSelfApproval}},
		{name: "SELF_APPROVAL: the second approval came by the deploy", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), func() Change {
			c := good
			c.Approvals = []Approval{{Approver: "Deployer", Decision: ApprovalApproved, At: tp(recStart.Add(-2 * time.Hour))},
				{Approver: "cab-alice", Decision: ApprovalApproved, At: tp(recStart)}}
			return c
		}())}, decision: allow(recStart.Add(-time.Minute)), want: []string{}},
		{name: "GATE_BYPASSED: no decision", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)}, want: []string{CodeGateBypassed}},
		{name: "GATE_BYPASSED: names a missing decision", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			mutate: func(d *Deployment) { d.DecisionID = "nope" }, want: []string{CodeGateBypassed}},
		{name: "GATE_BYPASSED: after a deny", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			decision: func() *DecisionRef { g := allow(recStart.Add(-time.Minute)); g.Decision = Deny; return g }(), want: []string{CodeGateBypassed}},
		{name: "GATE_BYPASSED: while waiting", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			decision: func() *DecisionRef { g := allow(recStart.Add(-time.Minute)); g.Decision = Wait; return g }(), want: []string{CodeGateBypassed}},
		{name: "GATE_BYPASSED: allow for another commit", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			decision: func() *DecisionRef { g := allow(recStart.Add(-time.Minute)); g.Commit = "fff999"; return g }(), want: []string{CodeGateBypassed}},
		{name: "allow for the deployed commit, named abbreviated", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			mutate:   func(d *Deployment) { d.Commit = "abc123d4e5f60718293a4b5c6d7e8f9012345678" },
			decision: func() *DecisionRef { g := allow(recStart.Add(-time.Minute)); g.Commit = "ABC123D"; return g }(), want: []string{}},
		{name: "deployment names its commit abbreviated", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			mutate: func(d *Deployment) { d.Commit = "abc123d" },
			decision: func() *DecisionRef {
				g := allow(recStart.Add(-time.Minute))
				g.Commit = "abc123d4e5f60718293a4b5c6d7e8f9012345678"
				return g
			}(), want: []string{}},
		{name: "GATE_BYPASSED: allow for another commit sharing a short prefix", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			mutate:   func(d *Deployment) { d.Commit = "abc123d4e5f60718293a4b5c6d7e8f9012345678" },
			decision: func() *DecisionRef { g := allow(recStart.Add(-time.Minute)); g.Commit = "abc123e"; return g }(), want: []string{CodeGateBypassed}},
		{name: "GATE_BYPASSED: allow for another release", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			decision: func() *DecisionRef { g := allow(recStart.Add(-time.Minute)); g.ReleaseID = "other"; return g }(), want: []string{CodeGateBypassed}},
		{name: "GATE_BYPASSED: allow made after the start", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			decision: allow(recStart.Add(2 * time.Minute)), want: []string{CodeGateBypassed}},
		{name: "allow stamped seconds after a start the CI reported to the second", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			mutate: func(d *Deployment) { d.DecisionID = "dec-1" }, decision: allow(recStart.Add(700 * time.Millisecond)), want: []string{}},
		{name: "open environment: nothing", mutate: func(d *Deployment) { d.Environment, d.Changes = "development", nil }, want: []string{}},
		{name: "links filled in minutes after the run: within the grace", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			decision: allow(recStart.Add(-time.Minute)), mutate: func(d *Deployment) { d.LinksChangedAt = tp(d.FinishedAt.Add(5 * time.Minute)) }, want: []string{}},
		{name: "LINKS_CHANGED_AFTER_DEPLOY: links changed a day after it finished", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			decision: allow(recStart.Add(-time.Minute)), mutate: func(d *Deployment) { d.LinksChangedAt = tp(d.FinishedAt.Add(24 * time.Hour)) },
			want: []string{CodeLinksChangedAfterDeploy}},
		{name: "LINKS_CHANGED_AFTER_DEPLOY: unfinished, counted from its start", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), good)},
			decision: allow(recStart.Add(-time.Minute)), mutate: func(d *Deployment) {
				d.Status, d.FinishedAt, d.LinksChangedAt = DeployStarted, nil, tp(d.StartedAt.Add(DefaultLinksChangeGrace+time.Minute))
			}, want: []string{CodeLinksChangedAfterDeploy}},
		{name: "links changed late in an open environment: nothing", mutate: func(d *Deployment) {
			d.Environment, d.Changes, d.LinksChangedAt = "development", nil, tp(d.FinishedAt.Add(24*time.Hour))
		}, want: []string{}},
		{name: "emergency reviewed in time (weekend and holiday skipped)", start: friday,
			changes:  []ChangeVersion{v(1, friday.Add(-time.Hour), emergencyFri), v(2, time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC), reviewed(emergencyFri, time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)))},
			decision: allow(friday.Add(-time.Minute)), want: []string{}},
		{name: "EMERGENCY_REVIEW_OVERDUE: reviewed after 24 business hours", start: friday,
			changes:  []ChangeVersion{v(1, friday.Add(-time.Hour), emergencyFri), v(2, time.Date(2026, 12, 3, 16, 30, 0, 0, time.UTC), reviewed(emergencyFri, time.Date(2026, 12, 3, 16, 30, 0, 0, time.UTC)))},
			decision: allow(friday.Add(-time.Minute)), want: []string{CodeEmergencyReviewOverdue},
			// The finding is judged on version 2 (the review's) and says so:
			// its change_version and its lineage's review time are those the
			// message gives, not version 1's (in force at the start, without
			// a review).
			check: func(t *testing.T, fs []ReconcileFinding) {
				f := fs[0]
				review := time.Date(2026, 12, 3, 16, 30, 0, 0, time.UTC)
				if f.ChangeKey != "CHG1" || f.ChangeVersion != 2 || !strings.Contains(f.Message, "2026-12-03T16:30:00Z") {
					t.Errorf("finding on %s v%d (%s), want CHG1 v2", f.ChangeKey, f.ChangeVersion, f.Message)
				}
				if len(f.Lineage.Changes) != 1 || f.Lineage.Changes[0].ReviewedAt == nil || !f.Lineage.Changes[0].ReviewedAt.Equal(review) {
					t.Errorf("lineage %+v, want CHG1 reviewed at %s", f.Lineage.Changes, review)
				}
			}},
		{name: "EMERGENCY_REVIEW_OVERDUE beside another finding: only its own lineage has the review", start: friday,
			changes: []ChangeVersion{v(1, friday.Add(-time.Hour), emergencyFri), v(2, time.Date(2026, 12, 3, 16, 30, 0, 0, time.UTC), reviewed(emergencyFri, time.Date(2026, 12, 3, 16, 30, 0, 0, time.UTC)))},
			want:    []string{CodeGateBypassed, CodeEmergencyReviewOverdue},
			check: func(t *testing.T, fs []ReconcileFinding) {
				if fs[0].ChangeVersion != 0 || fs[0].Lineage.Changes[0].ReviewedAt != nil || fs[0].Lineage.Changes[0].Version != 1 {
					t.Errorf("GATE_BYPASSED lineage %+v (v%d), want CHG1 v1 as at the start, unreviewed", fs[0].Lineage.Changes, fs[0].ChangeVersion)
				}
				if fs[1].ChangeVersion != 2 || fs[1].Lineage.Changes[0].ReviewedAt == nil {
					t.Errorf("EMERGENCY_REVIEW_OVERDUE on v%d, lineage %+v; want v2 with its review", fs[1].ChangeVersion, fs[1].Lineage.Changes)
				}
			}},
		{name: "EMERGENCY_REVIEW_OVERDUE: unreviewed, the cut-off's version names no review", start: friday, cutoff: time.Date(2026, 12, 3, 16, 1, 0, 0, time.UTC),
			changes:  []ChangeVersion{v(1, friday.Add(-time.Hour), emergencyFri), v(2, friday.Add(time.Hour), func() Change { c := emergencyFri; c.State = "review"; return c }())},
			decision: allow(friday.Add(-time.Minute)), want: []string{CodeEmergencyReviewOverdue},
			check: func(t *testing.T, fs []ReconcileFinding) {
				if fs[0].ChangeVersion != 2 || fs[0].Lineage.Changes[0].ReviewedAt != nil {
					t.Errorf("finding on v%d, lineage %+v; want v2, no review", fs[0].ChangeVersion, fs[0].Lineage.Changes)
				}
			}},
		{name: "emergency unreviewed, deadline not reached at the cut-off", start: friday, cutoff: time.Date(2026, 12, 3, 15, 59, 0, 0, time.UTC),
			changes:  []ChangeVersion{v(1, friday.Add(-time.Hour), emergencyFri)},
			decision: allow(friday.Add(-time.Minute)), want: []string{}},
		{name: "EMERGENCY_REVIEW_OVERDUE: unreviewed past the deadline", start: friday, cutoff: time.Date(2026, 12, 3, 16, 1, 0, 0, time.UTC),
			changes:  []ChangeVersion{v(1, friday.Add(-time.Hour), emergencyFri)},
			decision: allow(friday.Add(-time.Minute)), want: []string{CodeEmergencyReviewOverdue}},
		{name: "EMERGENCY_REVIEW_OVERDUE: a review from before the deployment does not count", start: friday, cutoff: time.Date(2026, 12, 3, 16, 1, 0, 0, time.UTC),
			changes:  []ChangeVersion{v(1, friday.Add(-time.Hour), reviewed(emergencyFri, friday.Add(-30*24*time.Hour)))},
			decision: allow(friday.Add(-time.Minute)), want: []string{CodeEmergencyReviewOverdue}},
		{name: "EMERGENCY_VALIDATION_OVERDUE: finished late", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), reviewed(emergency, recStart.Add(time.Hour)))},
			mutate:   func(d *Deployment) { d.FinishedAt = tp(recStart.Add(5 * time.Hour)) },
			decision: allow(recStart.Add(-time.Minute)), want: []string{CodeEmergencyValidationOverdue}},
		{name: "EMERGENCY_VALIDATION_OVERDUE: rolled back", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), reviewed(emergency, recStart.Add(time.Hour)))},
			mutate:   func(d *Deployment) { d.Status = DeployRolledBack },
			decision: allow(recStart.Add(-time.Minute)), want: []string{CodeEmergencyValidationOverdue}},
		{name: "emergency still running before its validation deadline", cutoff: recStart.Add(3 * time.Hour),
			changes:  []ChangeVersion{v(1, recStart.Add(-time.Hour), reviewed(emergency, recStart.Add(time.Hour)))},
			mutate:   func(d *Deployment) { d.Status, d.FinishedAt = DeployStarted, nil },
			decision: allow(recStart.Add(-time.Minute)), want: []string{}},
		{name: "several findings on one deployment", changes: []ChangeVersion{v(1, recStart.Add(-time.Hour), requested)},
			want: []string{CodeChangeNotApproved, CodeGateBypassed}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := runRecCase(t, cp, tc)
			if !slices.Equal(codes(got), tc.want) {
				for _, f := range got {
					t.Logf("finding %s: %s", f.Code, f.Message)
				}
				t.Fatalf("codes = %v, want %v", codes(got), tc.want)
			}
			for _, f := range got {
				if f.Severity == "" || f.Remediation == "" || f.Deployment.ID != "dep-1" || f.Deployment.URL == "" {
					t.Errorf("finding %s incomplete: %+v", f.Code, f)
				}
			}
			if tc.check != nil {
				tc.check(t, got)
			}
			if tc.wantChange != 0 {
				f := got[0]
				if f.ChangeKey != "CHG1" || f.ChangeVersion != tc.wantChange {
					t.Errorf("judged against %s v%d, want CHG1 v%d", f.ChangeKey, f.ChangeVersion, tc.wantChange)
				}
				if len(f.Lineage.Changes) != 1 || f.Lineage.Changes[0].Version != tc.wantChange {
					t.Errorf("lineage = %+v", f.Lineage)
				}
			}
		})
	}
}

// TestReconcileLineage: a finding carries who requested and approved the
// change, and the decision that let the deployment through.
func TestReconcileLineage(t *testing.T) {
	cp := recPolicy(t)
	c := recChange("CHG1", recStart)
	// The second approval came after the deployment: the rules and the
	// lineage see only the first.
	c.Approvals = []Approval{{Approver: "Deployer", Decision: ApprovalApproved, At: tp(recStart.Add(-2 * time.Hour))},
		{Approver: "cab-alice", Decision: ApprovalApproved, At: tp(recStart.Add(time.Hour))}}
	dec := allow(recStart.Add(-time.Minute))
	dec.Reasons = []Reason{}
	got := runRecCase(t, cp, recCase{changes: []ChangeVersion{v(4, recStart.Add(-time.Hour), c)}, decision: dec})
	if len(got) != 1 || got[0].Code != CodeSelfApproval || got[0].Severity != SeverityHigh {
		t.Fatalf("findings = %+v", got)
	}
	l := got[0].Lineage
	if l.Decision == nil || l.Decision.ID != "dec-1" || l.Decision.Decision != Allow {
		t.Errorf("decision lineage = %+v", l.Decision)
	}
	if len(l.Changes) != 1 || l.Changes[0].RequestedBy != "bob" || len(l.Changes[0].Approvals) != 1 || l.Changes[0].Approvals[0].Approver != "Deployer" || l.Changes[0].Version != 4 {
		t.Errorf("change lineage = %+v", l.Changes)
	}
}

func TestIncidentTimelinePrune(t *testing.T) {
	tl := NewIncidentTimeline(nil)
	t0 := recStart
	open := Incident{Key: "INC1", Priority: 1, State: IncidentOpen}
	closed := open
	closed.State = IncidentClosed
	tl.Add(IncidentVersion{Version: 1, ValidFrom: t0, Incident: open})
	tl.Add(IncidentVersion{Version: 2, ValidFrom: t0.Add(time.Hour), Incident: closed})
	tl.Add(IncidentVersion{Version: 1, ValidFrom: t0, Incident: Incident{Key: "INC2", State: IncidentOpen}})
	if got := tl.ActiveAt(t0.Add(30 * time.Minute)); len(got) != 2 {
		t.Fatalf("active = %v", got)
	}
	tl.Prune(t0.Add(2 * time.Hour))
	if tl.Len() != 1 {
		t.Fatalf("after prune %d incidents held, want 1 (INC2)", tl.Len())
	}
	if got := tl.ActiveAt(t0.Add(3 * time.Hour)); len(got) != 1 || got[0].Key != "INC2" {
		t.Fatalf("active = %v", got)
	}
}

// TestIncidentTimelineKeepsOnlyBlocking: versions that cannot block are
// not held unless they end an incident that did.
func TestIncidentTimelineKeepsOnlyBlocking(t *testing.T) {
	major := func(i Incident) bool { return i.Priority == 1 }
	tl := NewIncidentTimeline(major)
	tl.Add(IncidentVersion{Version: 1, ValidFrom: recStart, Incident: Incident{Key: "MINOR", Priority: 3, State: IncidentOpen}})
	tl.Add(IncidentVersion{Version: 1, ValidFrom: recStart, Incident: Incident{Key: "MAJOR", Priority: 1, State: IncidentOpen}})
	tl.Add(IncidentVersion{Version: 2, ValidFrom: recStart.Add(time.Hour), Incident: Incident{Key: "MAJOR", Priority: 1, State: IncidentResolved}})
	if tl.Len() != 1 {
		t.Fatalf("held %d incidents, want only MAJOR", tl.Len())
	}
	if got := tl.ActiveAt(recStart.Add(time.Minute)); len(got) != 1 || got[0].Key != "MAJOR" {
		t.Fatalf("active = %v", got)
	}
	if got := tl.ActiveAt(recStart.Add(2 * time.Hour)); len(got) != 0 {
		t.Fatalf("resolved incident still active: %v", got)
	}
	tl.Prune(recStart.Add(2 * time.Hour))
	if tl.Len() != 0 {
		t.Fatalf("after prune %d held", tl.Len())
	}
}

// recEvidencePolicy is recPolicy with production requiring passing tests
// (control SOX-ITGC-CM-03) and a scan with at most medium findings.
func recEvidencePolicy(t testing.TB) *CompiledPolicy {
	t.Helper()
	p := DefaultPolicy()
	prod := p.Environments["production"]
	prod.Evidence = []EvidenceRequirement{
		{ID: "tests-pass", Kind: EvidenceTests, Controls: []string{"SOX-ITGC-CM-03"}},
		{ID: "no-high-vulns", Kind: EvidenceSecurityScan, MaxSeverity: "medium", Controls: []string{"SOX-ITGC-CM-05"}},
	}
	p.Environments["production"] = prod
	cp, err := Compile(p, 4)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestReconcileEvidenceAndHolds(t *testing.T) {
	cp := recEvidencePolicy(t)
	if !cp.RequiresAnyEvidence() || recPolicy(t).RequiresAnyEvidence() {
		t.Fatal("RequiresAnyEvidence: want true with evidence required in production, false without")
	}
	good := recChange("CHG1", recStart)
	changes := []ChangeVersion{v(1, recStart.Add(-time.Hour), good)}
	ev := func(id, kind, status string, at time.Time) Evidence {
		return Evidence{ID: id, ReleaseID: ReleaseID("checkout", "1.2.3", "production"), Kind: kind, Name: kind, Status: status, RecordedAt: at}
	}
	scan := func(id, sev string, at time.Time) Evidence {
		e := ev(id, EvidenceSecurityScan, EvidencePassed, at)
		e.Findings = &FindingSummary{Tools: []string{"gosec"}, MaxSeverity: sev}
		return e
	}
	before := recStart.Add(-10 * time.Minute)
	hold := func(at time.Time, lifted *time.Time) Hold {
		return Hold{ID: "hold-1", Scope: HoldScopeService, Name: "checkout", Reason: "audit", CreatedBy: "cm", CreatedAt: at, LiftedAt: lifted}
	}
	cases := []recCase{
		{name: "evidence passed before the deploy", changes: changes, decision: allow(recStart.Add(-time.Minute)),
			evidence: []Evidence{ev("e1", EvidenceTests, EvidencePassed, before), scan("e2", "low", before)}, want: []string{}},
		{name: "EVIDENCE_MISSING: no scan", changes: changes, decision: allow(recStart.Add(-time.Minute)),
			evidence: []Evidence{ev("e1", EvidenceTests, EvidencePassed, before)}, want: []string{CodeEvidenceMissing}},
		{name: "EVIDENCE_MISSING: tests attached only after the deploy", changes: changes, decision: allow(recStart.Add(-time.Minute)),
			evidence: []Evidence{ev("e1", EvidenceTests, EvidencePassed, recStart.Add(time.Minute)), scan("e2", "none", before)},
			want:     []string{CodeEvidenceMissing}},
		{name: "EVIDENCE_FAILED: failed tests", changes: changes, decision: allow(recStart.Add(-time.Minute)),
			evidence: []Evidence{ev("e1", EvidenceTests, EvidenceFailed, before), scan("e2", "none", before)}, want: []string{CodeEvidenceFailed}},
		{name: "EVIDENCE_FAILED: high findings", changes: changes, decision: allow(recStart.Add(-time.Minute)),
			evidence: []Evidence{ev("e1", EvidenceTests, EvidencePassed, before), scan("e2", "high", before)}, want: []string{CodeEvidenceFailed}},
		{name: "a failing run superseded before the deploy", changes: changes, decision: allow(recStart.Add(-time.Minute)),
			evidence: []Evidence{ev("e1", EvidenceTests, EvidenceFailed, before.Add(-time.Hour)), ev("e3", EvidenceTests, EvidencePassed, before), scan("e2", "none", before)},
			want:     []string{}},
		{name: "HOLD in force at the start", changes: changes, decision: allow(recStart.Add(-time.Minute)),
			evidence: []Evidence{ev("e1", EvidenceTests, EvidencePassed, before), scan("e2", "none", before)},
			holds:    []Hold{hold(recStart.Add(-time.Hour), nil)}, want: []string{CodeHold}},
		{name: "hold lifted before the start", changes: changes, decision: allow(recStart.Add(-time.Minute)),
			evidence: []Evidence{ev("e1", EvidenceTests, EvidencePassed, before), scan("e2", "none", before)},
			holds:    []Hold{hold(recStart.Add(-time.Hour), tp(recStart.Add(-time.Minute)))}, want: []string{}},
		{name: "hold placed after the start", changes: changes, decision: allow(recStart.Add(-time.Minute)),
			evidence: []Evidence{ev("e1", EvidenceTests, EvidencePassed, before), scan("e2", "none", before)},
			holds:    []Hold{hold(recStart.Add(time.Minute), nil)}, want: []string{}},
		{name: "hold on another service", changes: changes, decision: allow(recStart.Add(-time.Minute)),
			evidence: []Evidence{ev("e1", EvidenceTests, EvidencePassed, before), scan("e2", "none", before)},
			holds:    []Hold{func() Hold { h := hold(recStart.Add(-time.Hour), nil); h.Name = "ledger"; return h }()}, want: []string{}},
		{name: "HOLD in an open environment", mutate: func(d *Deployment) { d.Environment, d.Changes = "development", nil },
			holds: []Hold{func() Hold {
				h := hold(recStart.Add(-time.Hour), nil)
				h.Scope, h.Name = HoldScopeEnvironment, "development"
				return h
			}()},
			want: []string{CodeHold}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := runRecCase(t, cp, tc)
			if got := codes(fs); !slices.Equal(got, tc.want) {
				t.Fatalf("codes = %v, want %v (%+v)", got, tc.want, fs)
			}
			for _, f := range fs {
				if f.Remediation == Remediation("") {
					t.Errorf("%s has the generic remediation", f.Code)
				}
			}
		})
	}
}

func TestReconcileOptionsFromPolicy(t *testing.T) {
	p := DefaultPolicy()
	cp, err := Compile(p, 1)
	if err != nil {
		t.Fatal(err)
	}
	if o := cp.ReconcileOptions(); o.ReviewWithin != 24*time.Hour || o.ValidationWithin != 4*time.Hour || o.LinksChangeGrace != time.Hour {
		t.Fatalf("defaults = %+v, want 24h, 4h and 1h", o)
	}
	p.Emergency = EmergencyTimers{ReviewBusinessHours: 8, ValidationHours: 1.5}
	p.Reconcile.LinksChangeGraceHours = 12
	if cp, err = Compile(p, 2); err != nil {
		t.Fatal(err)
	}
	o := cp.ReconcileOptions()
	if o.ReviewWithin != 8*time.Hour || o.ValidationWithin != 90*time.Minute || o.LinksChangeGrace != 12*time.Hour {
		t.Fatalf("options = %+v, want 8h, 1h30m and 12h", o)
	}
	var back ReconcileOptions // a report keeps its options as JSON
	if b, err := json.Marshal(o); err != nil || json.Unmarshal(b, &back) != nil || back != o {
		t.Fatalf("options through JSON: %s -> %+v (%v)", b, back, err)
	}
	// Links changed 5 h after the deployment finished: a finding under the
	// default hour, none under that policy's 12 h.
	late := Deployment{ID: "l", Service: "checkout", Environment: "production", Version: "1", Status: DeploySucceeded,
		StartedAt: recStart, FinishedAt: tp(recStart.Add(time.Minute)), LinksChangedAt: tp(recStart.Add(5 * time.Hour))}
	for _, tc := range []struct {
		opts ReconcileOptions
		want bool
	}{{ReconcileOptions{}.WithDefaults(), true}, {o, false}} {
		if _, got := linksChangedAfterDeploy(&late, tc.opts.LinksChangeGrace); got != tc.want {
			t.Errorf("grace %s: finding %v, want %v", tc.opts.LinksChangeGrace, got, tc.want)
		}
	}
	p.Reconcile.LinksChangeGraceHours = -1
	if _, err := Compile(p, 3); err == nil || !strings.Contains(err.Error(), "reconcile.links_change_grace_hours") {
		t.Fatalf("negative grace: err = %v", err)
	}
	p.Reconcile.LinksChangeGraceHours = 0
	if got := (ReconcileOptions{ValidationWithin: time.Hour}).Over(o); got.ReviewWithin != 8*time.Hour || got.ValidationWithin != time.Hour {
		t.Fatalf("Over = %+v", got)
	}
	p.Emergency.ValidationHours = -1
	if _, err := Compile(p, 3); err == nil || !strings.Contains(err.Error(), "emergency.validation_hours") {
		t.Fatalf("negative validation hours: err = %v", err)
	}
	// A deployment validated after 1.5 h is overdue under that policy.
	friday := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	emergency := recChange("CHG1", friday)
	emergency.Type, emergency.ReviewedAt = ChangeEmergency, tp(friday.Add(time.Hour))
	d := Deployment{ID: "d", Service: "checkout", Environment: "production", Version: "1", Status: DeploySucceeded,
		StartedAt: friday, FinishedAt: tp(friday.Add(2 * time.Hour)), Changes: []string{"CHG1"}}
	df := DeploymentFacts{Deployment: d, Changes: []ChangeVersion{v(1, friday.Add(-time.Hour), emergency)},
		Decision: &DecisionRef{ID: "g", ReleaseID: ReleaseID("checkout", "1", "production"), Decision: Allow, EvaluatedAt: friday.Add(-time.Minute)}}
	cp, _ = Compile(DefaultPolicy(), 4)
	if fs := ReconcileDeployment(cp, df, friday.Add(72*time.Hour), cp.ReconcileOptions()); slices.Contains(codes(fs), CodeEmergencyValidationOverdue) {
		t.Fatalf("under the 4 h default: %v", codes(fs))
	}
	if fs := ReconcileDeployment(cp, df, friday.Add(72*time.Hour), o); !slices.Contains(codes(fs), CodeEmergencyValidationOverdue) {
		t.Fatalf("under 1.5 h: %v, want EMERGENCY_VALIDATION_OVERDUE", codes(fs))
	}
}
