package app_test

import (
	"net/http"
	"strings"
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
	s.putPolicyYAML(pol)
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

// TestPIRHeldByServiceEndToEnd: for a service the catalog does not list,
// the team is the caller's word, so the service's own unreviewed releases
// hold it back too: a check that omits the team, spells it in capitals or
// names another is held, and a release reported without a team holds the
// service's next one.
func TestPIRHeldByServiceEndToEnd(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	pol := "environments:\n  production:\n    preset: strict\n    pir_required: [normal]\n"
	s.putPolicyYAML(pol)
	chg := change("CHG8101", core.ApprovalApproved, time.Now().UTC())
	chg["services"] = []string{"ledger-api", "search-api", "checkout-api"}
	s.sendWebhook(chg)
	s.waitFor("the change", func() bool { return s.changeState("CHG8101") == "approved" })
	shaA, shaB := strings.Repeat("a1", 20), strings.Repeat("b2", 20)
	deploy := func(service, team, run string) {
		t.Helper()
		var dep core.Deployment
		if st := s.do("POST", "/api/v1/deployments", ci, map[string]any{"service": service, "environment": "production", "version": "1.0.0",
			"team": team, "status": "succeeded", "started_at": time.Now().UTC(), "changes": []string{"CHG8101"}, "commit": shaA,
			"provider": "github", "run_id": run}, &dep); st != http.StatusCreated {
			t.Fatalf("deployment of %s: %d %+v", service, st, dep)
		}
	}
	deploy("ledger-api", "ledger", "8101")
	deploy("search-api", "", "8102")
	for _, req := range []map[string]any{
		{"service": "ledger-api", "environment": "production", "version": "1.0.1", "changes": []string{"CHG8101"}},
		{"service": "ledger-api", "environment": "production", "version": "1.0.1", "team": "LEDGER", "changes": []string{"CHG8101"}},
		{"service": "Ledger-API", "environment": "production", "version": "1.0.1", "team": "someone-else", "changes": []string{"CHG8101"}},
		{"service": "checkout-api", "environment": "production", "version": "2.0.0", "team": " Ledger", "changes": []string{"CHG8101"}},
		{"service": "search-api", "environment": "production", "version": "1.0.1", "changes": []string{"CHG8101"}},
		// The version label reused for other code is held by the review
		// of the code deployed under it.
		{"service": "ledger-api", "environment": "production", "version": "1.0.0", "commit": shaB, "changes": []string{"CHG8101"}},
	} {
		if a := s.check(ci, "", req); a.Decision != "wait" || a.codes() != core.CodePIRPending {
			t.Fatalf("%v: %s %s, want wait %s", req, a.Decision, a.codes(), core.CodePIRPending)
		}
	}
	// The release itself is not held by its own review, and another
	// team's other service is not held at all.
	for _, req := range []map[string]any{
		{"service": "LEDGER-API", "environment": "production", "version": "1.0.0", "changes": []string{"CHG8101"}},
		{"service": "ledger-api", "environment": "production", "version": "1.0.0", "commit": strings.ToUpper(shaA), "changes": []string{"CHG8101"}},
		{"service": "checkout-api", "environment": "production", "version": "2.0.0", "team": "checkout", "changes": []string{"CHG8101"}},
	} {
		if a := s.check(ci, "", req); a.Decision != "allow" {
			t.Fatalf("%v: %s %s, want allow", req, a.Decision, a.codes())
		}
	}
}
