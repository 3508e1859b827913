package app_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

const fixtureSecret = "fixture-webhook-secret-0123456789"

var fixtureConfig = fmt.Sprintf(`
connectors:
  - {name: servicenow, type: servicenow, webhook_secret: %[1]s}
  - {name: jira, type: jira, webhook_secret: %[1]s}
  - {name: github, type: github, webhook_secret: %[1]s}
  - {name: gitlab, type: gitlab, webhook_secret: %[1]s}
  - {name: jenkins, type: jenkins, webhook_secret: %[1]s, default_environment: production}
inbox:
  poll_interval: 50ms
`, fixtureSecret)

func hmacHex(body []byte) string {
	m := hmac.New(sha256.New, []byte(fixtureSecret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// deliver posts a vendor fixture the way the vendor would, signed.
func (s *server) deliver(connector, file string, n int) (int, string) {
	s.t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "connectors", connector, "testdata", file))
	if err != nil {
		s.t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", s.url+"/webhooks/"+connector, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	event := strings.SplitN(file, ".", 2)[0]
	switch connector {
	case "github":
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("delivery-%d", n))
		req.Header.Set("X-Hub-Signature-256", "sha256="+hmacHex(body))
	case "gitlab":
		req.Header.Set("X-Gitlab-Token", fixtureSecret)
		req.Header.Set("X-Gitlab-Event", map[string]string{"pipeline_hook": "Pipeline Hook", "deployment_hook": "Deployment Hook", "job_hook": "Job Hook"}[event])
		req.Header.Set("X-Gitlab-Event-UUID", fmt.Sprintf("uuid-%d", n))
	case "jira":
		req.Header.Set("X-Hub-Signature", "sha256="+hmacHex(body))
		req.Header.Set("X-Atlassian-Webhook-Identifier", fmt.Sprintf("jira-%d", n))
	default:
		req.Header.Set("X-Tollgate-Signature", "sha256="+hmacHex(body))
	}
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// TestVendorFixturesEndToEnd sends every real vendor payload through its
// connector's webhook, signed as the vendor signs, and checks what the
// inbox made of it: stored and normalized into a record, ignored with a
// reason, quarantined with a reason, or refused at the door (not a
// delivery, or not valid JSON) — never a 500, never silently dropped.
func TestVendorFixturesEndToEnd(t *testing.T) {
	s := boot(t, "postgres", fixtureConfig)
	tests := []struct {
		connector, file string
		http            int
		status          string // final inbox status ("" when refused)
		reason          string // part of the reason, for ignored/quarantined
	}{
		{"servicenow", "sn_chg_rest.get_change.response.json", 202, core.EventProcessed, ""},
		{"servicenow", "table_api.get_incident.response.json", 202, core.EventProcessed, ""},
		{"servicenow", "sn_chg_rest.list_changes.response.json", 400, "", ""},
		{"servicenow", "sn_chg_rest.get_change_nextstates.response.doc-verbatim.jsonc", 400, "", ""},
		{"servicenow", "sn_devops.get_changeInfo.response.json", 400, "", ""},
		{"github", "deployment.created.json", 202, core.EventProcessed, ""},
		{"github", "deployment_status.created.json", 202, core.EventProcessed, ""},
		{"github", "workflow_job.queued.with-deployment.json", 202, core.EventProcessed, ""},
		{"github", "push.json", 202, core.EventIgnored, "no mapping profile"},
		{"github", "release.published.json", 202, core.EventIgnored, "no mapping profile"},
		{"github", "check_suite.completed.json", 202, core.EventIgnored, "no mapping profile"},
		{"github", "workflow_run.completed.json", 202, core.EventIgnored, "whole run"},
		{"gitlab", "deployment_hook.json", 202, core.EventProcessed, ""},
		{"gitlab", "job_hook.doc-verbatim.jsonc", 400, "", ""},
		{"jenkins", "notification-plugin.job_completed.json", 202, core.EventProcessed, ""},
		{"jira", "webhook.jira_issue_created.cloud.json", 202, core.EventIgnored, "no mapping profile"},
		{"jira", "rest_api3_get_issue.response.json", 400, "", ""},
	}
	ids := map[int]string{}
	for i, tt := range tests {
		st, body := s.deliver(tt.connector, tt.file, i)
		if st != tt.http {
			t.Errorf("%s/%s: HTTP %d, want %d: %s", tt.connector, tt.file, st, tt.http, body)
			continue
		}
		if st == 202 {
			var out struct {
				EventID string `json:"event_id"`
			}
			_ = jsonUnmarshal(body, &out)
			ids[i] = out.EventID
		} else if !strings.Contains(body, `"message"`) {
			t.Errorf("%s/%s: refusal without a reason: %s", tt.connector, tt.file, body)
		}
	}
	for i, tt := range tests {
		id, ok := ids[i]
		if !ok {
			continue
		}
		var ev core.Event
		s.waitFor(tt.file+" normalized", func() bool {
			s.do("GET", "/api/v1/events/"+id, adminSecret, nil, &ev)
			return ev.Status != core.EventPending
		})
		if ev.Status != tt.status || !strings.Contains(ev.Reason, tt.reason) {
			t.Errorf("%s/%s: %s (%q), want %s with reason containing %q", tt.connector, tt.file, ev.Status, ev.Reason, tt.status, tt.reason)
		}
	}
	// What the ServiceNow change became.
	var ch struct {
		Change  core.Change          `json:"change"`
		History []core.ChangeVersion `json:"history"`
	}
	if st := s.do("GET", "/api/v1/changes/CHG0000024", adminSecret, nil, &ch); st != 200 || ch.Change.Type != core.ChangeStandard || len(ch.History) != 1 {
		t.Errorf("CHG0000024: %d %+v", st, ch)
	}
	// A redelivery is a duplicate: stored once. The answer's shape is
	// the contract's, byte for byte.
	if st, body := s.deliver("github", "push.json", 8); st != 202 || !regexp.MustCompile(`^\{"duplicate":true,"event_id":"[^"]+"\}\n$`).MatchString(body) {
		t.Errorf("redelivery: %d %q", st, body)
	}
}
