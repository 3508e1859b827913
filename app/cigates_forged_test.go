package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestGitLabForgedApprovalRequest: a Deployment Hook signed with the
// connector's token (which many projects may share) but naming another
// project's waiting deployment, or another commit than that deployment
// deploys, is read back from GitLab, quarantined with the reason and
// never answered. One naming the right project by path with a bogus id is
// answered in the project GitLab confirmed, for what GitLab shows; the
// deployment's own hook, and its redelivery after the answer, are then a
// known request, not a quarantined one.
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

	// A hook naming the deployment's project by its path but with a bogus
	// project id, raced ahead of GitLab's own: the request is read back
	// and answered in the project it was confirmed in (acme/ledger), and
	// evaluated for GitLab's commit and title, which link no change.
	bogus := hook("acme/ledger", 4200, ledgerSHA, "ledger: unreviewed")
	if e := s.settled(s.gitlabEvent("Deployment Hook", "bogus-id", bogus)); e.Status != core.EventProcessed || !strings.HasPrefix(e.Record, "gate:") {
		t.Fatalf("the hook with a bogus project id: %s %q (%q), want a gate request", e.Status, e.Record, e.Reason)
	}
	// GitLab's own hook is then a known request.
	real := hook("acme/ledger", 31, ledgerSHA, "ledger: unreviewed")
	if e := s.settled(s.gitlabEvent("Deployment Hook", "real", real)); e.Status != core.EventProcessed || !strings.Contains(e.Reason, "already known") {
		t.Fatalf("the real hook: %s %q (%q), want a known gate request", e.Status, e.Record, e.Reason)
	}
	a, ok := f.answer("9300001", 5*time.Second)
	if !ok || a.State != "rejected" || !strings.Contains(a.Comment, core.CodeNoChange) || a.Installation != "acme/ledger" {
		t.Fatalf("answer: %+v (ok %v), want rejected with NO_CHANGE in project acme/ledger", a, ok)
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

// TestGitHubProtectionRuleNeedsTheAppSecret: repository webhooks pointed at
// the connector carry its webhook_secret, so whoever set one up could sign
// a protection-rule request naming another repository's waiting run. With
// protection_rule.webhook_secret (the GitHub App's own) set, such a request
// is refused with 401 and never answered; the App's own is.
func TestGitHubProtectionRuleNeedsTheAppSecret(t *testing.T) {
	f := newFakeCI(t)
	const appSecret = "the-github-app-own-webhook-secret"
	cfg := strings.Replace(ciGatesConfig(f), "protection_rule: {deadline: 1h}", "protection_rule: {deadline: 1h, webhook_secret: "+appSecret+"}", 1)
	s := boot(t, "sqlite", cfg)
	s.snSettled(snChange("CHG0097601", "payments-api", "approved", time.Now().UTC().Add(-3*time.Hour)))
	sha := strings.Repeat("8", 40)
	f.commit("acme/payments", sha, "CHG0097601 payments-api")
	body := protectionRule(f.srv.URL, "acme/payments", "7600001", "960001", sha, "CHG0097601")
	if st := s.githubHookSigned("github", "deployment_protection_rule", body, authoritySecret); st != http.StatusUnauthorized {
		t.Fatalf("a request signed with the repositories' secret: %d, want 401", st)
	}
	if st := s.githubHookSigned("github", "workflow_run", []byte(`{"action":"requested"}`), authoritySecret); st == http.StatusUnauthorized {
		t.Fatalf("a repository webhook's other event: %d, want it verified with webhook_secret", st)
	}
	time.Sleep(300 * time.Millisecond)
	if n := f.answerCount("7600001"); n != 0 {
		t.Fatalf("run 7600001 answered %d times on a forged request", n)
	}
	if st := s.githubHookSigned("github", "deployment_protection_rule", body, appSecret); st != http.StatusAccepted {
		t.Fatalf("the App's request: %d, want 202", st)
	}
	if a, ok := f.answer("7600001", 5*time.Second); !ok || a.State != "approved" {
		t.Fatalf("answer to the App's request: %+v (ok %v), want approved", a, ok)
	}
}

// TestCIGatedDeploymentStartsWhenReleased: a GitHub deployment held at
// tollgate's protection rule is created (its created_at, which GitHub's
// deployment events give as its start) long before tollgate answers; it
// runs only after. Recorded, it starts when it was released, so the
// reconciler finds its gate decision made before it started, not
// GATE_BYPASSED.
func TestCIGatedDeploymentStartsWhenReleased(t *testing.T) {
	f := newFakeCI(t)
	s := boot(t, "postgres", ciGatesConfig(f))
	s.snSettled(snChange("CHG0097401", "payments-api", "approved", time.Now().UTC().Add(-3*time.Hour)))
	sha := strings.Repeat("7", 40)
	f.commit("acme/payments", sha, "CHG0097401 payments-api")
	created := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	// The deployment event GitHub sends when the job is queued, before the
	// protection rule's request.
	dep := map[string]any{"id": 940001, "sha": sha, "ref": "main", "environment": "production", "payload": map[string]any{},
		"created_at": created, "creator": map[string]any{"login": "octocat"}}
	repo := map[string]any{"name": "payments", "full_name": "acme/payments"}
	created1, _ := json.Marshal(map[string]any{"action": "created", "deployment": dep, "repository": repo, "sender": map[string]any{"login": "octocat"}})
	s.githubHook("github", "deployment", created1)
	s.githubHook("github", "deployment_protection_rule", protectionRule(f.srv.URL, "acme/payments", "7400001", "940001", sha, "CHG0097401"))
	a, ok := f.answer("7400001", 5*time.Second)
	if !ok || a.State != "approved" {
		t.Fatalf("answer: %+v (ok %v)", a, ok)
	}
	released := a.At
	status, _ := json.Marshal(map[string]any{"action": "created",
		"deployment_status": map[string]any{"state": "success", "environment": "production", "created_at": time.Now().UTC()},
		"deployment":        dep, "repository": repo, "sender": map[string]any{"login": "octocat"}})
	s.githubHook("github", "deployment_status", status)
	var got core.Deployment
	s.waitFor("the released deployment", func() bool {
		var page struct{ Items []core.Deployment }
		s.do("GET", "/api/v1/deployments?limit=100", adminSecret, nil, &page)
		for _, d := range page.Items {
			if d.RunID == "940001" && d.Status == core.DeploySucceeded && d.DecisionID != "" {
				got = d
				return true
			}
		}
		return false
	})
	if got.StartedAt.Before(released.Add(-5 * time.Second)) {
		t.Errorf("the deployment starts at %v, before it was released at %v", got.StartedAt, released)
	}
	cm, _ := s.token(core.RoleChangeManager)
	var rep reportAnswer
	if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": created.Add(-time.Hour), "to": time.Now().UTC().Add(time.Minute)}, &rep); st != http.StatusCreated {
		t.Fatalf("report: %d", st)
	}
	if rep.Summary.ByCode[core.CodeGateBypassed] != 0 {
		var why []string
		_ = s.app.DB.ReportFindings(context.Background(), rep.ID, func(f core.ReconcileFinding) error {
			why = append(why, f.Code+": "+f.Message)
			return nil
		})
		t.Errorf("a deployment released by tollgate's own gate reported as %v", why)
	}
}

