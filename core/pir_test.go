package core

import (
	"strings"
	"testing"
)

// TestPIRHoldsBack: a pending review holds back its team's releases and
// its service's (names compared case-insensitively, surrounding space
// ignored), never the release's own code: the release's own review holds
// it back only when both name a commit and they differ.
func TestPIRHoldsBack(t *testing.T) {
	p := PIR{ReleaseID: "r1", Service: "payments-api", Version: "1.0", Environment: "production", Team: "payments"}
	noTeam := PIR{ReleaseID: "r2", Service: "search", Version: "2.0", Environment: "production"}
	withCommit := p
	withCommit.Commit = "abc1234def"
	for _, tc := range []struct {
		name                             string
		p                                PIR
		team, release, service, ver, env string
		commit                           string
		want                             bool
	}{
		{"the team's next release", p, "payments", "r9", "payments-api", "1.1", "production", "", true},
		{"the team's other service", p, "payments", "r9", "ledger", "3.0", "production", "", true},
		{"the team in capitals, spaced", p, " PAYMENTS ", "r9", "ledger", "3.0", "production", "", true},
		{"the service without a team", p, "", "r9", "payments-api", "1.1", "production", "", true},
		{"the service in capitals, another team", p, "search", "r9", " Payments-API", "1.1", "production", "", true},
		{"the service in another environment", p, "", "r9", "payments-api", "1.0", "staging", "", true},
		{"another team's other service", p, "search", "r9", "ledger", "3.0", "production", "", false},
		{"no team, another service", p, "", "r9", "ledger", "3.0", "production", "", false},
		{"the release itself, by id", p, "payments", "r1", "other", "9", "dev", "", false},
		{"the release itself, by name in capitals", p, "payments", "", "PAYMENTS-API", "1.0", "production", "", false},
		{"a review without a team holds its service", noTeam, "", "r9", "search", "2.1", "production", "", true},
		{"a review without a team holds no team", noTeam, "", "r9", "ledger", "2.1", "production", "", false},
		{"an empty team matches no empty team", noTeam, " ", "r9", "ledger", "2.1", "production", "", false},
		{"the release itself, its own commit in capitals", withCommit, "payments", "r1", "payments-api", "1.0", "production", "ABC1234DEF", false},
		{"the release itself, no commit checked", withCommit, "payments", "r1", "payments-api", "1.0", "production", "", false},
		{"the release itself, a review without a commit", p, "payments", "r1", "payments-api", "1.0", "production", "def456", false},
		{"the release itself, its commit abbreviated", withCommit, "payments", "r1", "payments-api", "1.0", "production", "ABC1234", false},
		{"the release itself, six characters are no abbreviation", withCommit, "payments", "r1", "payments-api", "1.0", "production", "abc123", true},
		{"the version label reused for another commit", withCommit, "payments", "r1", "payments-api", "1.0", "production", "def456", true},
		{"the label reused, by name, without a team", withCommit, "", "", "PAYMENTS-API", "1.0", "production", "def456", true},
	} {
		if got := tc.p.HoldsBack(tc.team, tc.release, tc.service, tc.ver, tc.env, tc.commit); got != tc.want {
			t.Errorf("%s: HoldsBack = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSameCommit: unknown on either side, equal in any case, or one an
// abbreviation (7 characters or more) of the other.
func TestSameCommit(t *testing.T) {
	full := "4c2f9e1b7d3a8e6f0a1b2c3d4e5f60718293a4b5"
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"", full, true}, {full, " ", true}, {full, strings.ToUpper(full), true},
		{full[:7], full, true}, {full, full[:12], true}, {" " + full[:8] + " ", full, true},
		{full[:6], full, false}, {full[:7], "4c2f9e2" + full[7:], false}, {full, "ffff" + full[4:], false},
	} {
		if got := SameCommit(tc.a, tc.b); got != tc.want {
			t.Errorf("SameCommit(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
