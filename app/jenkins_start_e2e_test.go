package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// jenkinsBuild is a Notification plugin message (the current plugin's
// shape, see connectors/jenkins/profile_test.go) of build n of job
// deploy-payments: the phase's moment as build.timestamp and, unless
// noDuration (plugin versions before 1.15), the build's duration as
// build.duration.
func jenkinsBuild(n int, phase, status string, at time.Time, took time.Duration, noDuration bool) []byte {
	build := map[string]any{"number": n, "phase": phase, "url": fmt.Sprintf("job/deploy-payments/%d/", n),
		"full_url": fmt.Sprintf("https://ci.example.com/job/deploy-payments/%d/", n), "timestamp": at.UnixMilli(),
		"parameters": map[string]string{"SERVICE": "payments-api", "VERSION": fmt.Sprintf("9.%d.0", n)}}
	if !noDuration {
		build["duration"] = took.Milliseconds()
	}
	if status != "" {
		build["status"] = status
	}
	b, _ := json.Marshal(map[string]any{"name": "deploy-payments", "url": "job/deploy-payments/", "build": build})
	return b
}

// TestJenkinsBuildJudgedAtItsStart: a build tollgate first hears of at
// FINALIZED (its STARTED message lost, or tollgate down meanwhile) is
// recorded at its start — the message's moment less the build's
// duration — not when it was finalized, so the report of the period it
// ran in judges it. From a plugin that sends no duration the
// finalization's moment stands until the STARTED message comes, whichever
// of the two arrives first.
func TestJenkinsBuildJudgedAtItsStart(t *testing.T) {
	s := boot(t, "sqlite", fmt.Sprintf(`
connectors:
  - {name: jenkins, type: jenkins, webhook_secret: %[1]s, default_environment: production}
inbox:
  poll_interval: 50ms
`, authoritySecret))
	now := time.Now().UTC().Truncate(time.Second)
	send := func(body []byte) { s.t.Helper(); s.settled(s.mustHook("jenkins", body)) }
	started := func(n int) time.Time {
		t.Helper()
		var page struct{ Items []core.Deployment }
		s.do("GET", "/api/v1/deployments?service=payments-api&limit=10", adminSecret, nil, &page)
		for _, d := range page.Items {
			if d.RunID == fmt.Sprintf("job/deploy-payments/%d/", n) {
				return d.StartedAt
			}
		}
		t.Fatalf("build %d not recorded: %+v", n, page.Items)
		return time.Time{}
	}

	// Build 41 ran from 50 to 10 minutes ago; only FINALIZED arrives.
	start41, took41 := now.Add(-50*time.Minute), 40*time.Minute
	send(jenkinsBuild(41, "FINALIZED", "SUCCESS", start41.Add(took41+3*time.Second), took41, false))
	if got := started(41); !got.Equal(start41.Add(3 * time.Second)) {
		t.Errorf("build 41 first seen finalized: started %v; want its start, %v (as near as FINALIZED tells)", got, start41)
	}
	cm, _ := s.token(core.RoleChangeManager)
	var rep reportAnswer
	if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": now.Add(-2 * time.Hour), "to": now.Add(-30 * time.Minute),
		"environment": "production"}, &rep); st != http.StatusCreated {
		t.Fatalf("report: %d", st)
	}
	if rep.Summary.DeploymentsChecked != 1 {
		t.Errorf("the report of the period build 41 started in checked %d deployments; want it", rep.Summary.DeploymentsChecked)
	}

	// Builds 42 and 43 come from a plugin that sends no duration: the
	// STARTED message's start wins, before or after FINALIZED.
	start42, start43 := now.Add(-40*time.Minute), now.Add(-35*time.Minute)
	send(jenkinsBuild(42, "FINALIZED", "SUCCESS", start42.Add(30*time.Minute), 0, true))
	send(jenkinsBuild(42, "STARTED", "", start42, 0, true))
	send(jenkinsBuild(43, "STARTED", "", start43, 0, true))
	send(jenkinsBuild(43, "COMPLETED", "SUCCESS", start43.Add(20*time.Second), 0, true))
	send(jenkinsBuild(43, "FINALIZED", "SUCCESS", start43.Add(40*time.Second), 0, true))
	if got := started(42); !got.Equal(start42) {
		t.Errorf("build 42, STARTED after FINALIZED: started %v; want %v", got, start42)
	}
	if got := started(43); !got.Equal(start43) {
		t.Errorf("build 43, STARTED before FINALIZED: started %v; want %v", got, start43)
	}
}
