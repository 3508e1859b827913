package app_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/bundle"
	"github.com/tollgate-dev/tollgate/internal/bundle/bundletest"
)

// get fetches a path and returns the status and body.
func (s *server) get(path, token string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest("GET", s.url+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type reportAnswer struct {
	ID            string                `json:"id"`
	PolicyVersion int                   `json:"policy_version"`
	Summary       core.ReconcileSummary `json:"summary"`
	Query         core.ReconcileQuery   `json:"query"`
}

// seedReconcileHistory records three production deployments through the
// API: one that asked the gate and was allowed (compliant), one that never
// asked (GATE_BYPASSED) with a formula-looking actor, and one without a
// change (NO_CHANGE, GATE_BYPASSED). It returns the period's bounds.
func seedReconcileHistory(t *testing.T, s *server) (time.Time, time.Time) {
	t.Helper()
	ctx := context.Background()
	ci, _ := s.token(core.RoleCI)
	from := time.Now().UTC().Add(-time.Hour)
	c := core.Change{
		Source: "snow", Key: "CHG0001", Type: core.ChangeNormal, State: core.ChangeStateScheduled, Approval: core.ApprovalApproved,
		Approvals:    []core.Approval{{Approver: "ana", Decision: core.ApprovalApproved}, {Approver: "bo", Decision: core.ApprovalApproved}},
		PlannedStart: rtp(from.Add(-time.Hour)), PlannedEnd: rtp(from.Add(3 * time.Hour)),
		Services: []string{"payments-api"}, RequestedBy: "carla", HasRiskAssessment: true, HasBackoutPlan: true,
		SourceUpdatedAt: from.Add(-2 * time.Hour),
	}
	if _, err := s.app.DB.UpsertChange(ctx, c); err != nil {
		t.Fatal(err)
	}
	a := s.check(ci, "", map[string]any{"service": "payments-api", "environment": "production", "version": "1.0.0", "commit": "aaa", "changes": []string{"CHG0001"}})
	if a.Decision != string(core.Allow) {
		t.Fatalf("gate: %+v", a)
	}
	deploy := func(version, actor string, changes []string, run string) {
		t.Helper()
		body := map[string]any{"service": "payments-api", "environment": "production", "version": version, "commit": "aaa",
			"status": "succeeded", "started_at": time.Now().UTC(), "actor": actor, "changes": changes,
			"provider": "github", "run_id": run, "url": "https://ci.example/runs/" + run}
		if st := s.do("POST", "/api/v1/deployments", ci, body, nil); st != http.StatusCreated {
			t.Fatalf("deployment %s: %d", version, st)
		}
		// Reviewed at once (a review is required of a release linking a
		// normal change): the history's subject is the gate and its
		// changes, not PIR_PENDING.
		if len(changes) > 0 {
			s.signOffPIR("payments-api", version, "production")
		}
	}
	if d := s.check(ci, "", map[string]any{"service": "payments-api", "environment": "production", "version": "1.0.2", "commit": "aaa"}); d.Decision != string(core.Deny) {
		t.Fatalf("gate without a change: %+v", d)
	}
	deploy("1.0.0", "dora", []string{"CHG0001"}, "1")
	deploy("1.0.1", "=HYPERLINK(\"http://evil\")", []string{"CHG0001"}, "2")
	deploy("1.0.2", "dora", nil, "3")
	return from, time.Now().UTC().Add(time.Minute)
}

func rtp(t time.Time) *time.Time { return &t }

// TestReconciliationReportEndToEnd runs a report through the API and reads
// it as JSON, CSV (parsed back with encoding/csv, formulas neutralised) and
// HTML (summary and every finding), then acknowledges a finding.
func TestReconciliationReportEndToEnd(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, "")
			from, to := seedReconcileHistory(t, s)
			cm, _ := s.token(core.RoleChangeManager)
			auditor, _ := s.token(core.RoleAuditor)

			var rep reportAnswer
			if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": from, "to": to, "environment": "prod"}, &rep); st != http.StatusCreated {
				t.Fatalf("run report: %d", st)
			}
			sum := rep.Summary
			if rep.ID == "" || sum.DeploymentsChecked != 3 || sum.Compliant != 1 || sum.Findings != 3 ||
				sum.ByCode[core.CodeGateBypassed] != 2 || sum.ByCode[core.CodeNoChange] != 1 || sum.BySeverity[core.SeverityHigh] != 3 {
				t.Fatalf("summary %+v", rep)
			}
			if rep.PolicyVersion != 1 || rep.Query.Cutoff.IsZero() || rep.Query.Environment != "production" {
				t.Errorf("report metadata %+v", rep)
			}

			var doc struct {
				Report   reportAnswer            `json:"report"`
				Findings []core.ReconcileFinding `json:"findings"`
			}
			st, body := s.get("/api/v1/reports/reconciliation/"+rep.ID, auditor)
			if st != http.StatusOK || json.Unmarshal([]byte(body), &doc) != nil || len(doc.Findings) != 3 {
				t.Fatalf("json: %d %s", st, body)
			}
			for _, f := range doc.Findings {
				if f.Deployment.URL == "" || f.Deployment.Provider != "github" || f.Remediation == "" {
					t.Errorf("finding without its deployment: %+v", f)
				}
			}

			st, body = s.get("/api/v1/reports/reconciliation/"+rep.ID+"?format=csv", auditor)
			if st != http.StatusOK {
				t.Fatalf("csv: %d %s", st, body)
			}
			rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
			if err != nil || len(rows) != 4 || rows[0][0] != "finding_id" || rows[0][1] != "code" {
				t.Fatalf("csv parse: %v %q", err, rows)
			}
			actorCol := -1
			for i, h := range rows[0] {
				if h == "actor" {
					actorCol = i
				}
			}
			for _, r := range rows[1:] {
				for _, cell := range r {
					if strings.HasPrefix(cell, "=") || strings.HasPrefix(cell, "+") || strings.HasPrefix(cell, "@") {
						t.Errorf("formula-looking cell not neutralised: %q", cell)
					}
				}
				if strings.Contains(r[actorCol], "HYPERLINK") && r[actorCol] != `'=HYPERLINK("http://evil")` {
					t.Errorf("actor cell %q", r[actorCol])
				}
			}

			st, body = s.get("/api/v1/reports/reconciliation/"+rep.ID+"?format=html", auditor)
			if st != http.StatusOK || !strings.Contains(body, `id="summary"`) || !strings.Contains(body, "Deployments checked") {
				t.Fatalf("html: %d", st)
			}
			for _, f := range doc.Findings {
				if !strings.Contains(body, `id="finding-`+itoa(f.ID)+`"`) {
					t.Errorf("html lacks finding %d", f.ID)
				}
			}
			if strings.Contains(body, `=HYPERLINK("http`) {
				t.Error("html did not escape the actor")
			}
			if st, _ := s.get("/api/v1/reports/reconciliation/"+rep.ID+"?format=pdf", auditor); st != http.StatusBadRequest {
				t.Errorf("format=pdf: %d, want 400", st)
			}

			// Acknowledge: shown as accepted, never hidden; counted.
			fid := itoa(doc.Findings[0].ID)
			var acked core.ReconcileFinding
			if st := s.do("POST", "/api/v1/reports/reconciliation/"+rep.ID+"/findings/"+fid+"/ack", cm, map[string]any{"comment": "hotfix, CAB informed"}, &acked); st != http.StatusOK || acked.Ack == nil {
				t.Fatalf("ack: %d %+v", st, acked)
			}
			if st := s.do("POST", "/api/v1/reports/reconciliation/"+rep.ID+"/findings/"+fid+"/ack", cm, map[string]any{"comment": "again"}, nil); st != http.StatusConflict {
				t.Errorf("second ack: %d, want 409", st)
			}
			if st := s.do("POST", "/api/v1/reports/reconciliation/"+rep.ID+"/findings/"+fid+"/ack", cm, map[string]any{"comment": ""}, nil); st != http.StatusBadRequest {
				t.Errorf("empty comment: %d, want 400", st)
			}
			if st := s.do("POST", "/api/v1/reports/reconciliation/"+rep.ID+"/findings/99/ack", cm, map[string]any{"comment": "x"}, nil); st != http.StatusNotFound {
				t.Errorf("missing finding: %d, want 404", st)
			}
			st, body = s.get("/api/v1/reports/reconciliation/"+rep.ID, auditor)
			if st != http.StatusOK || json.Unmarshal([]byte(body), &doc) != nil || len(doc.Findings) != 3 || doc.Findings[0].Ack == nil ||
				doc.Findings[0].Ack.Comment != "hotfix, CAB informed" || doc.Report.Summary.Acknowledged != 1 {
				t.Fatalf("after ack: %s", body)
			}
			_, body = s.get("/api/v1/reports/reconciliation/"+rep.ID+"?format=html", auditor)
			if !strings.Contains(body, "hotfix, CAB informed") || !strings.Contains(body, "accepted") {
				t.Error("html does not show the acknowledgement")
			}

			// The evidence bundle verifies, names its decision, change and
			// audit rows, and one flipped byte is named by file.
			st, body = s.get("/api/v1/reports/reconciliation/"+rep.ID+"/bundle", auditor)
			if st != http.StatusOK {
				t.Fatalf("bundle: %d %s", st, body)
			}
			res, err := bundle.Verify(strings.NewReader(body))
			if err != nil {
				t.Fatalf("verify bundle: %v", err)
			}
			names := map[string]bool{}
			for _, f := range res.Manifest.Files {
				names[f.Name] = true
			}
			for _, want := range []string{"report.json", "report.csv", "report.html", "changes/CHG0001.json", "audit.json"} {
				if !names[want] {
					t.Errorf("bundle lacks %s: %v", want, names)
				}
			}
			var decisionFiles int
			for n := range names {
				if strings.HasPrefix(n, "decisions/") {
					decisionFiles++
				}
			}
			if h := res.Manifest.AuditHead; h == nil || h.Seq < 3 || len(h.Hash) != 64 {
				t.Errorf("manifest audit head %+v", h)
			}
			if decisionFiles != 1 || res.AuditRows < 3 { // the deny, the report, the acknowledgement
				t.Errorf("bundle: %d decisions, %d audit rows", decisionFiles, res.AuditRows)
			}
			tampered := bundletest.Flip(t, []byte(body), "report.csv")
			var mm *bundle.Mismatch
			if _, err := bundle.Verify(bytes.NewReader(tampered)); !errors.As(err, &mm) || mm.File != "report.csv" {
				t.Errorf("tampered bundle: %v", err)
			}
			if st, _ := s.get("/api/v1/reports/reconciliation/nope/bundle", auditor); st != http.StatusNotFound {
				t.Errorf("bundle of a missing report: %d", st)
			}

			var list struct {
				Items []reportAnswer `json:"items"`
			}
			if st := s.do("GET", "/api/v1/reports/reconciliation", auditor, nil, &list); st != http.StatusOK || len(list.Items) != 1 || list.Items[0].ID != rep.ID {
				t.Errorf("list: %d %+v", st, list)
			}
			if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": to, "to": from}, nil); st != http.StatusBadRequest {
				t.Errorf("reversed period: %d, want 400", st)
			}
			if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": from, "to": to, "environment": "nowhere"}, nil); st != http.StatusBadRequest {
				t.Errorf("unknown environment: %d, want 400", st)
			}
			// A service is a name: a filter in other capitals finds its
			// deployments (a clean report for a misspelt filter would hide
			// them).
			var byService reportAnswer
			if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": from, "to": to, "service": "Payments-API"}, &byService); st != http.StatusCreated ||
				byService.Summary.DeploymentsChecked != 3 || byService.Summary.Findings != 3 {
				t.Fatalf("report for service Payments-API: %d %+v", st, byService.Summary)
			}
		})
	}
}

