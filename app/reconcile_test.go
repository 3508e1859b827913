package app_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/bundle"
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
	}
	if d := s.check(ci, "", map[string]any{"service": "payments-api", "environment": "production", "version": "1.0.2", "commit": "aaa"}); d.Decision != string(core.Deny) {
		t.Fatalf("gate without a change: %+v", d)
	}
	deploy("1.0.0", "dora", []string{"CHG0001"}, "1")
	deploy("1.0.1", "=HYPERLINK(\"http://evil\")", []string{"CHG0001"}, "2")
	deploy("1.0.2", "dora", nil, "3")
	return from, time.Now().UTC().Add(time.Minute)
}

// flipInBundle re-packs a bundle with one byte of one file changed.
func flipInBundle(t *testing.T, in []byte, target string) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out bytes.Buffer
	gw := gzip.NewWriter(&out)
	tw := tar.NewWriter(gw)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if hdr.Name == target {
			b[len(b)/2] ^= 0x20
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(b)
	}
	_ = tw.Close()
	_ = gw.Close()
	return out.Bytes()
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
			tampered := flipInBundle(t, []byte(body), "report.csv")
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
