package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate-dev/tollgate/core"
)

// TestRedeliveryAfterDowntime: GitHub never sends a failed delivery
// again by itself. A protection rule GitHub could not deliver while
// tollgate was down is asked for again by the redeliverer's first run
// after tollgate starts, stored, and the rule answered; a delivery
// tollgate refused (401) is not asked for; GitHub's log then holds one
// successful redelivery; the metrics count it.
func TestRedeliveryAfterDowntime(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f := newFakeCI(t)
			sha := strings.Repeat("b", 40)
			f.commit("acme/payments", sha, "release\n\nChange: CHG0097301")
			// tollgate is down: GitHub's attempts find no one.
			f.deliver("deployment_protection_rule", "guid-rule", protectionRule(f.srv.URL, "acme/payments", "7300001", "930001", sha, ""), false)
			f.mu.Lock()
			f.deliveries = append(f.deliveries, fakeDelivery{ID: 99, GUID: "guid-refused", DeliveredAt: time.Now().UTC(),
				Status: "Invalid HTTP Response: 401", StatusCode: 401, Event: "deployment", body: []byte(`{}`)})
			f.mu.Unlock()

			dbURL := newDatabase(t, dialect)
			s := bootURL(t, dbURL, githubAppConfig(f, ""))
			// The change is stored before GitHub can redeliver (it waits
			// for the hook's URL): the rule then finds it approved.
			s.snSettled(snChange("CHG0097301", "payments-api", "approved", time.Now().UTC().Add(-time.Minute)))
			f.setHook(s.url + "/webhooks/github")

			a, ok := f.answer("7300001", 15*time.Second)
			if !ok || a.State != "approved" {
				t.Fatalf("the rule GitHub failed to deliver: answer %+v (ok %v), want approved", a, ok)
			}
			got := f.attempts("guid-rule")
			if len(got) != 2 || got[0].StatusCode != 0 || !got[1].Redelivery || got[1].StatusCode != http.StatusAccepted {
				t.Errorf("GitHub's attempts of the rule: %+v, want the failed one and one redelivery answered 202", got)
			}
			if n := len(f.attempts("guid-refused")); n != 1 {
				t.Errorf("the delivery tollgate refused was attempted %d times, want 1 (never asked for again)", n)
			}
			var events struct {
				Items []struct {
					DedupeKey string `json:"dedupe_key"`
				} `json:"items"`
			}
			if st := s.do("GET", "/api/v1/events?connector=github", adminSecret, nil, &events); st != http.StatusOK || len(events.Items) != 1 ||
				events.Items[0].DedupeKey != "guid-rule" {
				t.Errorf("github's inbox: %d %+v, want the redelivered rule once", st, events.Items)
			}
			if m := s.metricsText(); !strings.Contains(m, `tollgate_redeliveries_total{connector="github",outcome="requested"} 1`) {
				t.Errorf("metrics lack the redelivery:\n%s", grepLines(m, "tollgate_redeliveries"))
			}
		})
	}
}

// TestRepoWebhookRedeliveredAfterDowntime: a deployment sent through a
// repository's own webhook (not the App's) while tollgate was down is
// found in that webhook's delivery log through the App's installation on
// the repository, asked for again, and stored once; the App's own log is
// read beside it.
func TestRepoWebhookRedeliveredAfterDowntime(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f := newFakeCI(t)
			body, err := os.ReadFile(filepath.Join("..", "connectors", "github", "testdata", "deployment_status.created.json"))
			if err != nil {
				t.Fatal(err)
			}
			f.send("deployment_status", "guid-repo-hook", body, false, true) // tollgate is down
			s := bootURL(t, newDatabase(t, dialect), githubAppConfig(f, "    repositories: [acme/payments]\n"))
			f.setHook(s.url + "/webhooks/github")

			var got []fakeDelivery
			for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				if got = f.attempts("guid-repo-hook"); len(got) == 2 {
					break
				}
			}
			if len(got) != 2 || !got[1].Redelivery || got[1].StatusCode != http.StatusAccepted || !got[1].repo {
				t.Fatalf("the repository webhook's attempts: %+v, want the failed one and one redelivery answered 202", got)
			}
			var events struct {
				Items []struct {
					DedupeKey string `json:"dedupe_key"`
				} `json:"items"`
			}
			if st := s.do("GET", "/api/v1/events?connector=github", adminSecret, nil, &events); st != http.StatusOK || len(events.Items) != 1 ||
				events.Items[0].DedupeKey != "guid-repo-hook" {
				t.Errorf("github's inbox: %d %+v, want the redelivered deployment status once", st, events.Items)
			}
			f.mu.Lock()
			calls := strings.Join(f.calls, "\n")
			f.mu.Unlock()
			for _, want := range []string{"GET /app/hook/deliveries", "GET /repos/acme/payments/installation", "GET /repos/acme/payments/hooks/11/deliveries"} {
				if !strings.Contains(calls, want) {
					t.Errorf("GitHub was not asked %s", want)
				}
			}
		})
	}
}

