package app_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/app"
	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/itsmfake"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/service"
)

// Credentials of the ITSM end-to-end tests: every log line the servers
// write is checked for them.
const (
	snUser      = "tollgate.api"
	snPassword  = "sn-e2e-password-7f3a9c"
	jiraUser    = "ops-bot@example.com"
	jiraToken   = "jira-e2e-api-token-4b2d8e"
	itsmSecret  = "itsm-webhook-secret-0123456789"
	oauthSecret = "sn-e2e-client-secret-9d1c"
)

var itsmSecrets = []string{snPassword, jiraToken, oauthSecret,
	base64.StdEncoding.EncodeToString([]byte(snUser + ":" + snPassword)),
	base64.StdEncoding.EncodeToString([]byte(jiraUser + ":" + jiraToken))}

// bootITSM boots a server whose configuration points at fake, logging at
// debug into a buffer (the configuration too, as `tollgate serve` logs
// it) that is checked for the configured secrets when the test ends.
func bootITSM(t *testing.T, dialect string, fake *itsmfake.Server, cfgYAML string) *server {
	t.Helper()
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "tollgate.db")
	if dialect == "postgres" {
		dbURL = testpg.NewDatabase(t)
	}
	env := map[string]string{"TOLLGATE_ADMIN_TOKEN": adminSecret, "TOLLGATE_DATABASE_URL": dbURL, "FAKE_URL": fake.URL,
		"SN_USER": snUser, "SN_PASSWORD": snPassword, "JIRA_USER": jiraUser, "JIRA_API_TOKEN": jiraToken,
		"SN_CLIENT_SECRET": oauthSecret, "HOOK_SECRET": itsmSecret}
	cfg, err := config.Parse([]byte(cfgYAML), func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.ShutdownTimeout = testShutdownTimeout
	logs := &syncBuffer{}
	log := logging.New(logs, slog.LevelDebug)
	log.Info("configuration", "config", cfg)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, log, app.Options{})
	if err != nil {
		cancel()
		t.Fatalf("app: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
			a.Close()
		})
	}
	t.Cleanup(func() {
		stop()
		out := logs.String()
		for _, s := range itsmSecrets {
			if strings.Contains(out, s) {
				t.Errorf("the server log contains a configured secret (%d bytes of log)", len(out))
			}
		}
		if !strings.Contains(out, fake.URL) {
			t.Errorf("the configuration was not logged")
		}
		if testing.Verbose() {
			t.Log(out)
		}
	})
	return &server{stop: stop, t: t, app: a, url: "http://" + ln.Addr().String(), http: &http.Client{Timeout: 30 * time.Second}}
}

func snPair(v string) map[string]any { return map[string]any{"display_value": v, "value": v} }

// snAPIChange is a complete normal change of payments-api inside its window,
// in the Table API's sysparm_display_value=all shape.
func snAPIChange(number, approval string, updated time.Time) map[string]any {
	now := time.Now().UTC()
	svc := map[string]any{"display_value": "payments-api", "value": "5f8af4b1c0a8010e00a9714fe3f3b5cc", "link": "https://x/api/now/table/cmdb_ci/5f8af4b1c0a8010e00a9714fe3f3b5cc"}
	return map[string]any{
		"number": snPair(number), "short_description": snPair("payments-api release"), "type": snPair("normal"),
		"state": map[string]any{"display_value": "Scheduled", "value": "-2"}, "approval": snPair(approval),
		"risk": map[string]any{"display_value": "Low", "value": "4"}, "cmdb_ci": svc, "business_service": svc,
		"start_date": snPair(itsmfake.SNTime(now.Add(-time.Hour))), "end_date": snPair(itsmfake.SNTime(now.Add(3 * time.Hour))),
		"requested_by":         map[string]any{"display_value": "Riley Requester", "value": "6816f79cc0a8016401c5a33be04be441"},
		"risk_impact_analysis": snPair("canary first"), "backout_plan": snPair("redeploy the previous version"),
		"sys_updated_on": snPair(itsmfake.SNTime(updated)),
		"sys_class_name": map[string]any{"display_value": "Change Request", "value": "change_request"},
	}
}

