package app_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestGitLabForgedApprovalRequest: a Deployment Hook signed with the
// connector's token (which many projects may share) but naming another
// project's waiting deployment, or another commit than that deployment
// deploys, is read back from GitLab, quarantined with the reason and
// never answered. The deployment's own hook is then evaluated for what
// GitLab shows, and its redelivery after the answer is a known request,
// not a quarantined one.
func TestGitLabForgedApprovalRequest(t *testing.T) {
	f := newFakeCI(t)
	s := boot(t, "postgres", ciGatesConfig(f))
	s.mustHook("servicenow", snChange("CHG0097301", "payments-api", "approved", time.Now().UTC().Add(-5*time.Second)))
	ledgerSHA := strings.Repeat("1", 40)
	f.mu.Lock()
	f.glDeployments = []map[string]any{{"id": 9300001, "project": "acme/ledger", "ref": "main", "sha": ledgerSHA, "status": "blocked",
		"environment": map[string]any{"name": "production"}, "user": map[string]any{"username": "mallory"},
		"deployable": map[string]any{"id": 8300001, "commit": map[string]any{"title": "ledger: unreviewed"}}}}
	f.mu.Unlock()
	hook := func(project string, id int, sha, title string, extra ...string) []byte {
		m := map[string]any{
			"object_kind": "deployment", "status": "blocked", "deployment_id": 9300001, "deployable_id": 8300001,
			"deployable_url": "https://gitlab.example.com/" + project + "/-/jobs/8300001", "environment": "production",
			"project":   map[string]any{"id": id, "path_with_namespace": project, "web_url": "https://gitlab.example.com/" + project},
			"short_sha": sha[:8], "commit_url": "https://gitlab.example.com/" + project + "/-/commit/" + sha,
			"commit_title": title, "user": map[string]any{"username": "mallory"},
		}
		for _, k := range extra {
			m[k] = true
		}
		b, _ := json.Marshal(m)
		return b
	}
	approvedSHA := strings.Repeat("2", 40)
	for i, tc := range []struct {
		name, project string
		id            int
		says          string
	}{
		{"another project's deployment, named as payments-api's", "acme/payments-api", 4200, "does not show this deployment in this project"},
		{"the project's own deployment, with another commit", "acme/ledger", 31, "deploys " + ledgerSHA},
	} {
		e := s.settled(s.gitlabEvent("Deployment Hook", fmt.Sprintf("forged-%d", i), hook(tc.project, tc.id, approvedSHA, "CHG0097301 payments-api 3.0.0")))
		if e.Status != core.EventQuarantined || !strings.Contains(e.Reason, tc.says) {
			t.Errorf("%s: %s (%q), want quarantined saying %q", tc.name, e.Status, e.Reason, tc.says)
		}
	}

	// The deployment's own hook: evaluated for GitLab's commit and title,
	// which link no change.
	real := hook("acme/ledger", 31, ledgerSHA, "ledger: unreviewed")
	if e := s.settled(s.gitlabEvent("Deployment Hook", "real", real)); e.Status != core.EventProcessed || !strings.HasPrefix(e.Record, "gate:") {
		t.Fatalf("the real hook: %s %q (%q), want a gate request", e.Status, e.Record, e.Reason)
	}
	a, ok := f.answer("9300001", 5*time.Second)
	if !ok || a.State != "rejected" || !strings.Contains(a.Comment, core.CodeNoChange) {
		t.Fatalf("answer: %+v (ok %v), want rejected with NO_CHANGE", a, ok)
	}
	f.mu.Lock()
	f.glDeployments[0]["status"] = "canceled" // GitLab took the rejection
	f.mu.Unlock()
	if e := s.settled(s.gitlabEvent("Deployment Hook", "real-again", hook("acme/ledger", 31, ledgerSHA, "ledger: unreviewed", "redelivered"))); e.Status != core.EventProcessed || !strings.Contains(e.Reason, "already known") {
		t.Errorf("a redelivery after the answer: %s (%q), want processed as a known request", e.Status, e.Reason)
	}
	time.Sleep(300 * time.Millisecond)
	if n := f.answerCount("9300001"); n != 1 {
		t.Errorf("deployment 9300001 answered %d times, want once (the forged requests never)", n)
	}
}