// TestCIGateRejectedDeploymentNeverRan: a deployment tollgate's gate
// rejected does not run; GitHub then reports it failed. It stays queued,
// counted and judged by no report: the gate that stopped it is no
// "deployed after a deny". One reported running anyway (an administrator
// bypassing the protection rule) is judged, and is GATE_BYPASSED, whether
// it then succeeds or fails.
func TestCIGateRejectedDeploymentNeverRan(t *testing.T) {
	f := newFakeCI(t)
	s := boot(t, "postgres", ciGatesConfig(f))
	s.snSettled(snChange("CHG0097501", "payments-api", "rejected", time.Now().UTC().Add(-3*time.Hour)))
	repo := map[string]any{"name": "payments", "full_name": "acme/payments"}
	start := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	for _, tc := range []struct {
		run, deployment, sha string
		states               []string
	}{
		{"7500001", "950001", strings.Repeat("8", 40), []string{"failure"}},
		{"7500002", "950002", strings.Repeat("9", 40), []string{"in_progress", "success"}},
		{"7500003", "950003", strings.Repeat("a", 40), []string{"in_progress", "failure"}},
	} {
		f.commit("acme/payments", tc.sha, "CHG0097501 payments-api")
		s.githubHook("github", "deployment_protection_rule", protectionRule(f.srv.URL, "acme/payments", tc.run, tc.deployment, tc.sha, "CHG0097501"))
		if a, ok := f.answer(tc.run, 5*time.Second); !ok || a.State != "rejected" {
			t.Fatalf("run %s: answer %+v (ok %v); want rejected", tc.run, a, ok)
		}
		for i, state := range tc.states {
			status, _ := json.Marshal(map[string]any{"action": "created",
				"deployment_status": map[string]any{"state": state, "environment": "production", "created_at": start.Add(time.Duration(i) * time.Minute)},
				"deployment": map[string]any{"id": json.Number(tc.deployment), "sha": tc.sha, "ref": "main", "environment": "production", "payload": map[string]any{},
					"created_at": start.Add(-time.Minute), "creator": map[string]any{"login": "octocat"}},
				"repository": repo, "sender": map[string]any{"login": "octocat"}})
			if st := s.githubHook("github", "deployment_status", status); st != http.StatusAccepted {
				t.Fatalf("deployment_status: %d", st)
			}
			if state == "in_progress" { // GitHub sends its statuses in order
				s.waitFor("deployment "+tc.deployment+" running", func() bool {
					var page struct{ Items []core.Deployment }
					s.do("GET", "/api/v1/deployments?limit=100", adminSecret, nil, &page)
					return slices.ContainsFunc(page.Items, func(d core.Deployment) bool {
						return d.RunID == tc.deployment && d.Status == core.DeployStarted
					})
				})
			}
		}
	}
	runs := map[string]core.Deployment{}
	s.waitFor("both deployments recorded", func() bool {
		var page struct{ Items []core.Deployment }
		s.do("GET", "/api/v1/deployments?limit=100", adminSecret, nil, &page)
		for _, d := range page.Items {
			runs[d.RunID] = d
		}
		return runs["950001"].Status != "" && runs["950002"].Status == core.DeploySucceeded && runs["950003"].Status == core.DeployFailed
	})
	if d := runs["950001"]; d.Status != core.DeployQueued || d.FinishedAt != nil || d.DecisionID == "" {
		t.Errorf("the rejected deployment: %s finished %v decision %q; want queued, linked to the deny", d.Status, d.FinishedAt, d.DecisionID)
	}
	cm, _ := s.token(core.RoleChangeManager)
	var rep reportAnswer
	if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": start.Add(-2 * time.Hour), "to": time.Now().UTC().Add(time.Minute)}, &rep); st != http.StatusCreated {
		t.Fatalf("report: %d", st)
	}
	var found []string
	_ = s.app.DB.ReportFindings(context.Background(), rep.ID, func(f core.ReconcileFinding) error {
		found = append(found, f.Deployment.RunID+" "+f.Code)
		return nil
	})
	if rep.Summary.QueuedDeployments != 1 || rep.Summary.DeploymentsChecked != 2 ||
		!slices.Contains(found, "950002 "+core.CodeGateBypassed) || !slices.Contains(found, "950003 "+core.CodeGateBypassed) {
		t.Errorf("summary %+v, findings %v; want the rejected deployment counted as queued and both bypasses judged GATE_BYPASSED", rep.Summary, found)
	}
	for _, f := range found {
		if strings.HasPrefix(f, "950001 ") {
			t.Errorf("the rejected deployment judged: %s", f)
		}
	}
}