func (s *server) changeOf(key string) (core.Change, bool) {
	var out struct {
		Change core.Change `json:"change"`
	}
	if s.do("GET", "/api/v1/changes/"+key, adminSecret, nil, &out) != http.StatusOK {
		return core.Change{}, false
	}
	return out.Change, true
}

func (s *server) incidentOf(key string) (core.Incident, bool) {
	var out struct {
		Incident core.Incident `json:"incident"`
	}
	if s.do("GET", "/api/v1/incidents/"+key, adminSecret, nil, &out) != http.StatusOK {
		return core.Incident{}, false
	}
	return out.Incident, true
}

func eachDialect(t *testing.T, fn func(t *testing.T, dialect string)) {
	for _, d := range []string{"postgres", "sqlite"} {
		t.Run(d, func(t *testing.T) { fn(t, d) })
	}
}

const snPollConfig = `
inbox: {poll_interval: 50ms}
connectors:
  - name: servicenow
    type: servicenow
    webhook_secret: ${HOOK_SECRET}
    api:
      url: ${FAKE_URL}
      username: ${SN_USER}
      password: ${SN_PASSWORD}
      poll_interval: 1s
`

// TestPollerBringsMissedChange: a change and an incident created in
// ServiceNow whose webhooks were never sent reach the canonical model
// through the poller, with the approvers sysapproval_approver records; the
// gate turns from wait to allow when the change is approved.
func TestPollerBringsMissedChange(t *testing.T) {
	eachDialect(t, func(t *testing.T, dialect string) {
		fake := itsmfake.New(snUser, snPassword)
		defer fake.Close()
		carol := fake.PutSN("sys_user", map[string]any{"name": "Carol CAB", "user_name": "cab.carol"})
		t0 := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
		chg := fake.PutSN("change_request", snAPIChange("CHG0077001", "requested", t0))
		fake.PutSN("incident", map[string]any{"number": snPair("INC0077001"), "state": snPair("2"), "priority": snPair("4"),
			"short_description": snPair("ledger slow"), "sys_updated_on": snPair(itsmfake.SNTime(t0)),
			"sys_class_name": snPair("incident")})
		s := bootITSM(t, dialect, fake, snPollConfig)
		ci, _ := s.token(core.RoleCI)
		s.waitFor("the polled change", func() bool { _, ok := s.changeOf("CHG0077001"); return ok })
		s.waitFor("the polled incident", func() bool { _, ok := s.incidentOf("INC0077001"); return ok })
		req := map[string]any{"service": "payments-api", "environment": "production", "version": "3.0.0", "changes": []string{"CHG0077001"}, "actor": "dave.deployer"}
		if a := s.check(ci, "", req); a.Decision != "wait" || !strings.Contains(a.codes(), core.CodeChangeNotApproved) {
			t.Fatalf("before approval: %s %s", a.Decision, a.codes())
		}
		// The CAB approves in ServiceNow; no webhook is sent.
		fake.PutSN("sysapproval_approver", map[string]any{"sysapproval": map[string]any{"display_value": "CHG0077001", "value": chg},
			"approver": map[string]any{"display_value": "Carol CAB", "value": carol}, "state": snPair("approved"),
			"sys_updated_on": snPair(itsmfake.SNTime(t0.Add(30 * time.Second)))})
		fake.PutSN("change_request", snAPIChange("CHG0077001", "approved", t0.Add(30*time.Second)))
		s.waitFor("the approval", func() bool { c, _ := s.changeOf("CHG0077001"); return c.Approval == core.ApprovalApproved })
		c, _ := s.changeOf("CHG0077001")
		if len(c.Approvals) != 1 || c.Approvals[0].Approver != "cab.carol" || c.Approvals[0].Name != "Carol CAB" || c.Approvals[0].Decision != core.ApprovalApproved || c.Approvals[0].At == nil {
			t.Errorf("approvals %+v", c.Approvals)
		}
		if a := s.check(ci, "", req); a.Decision != "allow" {
			t.Fatalf("after approval: %s %s", a.Decision, a.codes())
		}
		if !strings.Contains(s.metricsText(), `tollgate_api_requests_total{connector="servicenow",outcome="ok"}`) {
			t.Error("no API request metric")
		}
		// Carol requested a change (a display name) and approved it alone
		// (a user name): separation of duties still sees her.
		own := snAPIChange("CHG0077002", "approved", t0.Add(40*time.Second))
		own["requested_by"] = map[string]any{"display_value": "Carol CAB", "value": carol}
		ownID := "0123456789abcdef0123456789abcd02"
		own["sys_id"] = snPair(ownID)
		fake.PutSN("sysapproval_approver", map[string]any{"sysapproval": map[string]any{"display_value": "CHG0077002", "value": ownID},
			"approver": map[string]any{"display_value": "Carol CAB", "value": carol}, "state": snPair("approved"),
			"sys_updated_on": snPair(itsmfake.SNTime(t0.Add(40 * time.Second)))})
		fake.PutSN("change_request", own)
		s.waitFor("the self-approved change", func() bool { c, _ := s.changeOf("CHG0077002"); return c.Approval == core.ApprovalApproved })
		req["changes"] = []string{"CHG0077002"}
		if a := s.check(ci, "", req); a.Decision != "deny" || a.codes() != core.CodeSelfApproval || !strings.Contains(a.Reasons[0].Message, "who requested it") {
			t.Fatalf("a change approved only by its requester: %s %+v", a.Decision, a.Reasons)
		}
		var ready map[string]any
		s.do("GET", "/readyz", "", nil, &ready)
		if d, _ := json.Marshal(ready["details"]); !strings.Contains(string(d), `"servicenow":"closed"`) {
			t.Errorf("/readyz details: %v", ready)
		}
	})
}

