package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestOneDeploymentPerJob: a job held at its CI's gate and then reported
// by every event its CI sends and by the pipeline's own report is one
// deployment, carrying the gate's decision, the service the gate named
// and its change, with no link changed after the fact. GitHub reports it
// as deployment, workflow_job and deployment_status (the deployment id
// apart from the run id); GitLab as Deployment Hook and Job Hook (the
// deployment id apart from the job id). A whole run's event at a
// connector without default_environment is ignored, with the reason.
func TestOneDeploymentPerJob(t *testing.T) {
	f := newFakeCI(t)
	s := boot(t, "postgres", ciGatesConfig(f))
	aud, _ := s.token(core.RoleAuditor)
	ci, _ := s.token(core.RoleCI)
	admin, _ := s.token(core.RoleAdmin)
	old := time.Now().UTC().Add(-30 * time.Minute)
	s.snSettled(snChange("CHG0098001", "payments-api", "approved", old))

	jobOf := func(provider, run string) []core.Deployment {
		var page struct{ Items []core.Deployment }
		s.do("GET", "/api/v1/deployments?limit=100", aud, nil, &page)
		var out []core.Deployment
		for _, d := range page.Items {
			if d.Provider == provider && (d.RunID == run || strings.HasPrefix(d.RunID, run+"@")) {
				out = append(out, d)
			}
		}
		return out
	}
	report := func(provider, run, sha string, started time.Time) {
		t.Helper()
		if st := s.do("POST", "/api/v1/deployments", ci, map[string]any{"service": "payments-api", "environment": "production",
			"version": sha, "commit": sha, "status": "succeeded", "started_at": started, "finished_at": started.Add(20 * time.Second),
			"changes": []string{"CHG0098001"}, "provider": provider, "run_id": run}, nil); st >= 300 {
			t.Fatalf("%s report: %d", provider, st)
		}
	}
	// linksFixed says whether the job's first report carries the gate's
	// decision: GitLab's Job Hook names no deployment id, so a Job Hook
	// ahead of its Deployment Hook records the job without it, and the
	// Deployment Hook links it seconds later (audited, well inside the
	// reconciler's grace).
	check := func(provider, run, decision string, linksFixed bool) {
		t.Helper()
		var got []core.Deployment
		s.waitFor(provider+" job recorded succeeded", func() bool {
			got = jobOf(provider, run)
			return len(got) > 0 && got[0].Status == core.DeploySucceeded && got[0].DecisionID != ""
		})
		time.Sleep(300 * time.Millisecond) // any copy still being normalized
		if got = jobOf(provider, run); len(got) != 1 {
			t.Fatalf("%s run %s recorded as %d deployments: %+v", provider, run, len(got), got)
		}
		d := got[0]
		if d.DecisionID != decision || d.Service != "payments-api" || strings.Join(d.Changes, ",") != "CHG0098001" {
			t.Errorf("%s deployment %+v: want decision %s, service payments-api, change CHG0098001", provider, d, decision)
		}
		switch {
		case linksFixed && d.LinksChangedAt != nil:
			t.Errorf("%s deployment's links changed at %v: its every report names them", provider, d.LinksChangedAt)
		case d.LinksChangedAt != nil && d.LinksChangedAt.Sub(*d.FinishedAt) > core.DefaultLinksChangeGrace/2:
			t.Errorf("%s deployment's links changed at %v, long after it finished at %v", provider, d.LinksChangedAt, d.FinishedAt)
		}
		var all struct{ Items []core.Deployment }
		s.do("GET", "/api/v1/deployments?limit=100", aud, nil, &all)
		for _, o := range all.Items {
			if o.Provider == provider && o.ID != d.ID {
				t.Errorf("another %s deployment beside the job's: %+v", provider, o)
			}
		}
	}

	// GitHub: run 7200001 holds deployment 920001 at the protection rule.
	sha := strings.Repeat("c", 40)
	f.commit("acme/payments", sha, "release\n\nChange: CHG0098001")
	s.githubHook("github", "deployment_protection_rule", protectionRule(f.srv.URL, "acme/payments", "7200001", "920001", sha, ""))
	if a, ok := f.answer("7200001", 5*time.Second); !ok || a.State != "approved" {
		t.Fatalf("answer to run 7200001: %+v (ok %v), want approved", a, ok)
	}
	s.waitFor("run 7200001's answer saved", func() bool { return len(s.decisionsOfRun(t, "7200001")) == 1 })
	decision := s.decisionOfRun(t, "7200001")
	started := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	repo := map[string]any{"name": "payments", "full_name": "acme/payments"}
	dep := map[string]any{"id": 920001, "sha": sha, "environment": "production", "payload": map[string]any{},
		"created_at": started.Add(-time.Minute), "creator": map[string]any{"login": "octocat"}}
	run := map[string]any{"id": 7200001}
	for _, ev := range []struct {
		event string
		body  map[string]any
	}{
		{"deployment", map[string]any{"action": "created", "deployment": dep, "workflow_run": run, "repository": repo}},
		{"workflow_job", map[string]any{"action": "in_progress", "deployment": dep, "repository": repo, "workflow_job": map[string]any{
			"id": 1, "run_id": 7200001, "status": "in_progress", "head_sha": sha, "started_at": started, "runner_id": 3,
			"html_url": "https://github.com/acme/payments/actions/runs/7200001/job/1"}}},
		{"deployment_status", map[string]any{"action": "created", "deployment": dep, "workflow_run": run, "repository": repo,
			"deployment_status": map[string]any{"state": "success", "environment": "production", "created_at": started.Add(30 * time.Second)}}},
		{"workflow_job", map[string]any{"action": "completed", "deployment": dep, "repository": repo, "workflow_job": map[string]any{
			"id": 1, "run_id": 7200001, "status": "completed", "conclusion": "success", "head_sha": sha, "started_at": started,
			"completed_at": started.Add(40 * time.Second), "runner_id": 3}}},
		{"workflow_run", map[string]any{"action": "completed", "repository": repo, "workflow_run": map[string]any{
			"id": 7200001, "head_sha": sha, "status": "completed", "conclusion": "success", "run_started_at": started.Add(-2 * time.Minute),
			"updated_at": started.Add(time.Minute)}}},
	} {
		b, _ := json.Marshal(ev.body)
		if st := s.githubHook("github", ev.event, b); st != http.StatusAccepted {
			t.Fatalf("%s: %d", ev.event, st)
		}
	}
	report("github", "7200001", sha, started.Add(5*time.Second))
	check("github", "7200001", decision, true)
	s.waitFor("the workflow_run ignored as a whole run", func() bool {
		var page struct{ Items []core.Event }
		s.do("GET", "/api/v1/events?status=ignored&limit=100", admin, nil, &page)
		for _, e := range page.Items {
			if e.Type == "workflow_run" && strings.Contains(e.Reason, "whole run") {
				return true
			}
		}
		return false
	})

	s.signOffPIR("payments-api", sha, "production") // the next release's gate asks for it: not this test's subject

	// GitLab: job 8200001 deploys through deployment 9200001, blocked for
	// approval.
	glSHA := "0123abcd" + strings.Repeat("d", 32)
	project := map[string]any{"id": 4200, "path_with_namespace": "acme/payments-api", "web_url": "https://gitlab.example.com/acme/payments-api"}
	hook := func(status string, at time.Time) []byte {
		b, _ := json.Marshal(map[string]any{
			"object_kind": "deployment", "status": status, "deployment_id": 9200001, "deployable_id": 8200001,
			"deployable_url": "https://gitlab.example.com/acme/payments-api/-/jobs/8200001", "environment": "production",
			"project": project, "short_sha": glSHA[:8], "commit_url": "https://gitlab.example.com/acme/payments-api/-/commit/" + glSHA,
			"commit_title": "CHG0098001 payments-api", "status_changed_at": at.Format("2006-01-02 15:04:05 -0700"), "user": map[string]any{"username": "dev"},
		})
		return b
	}
	if st := s.gitlabHook("Deployment Hook", hook("blocked", started.Add(-time.Minute))); st != http.StatusAccepted {
		t.Fatalf("gitlab blocked: %d", st)
	}
	if a, ok := f.answer("9200001", 5*time.Second); !ok || a.State != "approved" {
		t.Fatalf("gitlab approval: %+v (ok %v), want approved", a, ok)
	}
	var glDecision string
	s.waitFor("the GitLab request's decision saved", func() bool {
		list, err := s.app.DB.ListPendingGates(t.Context(), []string{core.PendingAnswered}, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range list {
			if p.ExternalID == "deployment:9200001" {
				glDecision = p.DecisionID
			}
		}
		return glDecision != ""
	})
	job := func(status string, finished bool) []byte {
		m := map[string]any{"object_kind": "build", "build_id": 8200001, "pipeline_id": 6200001, "build_status": status, "sha": glSHA,
			"build_started_at": started.Format("2006-01-02 15:04:05 MST"), "project_name": "acme / payments-api",
			"repository": map[string]any{"name": "payments-api"}, "environment": map[string]any{"name": "production", "action": "start"},
			"user": map[string]any{"username": "dev"}}
		if finished {
			m["build_finished_at"] = started.Add(40 * time.Second).Format("2006-01-02 15:04:05 MST")
		}
		b, _ := json.Marshal(m)
		return b
	}
	pipeline, _ := json.Marshal(map[string]any{"object_kind": "pipeline", "project": project, "user": map[string]any{"username": "dev"},
		"object_attributes": map[string]any{"id": 6200001, "sha": glSHA, "status": "success",
			"created_at": started.Add(-2 * time.Minute).Format("2006-01-02 15:04:05 MST"), "finished_at": started.Add(time.Minute).Format("2006-01-02 15:04:05 MST")}})
	for _, ev := range []struct {
		event string
		body  []byte
	}{
		{"Job Hook", job("running", false)},
		{"Deployment Hook", hook("running", started)},
		{"Job Hook", job("success", true)},
		{"Deployment Hook", hook("success", started.Add(40*time.Second))},
		{"Pipeline Hook", pipeline},
	} {
		if st := s.gitlabHook(ev.event, ev.body); st != http.StatusAccepted {
			t.Fatalf("%s: %d", ev.event, st)
		}
	}
	report("gitlab", "8200001", glSHA, started.Add(5*time.Second))
	check("gitlab", "8200001", glDecision, false)
}
