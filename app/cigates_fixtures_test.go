package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestCIFixturesWithGates: with the CI gates on (a GitHub App and GitLab
// approvals), every GitHub, GitLab and Jenkins fixture is accepted and is
// what it should be: a deployment record, an event tollgate does not use
// (ignored, with the reason: a deployment just created, which the gate may
// hold, and a whole run without an environment among them), or a
// gate request the CI waits on, answered through the CI's API. The
// protection rule and the blocked deployment are the real deployment
// payloads in the shape of their events (the fixtures hold the schema of
// deployment_protection_rule, and a Deployment Hook of another status).
func TestCIFixturesWithGates(t *testing.T) {
	f := newFakeCI(t)
	cfg := ciGatesConfig(f) + "\n" // github, github-short, gitlab, servicenow
	cfg = strings.Replace(cfg, "inbox:", "  - {name: jenkins, type: jenkins, webhook_secret: "+authoritySecret+", default_environment: production}\ninbox:", 1)
	s := boot(t, "postgres", cfg)

	read := func(connector, file string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "connectors", connector, "testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var dep map[string]any
	if err := json.Unmarshal(read("github", "deployment.created.json"), &dep); err != nil {
		t.Fatal(err)
	}
	repo := dep["repository"].(map[string]any)["full_name"].(string)
	rule, _ := json.Marshal(map[string]any{
		"action": "requested", "environment": "production", "event": "push",
		"deployment_callback_url": f.srv.URL + "/repos/" + repo + "/actions/runs/4242/deployment_protection_rule",
		"deployment":              dep["deployment"], "pull_requests": []any{}, "repository": dep["repository"], "sender": dep["sender"],
		"installation": map[string]any{"id": 4242001},
	})
	var hook map[string]any
	_ = json.Unmarshal(read("gitlab", "deployment_hook.json"), &hook)
	hook["status"], hook["environment"] = "blocked", "production"
	blocked, _ := json.Marshal(hook)

	tests := []struct {
		connector, event, file string
		body                   []byte
		status                 string
		record                 string // prefix of the record it became
		reason                 string
	}{
		// With the protection rule on, a deployment just created may be
		// held: its statuses record it once it runs.
		{"github", "deployment", "deployment.created.json", nil, core.EventIgnored, "", "its statuses record it"},
		{"github", "deployment_status", "deployment_status.created.json", nil, core.EventProcessed, "deployment:", ""},
		{"github", "workflow_job", "workflow_job.queued.with-deployment.json", nil, core.EventProcessed, "deployment:", ""},
		{"github", "workflow_job", "workflow_job.waiting.json", nil, core.EventIgnored, "", "no mapping profile"},
		{"github", "workflow_job", "workflow_job.completed.success.json", nil, core.EventIgnored, "", "no mapping profile"},
		{"github", "workflow_job", "workflow_job.completed.failure.json", nil, core.EventIgnored, "", "no mapping profile"},
		{"github", "workflow_run", "workflow_run.requested.json", nil, core.EventIgnored, "", "whole run"},
		{"github", "workflow_run", "workflow_run.completed.json", nil, core.EventIgnored, "", "whole run"},
		{"github", "check_suite", "check_suite.requested.json", nil, core.EventIgnored, "", "no mapping profile"},
		{"github", "check_suite", "check_suite.completed.json", nil, core.EventIgnored, "", "no mapping profile"},
		{"github", "push", "push.json", nil, core.EventIgnored, "", "no mapping profile"},
		{"github", "release", "release.published.json", nil, core.EventIgnored, "", "no mapping profile"},
		{"github", "deployment_protection_rule", "(deployment.created.json as a protection rule)", rule, core.EventProcessed, "gate:", "gate request pending"},
		{"gitlab", "Deployment Hook", "deployment_hook.json", nil, core.EventProcessed, "deployment:", ""},
		{"gitlab", "Deployment Hook", "(deployment_hook.json, blocked)", blocked, core.EventProcessed, "gate:", "gate request pending"},
		{"gitlab", "Job Hook", "job_hook.go-gitlab.json", nil, core.EventProcessed, "deployment:", ""},
		{"gitlab", "Pipeline Hook", "pipeline_hook.json", nil, core.EventIgnored, "", "whole run"},
		{"jenkins", "", "notification-plugin.job_completed.json", nil, core.EventProcessed, "deployment:", ""},
	}
	for i, tt := range tests {
		body := tt.body
		if body == nil {
			body = read(tt.connector, tt.file)
		}
		var id string
		switch tt.connector {
		case "github":
			req, _ := http.NewRequest("POST", s.url+"/webhooks/github", strings.NewReader(string(body)))
			req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("fixture-%d", i))
			id = s.signedGitHub(req, tt.event, body)
		case "gitlab":
			id = s.gitlabEvent(tt.event, fmt.Sprintf("fixture-%d", i), body)
		default:
			id = s.mustHook(tt.connector, body)
		}
		e := s.settled(id)
		if e.Status != tt.status || !strings.HasPrefix(e.Record, tt.record) || !strings.Contains(e.Reason, tt.reason) {
			t.Errorf("%s %s: %s record %q (%q); want %s, record %q…, reason containing %q", tt.connector, tt.file, e.Status, e.Record, e.Reason, tt.status, tt.record, tt.reason)
		}
	}
	// Both gate requests link no change: denied, and the CI told so.
	for _, run := range []string{"4242", "15"} {
		if a, ok := f.answer(run, 5*time.Second); !ok || a.State != "rejected" || !strings.Contains(a.Comment, core.CodeNoChange) {
			t.Errorf("answer to %s: %+v (ok %v), want rejected with NO_CHANGE", run, a, ok)
		}
	}
}

// signedGitHub posts req's body as a GitHub delivery of event and returns
// the event id.
func (s *server) signedGitHub(req *http.Request, event string, body []byte) string {
	s.t.Helper()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hmacHexWith(authoritySecret, body))
	return s.accepted(req)
}

func (s *server) gitlabEvent(event, uuid string, body []byte) string {
	s.t.Helper()
	req, _ := http.NewRequest("POST", s.url+"/webhooks/gitlab", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gitlab-Event", event)
	req.Header.Set("X-Gitlab-Event-UUID", uuid)
	req.Header.Set("X-Gitlab-Token", authoritySecret)
	return s.accepted(req)
}

func (s *server) accepted(req *http.Request) string {
	s.t.Helper()
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		EventID string `json:"event_id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusAccepted || out.EventID == "" {
		s.t.Fatalf("%s: status %d", req.URL.Path, resp.StatusCode)
	}
	return out.EventID
}
