package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestIncidentFixFromRecordEndToEnd: under major_incident.fix_from_record
// a pipeline naming the incident it claims to fix still waits; once the
// incident's record (from the ITSM) lists the release's change as its
// fix, the release goes ahead. The policy round-trips through PUT/GET.
func TestIncidentFixFromRecordEndToEnd(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	pol := "environments:\n  production:\n    preset: strict\nmajor_incident:\n  max_priority: 1\n  fix_from_record: true\n"
	s.putPolicyYAML(pol)
	var got struct {
		Policy core.Policy `json:"policy"`
	}
	if st := s.do("GET", "/api/v1/policy", adminSecret, nil, &got); st != http.StatusOK || !got.Policy.MajorIncident.FixFromRecord {
		t.Fatalf("get policy: %d %+v", st, got.Policy.MajorIncident)
	}
	t0 := time.Now().UTC().Add(-time.Minute)
	s.sendWebhook(change("CHG8201", core.ApprovalApproved, t0))
	s.waitFor("the change", func() bool { return s.changeState("CHG8201") == "approved" })
	incident := func(fix []string, at time.Time) map[string]any {
		return map[string]any{"key": "INC8201", "title": "payments down", "priority": 1, "major": true,
			"state": "open", "services": []string{"payments-api"}, "fix_changes": fix, "source_updated_at": at}
	}
	s.sendWebhook(incident(nil, t0))
	s.waitFor("the incident", func() bool {
		return s.do("GET", "/api/v1/incidents/INC8201", adminSecret, nil, nil) == http.StatusOK
	})
	claim := map[string]any{"service": "payments-api", "environment": "production", "version": "2.0.1",
		"changes": []string{"CHG8201"}, "incidents": []string{"INC8201"}}
	if a := s.check(ci, "", claim); a.Decision != "wait" || a.codes() != core.CodeIncidentBlock {
		t.Fatalf("the claim alone: %s %s, want wait %s", a.Decision, a.codes(), core.CodeIncidentBlock)
	}
	s.sendWebhook(incident([]string{"CHG8201"}, t0.Add(30*time.Second)))
	s.waitFor("the recorded fix", func() bool { return s.check(ci, "", claim).Decision == "allow" })
	// The record lifts the block for a release linking the change, named
	// as the fix or not.
	delete(claim, "incidents")
	if a := s.check(ci, "", claim); a.Decision != "allow" {
		t.Fatalf("the recorded fix without the claim: %s %s", a.Decision, a.codes())
	}
}