// TestReconciliationRoles: an auditor reads reports but cannot run or
// acknowledge them; a ci token can do neither.
func TestReconciliationRoles(t *testing.T) {
	s := boot(t, "sqlite", "")
	from, to := seedReconcileHistory(t, s)
	cm, _ := s.token(core.RoleChangeManager)
	auditor, _ := s.token(core.RoleAuditor)
	ci, _ := s.token(core.RoleCI)
	var rep reportAnswer
	if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": from, "to": to}, &rep); st != http.StatusCreated {
		t.Fatalf("run: %d", st)
	}
	run := map[string]any{"from": from, "to": to}
	ack := map[string]any{"comment": "ok"}
	ackPath := "/api/v1/reports/reconciliation/" + rep.ID + "/findings/1/ack"
	for _, tc := range []struct {
		who, token, method, path string
		body                     any
		want                     int
	}{
		{"auditor", auditor, "POST", "/api/v1/reports/reconciliation", run, http.StatusForbidden},
		{"auditor", auditor, "POST", ackPath, ack, http.StatusForbidden},
		{"auditor", auditor, "GET", "/api/v1/reports/reconciliation", nil, http.StatusOK},
		{"auditor", auditor, "GET", "/api/v1/reports/reconciliation/" + rep.ID, nil, http.StatusOK},
		{"ci", ci, "POST", "/api/v1/reports/reconciliation", run, http.StatusForbidden},
		{"ci", ci, "POST", ackPath, ack, http.StatusForbidden},
		{"ci", ci, "GET", "/api/v1/reports/reconciliation", nil, http.StatusForbidden},
		{"ci", ci, "GET", "/api/v1/reports/reconciliation/" + rep.ID, nil, http.StatusForbidden},
		{"change_manager", cm, "POST", ackPath, ack, http.StatusOK},
		{"admin", adminSecret, "POST", "/api/v1/reports/reconciliation", run, http.StatusCreated},
	} {
		if st := s.do(tc.method, tc.path, tc.token, tc.body, nil); st != tc.want {
			t.Errorf("%s %s %s: %d, want %d", tc.who, tc.method, tc.path, st, tc.want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestSimulateAgreesWithReconciler: the policy in force simulated over a
// seeded period judges the same deployments as a reconciliation report of
// that period, with the same finding codes for each.
func TestSimulateAgreesWithReconciler(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, "")
			from, to := seedReconcileHistory(t, s)
			cm, _ := s.token(core.RoleChangeManager)
			var rep reportAnswer
			if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": from, "to": to, "environment": "production"}, &rep); st != http.StatusCreated {
				t.Fatalf("run report: %d", st)
			}
			var doc struct {
				Findings []core.ReconcileFinding `json:"findings"`
			}
			if st, body := s.get("/api/v1/reports/reconciliation/"+rep.ID, cm); st != http.StatusOK || json.Unmarshal([]byte(body), &doc) != nil {
				t.Fatalf("read report: %d %s", st, body)
			}
			want := map[string][]string{}
			for _, f := range doc.Findings {
				want[f.Deployment.ID] = append(want[f.Deployment.ID], f.Code)
			}

			pol, _ := json.Marshal(s.app.Policies.Current().Policy())
			body, _ := json.Marshal(map[string]any{"policy": json.RawMessage(pol), "from": from, "to": to, "environment": "production"})
			req, _ := http.NewRequest("POST", s.url+"/api/v1/policy/simulate", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+cm)
			resp, err := s.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("simulate: %d %s", resp.StatusCode, raw)
			}
			deployments := 0
			for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
				var it struct {
					Release *struct {
						Source       string `json:"source"`
						DeploymentID string `json:"deployment_id"`
						InForce      struct {
							Findings []string `json:"findings"`
						} `json:"in_force"`
						Proposed struct {
							Findings []string `json:"findings"`
						} `json:"proposed"`
						Changed bool `json:"changed"`
					} `json:"release"`
				}
				if err := json.Unmarshal([]byte(line), &it); err != nil {
					t.Fatalf("line %q: %v", line, err)
				}
				if it.Release == nil || it.Release.Source != "deployment" {
					continue
				}
				deployments++
				r := it.Release
				if strings.Join(r.InForce.Findings, ",") != strings.Join(want[r.DeploymentID], ",") {
					t.Errorf("deployment %s: simulate %v, report %v", r.DeploymentID, r.InForce.Findings, want[r.DeploymentID])
				}
				if strings.Join(r.Proposed.Findings, ",") != strings.Join(r.InForce.Findings, ",") || r.Changed {
					t.Errorf("deployment %s: the same policy proposed differs: %+v", r.DeploymentID, r)
				}
			}
			if deployments != rep.Summary.DeploymentsChecked || deployments != 3 {
				t.Fatalf("simulate judged %d deployments, the report %d", deployments, rep.Summary.DeploymentsChecked)
			}
		})
	}
}