const snReadBackConfig = `
inbox: {poll_interval: 50ms}
connectors:
  - name: servicenow
    type: servicenow
    webhook_secret: ${HOOK_SECRET}
    api:
      url: ${FAKE_URL}
      username: ${SN_USER}
      password: ${SN_PASSWORD}
      read_back_timeout: 1s
      timeout: 2s
    change_creation:
      environments: [production]
      type: normal
`

// TestReadBack: a gate check naming a change the store does not know is
// answered from ServiceNow (stored, then evaluated); concurrent checks for
// one key make one call; an absent key and a slow instance are
// CHANGE_NOT_FOUND saying which, within the budget.
func TestReadBack(t *testing.T) {
	eachDialect(t, func(t *testing.T, dialect string) {
		fake := itsmfake.New(snUser, snPassword)
		defer fake.Close()
		fake.PutSN("change_request", snAPIChange("CHG0078001", "approved", time.Now().Add(-time.Minute)))
		s := bootITSM(t, dialect, fake, snReadBackConfig)
		ci, _ := s.token(core.RoleCI)
		rel := func(key string) map[string]any {
			return map[string]any{"service": "payments-api", "environment": "production", "version": "3.1.0", "changes": []string{key}}
		}
		fake.Inject(itsmfake.Fault{Match: "CHG0078001", Slow: 300 * time.Millisecond, Times: 5})
		var wg sync.WaitGroup
		answers := make([]gateAnswer, 3)
		for i := range answers {
			wg.Add(1)
			go func() { defer wg.Done(); answers[i] = s.check(ci, "", rel("CHG0078001")) }()
		}
		wg.Wait()
		for _, a := range answers {
			if a.Decision != "allow" {
				t.Errorf("read-back answer %s %s", a.Decision, a.codes())
			}
		}
		if n := len(fake.Calls("number=CHG0078001")); n != 1 {
			t.Errorf("%d calls for one unknown key, want 1", n)
		}
		if _, ok := s.changeOf("CHG0078001"); !ok {
			t.Error("the read-back change was not stored")
		}

		a := s.check(ci, "", rel("CHG0078999"))
		if a.Decision != "deny" || len(a.Reasons) == 0 || a.Reasons[0].Code != core.CodeChangeNotFound || !strings.Contains(a.Reasons[0].Message, "not in ServiceNow servicenow") {
			t.Errorf("absent key: %+v", a)
		}

		fake.PutSN("change_request", snAPIChange("CHG0078002", "approved", time.Now()))
		fake.Inject(itsmfake.Fault{Match: "CHG0078002", Slow: 5 * time.Second, Times: 10})
		start := time.Now()
		a = s.check(ci, "", rel("CHG0078002"))
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("a slow instance held the check %v (budget 1s)", took)
		}
		if a.Decision != "deny" || !strings.Contains(a.Reasons[0].Message, "ServiceNow servicenow unreachable") {
			t.Errorf("slow instance: %+v", a)
		}

		// A webhook whose references are bare sys_ids is completed.
		fake.PutSN("cmdb_ci", map[string]any{"sys_id": "a9c0c8d2c6112276018f7705562f9cb0", "name": "checkout-api"})
		raw := snAPIChange("CHG0078003", "approved", time.Now())
		raw["cmdb_ci"], raw["business_service"] = "a9c0c8d2c6112276018f7705562f9cb0", "a9c0c8d2c6112276018f7705562f9cb0"
		body, _ := json.Marshal(map[string]any{"result": raw})
		if st, out := s.post("/webhooks/servicenow", body); st != http.StatusAccepted {
			t.Fatalf("webhook %d %s", st, out)
		}
		s.waitFor("the webhook change", func() bool { _, ok := s.changeOf("CHG0078003"); return ok })
		if c, _ := s.changeOf("CHG0078003"); len(c.Services) != 1 || c.Services[0] != "checkout-api" {
			t.Errorf("services %v, want the display value", c.Services)
		}
	})
}

