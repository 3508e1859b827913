package app_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/itsmfake"
)

// The same configuration for both servers of the comparison: the webhook
// path and the poll path both complete records through the API.
const itsmFixtureConfig = `
inbox: {poll_interval: 50ms}
connectors:
  - name: servicenow
    type: servicenow
    webhook_secret: ${HOOK_SECRET}
    api: {url: "${FAKE_URL}", username: "${SN_USER}", password: "${SN_PASSWORD}"%s}
  - name: jira
    type: jira
    webhook_secret: ${HOOK_SECRET}
    api: {url: "${FAKE_URL}", username: "${JIRA_USER}", password: "${JIRA_API_TOKEN}"%s}
    projects: [OPS]
`

// TestFixturesPollPathEqualsWebhookPath: every ServiceNow record fixture
// and every Jira issue fixture (as a change of a configured project) read
// by the poller gives the same canonical record as delivered by webhook.
func TestFixturesPollPathEqualsWebhookPath(t *testing.T) {
	fake := itsmfake.New(snUser, snPassword)
	defer fake.Close()
	fake.AddUser(jiraUser, jiraToken)
	webhook := bootITSM(t, "sqlite", fake, fmt.Sprintf(itsmFixtureConfig, "", ""))
	poller := bootITSM(t, "sqlite", fake, fmt.Sprintf(itsmFixtureConfig, ", poll_interval: 1s", ", poll_interval: 1s"))

	type want struct{ kind, key string }
	var wants []want
	for _, f := range []string{"sn_chg_rest.get_change.response.json", "table_api.get_incident.response.json",
		"table_api.patch_incident.response.json", "table_api.post_incident.response.json"} {
		raw, err := os.ReadFile(filepath.Join("../connectors/servicenow/testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			Result map[string]any `json:"result"`
		}
		if err := json.Unmarshal(raw, &env); err != nil {
			t.Fatal(err)
		}
		rec := env.Result
		table := snValueOf(rec["sys_class_name"])
		fake.PutSN(table, rec)
		if st, out := webhook.post("/webhooks/servicenow", raw); st != http.StatusAccepted {
			t.Fatalf("%s: webhook %d %s", f, st, out)
		}
		kind := "changes"
		if table == "incident" {
			kind = "incidents"
		}
		wants = append(wants, want{kind, snValueOf(rec["number"])})
	}
	files, _ := filepath.Glob("../connectors/jira/testdata/webhook.*.json")
	for i, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var hook map[string]any
		if err := json.Unmarshal(raw, &hook); err != nil {
			t.Fatal(err)
		}
		is := hook["issue"].(map[string]any)
		key := fmt.Sprintf("OPS-%d", 700+i)
		is["key"] = key
		fields := is["fields"].(map[string]any)
		fields["project"] = map[string]any{"key": "OPS"}
		fields["issuetype"] = map[string]any{"name": "Change"}
		fake.PutJiraIssue(is)
		body, _ := json.Marshal(hook)
		if st, out := webhook.postJira(body); st != http.StatusAccepted {
			t.Fatalf("%s: webhook %d %s", f, st, out)
		}
		wants = append(wants, want{"changes", key})
	}
	// The fixtures are years old: start the poller's watermark before them.
	for _, c := range []string{"servicenow", "jira"} {
		if err := poller.app.DB.ResetWatermark(context.Background(), c, time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range wants {
		var a, b json.RawMessage
		webhook.waitFor("webhook "+w.key, func() bool {
			return webhook.do("GET", "/api/v1/"+w.kind+"/"+w.key, adminSecret, nil, nil) == http.StatusOK
		})
		poller.waitFor("poll "+w.key, func() bool {
			return poller.do("GET", "/api/v1/"+w.kind+"/"+w.key, adminSecret, nil, nil) == http.StatusOK
		})
		webhook.do("GET", "/api/v1/"+w.kind+"/"+w.key, adminSecret, nil, &a)
		poller.do("GET", "/api/v1/"+w.kind+"/"+w.key, adminSecret, nil, &b)
		ra, rb := canonicalOf(t, w.kind, a), canonicalOf(t, w.kind, b)
		if !strings.Contains(fmt.Sprintf("%+v", rb), w.key) {
			t.Fatalf("%s: the poll path stored %+v", w.key, rb)
		}
		if !reflect.DeepEqual(ra, rb) {
			t.Errorf("%s: webhook path %v\npoll path    %v", w.key, ra, rb)
		}
	}
}

// canonicalOf is the newest canonical record of a GET answer.
func canonicalOf(t *testing.T, kind string, raw json.RawMessage) any {
	t.Helper()
	if kind == "changes" {
		var out struct {
			Change core.Change `json:"change"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		return out.Change
	}
	var out struct {
		Incident core.Incident `json:"incident"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out.Incident
}

func snValueOf(v any) string {
	if m, ok := v.(map[string]any); ok {
		return fmt.Sprint(m["value"])
	}
	return fmt.Sprint(v)
}

// postJira delivers a Jira webhook signed as Jira Cloud signs.
func (s *server) postJira(body []byte) (int, string) {
	mac := hmac.New(sha256.New, []byte(itsmSecret))
	mac.Write(body)
	req, _ := http.NewRequest("POST", s.url+"/webhooks/jira", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String()
}

// jiraWebhooks is a tollgate with a Jira connector of project OPS (its API
// the fake), and send posts the Cloud issue fixture as event after edit
// has changed the delivery, the issue and its fields (the issue is put in
// the fake first), returning the settled event.
func jiraWebhooks(t *testing.T) (s *server, send func(edit func(hook, issue, fields map[string]any)) core.Event) {
	t.Helper()
	fake := itsmfake.New(snUser, snPassword)
	t.Cleanup(fake.Close)
	fake.AddUser(jiraUser, jiraToken)
	s = bootITSM(t, "sqlite", fake, fmt.Sprintf(itsmFixtureConfig, "", ""))
	raw, err := os.ReadFile("../connectors/jira/testdata/webhook.jira_issue_created.cloud.json")
	if err != nil {
		t.Fatal(err)
	}
	return s, func(edit func(hook, issue, fields map[string]any)) core.Event {
		t.Helper()
		var hook map[string]any
		_ = json.Unmarshal(raw, &hook)
		is := hook["issue"].(map[string]any)
		fields := is["fields"].(map[string]any)
		fields["issuetype"] = map[string]any{"name": "Change"}
		edit(hook, is, fields)
		fake.PutJiraIssue(is)
		body, _ := json.Marshal(hook)
		st, out := s.postJira(body)
		var acc struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal([]byte(out), &acc); st != http.StatusAccepted || err != nil {
			t.Fatalf("webhook: %d %s", st, out)
		}
		return s.settled(acc.EventID)
	}
}

// TestJiraWebhookScopedToProjects: a Jira connector with projects takes
// changes from those projects only: the same issue webhook from another
// project of the site is quarantined with the reason, nothing stored.
func TestJiraWebhookScopedToProjects(t *testing.T) {
	s, send := jiraWebhooks(t)
	for _, tc := range []struct{ project, status, reason string }{
		{"DEV", core.EventQuarantined, `not an issue of connector "jira"'s projects (OPS)`},
		{"OPS", core.EventProcessed, ""},
	} {
		key := tc.project + "-901"
		e := send(func(_, issue, fields map[string]any) {
			issue["key"], fields["project"] = key, map[string]any{"key": tc.project}
		})
		if e.Status != tc.status || !strings.Contains(e.Reason, tc.reason) {
			t.Errorf("%s: %s (%q), want %s saying %q", key, e.Status, e.Reason, tc.status, tc.reason)
		}
		stored := s.do("GET", "/api/v1/changes/"+key, adminSecret, nil, nil) == http.StatusOK
		if stored != (tc.status == core.EventProcessed) {
			t.Errorf("%s: stored %v", key, stored)
		}
	}
}

// TestJiraDeletedChangeWithdrawn: a change issue deleted in Jira is
// withdrawn (canceled) by its jira:issue_deleted webhook, so it allows
// nothing any more, instead of standing approved as it last was.
func TestJiraDeletedChangeWithdrawn(t *testing.T) {
	s, send := jiraWebhooks(t)
	deliver := func(event string, at time.Time) core.Event {
		t.Helper()
		return send(func(hook, issue, fields map[string]any) {
			hook["webhookEvent"], hook["timestamp"] = event, at.UnixMilli()
			issue["key"], fields["project"], fields["status"] = "OPS-950", map[string]any{"key": "OPS"}, map[string]any{"name": "Scheduled"}
			fields["updated"] = at.Add(-time.Minute).Format("2006-01-02T15:04:05.000-0700")
		})
	}
	now := time.Now().UTC().Truncate(time.Second)
	if e := deliver("jira:issue_updated", now.Add(-time.Minute)); e.Status != core.EventProcessed {
		t.Fatalf("the approved change: %s (%s)", e.Status, e.Reason)
	}
	if c, _ := s.changeOf("OPS-950"); c.Approval != core.ApprovalApproved {
		t.Fatalf("before the deletion: %s", c.Approval)
	}
	if e := deliver("jira:issue_deleted", now); e.Status != core.EventProcessed || !strings.Contains(e.Reason+e.Record, "OPS-950") {
		t.Fatalf("the deletion: %s (%s) %s", e.Status, e.Reason, e.Record)
	}
	if c, _ := s.changeOf("OPS-950"); c.Approval != core.ApprovalCanceled || c.State != core.ChangeStateCanceled {
		t.Fatalf("after the deletion: approval %s, state %s; want canceled", c.Approval, c.State)
	}
}

// TestJiraRetypedChangeWithdrawn: a change issue whose type is changed
// to one that is no change is withdrawn (canceled) by that update's
// webhook; jira-change no longer matches it, so it would otherwise stand
// approved as it last was.
func TestJiraRetypedChangeWithdrawn(t *testing.T) {
	s, send := jiraWebhooks(t)
	now := time.Now().UTC().Truncate(time.Second)
	deliver := func(issueType string, at time.Time, changelog map[string]any) core.Event {
		t.Helper()
		return send(func(hook, issue, fields map[string]any) {
			hook["webhookEvent"], hook["timestamp"] = "jira:issue_updated", at.UnixMilli()
			if changelog != nil {
				hook["changelog"] = changelog
			}
			issue["key"], fields["project"], fields["status"] = "OPS-951", map[string]any{"key": "OPS"}, map[string]any{"name": "Scheduled"}
			fields["issuetype"] = map[string]any{"name": issueType}
			fields["updated"] = at.Format("2006-01-02T15:04:05.000-0700")
		})
	}
	if e := deliver("Change", now.Add(-time.Minute), nil); e.Status != core.EventProcessed {
		t.Fatalf("the approved change: %s (%s)", e.Status, e.Reason)
	}
	if c, _ := s.changeOf("OPS-951"); c.Approval != core.ApprovalApproved {
		t.Fatalf("before it was retyped: %s", c.Approval)
	}
	retyped := map[string]any{"id": "10300", "items": []any{map[string]any{
		"field": "issuetype", "fieldtype": "jira", "fieldId": "issuetype", "from": "10005", "fromString": "Change", "to": "10002", "toString": "Task"}}}
	if e := deliver("Task", now, retyped); e.Status != core.EventProcessed || !strings.Contains(e.Reason+e.Record, "OPS-951") {
		t.Fatalf("retyped: %s (%s) %s", e.Status, e.Reason, e.Record)
	}
	if c, _ := s.changeOf("OPS-951"); c.Approval != core.ApprovalCanceled || c.State != core.ChangeStateCanceled {
		t.Fatalf("after it was retyped: approval %s, state %s; want canceled", c.Approval, c.State)
	}
	// A later update of the task (no issuetype in its changelog) is no
	// change's: ignored, the change stays withdrawn.
	if e := deliver("Task", now.Add(time.Minute), nil); e.Status != core.EventIgnored {
		t.Errorf("a later update of the task: %s (%s), want ignored", e.Status, e.Reason)
	}
	// A change retyped to a major incident is withdrawn and recorded as
	// the incident by the same delivery, not at its next update.
	if e := deliver("Change", now.Add(2*time.Minute), nil); e.Status != core.EventProcessed {
		t.Fatalf("the change again: %s (%s)", e.Status, e.Reason)
	}
	toIncident := map[string]any{"id": "10301", "items": []any{map[string]any{
		"field": "issuetype", "fieldtype": "jira", "fieldId": "issuetype", "from": "10005", "fromString": "Change", "to": "10003", "toString": "Major Incident"}}}
	if e := deliver("Major Incident", now.Add(3*time.Minute), toIncident); e.Status != core.EventProcessed || !strings.Contains(e.Reason, "incident:OPS-951") {
		t.Fatalf("retyped to an incident: %s (%s) %s", e.Status, e.Reason, e.Record)
	}
	if c, _ := s.changeOf("OPS-951"); c.Approval != core.ApprovalCanceled {
		t.Errorf("the change after it became an incident: %s, want canceled", c.Approval)
	}
	if _, ok := s.incidentOf("OPS-951"); !ok {
		t.Error("the incident the change became is not stored")
	}
}

// TestJiraMovedChangeWithdrawn: a change issue moved to another project
// takes a new key; the change under its old key, approved, is withdrawn
// (canceled) by the move's update, so a check naming the old key is no
// longer allowed by it. Without the jira-change-moved profile the update
// stores the new key and the old one stands approved.
func TestJiraMovedChangeWithdrawn(t *testing.T) {
	s, send := jiraWebhooks(t)
	now := time.Now().UTC().Truncate(time.Second)
	deliver := func(key, project string, at time.Time, changelog map[string]any) core.Event {
		t.Helper()
		return send(func(hook, issue, fields map[string]any) {
			hook["webhookEvent"], hook["timestamp"] = "jira:issue_updated", at.UnixMilli()
			if changelog != nil {
				hook["changelog"] = changelog
			}
			issue["key"], fields["project"], fields["status"] = key, map[string]any{"key": project}, map[string]any{"name": "Scheduled"}
			fields["updated"] = at.Format("2006-01-02T15:04:05.000-0700")
		})
	}
	if e := deliver("OPS-952", "OPS", now.Add(-time.Minute), nil); e.Status != core.EventProcessed {
		t.Fatalf("the approved change: %s (%s)", e.Status, e.Reason)
	}
	if c, _ := s.changeOf("OPS-952"); c.Approval != core.ApprovalApproved {
		t.Fatalf("before the move: %s", c.Approval)
	}
	moved := map[string]any{"id": "10400", "items": []any{
		map[string]any{"field": "project", "fieldtype": "jira", "from": "10000", "fromString": "Operations", "to": "10001", "toString": "Platform"},
		map[string]any{"field": "Key", "fieldtype": "jira", "from": nil, "fromString": "OPS-952", "to": nil, "toString": "PLAT-7"},
	}}
	// PLAT is none of the connector's projects: the new key is not its
	// to record, and the reason says so.
	if e := deliver("PLAT-7", "PLAT", now, moved); e.Status != core.EventProcessed || e.Record != "change:OPS-952" || !strings.Contains(e.Reason, `then mapping profile "jira-change" not applied`) {
		t.Fatalf("moved: %s (%s) %s", e.Status, e.Reason, e.Record)
	}
	if c, _ := s.changeOf("OPS-952"); c.Approval != core.ApprovalCanceled || c.State != core.ChangeStateCanceled {
		t.Fatalf("after the move: approval %s, state %s; want canceled", c.Approval, c.State)
	}
}
