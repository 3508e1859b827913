package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestGitHubJobFailedBeforeInProgress: GitHub posts a deployment status
// failure for a job that ran and failed as for one its environment's
// reviewers or a protection rule rejected, and a job that fails fast may
// have no in_progress status before it. Its workflow_job events tell them
// apart (a runner took the job, or none did): with them subscribed, the
// job that ran is a failed deployment, judged from its runner's start,
// whichever order the events come in, and the rejected one deployed
// nothing and stays queued. With only deployment and deployment_status
// subscribed nothing says the job ran: it stays queued, as the profile's
// description says.
func TestGitHubJobFailedBeforeInProgress(t *testing.T) {
	s := boot(t, "sqlite", fmt.Sprintf(`
connectors:
  - {name: github, type: github, webhook_secret: %[1]s}
inbox:
  poll_interval: 50ms
`, authoritySecret))
	now := time.Now().UTC().Truncate(time.Second)
	ran, failed := now.Add(-20*time.Minute), now.Add(-20*time.Minute+30*time.Second)
	sha := strings.Repeat("d", 40)
	repo := map[string]any{"name": "payments", "full_name": "acme/payments"}
	deployment := func(run int) map[string]any {
		return map[string]any{"id": run + 100000, "sha": sha, "environment": "production", "payload": map[string]any{},
			"created_at": ran.Add(-time.Minute), "creator": map[string]any{"login": "octocat"}}
	}
	created := func(run int) map[string]any {
		return map[string]any{"action": "created", "deployment": deployment(run), "workflow_run": map[string]any{"id": run}, "repository": repo}
	}
	status := func(run int) map[string]any {
		return map[string]any{"action": "created", "deployment": deployment(run), "workflow_run": map[string]any{"id": run}, "repository": repo,
			"deployment_status": map[string]any{"state": "failure", "environment": "production", "created_at": failed}}
	}
	// job is a workflow_job delivery; a job no runner took has no
	// runner_id, and GitHub gives it its creation as started_at.
	job := func(run int, action string, runner bool) map[string]any {
		j := map[string]any{"id": run + 200000, "run_id": run, "status": action, "head_sha": sha, "created_at": ran.Add(-time.Minute),
			"started_at": ran.Add(-time.Minute), "html_url": fmt.Sprintf("https://github.com/acme/payments/actions/runs/%d/job/1", run)}
		if runner {
			j["runner_id"], j["started_at"] = 3, ran
		}
		if action == "completed" {
			j["conclusion"], j["completed_at"] = "failure", failed
		}
		return map[string]any{"action": action, "deployment": deployment(run), "repository": repo, "workflow_job": j}
	}
	type delivery struct {
		event string
		body  map[string]any
	}
	for _, d := range []delivery{
		// 7300001 ran and failed: no in_progress status, its job's events.
		{"deployment", created(7300001)}, {"deployment_status", status(7300001)}, {"workflow_job", job(7300001, "completed", true)},
		// 7300002 the same, its events in another order.
		{"workflow_job", job(7300002, "completed", true)}, {"deployment_status", status(7300002)}, {"deployment", created(7300002)},
		// 7300003 rejected by the environment's reviewers: no runner.
		{"deployment", created(7300003)}, {"workflow_job", job(7300003, "waiting", false)},
		{"workflow_job", job(7300003, "completed", false)}, {"deployment_status", status(7300003)},
		// 7300004 reported by the deployment events alone.
		{"deployment", created(7300004)}, {"deployment_status", status(7300004)},
	} {
		b, _ := json.Marshal(d.body)
		if st := s.githubHook("github", d.event, b); st != http.StatusAccepted {
			t.Fatalf("%s: %d", d.event, st)
		}
		s.waitFor("the "+d.event+" delivery normalized", func() bool {
			var pending struct{ Items []core.Event }
			return s.do("GET", "/api/v1/events?status=pending", adminSecret, nil, &pending) == http.StatusOK && len(pending.Items) == 0
		})
	}

	var page struct{ Items []core.Deployment }
	s.do("GET", "/api/v1/deployments?service=payments&limit=10", adminSecret, nil, &page)
	runs := map[string]core.Deployment{}
	for _, d := range page.Items {
		runs[d.RunID] = d
	}
	if len(page.Items) != 4 {
		t.Fatalf("%d deployments, want one per run: %+v", len(page.Items), page.Items)
	}
	for _, run := range []string{"7300001", "7300002"} {
		if d := runs[run]; d.Status != core.DeployFailed || !d.StartedAt.Equal(ran) || d.FinishedAt == nil || !d.FinishedAt.Equal(failed) {
			t.Errorf("run %s, which ran and failed: %s, started %v, finished %v; want failed, %v to %v", run, d.Status, d.StartedAt, d.FinishedAt, ran, failed)
		}
	}
	for _, run := range []string{"7300003", "7300004"} {
		if d := runs[run]; d.Status != core.DeployQueued || d.FinishedAt != nil {
			t.Errorf("run %s, rejected or never said to run: %s, finished %v; want queued, deployed nothing", run, d.Status, d.FinishedAt)
		}
	}
	cm, _ := s.token(core.RoleChangeManager)
	var rep reportAnswer
	if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": now.Add(-time.Hour), "to": now.Add(time.Minute),
		"environment": "production"}, &rep); st != http.StatusCreated {
		t.Fatalf("report: %d", st)
	}
	if rep.Summary.DeploymentsChecked != 2 || rep.Summary.QueuedDeployments != 2 {
		t.Errorf("report %+v; want the two jobs that ran judged and the two others counted as queued", rep.Summary)
	}
}
