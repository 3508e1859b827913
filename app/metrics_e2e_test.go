package app_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestReleaseMetricsEndToEnd: the metrics route on both stores, over the
// seeded history (three deployments, one allowed and two denied checks,
// an incident opened after the deployments and fixed by a later one).
func TestReleaseMetricsEndToEnd(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, "")
			from, _ := seedReconcileHistory(t, s)
			ctx := context.Background()
			opened := time.Now().UTC()
			inc := core.Incident{Source: "snow", Key: "INC77", Priority: 3, State: core.IncidentResolved, Services: []string{"payments-api"},
				OpenedAt: rtp(opened.Add(-30 * time.Minute)), ResolvedAt: rtp(opened.Add(90 * time.Minute)), SourceUpdatedAt: opened}
			if _, err := s.app.DB.UpsertIncident(ctx, inc); err != nil {
				t.Fatal(err)
			}
			ci, _ := s.token(core.RoleCI)
			if st := s.do("POST", "/api/v1/deployments", ci, map[string]any{"service": "payments-api", "environment": "staging", "version": "1.0.3",
				"status": "failed", "started_at": time.Now().UTC(), "incidents": []string{"INC77"}, "provider": "github", "run_id": "4"}, nil); st != http.StatusCreated {
				t.Fatalf("deployment: %d", st)
			}
			// A release that waited for its change's approval, then was allowed.
			c := core.Change{Source: "snow", Key: "CHG0009", Type: core.ChangeNormal, State: core.ChangeStateAuthorize, Approval: core.ApprovalRequested,
				PlannedStart: rtp(opened.Add(-time.Hour)), PlannedEnd: rtp(opened.Add(3 * time.Hour)), Services: []string{"payments-api"},
				RequestedBy: "carla", HasRiskAssessment: true, HasBackoutPlan: true, SourceUpdatedAt: opened.Add(-time.Hour)}
			if _, err := s.app.DB.UpsertChange(ctx, c); err != nil {
				t.Fatal(err)
			}
			req := map[string]any{"service": "payments-api", "environment": "production", "version": "2.0.0", "changes": []string{"CHG0009"}}
			if a := s.check(ci, "", req); a.Decision != string(core.Wait) {
				t.Fatalf("first check: %+v", a)
			}
			c.Approval, c.State, c.SourceUpdatedAt = core.ApprovalApproved, core.ChangeStateScheduled, opened
			c.Approvals = []core.Approval{{Approver: "ana", Decision: core.ApprovalApproved}, {Approver: "bo", Decision: core.ApprovalApproved}}
			if _, err := s.app.DB.UpsertChange(ctx, c); err != nil {
				t.Fatal(err)
			}
			if a := s.check(ci, "", req); a.Decision != string(core.Allow) {
				t.Fatalf("second check: %+v", a)
			}
			auditor, _ := s.token(core.RoleAuditor)
			q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {time.Now().UTC().Add(time.Hour).Format(time.RFC3339)}, "group_by": {"environment"}}
			var m core.ReleaseMetrics
			if st := s.do("GET", "/api/v1/metrics/releases?"+q.Encode(), auditor, nil, &m); st != http.StatusOK {
				t.Fatalf("metrics: %d", st)
			}
			if len(m.Groups) != 2 || m.Groups[0].Key != "production" || m.Groups[1].Key != "staging" {
				t.Fatalf("groups %+v", m.Groups)
			}
			prod, stg := m.Groups[0], m.Groups[1]
			if prod.Deployments != 3 || prod.Gate.Allow != 2 || prod.Gate.Deny != 1 || prod.Gate.Wait != 1 || prod.LeadTimeHours.Count != 2 ||
				prod.Gate.WaitedReleases != 1 || prod.Gate.MedianWaitMinutes == nil {
				t.Errorf("production %+v", prod)
			}
			// The incident opened before the production deployments' start
			// is not after them; the staging deployment failed.
			if stg.Deployments != 1 || stg.FailedDeployments != 1 || stg.MTTRHours.Count != 1 || *stg.MTTRHours.Mean != 2 {
				t.Errorf("staging %+v", stg)
			}
			// The lease holder's hourly tick exports them per environment
			// as gauges (bounded labels).
			if err := s.app.Scheduler.TickAt(ctx, time.Now().Add(2*time.Hour)); err != nil {
				t.Fatal(err)
			}
			_, prom := s.get("/metrics", "")
			for _, want := range []string{
				`tollgate_release_metric{environment="production",metric="deployments"} 3`,
				`tollgate_release_metric{environment="production",metric="gate_deny"} 1`,
				`tollgate_release_metric{environment="staging",metric="mttr_mean_hours"} 2`,
			} {
				if !strings.Contains(prom, want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
			q.Set("group_by", "region")
			if st := s.do("GET", "/api/v1/metrics/releases?"+q.Encode(), auditor, nil, nil); st != http.StatusBadRequest {
				t.Errorf("group_by=region: %d", st)
			}
			if st := s.do("GET", "/api/v1/metrics/releases?"+q.Encode(), ci, nil, nil); st != http.StatusForbidden {
				t.Errorf("ci: %d", st)
			}
		})
	}
}