// post sends body signed with the ITSM connectors' secret.
func (s *server) post(path string, body []byte) (int, string) {
	mac := hmac.New(sha256.New, []byte(itsmSecret))
	mac.Write(body)
	req, _ := http.NewRequest("POST", s.url+path, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tollgate-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// TestChangeCreation: three concurrent checks for a release with no change
// open exactly one in ServiceNow and all answer wait CHANGE_CREATED with
// its key; a re-run finds the same change; a refusal is a deny with the
// instance's own error text, audited.
func TestChangeCreation(t *testing.T) {
	eachDialect(t, func(t *testing.T, dialect string) {
		fake := itsmfake.New(snUser, snPassword)
		defer fake.Close()
		s := bootITSM(t, dialect, fake, snReadBackConfig)
		ci, _ := s.token(core.RoleCI)
		req := map[string]any{"service": "payments-api", "environment": "production", "version": "4.0.0", "commit": "9fceb02d0ae5",
			"pipeline": map[string]any{"provider": "github", "run_id": "7001", "url": "https://ci.example.com/runs/7001"}}
		var wg sync.WaitGroup
		answers := make([]gateAnswer, 3)
		for i := range answers {
			wg.Add(1)
			go func() { defer wg.Done(); answers[i] = s.check(ci, "", req) }()
		}
		wg.Wait()
		created := fake.SNCreated()
		if len(created) != 1 {
			t.Fatalf("%d changes opened, want 1", len(created))
		}
		for _, a := range answers {
			if a.Decision != "wait" || a.Reasons[0].Code != core.CodeChangeCreated || a.Reasons[0].Ref != created[0] {
				t.Errorf("answer %s %+v", a.Decision, a.Reasons)
			}
		}
		post := fake.Calls("/api/sn_chg_rest/change/normal")
		if len(post) != 1 || !strings.Contains(post[0].Body, "4.0.0") || !strings.Contains(post[0].Body, "9fceb02d0ae5") || !strings.Contains(post[0].Body, "runs/7001") {
			t.Errorf("creation call %+v", post)
		}
		if a := s.check(ci, "", req); a.Reasons[0].Ref != created[0] || len(fake.SNCreated()) != 1 {
			t.Errorf("re-run: %+v, %d changes", a.Reasons, len(fake.SNCreated()))
		}

		// The change is approved and completed in ServiceNow (its webhook
		// arrives): a waiting check for the release turns to allow.
		done := make(chan gateAnswer, 1)
		go func() { done <- s.check(ci, "?wait=20s", req) }()
		time.Sleep(300 * time.Millisecond)
		body, _ := json.Marshal(map[string]any{"result": snAPIChange(created[0], "approved", time.Now())})
		if st, out := s.post("/webhooks/servicenow", body); st != http.StatusAccepted {
			t.Fatalf("webhook %d %s", st, out)
		}
		select {
		case a := <-done:
			if a.Decision != "allow" || a.Reasons[0].Code != core.CodeChangeCreated || a.Reasons[0].Result != "" {
				t.Errorf("after approval: %s %+v", a.Decision, a.Reasons)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("the waiting check was not woken by the approval")
		}

		// A refusal: deny with the instance's words.
		fake.Inject(itsmfake.Fault{Match: "sn_chg_rest", Status: 403})
		req["version"] = "4.0.1"
		a := s.check(ci, "", req)
		if a.Decision != "deny" || !strings.Contains(a.codes(), core.CodeChangeCreationFailed) || !strings.Contains(a.codes()+a.Reasons[len(a.Reasons)-1].Message, "Forbidden") {
			t.Errorf("refusal: %s %+v", a.Decision, a.Reasons)
		}
		var page struct {
			Items []core.AuditEntry `json:"items"`
		}
		s.do("GET", "/api/v1/audit?action=change.creation_failed", adminSecret, nil, &page)
		found := false
		for _, e := range page.Items {
			found = found || (e.Action == "change.creation_failed" && strings.Contains(string(e.Data), "HTTP 403"))
		}
		if !found {
			t.Error("the refused creation is not audited")
		}
	})
}

const jiraConfig = `
inbox: {poll_interval: 50ms}
connectors:
  - name: jira
    type: jira
    webhook_secret: ${HOOK_SECRET}
    api:
      url: ${FAKE_URL}
      username: ${JIRA_USER}
      password: ${JIRA_API_TOKEN}
      poll_interval: 1s
      read_back_timeout: 2s
    projects: [OPS]
    change_creation: {environments: [production], project: OPS, issue_type: Change}
`

// jiraCloudChange is the Jira Cloud fixture's issue made a change of
// project OPS (the site's custom fields: type, risk, window, backout).
func jiraCloudChange(t *testing.T, key, status string, updated time.Time) map[string]any {
	t.Helper()
	raw, err := os.ReadFile("../connectors/jira/testdata/webhook.jira_issue_created.cloud.json")
	if err != nil {
		t.Fatal(err)
	}
	var hook struct {
		Issue map[string]any `json:"issue"`
	}
	if err := json.Unmarshal(raw, &hook); err != nil {
		t.Fatal(err)
	}
	is := hook.Issue
	f := is["fields"].(map[string]any)
	now := time.Now().UTC()
	is["key"] = key
	f["project"] = map[string]any{"key": "OPS", "name": "Operations"}
	f["issuetype"] = map[string]any{"name": "Change"}
	f["status"] = map[string]any{"name": status}
	f["components"] = []any{map[string]any{"name": "payments-api"}}
	f["customfield_10005"] = map[string]any{"value": "Normal"}
	f["customfield_10006"] = map[string]any{"value": "Low"}
	f["customfield_10007"] = itsmfake.JiraTime(now.Add(-time.Hour))
	f["customfield_10008"] = itsmfake.JiraTime(now.Add(3 * time.Hour))
	f["customfield_10011"] = "redeploy the previous version"
	f["updated"] = itsmfake.JiraTime(updated)
	return is
}

// TestJiraToTheGate: a Jira Cloud change and a Jira incident brought by
// the poller reach gate decisions; JSM approvals are the approvers
// (SELF_APPROVAL); an unknown key is read back; three concurrent checks
// with no change open one issue.
func TestJiraToTheGate(t *testing.T) {
	eachDialect(t, func(t *testing.T, dialect string) {
		fake := itsmfake.New(jiraUser, jiraToken)
		defer fake.Close()
		t0 := time.Now().UTC().Add(-time.Minute)
		fake.PutJiraIssue(jiraCloudChange(t, "OPS-501", "Awaiting implementation", t0))
		fake.PutJSMApprovals("OPS-501", []map[string]any{{"finalDecision": "approved", "completedDate": map[string]any{"iso8601": "2026-12-01T10:00:00+0000"},
			"approvers": []any{map[string]any{"approver": map[string]any{"displayName": "dana.ops"}, "approverDecision": "approved"}}}})
		s := bootITSM(t, dialect, fake, jiraConfig)
		ci, _ := s.token(core.RoleCI)
		s.waitFor("the polled Jira change", func() bool { _, ok := s.changeOf("OPS-501"); return ok })
		req := map[string]any{"service": "payments-api", "environment": "production", "version": "5.0.0", "changes": []string{"OPS-501"}, "actor": "eve.deployer"}
		if a := s.check(ci, "", req); a.Decision != "allow" {
			t.Fatalf("Jira change: %s %+v", a.Decision, a.Reasons)
		}
		req["actor"] = "dana.ops"
		if a := s.check(ci, "", req); a.Decision != "deny" || !strings.Contains(a.codes(), core.CodeSelfApproval) {
			t.Errorf("the only JSM approver deploying: %s %s", a.Decision, a.codes())
		}

		// A major incident on the service: the gate waits.
		inc := jiraCloudChange(t, "OPS-601", "Investigating", t0)
		f := inc["fields"].(map[string]any)
		f["issuetype"], f["priority"], f["customfield_10012"] = map[string]any{"name": "Incident"}, map[string]any{"name": "Highest"}, map[string]any{"value": "Yes"}
		fake.PutJiraIssue(inc)
		s.waitFor("the polled Jira incident", func() bool { _, ok := s.incidentOf("OPS-601"); return ok })
		req["actor"] = "eve.deployer"
		if a := s.check(ci, "", req); a.Decision != "wait" || !strings.Contains(a.codes(), core.CodeIncidentBlock) {
			t.Errorf("major Jira incident: %s %s", a.Decision, a.codes())
		}
		inc["fields"].(map[string]any)["status"] = map[string]any{"name": "Resolved"}
		inc["fields"].(map[string]any)["updated"] = itsmfake.JiraTime(time.Now())
		fake.PutJiraIssue(inc)
		s.waitFor("the resolved incident", func() bool { i, _ := s.incidentOf("OPS-601"); return !i.Active() })

		// Read-back of a key only Jira has.
		fake.PutJiraIssue(jiraCloudChange(t, "OPS-502", "Awaiting implementation", time.Now().Add(-48*time.Hour)))
		req["changes"] = []string{"OPS-502"}
		if a := s.check(ci, "", req); a.Decision != "allow" {
			t.Errorf("read-back of OPS-502: %s %+v", a.Decision, a.Reasons)
		}

		// Three concurrent checks with no change: one issue.
		creq := map[string]any{"service": "payments-api", "environment": "production", "version": "6.0.0"}
		var wg sync.WaitGroup
		answers := make([]gateAnswer, 3)
		for i := range answers {
			wg.Add(1)
			go func() { defer wg.Done(); answers[i] = s.check(ci, "", creq) }()
		}
		wg.Wait()
		created := fake.JiraCreated()
		if len(created) != 1 {
			t.Fatalf("%d issues opened, want 1", len(created))
		}
		for _, a := range answers {
			if a.Decision != "wait" || a.Reasons[0].Code != core.CodeChangeCreated || a.Reasons[0].Ref != created[0] {
				t.Errorf("answer %s %+v", a.Decision, a.Reasons)
			}
		}
	})
}

const snWriteBackConfig = `
inbox: {poll_interval: 50ms}
connectors:
  - name: servicenow
    type: servicenow
    webhook_secret: ${HOOK_SECRET}
    api:
      url: ${FAKE_URL}
      username: ${SN_USER}
      password: ${SN_PASSWORD}
    write_back: true
`

// TestWriteBack: a deployment covering a ServiceNow change writes a work
// note when it starts and when it ends, with the run URL and the gate
// decision; an instance that is down does not hold the report back, and
// the note is written once it is up.
func TestWriteBack(t *testing.T) {
	eachDialect(t, func(t *testing.T, dialect string) {
		fake := itsmfake.New(snUser, snPassword)
		defer fake.Close()
		fake.PutSN("change_request", snAPIChange("CHG0079001", "approved", time.Now()))
		s := bootITSM(t, dialect, fake, snWriteBackConfig)
		s.app.WriteBack.SetRetryMin(50 * time.Millisecond)
		ci, _ := s.token(core.RoleCI)
		dep := map[string]any{"service": "payments-api", "environment": "production", "version": "7.0.0", "status": "started",
			"started_at": time.Now().UTC().Format(time.RFC3339), "changes": []string{"CHG0079001"}, "provider": "github", "run_id": "9001",
			"url": "https://ci.example.com/runs/9001", "decision_id": "dec-123"}
		// The instance is down for the first note.
		fake.Inject(itsmfake.Fault{Match: "table/change_request", Status: 503, Times: 8})
		start := time.Now()
		if st := s.do("POST", "/api/v1/deployments", ci, dep, nil); st != http.StatusCreated && st != http.StatusOK {
			t.Fatalf("deployment: %d", st)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("the report waited %v for the ITSM", took)
		}
		dep["status"], dep["finished_at"] = "succeeded", time.Now().UTC().Format(time.RFC3339)
		if st := s.do("POST", "/api/v1/deployments", ci, dep, nil); st != http.StatusCreated && st != http.StatusOK {
			t.Fatalf("deployment: %d", st)
		}
		notes := func() []any {
			for _, r := range fake.SNRecords("change_request") {
				if snValueOf(r["number"]) == "CHG0079001" {
					j, _ := r["work_notes_journal"].([]any)
					return j
				}
			}
			return nil
		}
		s.waitFor("both work notes", func() bool { return len(notes()) == 2 })
		all := fmt.Sprint(notes())
		for _, want := range []string{"started", "succeeded", "runs/9001", "dec-123"} {
			if !strings.Contains(all, want) {
				t.Errorf("work notes %q lack %q", all, want)
			}
		}
		queued, err := s.app.DB.Notes(context.Background(), "servicenow")
		if err != nil || len(queued) != 2 {
			t.Fatalf("outbox %+v %v", queued, err)
		}
		retried := false
		for _, n := range queued {
			retried = retried || (n.Attempts > 1 && n.Status == "done")
		}
		if !retried {
			t.Errorf("no note was retried after the outage: %+v", queued)
		}
	})
}

// countingSource is a poll source that counts its polls and hands out one
// record stamped at.
type countingSource struct {
	mu sync.Mutex
	n  int
	at time.Time
}

func (c *countingSource) Poll(_ context.Context, since time.Time, emit func(connectors.Record) error) error {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	if c.at.Before(since) {
		return nil
	}
	body, _ := json.Marshal(map[string]any{"result": snAPIChange("CHG0080001", "approved", c.at)})
	return emit(connectors.Record{Type: "change_request", Key: "CHG0080001", UpdatedAt: c.at, Body: body})
}

func (c *countingSource) polls() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// TestPollerLease: of two replicas' pollers for one connector on one
// database only the lease holder polls; its watermark is stored; the other
// takes over as soon as the holder stops.
func TestPollerLease(t *testing.T) {
	fake := itsmfake.New(snUser, snPassword)
	defer fake.Close()
	s := bootITSM(t, "postgres", fake, snReadBackConfig)
	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	a, b := &countingSource{at: at}, &countingSource{at: at}
	log := slog.New(slog.DiscardHandler)
	pa := service.NewPoller("servicenow", a, s.app.DB, s.app.Inbox, 50*time.Millisecond, "replica-a", core.SystemClock, log, s.app.Metrics)
	pb := service.NewPoller("servicenow", b, s.app.DB, s.app.Inbox, 50*time.Millisecond, "replica-b", core.SystemClock, log, s.app.Metrics)
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	doneA := make(chan struct{})
	go func() { pa.Run(ctxA); close(doneA) }()
	// B starts once A holds the lease (it has polled), however slow the
	// machine: a fixed pause let B take the lease first on a loaded one.
	s.waitFor("replica A's first poll", func() bool { return a.polls() > 0 })
	go pb.Run(ctxB)
	time.Sleep(500 * time.Millisecond)
	if a.polls() < 3 || b.polls() != 0 {
		t.Fatalf("polls: holder %d, other %d", a.polls(), b.polls())
	}
	s.waitFor("the polled change", func() bool { _, ok := s.changeOf("CHG0080001"); return ok })
	wm, ok, err := s.app.DB.Watermark(context.Background(), "servicenow")
	if err != nil || !ok || !wm.Equal(at) {
		t.Errorf("watermark %v %v %v, want %v", wm, ok, err, at)
	}
	// A stopped replica gives its lease up: the other polls at once.
	stopA()
	<-doneA
	s.waitFor("the other replica's poll", func() bool { return b.polls() > 0 })
}

// TestChangeCreationAfterCrash: a replica that recorded its attempt and
// crashed (after ServiceNow opened the change, before recording its key)
// leaves a pending record; once it is stale the next check finds that
// change by the release id instead of opening a second one.
func TestChangeCreationAfterCrash(t *testing.T) {
	eachDialect(t, func(t *testing.T, dialect string) {
		fake := itsmfake.New(snUser, snPassword)
		defer fake.Close()
		s := bootITSM(t, dialect, fake, snReadBackConfig)
		s.app.Creator.SetStaleAfter(100 * time.Millisecond)
		ci, _ := s.token(core.RoleCI)
		rel := core.ReleaseID("payments-api", "8.0.0", "production")
		if _, own, err := s.app.DB.ClaimCreation(context.Background(), rel, "servicenow", time.Minute); err != nil || !own {
			t.Fatalf("claim: %v %v", own, err)
		}
		opened := snAPIChange("CHG0081001", "not requested", time.Now())
		opened["correlation_id"] = snPair(rel)
		fake.PutSN("change_request", opened)
		time.Sleep(200 * time.Millisecond)
		a := s.check(ci, "", map[string]any{"service": "payments-api", "environment": "production", "version": "8.0.0"})
		if a.Decision != "wait" || a.Reasons[0].Code != core.CodeChangeCreated || a.Reasons[0].Ref != "CHG0081001" {
			t.Errorf("after the crash: %s %+v", a.Decision, a.Reasons)
		}
		if n := len(fake.SNCreated()); n != 0 {
			t.Errorf("%d changes opened, want none (the crashed attempt's is found)", n)
		}
	})
}

// TestWriteBackFlagsEmergency: a deployment covering an emergency change
// writes its work note through the outbox flagged as an emergency, with
// when the review and the validation are due; a normal change's note is
// not flagged.
func TestWriteBackFlagsEmergency(t *testing.T) {
	eachDialect(t, func(t *testing.T, dialect string) {
		fake := itsmfake.New(snUser, snPassword)
		defer fake.Close()
		emergency := snAPIChange("CHG0079101", "approved", time.Now())
		emergency["type"] = snPair("emergency")
		fake.PutSN("change_request", emergency)
		fake.PutSN("change_request", snAPIChange("CHG0079102", "approved", time.Now()))
		s := bootITSM(t, dialect, fake, snWriteBackConfig)
		s.app.WriteBack.SetRetryMin(50 * time.Millisecond)
		ctx := context.Background()
		for key, typ := range map[string]core.ChangeType{"CHG0079101": core.ChangeEmergency, "CHG0079102": core.ChangeNormal} {
			c := core.Change{Source: "servicenow", Key: key, Type: typ, State: core.ChangeStateScheduled, Approval: core.ApprovalApproved,
				Services: []string{"payments-api"}, SourceUpdatedAt: time.Now().UTC().Add(-time.Hour)}
			if _, err := s.app.DB.UpsertChange(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		ci, _ := s.token(core.RoleCI)
		for i, key := range []string{"CHG0079101", "CHG0079102"} {
			dep := map[string]any{"service": "payments-api", "environment": "production", "version": fmt.Sprintf("7.1.%d", i), "status": "started",
				"started_at": time.Now().UTC().Format(time.RFC3339), "changes": []string{key}, "provider": "github", "run_id": fmt.Sprint(9100 + i)}
			if st := s.do("POST", "/api/v1/deployments", ci, dep, nil); st != http.StatusCreated && st != http.StatusOK {
				t.Fatalf("deployment: %d", st)
			}
		}
		notes := func(key string) string {
			for _, r := range fake.SNRecords("change_request") {
				if snValueOf(r["number"]) == key {
					j, _ := r["work_notes_journal"].([]any)
					if len(j) > 0 {
						return fmt.Sprint(j)
					}
				}
			}
			return ""
		}
		s.waitFor("both work notes", func() bool { return notes("CHG0079101") != "" && notes("CHG0079102") != "" })
		got := notes("CHG0079101")
		for _, want := range []string{"[EMERGENCY]", "Emergency change: CHG0079101", "Retrospective review due by", "24 business hours",
			"Post-deployment validation due by", "4h0m0s after the start"} {
			if !strings.Contains(got, want) {
				t.Errorf("emergency note %q lacks %q", got, want)
			}
		}
		if normal := notes("CHG0079102"); strings.Contains(normal, "EMERGENCY") || !strings.Contains(normal, "started") {
			t.Errorf("normal note %q", normal)
		}
	})
}