// TestGitLabBlockedAfterDowntime: GitLab sends a Deployment Hook once.
// A deployment held for approval whose hook found tollgate down is found
// by the GitLab poller's first run after start (the projects'
// deployments with status blocked), becomes a gate request, and is
// approved through the approval API (its change was approved before);
// it is answered once. A deployment approved by hand in GitLab and run
// meanwhile is recorded (the reconciler sees it). The webhook GitLab
// disabled after the failed deliveries shows in /metrics.
func TestGitLabBlockedAfterDowntime(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f := newFakeCI(t)
			sha := strings.Repeat("c", 40)
			f.glDeployments = []map[string]any{{"id": 4401, "ref": "main", "sha": sha, "status": "blocked",
				"updated_at": time.Now().UTC().Add(-time.Minute).Format(time.RFC3339), "user": map[string]any{"username": "dev"},
				"environment": map[string]any{"name": "production"},
				"deployable":  map[string]any{"id": 88001, "commit": map[string]any{"title": "ledger CHG0097401"}},
			}, { // approved by hand in GitLab meanwhile, and run
				"id": 4402, "ref": "main", "sha": strings.Repeat("d", 40), "status": "success",
				"updated_at": time.Now().UTC().Add(-2 * time.Minute).Format(time.RFC3339), "user": map[string]any{"username": "dev"},
				"environment": map[string]any{"name": "production"},
				"deployable":  map[string]any{"id": 88002, "commit": map[string]any{"title": "ledger hotfix"}},
			}}
			// GitLab disabled the webhook to tollgate after its failures.
			f.glHooks = []map[string]any{{"id": 5, "url": "https://tollgate.example.com/webhooks/gitlab", "alert_status": "temporarily_disabled",
				"disabled_until": time.Now().UTC().Add(30 * time.Minute).Format(time.RFC3339)}}
			dbURL := newDatabase(t, dialect)
			// Before the outage: the change is approved and stored.
			before := bootURL(t, dbURL, fmt.Sprintf("connectors:\n  - {name: servicenow, type: servicenow, webhook_secret: %s}\n", authoritySecret))
			before.snSettled(snChange("CHG0097401", "ledger", "approved", time.Now().UTC().Add(-time.Minute)))
			before.stop()
			// Back up, with the deployment held meanwhile.
			s := bootURL(t, dbURL, fmt.Sprintf(`
connectors:
  - {name: servicenow, type: servicenow, webhook_secret: %[1]s}
  - name: gitlab
    type: gitlab
    webhook_secret: %[1]s
    api: {url: %[2]s, token: %[3]s, poll_interval: 10s}
    approvals: {deadline: 1h}
    projects: [acme/ledger]
inbox:
  poll_interval: 50ms
`, authoritySecret, f.srv.URL, f.glToken))
			a, ok := f.answer("4401", 15*time.Second)
			if !ok || a.Provider != "gitlab" || a.State != "approved" || a.Installation != "acme/ledger" {
				t.Fatalf("the deployment whose hook never came: answer %+v (ok %v), want approved in project acme/ledger", a, ok)
			}
			var events struct {
				Items []struct {
					DedupeKey string `json:"dedupe_key"`
					Type      string `json:"type"`
					Record    string `json:"record"`
				} `json:"items"`
			}
			s.waitFor("the deployment that ran meanwhile recorded", func() bool {
				s.do("GET", "/api/v1/events?connector=gitlab", adminSecret, nil, &events)
				for _, e := range events.Items {
					if strings.HasPrefix(e.DedupeKey, "api:deployment:4402@") && strings.HasPrefix(e.Record, "deployment:") {
						return true
					}
				}
				return false
			})
			if len(events.Items) != 2 || !strings.HasPrefix(events.Items[1].DedupeKey, "api:deployment:4401@") || events.Items[1].Type != "Deployment Hook" {
				t.Errorf("gitlab's inbox: %+v, want the deployment that ran, then the waiting one, once each", events.Items)
			}
			time.Sleep(200 * time.Millisecond)
			if n := f.answerCount("4401"); n != 1 {
				t.Errorf("deployment 4401 answered %d times, want 1", n)
			}
			disabled := `tollgate_ci_webhook_disabled{connector="gitlab",webhook="project acme/ledger hook 5"} 1`
			s.waitFor("the disabled webhook in /metrics", func() bool { return strings.Contains(s.metricsText(), disabled) })
		})
	}
}

