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

var gitlabQueuedConfig = fmt.Sprintf(`
connectors:
  - {name: gitlab, type: gitlab, webhook_secret: %[1]s}
inbox:
  poll_interval: 50ms
`, authoritySecret)

// gitlabJob is a GitLab "Job Hook" of production deploy job job of
// payments-api (the run id tollgate records it under); started is nil
// while GitLab holds the job.
func gitlabJob(job int, status string, created time.Time, started, finished *time.Time) []byte {
	stamp := func(t *time.Time) any {
		if t == nil {
			return nil
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	b, _ := json.Marshal(map[string]any{
		"object_kind": "build", "build_id": job, "build_name": "deploy", "build_stage": "deploy",
		"build_status": status, "build_created_at": stamp(&created), "build_started_at": stamp(started),
		"build_finished_at": stamp(finished), "pipeline_id": job * 10, "sha": "95790bf891e76fee5e1747ab589903a6a1f80f22",
		"user":        map[string]any{"username": "dora"},
		"repository":  map[string]any{"name": "payments-api"},
		"environment": map[string]any{"name": "production", "action": "start"},
	})
	return b
}

// TestQueuedRunJudgedWhenItRan: a GitLab manual production job is held
// (queued) from its pipeline's creation until someone plays it. Never
// played (or canceled unplayed), it is no deployment any report judges,
// only counted; played, it is judged from when it ran, not from when its
// pipeline queued it.
func TestQueuedRunJudgedWhenItRan(t *testing.T) {
	s := boot(t, "sqlite", gitlabQueuedConfig)
	cm, _ := s.token(core.RoleChangeManager)
	now := time.Now().UTC().Truncate(time.Second)
	queuedAt, ranAt, doneAt := now.Add(-6*time.Hour), now.Add(-30*time.Minute), now.Add(-25*time.Minute)

	// Job 701: a manual deploy job never played.
	s.gitlabHookOK("Job Hook", gitlabJob(701, "created", queuedAt, nil, nil))
	s.gitlabHookOK("Job Hook", gitlabJob(701, "manual", queuedAt, nil, nil))
	// Job 702: played six hours after its pipeline was created.
	s.gitlabHookOK("Job Hook", gitlabJob(702, "manual", queuedAt, nil, nil))
	s.gitlabHookOK("Job Hook", gitlabJob(702, "running", queuedAt, &ranAt, nil))
	s.gitlabHookOK("Job Hook", gitlabJob(702, "success", queuedAt, &ranAt, &doneAt))
	// Job 703: a manual job canceled without being played.
	s.gitlabHookOK("Job Hook", gitlabJob(703, "manual", queuedAt, nil, nil))
	s.gitlabHookOK("Job Hook", gitlabJob(703, "canceled", queuedAt, nil, &doneAt))
	// A late redelivery of its queued report moves nothing.
	s.gitlabHookOK("Job Hook", gitlabJob(702, "pending", queuedAt.Add(-time.Minute), nil, nil))

	type listed struct {
		Items []core.Deployment `json:"items"`
	}
	var runs map[string]core.Deployment
	s.waitFor("the three jobs recorded", func() bool {
		var l listed
		if s.do("GET", "/api/v1/deployments?service=payments-api&limit=10", adminSecret, nil, &l) != http.StatusOK {
			return false
		}
		runs = map[string]core.Deployment{}
		for _, d := range l.Items {
			runs[d.RunID] = d
		}
		var pending struct {
			Items []core.Event `json:"items"`
		}
		s.do("GET", "/api/v1/events?status=pending", adminSecret, nil, &pending)
		return runs["702"].Status == core.DeploySucceeded && runs["701"].Status != "" && runs["703"].Status != "" && len(pending.Items) == 0
	})
	if d := runs["701"]; d.Status != core.DeployQueued || !d.StartedAt.Equal(queuedAt) {
		t.Errorf("the job never played: %s started %v; want queued since %v", d.Status, d.StartedAt, queuedAt)
	}
	if d := runs["703"]; d.Status != core.DeployQueued || d.FinishedAt != nil {
		t.Errorf("the job canceled unplayed: %s finished %v; want queued, deployed nothing", d.Status, d.FinishedAt)
	}
	if d := runs["702"]; !d.StartedAt.Equal(ranAt) {
		t.Errorf("the job played: started %v; want when it ran, %v (queued %v)", d.StartedAt, ranAt, queuedAt)
	}

	// The runs still held, listed by status through the API and the UI.
	var held listed
	if st := s.do("GET", "/api/v1/deployments?status=queued", adminSecret, nil, &held); st != http.StatusOK || len(held.Items) != 2 ||
		held.Items[0].Status != core.DeployQueued || held.Items[1].Status != core.DeployQueued {
		t.Errorf("?status=queued: %d %+v; want runs 701 and 703", st, held.Items)
	}
	if st := s.do("GET", "/api/v1/deployments?status=done", adminSecret, nil, nil); st != http.StatusBadRequest {
		t.Errorf("?status=done: %d, want 400", st)
	}
	aud, _ := s.token(core.RoleAuditor)
	ui := s.uiClient()
	ui.signIn(aud)
	if st, _, body := ui.get("/ui/deployments?status=queued"); st != http.StatusOK || !strings.Contains(body, "gitlab 701") ||
		!strings.Contains(body, "gitlab 703") || strings.Contains(body, "gitlab 702") || !strings.Contains(body, "<option selected>queued</option>") {
		t.Errorf("UI deployments ?status=queued: %d\n%s", st, body)
	}
	if st, _, _ := ui.get("/ui/deployments?status=done"); st != http.StatusBadRequest {
		t.Errorf("UI ?status=done: %d, want 400", st)
	}

	var rep reportAnswer
	if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": now.Add(-24 * time.Hour), "to": now.Add(time.Minute), "environment": "production"}, &rep); st != http.StatusCreated {
		t.Fatalf("run report: %d", st)
	}
	if rep.Summary.DeploymentsChecked != 1 || rep.Summary.QueuedDeployments != 2 {
		t.Fatalf("summary %+v; want the played job judged and the two others counted as queued", rep.Summary)
	}
	var doc struct {
		Findings []core.ReconcileFinding `json:"findings"`
	}
	if st, body := s.get("/api/v1/reports/reconciliation/"+rep.ID, cm); st != http.StatusOK || json.Unmarshal([]byte(body), &doc) != nil {
		t.Fatalf("report: %d %s", st, body)
	}
	for _, f := range doc.Findings {
		if f.Deployment.RunID != "702" || !f.Deployment.StartedAt.Equal(ranAt) {
			t.Errorf("finding %s on run %s started %v; want only run 702, judged at %v", f.Code, f.Deployment.RunID, f.Deployment.StartedAt, ranAt)
		}
	}
}

// gitlabHookOK is gitlabHook that fails the test unless GitLab's delivery
// is accepted.
func (s *server) gitlabHookOK(event string, body []byte) {
	s.t.Helper()
	if st := s.gitlabHook(event, body); st != http.StatusAccepted {
		s.t.Fatalf("%s: status %d", event, st)
	}
}
