package core

import (
	"testing"
)

// TestSubject holds the rule-selecting fields to the policy's names: no
// spelling of the environment or service, and no team the caller names,
// gives a release other rules than the catalog's.
func TestSubject(t *testing.T) {
	p := testPolicy()
	p.Services["Payments-API"] = ServiceInfo{Team: "payments", Tier: TierCustomerFacing}
	p.Services["tierless"] = ServiceInfo{Tier: TierInternal}
	cp := mustCompile(t, p)
	tests := []struct {
		name               string
		service, env, team string
		want               Subject
	}{
		{"catalog team overrides the caller's", "payments-api", "production", "nobody",
			Subject{Service: "Payments-API", Environment: "production", KnownEnvironment: true, Team: "payments", IgnoredTeam: "nobody", Tier: TierCustomerFacing}},
		{"catalog team fills a missing one", "payments-api", "production", "",
			Subject{Service: "Payments-API", Environment: "production", KnownEnvironment: true, Team: "payments", Tier: TierCustomerFacing}},
		{"the catalog's team in another case is no disagreement", "payments-api", "production", "PAYMENTS",
			Subject{Service: "Payments-API", Environment: "production", KnownEnvironment: true, Team: "payments", Tier: TierCustomerFacing}},
		{"service case and space take the catalog's spelling", "  PAYMENTS-api ", "prod", "payments",
			Subject{Service: "Payments-API", Environment: "production", KnownEnvironment: true, Team: "payments", Tier: TierCustomerFacing}},
		{"alias in capitals", "checkout", "PRD", "",
			Subject{Service: "checkout", Environment: "production", KnownEnvironment: true, Team: "payments", Tier: TierCustomerFacing}},
		{"canonical name in capitals with space", "checkout", " PRODUCTION ", "",
			Subject{Service: "checkout", Environment: "production", KnownEnvironment: true, Team: "payments", Tier: TierCustomerFacing}},
		{"service outside the catalog keeps the caller's team", "Search", "staging", "search-team",
			Subject{Service: "Search", Environment: "staging", KnownEnvironment: true, Team: "search-team", Tier: TierInternal}},
		{"catalog entry without a team keeps the caller's", "tierless", "dev", "x",
			Subject{Service: "tierless", Environment: "development", KnownEnvironment: true, Team: "x", Tier: TierInternal}},
		{"unknown environment", "checkout", " mars ", "",
			Subject{Service: "checkout", Environment: "mars", Team: "payments", Tier: TierCustomerFacing}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cp.Subject(tt.service, tt.env, tt.team); got != tt.want {
				t.Fatalf("Subject(%q, %q, %q) =\n %+v, want\n %+v", tt.service, tt.env, tt.team, got, tt.want)
			}
		})
	}
}

// TestCanonicalRequestIsIdempotent: canonicalizing twice keeps the
// ignored team, so Evaluate still reports it after the gate canonicalized.
func TestCanonicalRequestIsIdempotent(t *testing.T) {
	cp := mustCompile(t, testPolicy())
	once, ok := cp.CanonicalRequest(GateRequest{Service: "CHECKOUT", Environment: "Prod", Team: "nobody"})
	twice, ok2 := cp.CanonicalRequest(once)
	if !ok || !ok2 || twice.IgnoredTeam != "nobody" || twice.Team != "payments" || twice.Service != "checkout" || twice.Environment != "production" {
		t.Fatalf("once %+v, twice %+v", once, twice)
	}
}

// TestEvaluateTeamFromCatalog: a team the catalog contradicts is ignored
// and noted, the note changes no decision, and every spelling of the
// environment and service gets the same rules.
func TestEvaluateTeamFromCatalog(t *testing.T) {
	cp := mustCompile(t, testPolicy())
	for _, tt := range []struct {
		name, service, env, team string
		wantNote                 bool
	}{
		{"catalog team", "checkout", "production", "payments", false},
		{"other team", "checkout", "production", "nobody", true},
		{"alias", "checkout", "prod", "", false},
		{"capitals", "Checkout", "PRODUCTION", "", false},
		{"space", " checkout ", " production ", "nobody", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := goodFacts()
			f.Request.Service, f.Request.Environment, f.Request.Team = tt.service, tt.env, tt.team
			f.Changes["CHG1"] = func() Change { c := goodChange("CHG1"); c.Approval = ApprovalRequested; return c }()
			got := Evaluate(cp, f, wednesday)
			want := []string{"CHANGE_NOT_APPROVED:wait:CHG1"}
			if tt.wantNote {
				want = append(want, "TEAM_IGNORED::nobody")
			}
			if got.Decision != Wait || !equalStrings(reasonList(got.Reasons), want) {
				t.Fatalf("got %s %q, want wait %q", got.Decision, reasonList(got.Reasons), want)
			}
			if got.Request.Team != "payments" || got.Request.Service != "checkout" || got.Request.Environment != "production" {
				t.Fatalf("request not canonical: %+v", got.Request)
			}
		})
	}
	// The note alone never turns allow into anything else.
	f := goodFacts()
	f.Request.Team = "nobody"
	if got := Evaluate(cp, f, wednesday); got.Decision != Allow || len(got.Reasons) != 1 || got.Reasons[0].Code != CodeTeamIgnored || got.Reasons[0].Result != "" {
		t.Fatalf("got %s %+v", got.Decision, got.Reasons)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