// TestGitLabEventResentAfterDowntime: GitLab sends a webhook event once.
// A Pipeline Hook that found tollgate down is in the project webhook's
// event log; the GitLab connector's redeliverer, at start, asks GitLab
// to resend it, and tollgate stores it once (its Idempotency-Key) and
// records the pipeline's deployment.
func TestGitLabEventResentAfterDowntime(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f := newFakeCI(t)
			f.glHooks = []map[string]any{{"id": 5, "url": "https://tollgate.example.com/webhooks/gitlab", "alert_status": "executable"}}
			body, err := os.ReadFile(filepath.Join("..", "connectors", "gitlab", "testdata", "pipeline_hook.json"))
			if err != nil {
				t.Fatal(err)
			}
			f.glDeliver("Pipeline Hook", "pipeline-key-1", body) // tollgate is down
			s := boot(t, dialect, fmt.Sprintf(`
connectors:
  - name: gitlab
    type: gitlab
    webhook_secret: %[1]s
    default_environment: production
    api: {url: %[2]s, token: %[3]s, poll_interval: 10s, redeliver_interval: 30s}
    projects: [acme/ledger]
inbox:
  poll_interval: 50ms
`, authoritySecret, f.srv.URL, f.glToken))
			f.mu.Lock()
			f.glHookURL = s.url + "/webhooks/gitlab"
			f.mu.Unlock()
			var events struct {
				Items []struct {
					DedupeKey string `json:"dedupe_key"`
					Status    string `json:"status"`
					Record    string `json:"record"`
				} `json:"items"`
			}
			s.waitFor("the resent pipeline stored and recorded", func() bool {
				s.do("GET", "/api/v1/events?connector=gitlab", adminSecret, nil, &events)
				for _, e := range events.Items {
					if e.DedupeKey == "pipeline-key-1" && strings.HasPrefix(e.Record, "deployment:") {
						return true
					}
				}
				return false
			})
			f.sending.Wait()
			if att := f.glAttempts("pipeline-key-1"); len(att) != 2 || att[1].ResponseStatus != "202" {
				t.Errorf("GitLab's log of the event: %+v, want the failed attempt and one resend answered 202", att)
			}
		})
	}
}

// githubAppConfig: a GitHub connector with an App answering protection
// rules through the fake (redelivery at its default interval), and the
// connectors of extra.
func githubAppConfig(f *fakeCI, extra string) string {
	return fmt.Sprintf(`
connectors:
  - {name: servicenow, type: servicenow, webhook_secret: %[1]s}
  - name: github
    type: github
    webhook_secret: %[1]s
    api: {url: %[2]s, app_id: "%[3]s", private_key_file: %[4]s}
    protection_rule: {deadline: 1h}
    services: {"acme/payments": payments-api}
    change_key_patterns: ['CHG\d{7}']
%[5]sinbox:
  poll_interval: 50ms
`, authoritySecret, f.srv.URL, f.appID, f.keyFile, extra)
}

// TestRedeliveryAcrossReplicas: two replicas start on one database after
// GitHub failed a delivery; one of them (the lease holder) asks for it
// again, once, and the rule is answered once.
func TestRedeliveryAcrossReplicas(t *testing.T) {
	f := newFakeCI(t)
	sha := strings.Repeat("e", 40)
	f.commit("acme/payments", sha, "release\n\nChange: CHG0097501")
	f.deliver("deployment_protection_rule", "guid-replicas", protectionRule(f.srv.URL, "acme/payments", "7500001", "950001", sha, ""), false)
	dbURL := newDatabase(t, "postgres")
	a, b := bootURL(t, dbURL, githubAppConfig(f, "")), bootURL(t, dbURL, githubAppConfig(f, ""))
	b.snSettled(snChange("CHG0097501", "payments-api", "approved", time.Now().UTC().Add(-time.Minute)))
	f.setHook(a.url + "/webhooks/github")
	if ans, ok := f.answer("7500001", 15*time.Second); !ok || ans.State != "approved" {
		t.Fatalf("answer %+v (ok %v), want approved", ans, ok)
	}
	time.Sleep(300 * time.Millisecond)
	f.mu.Lock()
	asked := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, "POST /app/hook/deliveries/") {
			asked++
		}
	}
	f.mu.Unlock()
	if asked != 1 || len(f.attempts("guid-replicas")) != 2 || f.answerCount("7500001") != 1 {
		t.Errorf("asked for %d redeliveries, %d attempts, %d answers; want 1, 2 and 1", asked, len(f.attempts("guid-replicas")), f.answerCount("7500001"))
	}
}

