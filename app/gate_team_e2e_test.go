package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestTeamFromCatalogEndToEnd: with the service in the catalog, neither a
// deployment report nor a check can pick another team to escape the
// team's pending review — whatever team, environment alias or service
// spelling they use. The check says the team it named was ignored.
func TestTeamFromCatalogEndToEnd(t *testing.T) {
	s := boot(t, "postgres", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	pol := "environments:\n  production:\n    aliases: [prod]\n    preset: strict\n    pir_required: [normal]\n" +
		"services:\n  payments-api: {team: payments}\n"
	if st := s.do("PUT", "/api/v1/policy", adminSecret, pol, nil); st != http.StatusOK {
		t.Fatalf("put policy: %d", st)
	}
	s.sendWebhook(change("CHG8001", core.ApprovalApproved, time.Now().UTC()))
	s.waitFor("the change", func() bool { return s.changeState("CHG8001") == "approved" })

	// The first release is reported under another team: the catalog's
	// team owns it, and its review.
	var dep core.Deployment
	if st := s.do("POST", "/api/v1/deployments", ci, map[string]any{"service": "Payments-API", "environment": "PROD", "version": "1.0.0",
		"team": "nobody", "status": "succeeded", "started_at": time.Now().UTC(), "changes": []string{"CHG8001"},
		"provider": "github", "run_id": "8001"}, &dep); st != http.StatusCreated || dep.Team != "payments" || dep.Service != "payments-api" {
		t.Fatalf("deployment: %d %+v", st, dep)
	}
	for _, req := range []map[string]any{
		{"service": "payments-api", "environment": "production", "version": "1.0.1", "changes": []string{"CHG8001"}},
		{"service": "payments-api", "environment": "production", "version": "1.0.1", "team": "nobody", "changes": []string{"CHG8001"}},
		{"service": "PAYMENTS-API", "environment": "Prod", "version": "1.0.1", "team": "nobody", "changes": []string{"CHG8001"}},
	} {
		a := s.check(ci, "", req)
		want := core.CodePIRPending
		if req["team"] != nil {
			want += "," + core.CodeTeamIgnored
		}
		if a.Decision != "wait" || a.codes() != want {
			t.Fatalf("%v: %s %s, want wait %s", req, a.Decision, a.codes(), want)
		}
	}
}
