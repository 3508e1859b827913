package mapping_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/config/mappings"
	"github.com/tollgate-dev/tollgate/mapping"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.json from the current output")

func defaultSet(t testing.TB) *mapping.Set {
	t.Helper()
	ps, err := mapping.LoadDir(mappings.FS)
	if err != nil {
		t.Fatalf("load default profiles: %v", err)
	}
	return mapping.NewSet(ps...)
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit returns a copy of a fixture with JSON values set at dotted paths
// (objects are created on the way), to derive variants of real payloads.
func edit(t testing.TB, src []byte, set map[string]any) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	for p, v := range set {
		parts := strings.Split(p, ".")
		m := doc
		for _, k := range parts[:len(parts)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		if v == nil {
			delete(m, parts[len(parts)-1])
		} else {
			m[parts[len(parts)-1]] = v
		}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// flatten turns a ServiceNow Change Management API record ({display_value,
// value} pairs) into the Table API shape: plain values, and {link,value}
// for the given reference fields.
func flatten(t testing.TB, src []byte, refs ...string) []byte {
	t.Helper()
	var env struct {
		Result map[string]map[string]any `json:"result"`
	}
	if err := json.Unmarshal(src, &env); err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	for k, pair := range env.Result {
		v := pair["value"]
		if f, ok := v.(float64); ok {
			v = strconv.FormatFloat(f, 'f', -1, 64)
		}
		if b, ok := v.(bool); ok {
			v = map[bool]string{true: "true", false: "false"}[b]
		}
		out[k] = v
	}
	for _, r := range refs {
		out[r] = map[string]any{"link": "https://instance.servicenow.com/api/now/table/x/" + r, "value": out[r]}
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type goldenCase struct {
	name      string // golden file name (without .json); "" when no profile must match
	connector string
	event     string
	payload   func(t testing.TB) []byte
	profile   string // expected profile; "" means ignored (no match)
	wantErr   string // substring of an expected mapping error
}

func file(name string) func(testing.TB) []byte {
	return func(t testing.TB) []byte { return fixture(t, name) }
}

func goldenCases() []goldenCase {
	jiraAs := func(name, issueType string, extra map[string]any) func(testing.TB) []byte {
		return func(t testing.TB) []byte {
			set := map[string]any{"issue.fields.issuetype.name": issueType}
			for k, v := range extra {
				set[k] = v
			}
			return edit(t, fixture(t, name), set)
		}
	}
	return []goldenCase{
		// ServiceNow.
		{name: "servicenow.change.chg_rest", connector: "servicenow", event: "change_request", payload: file("servicenow/sn_chg_rest.get_change.response.json"), profile: "servicenow-change"},
		{name: "servicenow.change.list_envelope", connector: "servicenow", event: "change_request", payload: file("servicenow/sn_chg_rest.list_changes.response.json"), profile: "servicenow-change"},
		{name: "servicenow.change.table_api_flat", connector: "servicenow", event: "change_request", payload: func(t testing.TB) []byte {
			// The same change as the Table API sends it (no envelope), with
			// a CI reference and a planned window set.
			b := flatten(t, fixture(t, "servicenow/sn_chg_rest.get_change.response.json"), "cmdb_ci", "requested_by")
			return edit(t, b, map[string]any{"start_date": "2015-07-06 18:00:00", "end_date": "2015-07-06 19:00:00", "cmdb_ci": map[string]any{"link": "https://instance.servicenow.com/api/now/table/cmdb_ci/a9c0", "value": "a9c0c8d2c6112276018f7705562f9cb0"}})
		}, profile: "servicenow-change"},
		{name: "servicenow.incident.get", connector: "servicenow", event: "incident", payload: file("servicenow/table_api.get_incident.response.json"), profile: "servicenow-incident"},
		{name: "servicenow.incident.patch", connector: "servicenow", event: "incident", payload: file("servicenow/table_api.patch_incident.response.json"), profile: "servicenow-incident"},
		{name: "servicenow.incident.post", connector: "servicenow", event: "incident", payload: file("servicenow/table_api.post_incident.response.json"), profile: "servicenow-incident"},
		{name: "servicenow.incident.major_state", connector: "servicenow", event: "incident", payload: func(t testing.TB) []byte {
			return edit(t, fixture(t, "servicenow/table_api.get_incident.response.json"), map[string]any{"result.major_incident_state": "accepted", "result.state": "6", "result.resolved_at": "2015-11-03 10:00:00"})
		}, profile: "servicenow-incident"},
		{name: "servicenow.incident.ci_and_business_service", connector: "servicenow", event: "incident", payload: func(t testing.TB) []byte {
			// A major incident on a CI of a business service: both are
			// what it affects (a check for the business service waits).
			return edit(t, fixture(t, "servicenow/table_api.get_incident.response.json"), map[string]any{
				"result.cmdb_ci":          map[string]any{"display_value": "pay-db-prod-01", "value": "a9c0c8d2c6112276018f7705562f9cb0"},
				"result.business_service": map[string]any{"display_value": "Payments-API", "value": "27d32778c0a8000b00db970eeaa60f16"},
			})
		}, profile: "servicenow-incident"},
		{name: "servicenow.change.ci_and_business_service", connector: "servicenow", event: "change_request", payload: func(t testing.TB) []byte {
			return edit(t, fixture(t, "servicenow/sn_chg_rest.get_change.response.json"), map[string]any{
				"result.cmdb_ci":          map[string]any{"display_value": "pay-db-prod-01", "value": "a9c0c8d2c6112276018f7705562f9cb0"},
				"result.business_service": map[string]any{"display_value": "Payments-API", "value": "27d32778c0a8000b00db970eeaa60f16"},
			})
		}, profile: "servicenow-change"},
		{connector: "servicenow", event: "problem", payload: file("servicenow/table_api.get_problem_list.response.json")},
		{connector: "servicenow", event: "", payload: file("servicenow/sn_devops.get_changeInfo.response.json")},
		{connector: "servicenow", event: "", payload: file("servicenow/sn_devops.post_changeControl.response.json")},
		{name: "servicenow.change.jsonc", connector: "servicenow", event: "change_request", payload: file("servicenow/sn_chg_rest.get_change_nextstates.response.doc-verbatim.jsonc"), profile: "servicenow-change", wantErr: "not valid JSON"},

		// Jira: the captured issues are a Story and a Bug, which are
		// ignored; the same deliveries as a Change and an Incident map.
		{connector: "jira", event: "jira:issue_created", payload: file("jira/webhook.jira_issue_created.cloud.json")},
		{connector: "jira", event: "jira:issue_updated", payload: file("jira/webhook.jira_issue_updated.assigned.cloud.json")},
		{connector: "jira", event: "jira:issue_updated", payload: file("jira/webhook.jira_issue_updated.priority.cloud.json")},
		{connector: "jira", event: "jira:issue_updated", payload: file("jira/webhook.jira_issue_updated.resolved.server.json")},
		{connector: "jira", event: "jira:issue_updated", payload: file("jira/webhook.jira_issue_updated.status-resolved.cloud.json")},
		{connector: "jira", event: "jira:issue_updated", payload: file("jira/rest_api3_get_issue.response.json")},
		{connector: "jira", event: "", payload: file("jira/rest_api3_get_issue_changelog.response.json")},
		{connector: "jira", event: "", payload: file("jira/rest_api3_get_issue_transitions.response.json")},
		{name: "jira.change.created", connector: "jira", event: "jira:issue_created", payload: jiraAs("jira/webhook.jira_issue_created.cloud.json", "Change", map[string]any{
			"issue.fields.customfield_10005": map[string]any{"value": "Standard", "id": "10100"},
			"issue.fields.customfield_10006": map[string]any{"value": "Low"},
			"issue.fields.customfield_10007": "2019-02-16T09:00:00.000-0800",
			"issue.fields.customfield_10008": "2019-02-16T10:00:00.000-0800",
			"issue.fields.customfield_10011": "git revert; redeploy previous tag",
			"issue.fields.customfield_10027": []any{map[string]any{"id": "1", "name": "CAB", "finalDecision": "approved", "approvers": []any{
				map[string]any{"approver": map[string]any{"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Ana Lima"}, "approverDecision": "approved"},
				map[string]any{"approver": map[string]any{"displayName": "Bo Chen"}, "approverDecision": "pending"},
			}}},
		}), profile: "jira-change"},
		{name: "jira.change.deleted", connector: "jira", event: "jira:issue_deleted", payload: jiraAs("jira/webhook.jira_issue_updated.status-resolved.cloud.json", "Change", nil), profile: "jira-change-deleted"},
		{name: "jira.change.retyped", connector: "jira", event: "jira:issue_updated", payload: jiraAs("jira/webhook.jira_issue_updated.status-resolved.cloud.json", "Task", map[string]any{
			"changelog.items": []any{map[string]any{"field": "issuetype", "fieldtype": "jira", "fieldId": "issuetype", "from": "10005", "fromString": "Change", "to": "10002", "toString": "Task"}},
		}), profile: "jira-change-retyped"},
		// Moved to another project: the old key withdrawn.
		{name: "jira.change.moved", connector: "jira", event: "jira:issue_updated", payload: jiraAs("jira/webhook.jira_issue_updated.status-resolved.cloud.json", "Change", map[string]any{
			"issue.key": "CHG-5",
			"changelog.items": []any{
				map[string]any{"field": "project", "fieldtype": "jira", "from": "10000", "fromString": "Operations", "to": "10001", "toString": "Change Management"},
				map[string]any{"field": "Key", "fieldtype": "jira", "from": nil, "fromString": "OPS-12", "to": nil, "toString": "CHG-5"},
			},
		}), profile: "jira-change-moved"},
		// A task moved: no change's, nothing.
		{connector: "jira", event: "jira:issue_updated", payload: jiraAs("jira/webhook.jira_issue_updated.status-resolved.cloud.json", "Task", map[string]any{
			"changelog.items": []any{map[string]any{"field": "Key", "fieldtype": "jira", "fromString": "OPS-13", "toString": "DEV-9"}},
		})},
		// Retyped between two change types: still a change, jira-change's.
		{name: "jira.change.retyped_to_change", connector: "jira", event: "jira:issue_updated", payload: jiraAs("jira/webhook.jira_issue_updated.status-resolved.cloud.json", "Change Request", map[string]any{
			"changelog.items": []any{map[string]any{"field": "issuetype", "fieldtype": "jira", "fieldId": "issuetype", "from": "10005", "fromString": "Change", "to": "10006", "toString": "Change Request"}},
		}), profile: "jira-change"},
		// A task that never was a change: nothing.
		{connector: "jira", event: "jira:issue_updated", payload: jiraAs("jira/webhook.jira_issue_updated.status-resolved.cloud.json", "Task", nil)},
		{name: "jira.change.done", connector: "jira", event: "jira:issue_updated", payload: jiraAs("jira/webhook.jira_issue_updated.status-resolved.cloud.json", "Change", nil), profile: "jira-change"},
		{name: "jira.change.unknown_status", connector: "jira", event: "jira:issue_updated", payload: jiraAs("jira/webhook.jira_issue_updated.status-resolved.cloud.json", "Change", map[string]any{"issue.fields.status.name": "Waiting for Godot"}), profile: "jira-change", wantErr: "not in the map"},
		{name: "jira.incident.open", connector: "jira", event: "jira:issue_updated", payload: jiraAs("jira/webhook.jira_issue_updated.priority.cloud.json", "Incident", map[string]any{
			"issue.fields.customfield_10012": map[string]any{"value": "Major"},
			"issue.fields.issuelinks":        []any{map[string]any{"type": map[string]any{"name": "Fixes"}, "outwardIssue": map[string]any{"key": "OPS-7"}}, map[string]any{"type": map[string]any{"name": "Relates"}, "outwardIssue": map[string]any{"key": "OPS-8"}}},
		}), profile: "jira-incident"},
		{name: "jira.incident.resolved.server", connector: "jira", event: "jira:issue_updated", payload: jiraAs("jira/webhook.jira_issue_updated.resolved.server.json", "Incident", nil), profile: "jira-incident"},

		// GitHub.
		{name: "github.deployment.created", connector: "github", event: "deployment", payload: file("github/deployment.created.json"), profile: "github-deployment"},
		{name: "github.deployment_status.created", connector: "github", event: "deployment_status", payload: file("github/deployment_status.created.json"), profile: "github-deployment-status"},
		// Failed: queued with its finish (failed if it was seen running).
		{name: "github.deployment_status.failure", connector: "github", event: "deployment_status", payload: func(t testing.TB) []byte {
			return edit(t, fixture(t, "github/deployment_status.created.json"), map[string]any{"deployment_status.state": "failure"})
		}, profile: "github-deployment-status"},
		{connector: "github", event: "deployment_status", payload: func(t testing.TB) []byte {
			return edit(t, fixture(t, "github/deployment_status.created.json"), map[string]any{"deployment_status.state": "inactive"})
		}},
		{name: "github.workflow_run.completed", connector: "github", event: "workflow_run", payload: file("github/workflow_run.completed.json"), profile: "github-workflow-run"},
		{name: "github.workflow_run.requested", connector: "github", event: "workflow_run", payload: file("github/workflow_run.requested.json"), profile: "github-workflow-run"},
		{name: "github.workflow_job.queued.with-deployment", connector: "github", event: "workflow_job", payload: file("github/workflow_job.queued.with-deployment.json"), profile: "github-workflow-job"},
		// The same job rejected at its environment: completed, failed, no
		// runner ever took it. It deployed nothing: queued.
		{name: "github.workflow_job.rejected.with-deployment", connector: "github", event: "workflow_job", payload: func(t testing.TB) []byte {
			return edit(t, fixture(t, "github/workflow_job.queued.with-deployment.json"), map[string]any{
				"action": "completed", "workflow_job.status": "completed", "workflow_job.conclusion": "failure", "workflow_job.completed_at": "2023-04-19T21:40:00Z"})
		}, profile: "github-workflow-job"},
		// Ran: a runner took it.
		{name: "github.workflow_job.ran.with-deployment", connector: "github", event: "workflow_job", payload: func(t testing.TB) []byte {
			return edit(t, fixture(t, "github/workflow_job.queued.with-deployment.json"), map[string]any{
				"action": "in_progress", "workflow_job.status": "in_progress", "workflow_job.started_at": "2023-04-19T21:30:00Z", "workflow_job.runner_id": 7, "workflow_job.runner_name": "k8s-7"})
		}, profile: "github-workflow-job"},
		{connector: "github", event: "workflow_job", payload: file("github/workflow_job.completed.success.json")},
		{connector: "github", event: "workflow_job", payload: file("github/workflow_job.completed.failure.json")},
		{connector: "github", event: "workflow_job", payload: file("github/workflow_job.waiting.json")},
		{connector: "github", event: "push", payload: file("github/push.json")},
		{connector: "github", event: "release", payload: file("github/release.published.json")},
		{connector: "github", event: "check_suite", payload: file("github/check_suite.completed.json")},
		{connector: "github", event: "check_suite", payload: file("github/check_suite.requested.json")},

		// GitLab.
		{name: "gitlab.deployment", connector: "gitlab", event: "Deployment Hook", payload: file("gitlab/deployment_hook.json"), profile: "gitlab-deployment"},
		// Canceled: queued with its finish (failed if it was seen running).
		// As the poller synthesizes it for a deployment first seen finished:
		// started_at is the job's start, finished_at its last update.
		{name: "gitlab.deployment.polled_finished", connector: "gitlab", event: "Deployment Hook", payload: func(t testing.TB) []byte {
			return edit(t, fixture(t, "gitlab/deployment_hook.json"), map[string]any{"status": "success",
				"status_changed_at": "2021-04-28 21:55:00 +0200", "deployable_started_at": "2021-04-28T19:50:30Z"})
		}, profile: "gitlab-deployment"},
		{name: "gitlab.deployment.canceled", connector: "gitlab", event: "Deployment Hook", payload: func(t testing.TB) []byte {
			return edit(t, fixture(t, "gitlab/deployment_hook.json"), map[string]any{"status": "canceled"})
		}, profile: "gitlab-deployment"},
		{name: "gitlab.pipeline", connector: "gitlab", event: "Pipeline Hook", payload: file("gitlab/pipeline_hook.json"), profile: "gitlab-pipeline"},
		{name: "gitlab.job", connector: "gitlab", event: "Job Hook", payload: file("gitlab/job_hook.go-gitlab.json"), profile: "gitlab-job"},
		{name: "gitlab.job.jsonc", connector: "gitlab", event: "Job Hook", payload: file("gitlab/job_hook.doc-verbatim.jsonc"), profile: "gitlab-job", wantErr: "not valid JSON"},

		// Jenkins.
		{name: "jenkins.completed", connector: "jenkins", event: "COMPLETED", payload: file("jenkins/notification-plugin.job_completed.json"), profile: "jenkins-build"},
		{connector: "jenkins", event: "QUEUED", payload: file("jenkins/notification-plugin.job_completed.json")},

		// Generic: canonical JSON bodies.
		{name: "generic.deployment", connector: "generic", event: "", payload: file("generic/deployment.json"), profile: "generic-deployment"},
		{name: "generic.change", connector: "generic", event: "", payload: file("generic/change.json"), profile: "generic-change"},
		{name: "generic.incident", connector: "generic", event: "", payload: file("generic/incident.json"), profile: "generic-incident"},
		{name: "generic.deployment.bad_status", connector: "generic", event: "", payload: func(t testing.TB) []byte {
			return edit(t, fixture(t, "generic/deployment.json"), map[string]any{"status": "done", "started_at": "yesterday"})
		}, profile: "generic-deployment", wantErr: "is not one of"},
	}
}

func TestDefaultProfilesGolden(t *testing.T) {
	set := defaultSet(t)
	for _, tc := range goldenCases() {
		label := tc.name
		if label == "" {
			label = "ignored/" + tc.connector + "/" + tc.event
		}
		t.Run(label, func(t *testing.T) {
			payload := tc.payload(t)
			c, ok := set.Select(tc.connector, tc.event, payload)
			if tc.profile == "" {
				if ok {
					t.Fatalf("profile %s matches; want the event ignored", c.Name())
				}
				return
			}
			if !ok {
				t.Fatalf("no profile matches; want %s", tc.profile)
			}
			if c.Name() != tc.profile {
				t.Fatalf("profile %s matches; want %s", c.Name(), tc.profile)
			}
			res := c.Apply(payload)
			if tc.wantErr != "" {
				if !strings.Contains(errString(res), tc.wantErr) {
					t.Fatalf("errors %q; want one containing %q", errString(res), tc.wantErr)
				}
			} else if len(res.Errors) > 0 {
				t.Fatalf("mapping errors: %s", errString(res))
			}
			got, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "golden", tc.name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./mapping -run Golden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("result differs from %s (run with -update and review the diff):\n%s", path, got)
			}
		})
	}
}

func errString(r mapping.Result) string {
	var parts []string
	for _, e := range r.Errors {
		parts = append(parts, e.Error())
	}
	return strings.Join(parts, "; ")
}

// Every fixture file is used by a golden case, so each one is checked to map
// to its expected record, to be ignored, or (.jsonc) to be rejected.
func TestEveryFixtureIsCovered(t *testing.T) {
	covered := map[string]bool{}
	err := filepath.WalkDir(filepath.Join("testdata", "fixtures"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".json") || strings.HasSuffix(p, ".jsonc")) {
			return err
		}
		covered[p] = false
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Each fixture file is referenced by at least one golden case.
	src, err := os.ReadFile("golden_test.go")
	if err != nil {
		t.Fatal(err)
	}
	for p := range covered {
		rel := filepath.ToSlash(strings.TrimPrefix(p, filepath.Join("testdata", "fixtures")+string(filepath.Separator)))
		if !bytes.Contains(src, []byte(`"`+rel+`"`)) {
			t.Errorf("fixture %s is not used by any golden case", rel)
		}
	}
}