// TestJenkinsBuildsAfterDowntime: the Notification plugin sends each
// message once. A deployment build that ran while tollgate was down is
// read by the Jenkins poller's first run after start (Jenkins's JSON API,
// the API token as password), recorded with its start and end, and the
// next reconciliation report finds it deployed without passing the gate.
func TestJenkinsBuildsAfterDowntime(t *testing.T) {
	start := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	jenkins := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "tollgate" || p != "jenkins-api-token-0123" || r.URL.Path != "/job/deploy-payments/api/json" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"builds": []any{map[string]any{
			"number": 41, "url": "https://ci.example.com/job/deploy-payments/41/", "result": "SUCCESS", "building": false,
			"timestamp": start.UnixMilli(), "duration": 90000,
			"actions": []any{map[string]any{"_class": "hudson.model.ParametersAction", "parameters": []any{
				map[string]any{"name": "SERVICE", "value": "payments-api"}, map[string]any{"name": "VERSION", "value": "9.4.1"}}},
				map[string]any{"lastBuiltRevision": map[string]any{"SHA1": strings.Repeat("f", 40)}}},
		}}})
	}))
	defer jenkins.Close()
	s := boot(t, "sqlite", fmt.Sprintf(`
connectors:
  - name: jenkins
    type: jenkins
    webhook_secret: %[1]s
    default_environment: production
    api: {url: %[2]s, username: tollgate, password: jenkins-api-token-0123, poll_interval: 10s}
    jobs: [deploy-payments]
inbox:
  poll_interval: 50ms
`, authoritySecret, jenkins.URL))
	var events struct {
		Items []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
			Record string `json:"record"`
		} `json:"items"`
	}
	s.waitFor("the build's two messages recorded", func() bool {
		s.do("GET", "/api/v1/events?connector=jenkins", adminSecret, nil, &events)
		n := 0
		for _, e := range events.Items {
			if e.Status == "processed" && strings.HasPrefix(e.Record, "deployment:") {
				n++
			}
		}
		return n == 2
	})
	if events.Items[0].Type != "STARTED" || events.Items[1].Type != "COMPLETED" {
		t.Errorf("events %+v, want STARTED then COMPLETED", events.Items)
	}
	cm, _ := s.token(core.RoleChangeManager)
	var rep reportAnswer
	if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": start.Add(-time.Hour), "to": time.Now().UTC().Add(time.Minute),
		"environment": "production"}, &rep); st != http.StatusCreated {
		t.Fatalf("report: %d", st)
	}
	if rep.Summary.DeploymentsChecked != 1 || rep.Summary.ByCode[core.CodeGateBypassed] != 1 {
		t.Errorf("report %+v, want the build found deployed without the gate", rep.Summary)
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestCIRecoveryLeavesNoGoroutine: a server running the GitHub
// redeliverer and the GitLab and Jenkins pollers, stopped after their
// first runs, leaves no goroutine behind (their loops, their clients'
// connections).
func TestCIRecoveryLeavesNoGoroutine(t *testing.T) {
	f := newFakeCI(t)
	polled := make(chan struct{}, 1)
	jenkins := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"builds":[]}`))
		select {
		case polled <- struct{}{}:
		default:
		}
	}))
	defer jenkins.Close()
	dbURL := newDatabase(t, "postgres")
	before := goleak.IgnoreCurrent()
	s := bootURL(t, dbURL, githubAppConfig(f, fmt.Sprintf(`
  - name: gitlab
    type: gitlab
    webhook_secret: %[1]s
    api: {url: %[2]s, token: %[3]s, poll_interval: 10s}
    projects: [acme/ledger]
  - name: jenkins
    type: jenkins
    webhook_secret: %[1]s
    api: {url: %[4]s, username: tollgate, password: jenkins-api-token-0123, poll_interval: 10s}
    jobs: [deploy-payments]
`, authoritySecret, f.srv.URL, f.glToken, jenkins.URL)))
	s.waitFor("the first runs", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		var gh, gl bool
		for _, c := range f.calls {
			gh = gh || c == "GET /app/hook/deliveries"
			gl = gl || c == "GET /api/v4/projects/31/deployments"
		}
		return gh && gl && len(polled) == 1
	})
	s.http.CloseIdleConnections()
	s.stop()
	http.DefaultClient.CloseIdleConnections()
	goleak.VerifyNone(t, before)
}