// TestReconciliationByControl: a report filtered by a control id covers
// the deployments whose environment requires evidence carrying it: the
// findings on those requirements (not the others) and the proof of the
// compliant deployments, the evidence they matched; an unknown control is
// refused.
func TestReconciliationByControl(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, e2eConfig)
			ci, _ := s.token(core.RoleCI)
			cm, _ := s.token(core.RoleChangeManager)
			from := time.Now().UTC().Add(-time.Hour)
			p := core.DefaultPolicy()
			prod := p.Environments["production"]
			prod.Evidence = []core.EvidenceRequirement{{ID: "tests-pass", Kind: core.EvidenceTests, Controls: []string{"SOX-ITGC-CM-03"}}}
			p.Environments["production"] = prod
			s.putPolicy(adminSecret, p, http.StatusOK)
			s.sendWebhook(change("CHG7001", core.ApprovalApproved, time.Now().UTC().Add(-time.Minute)))
			s.waitFor("CHG7001 stored", func() bool { return s.changeState("CHG7001") == "approved" })
			for i, withTests := range []bool{true, false} {
				version := fmt.Sprintf("8.0.%d", i)
				rel := map[string]any{"service": "payments-api", "environment": "production", "version": version}
				if withTests {
					rid := core.ReleaseID("payments-api", version, "production")
					if st := s.do("POST", "/api/v1/releases/"+rid+"/evidence", ci, map[string]any{"kind": "tests", "name": "unit", "junit": testdata(t, "gotestsum-passing.xml"),
						"url": "https://ci.example/tests/1", "release": rel}, nil); st != http.StatusCreated {
						t.Fatalf("attach: %d", st)
					}
				}
				a := s.check(ci, "", map[string]any{"service": "payments-api", "environment": "production", "version": version, "commit": "abc", "changes": []string{"CHG7001"}})
				body := map[string]any{"service": "payments-api", "environment": "production", "version": version, "commit": "abc",
					"status": "succeeded", "started_at": time.Now().UTC(), "changes": []string{"CHG7001"}, "decision_id": a.DecisionID,
					"provider": "github", "run_id": "r" + version}
				if st := s.do("POST", "/api/v1/deployments", ci, body, nil); st != http.StatusCreated {
					t.Fatalf("deployment %s: %d", version, st)
				}
			}
			to := time.Now().UTC().Add(time.Minute)
			if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": from, "to": to, "control": "HIPAA-164.312(b)"}, nil); st != http.StatusBadRequest {
				t.Fatalf("unknown control: %d", st)
			}
			var rep reportAnswer
			if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": from, "to": to, "control": "sox-itgc-cm-03"}, &rep); st != http.StatusCreated {
				t.Fatalf("run report: %d", st)
			}
			if sum := rep.Summary; sum.DeploymentsChecked != 2 || sum.Compliant != 1 || sum.Findings != 1 || sum.ByCode[core.CodeEvidenceMissing] != 1 {
				t.Fatalf("summary %+v", sum)
			}
			var doc struct {
				Findings []core.ReconcileFinding `json:"findings"`
				Proofs   []core.ControlProof     `json:"proofs"`
			}
			st, body := s.get("/api/v1/reports/reconciliation/"+rep.ID, cm)
			if st != http.StatusOK || json.Unmarshal([]byte(body), &doc) != nil {
				t.Fatalf("read: %d %s", st, body)
			}
			if len(doc.Findings) != 1 || doc.Findings[0].Deployment.Version != "8.0.1" || doc.Findings[0].Ref != "tests-pass" ||
				len(doc.Findings[0].Controls) != 1 || doc.Findings[0].Controls[0] != "SOX-ITGC-CM-03" {
				t.Fatalf("findings %+v", doc.Findings)
			}
			if len(doc.Proofs) != 1 || doc.Proofs[0].Deployment.Version != "8.0.0" || len(doc.Proofs[0].Evidence) != 1 ||
				doc.Proofs[0].Evidence[0].URL != "https://ci.example/tests/1" || doc.Proofs[0].Matches[0].Result != core.MatchPassed {
				t.Fatalf("proofs %+v", doc.Proofs)
			}
			// The unfiltered report of the same period has no proofs and more findings.
			var all reportAnswer
			if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": from, "to": to}, &all); st != http.StatusCreated || all.Summary.Findings <= 1 {
				t.Fatalf("unfiltered: %d %+v", st, all.Summary)
			}
			if _, body := s.get("/api/v1/reports/reconciliation/"+all.ID, cm); strings.Contains(body, `"proofs"`) {
				t.Errorf("an unfiltered report lists proofs")
			}
		})
	}
}
