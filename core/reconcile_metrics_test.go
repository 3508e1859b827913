package core

import (
	"testing"
	"time"
)

func TestMetricsAccumulator(t *testing.T) {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(10 * 24 * time.Hour)
	m := NewMetricsAccumulator(from, to, GroupByTeam, 0)
	// An incident on checkout two hours after the second deployment.
	m.AddIncident(Incident{Key: "INC1", Services: []string{"Checkout"}, OpenedAt: tp(from.Add(27 * time.Hour))})
	approved := func(key string, at time.Time, typ ChangeType) ChangeVersion {
		return ChangeVersion{Version: 1, ValidFrom: at, Change: Change{Key: key, Type: typ, Approval: ApprovalApproved,
			Approvals: []Approval{{Approver: "a", Decision: ApprovalApproved, At: tp(at)}}}}
	}
	dep := func(start time.Time, status string, changes []ChangeVersion, fixes ...string) DeploymentFacts {
		return DeploymentFacts{Deployment: Deployment{Service: "checkout", Environment: "production", Team: "payments",
			Status: status, StartedAt: start, Incidents: fixes}, Changes: changes}
	}
	m.AddDeployment(dep(from.Add(2*time.Hour), DeploySucceeded, []ChangeVersion{approved("C1", from, ChangeNormal)}))                                // lead 2h
	m.AddDeployment(dep(from.Add(24*time.Hour), DeploySucceeded, []ChangeVersion{approved("C2", from.Add(14*time.Hour), ChangeNormal)}))             // lead 10h, incident after: failed
	m.AddDeployment(dep(from.Add(72*time.Hour), DeployRolledBack, []ChangeVersion{approved("C3", from.Add(71*time.Hour), ChangeEmergency)}, "INC1")) // lead 1h, failed, emergency
	m.AddDeployment(dep(from.Add(96*time.Hour), DeploySucceeded, nil))                                                                               // no change: no lead time
	m.AddFixedIncident(Incident{Key: "INC1", OpenedAt: tp(from.Add(27 * time.Hour)), ResolvedAt: tp(from.Add(31 * time.Hour))})
	m.AddFixedIncident(Incident{Key: "INC9", OpenedAt: tp(from), ResolvedAt: tp(from.Add(time.Hour))}) // not fixed by a deployment: ignored
	m.AddGateCount("payments", Allow, 3)
	m.AddGateCount("payments", Wait, 2)
	m.AddWait("payments", from, from.Add(30*time.Minute))
	m.AddWait("payments", from, time.Time{}) // never allowed
	r := m.Result()
	if len(r.Groups) != 1 {
		t.Fatalf("groups %+v", r.Groups)
	}
	g := r.Groups[0]
	check := func(name string, got *float64, want float64) {
		t.Helper()
		if got == nil || *got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if g.Key != "payments" || g.Deployments != 4 || g.FailedDeployments != 2 || g.EmergencyDeployments != 1 {
		t.Errorf("counts %+v", g)
	}
	check("deployments per day", &g.DeploymentsPerDay, 0.4)
	check("change failure rate", g.ChangeFailureRate, 0.5)
	check("emergency ratio", g.EmergencyRatio, 0.25)
	check("lead median", g.LeadTimeHours.Median, 2)
	check("lead p90", g.LeadTimeHours.P90, 10)
	if g.LeadTimeHours.Count != 3 {
		t.Errorf("lead count %d", g.LeadTimeHours.Count)
	}
	check("mttr mean", g.MTTRHours.Mean, 4)
	check("median wait", g.Gate.MedianWaitMinutes, 30)
	if g.Gate.Allow != 3 || g.Gate.Wait != 2 || g.Gate.WaitedReleases != 1 {
		t.Errorf("gate %+v", g.Gate)
	}
	if !ValidGroupBy("service") || ValidGroupBy("region") {
		t.Error("ValidGroupBy")
	}
}