// TestCIGateMaxOpen: with protection_rule.max_open 2, a repository whose
// two requests wait (their change awaits approval) has its third rejected
// on arrival, the CI told TOO_MANY_WAITING and the rejection counted;
// another repository's request still waits.
func TestCIGateMaxOpen(t *testing.T) {
	f := newFakeCI(t)
	cfg := strings.Replace(ciGatesConfig(f), "protection_rule: {deadline: 1h}", "protection_rule: {deadline: 1h, max_open: 2}", 1)
	s := boot(t, "sqlite", cfg)
	s.snSettled(snChange("CHG0097701", "payments-api", "requested", time.Now().UTC().Add(-time.Hour)))
	s.snSettled(snChange("CHG0097702", "ledger", "requested", time.Now().UTC().Add(-time.Hour)))
	aud, _ := s.token(core.RoleAuditor)
	for i, repo := range []string{"acme/payments", "acme/payments", "acme/payments", "acme/ledger"} {
		sha := strings.Repeat(fmt.Sprint(i+1), 40)
		key := "CHG0097701"
		if repo == "acme/ledger" {
			key = "CHG0097702"
		}
		f.commit(repo, sha, key+" deploy")
		run := fmt.Sprintf("77000%d", i)
		if st := s.githubHook("github", "deployment_protection_rule", protectionRule(f.srv.URL, repo, run, fmt.Sprintf("97700%d", i), sha, key)); st != http.StatusAccepted {
			t.Fatalf("request %d: %d", i, st)
		}
		if i < 2 { // stored before the next arrives
			s.pendingFor(aud, "github", "runs/"+run, core.CodeChangeNotApproved)
		}
	}
	a, ok := f.answer("770002", 5*time.Second)
	if !ok || a.State != "rejected" || !strings.Contains(a.Comment, core.CodeTooManyWaiting) || !strings.Contains(a.Comment, "2 requests of acme/payments already wait") {
		t.Fatalf("the third request of acme/payments: %+v (ok %v), want rejected with TOO_MANY_WAITING", a, ok)
	}
	time.Sleep(300 * time.Millisecond)
	for _, run := range []string{"770000", "770001", "770003"} {
		if n := f.answerCount(run); n != 0 {
			t.Errorf("run %s answered %d times, want still waiting", run, n)
		}
	}
	if m := s.metricsText(); !strings.Contains(m, `tollgate_gate_requests_over_limit_total{connector="github"} 1`) {
		t.Errorf("metrics lack the over-limit rejection")
	}
	var events struct {
		Items []struct{ Reason string }
	}
	s.do("GET", "/api/v1/events?connector=github", adminSecret, nil, &events)
	if !slices.ContainsFunc(events.Items, func(e struct{ Reason string }) bool {
		return strings.Contains(e.Reason, "rejected on arrival: TOO_MANY_WAITING")
	}) {
		t.Errorf("no event says the request was rejected on arrival: %+v", events.Items)
	}
}
