package jira

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/internal/itsmfake"
)

const (
	testUser  = "ops-bot@example.com"
	testToken = "jira-api-token-5c1d"
)

func newClient(t *testing.T, fake *itsmfake.Server, mut func(*connectors.API)) *Client {
	t.Helper()
	api := connectors.API{URL: fake.URL, Username: testUser, Password: testToken, Timeout: 300 * time.Millisecond}
	if mut != nil {
		mut(&api)
	}
	hc := apiclient.New(apiclient.Options{Instance: "ops", Timeout: api.Timeout, RetryMax: 2,
		RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond, FailuresToOpen: 100})
	c, err := NewClient(connectors.Config{Name: "ops", Type: Type, API: &api, Projects: []string{"OPS"},
		ChangeCreation: &connectors.ChangeCreation{Environments: []string{"production"}, Project: "OPS", IssueType: "Change"}}, hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func issue(key, typ, status string, updated time.Time) map[string]any {
	return map[string]any{"key": key, "fields": map[string]any{
		"summary": "release " + key, "issuetype": map[string]any{"name": typ}, "status": map[string]any{"name": status},
		"components": []any{map[string]any{"name": "payments-api"}}, "updated": itsmfake.JiraTime(updated),
		"reporter": map[string]any{"displayName": "Riley Requester"},
	}}
}

func TestGetIssue(t *testing.T) {
	fake := itsmfake.New(testUser, testToken)
	defer fake.Close()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	fake.PutJiraIssue(issue("OPS-1", "Change", "Awaiting implementation", at))
	c := newClient(t, fake, nil)
	rec, err := c.ReadChange(context.Background(), "OPS-1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Type != EventType || rec.Key != "OPS-1" || !rec.UpdatedAt.Equal(at) || gjson.GetBytes(rec.Body, "issue.key").String() != "OPS-1" {
		t.Errorf("record %+v %s", rec, rec.Body)
	}
	if _, err := c.ReadChange(context.Background(), "OPS-404"); !errors.Is(err, connectors.ErrNotFound) {
		t.Errorf("absent issue: %v", err)
	}
	if !c.OwnsChange("OPS-12") || c.OwnsChange("DEV-12") || c.OwnsChange("CHG0000001") {
		t.Error("OwnsChange")
	}
}

// TestPollPages: the projects' issues updated since the watermark, oldest
// first, across pages.
func TestPollPages(t *testing.T) {
	fake := itsmfake.New(testUser, testToken)
	defer fake.Close()
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < pageSize+20; i++ {
		fake.PutJiraIssue(issue(fmt.Sprintf("OPS-%d", i), "Change", "Open", base.Add(time.Duration(i)*time.Minute)))
	}
	fake.PutJiraIssue(issue("DEV-1", "Change", "Open", base.Add(time.Hour)))
	c := newClient(t, fake, nil)
	var got []connectors.Record
	if err := c.Poll(context.Background(), base.Add(10*time.Minute), func(r connectors.Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != pageSize+10 {
		t.Fatalf("got %d issues, want %d", len(got), pageSize+10)
	}
	for i := 1; i < len(got); i++ {
		if got[i].UpdatedAt.Before(got[i-1].UpdatedAt) {
			t.Fatalf("not oldest first at %d", i)
		}
	}
	// The second page is asked from the minute of the newest issue the
	// first read (00:10 + 99 minutes), not by startAt into the first
	// listing.
	calls := fake.Calls("/rest/api/2/search")
	if len(calls) != 2 || !strings.Contains(calls[0].Query, `project in ("OPS") AND updated >= "2026/12/01 00:10" ORDER BY updated ASC, key ASC`) ||
		!strings.Contains(calls[1].Query, `updated >= "2026/12/01 01:49"`) || !strings.Contains(calls[1].Query, "startAt=0") {
		t.Errorf("calls %+v", calls)
	}
}

// TestPollWhileIssuesMove: issues updated while a poll reads its pages
// move to the end of the listing; every other issue is still read (with
// a plain startAt, the one at each page's boundary was skipped, and the
// watermark passed it for good), on Data Center and Cloud alike.
func TestPollWhileIssuesMove(t *testing.T) {
	for _, cloud := range []bool{false, true} {
		t.Run(fmt.Sprintf("cloud=%v", cloud), func(t *testing.T) {
			fake := itsmfake.New(testUser, testToken)
			defer fake.Close()
			base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			const n = 3*pageSize + 50
			for i := range n {
				// Three issues a minute: ties broken by key.
				fake.PutJiraIssue(issue(fmt.Sprintf("OPS-%d", i), "Change", "Open", base.Add(time.Duration(i)*20*time.Second)))
			}
			moved := 0
			fake.AfterEach(func(call itsmfake.Call) {
				if !strings.HasPrefix(call.Path, "/rest/api/2/search") {
					return
				}
				for range 2 { // the oldest two issues read so far are updated
					moved++
					fake.PutJiraIssue(issue(fmt.Sprintf("OPS-%d", moved-1), "Change", "Open", base.Add(24*time.Hour+time.Duration(moved)*time.Second)))
				}
			})
			c := newClient(t, fake, nil)
			c.cloud = cloud
			got := map[string]int{}
			if err := c.Poll(context.Background(), base, func(r connectors.Record) error { got[r.Key]++; return nil }); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if key := fmt.Sprintf("OPS-%d", i); got[key] == 0 {
					t.Errorf("%s never read", key)
				}
			}
		})
	}
}

// TestPollInTheUsersZone: Jira reads JQL dates in the API user's profile
// time zone, so the poller writes the watermark in it: a user on
// America/New_York gets 19:10 of the day before for 00:10 UTC, and no
// update of the five hours between is skipped.
func TestPollInTheUsersZone(t *testing.T) {
	fake := itsmfake.New(testUser, testToken)
	defer fake.Close()
	fake.SetJiraUserZone("America/New_York")
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		fake.PutJiraIssue(issue(fmt.Sprintf("OPS-%d", i), "Change", "Open", base.Add(time.Duration(i)*time.Hour)))
	}
	c := newClient(t, fake, nil)
	var got []connectors.Record
	if err := c.Poll(context.Background(), base.Add(2*time.Hour), func(r connectors.Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d issues, want the 3 updated since 02:00 UTC", len(got))
	}
	calls := fake.Calls("/rest/api/2/search")
	if len(calls) != 1 || !strings.Contains(calls[0].Query, `updated >= "2026/11/30 21:00"`) {
		t.Errorf("calls %+v, want the watermark in New York time", calls)
	}
}

// TestPollPagesCloud: on Jira Cloud the poller pages the enhanced search
// by nextPageToken while the listing stays in one minute (a JQL date
// cannot ask from within it).
func TestPollPagesCloud(t *testing.T) {
	fake := itsmfake.New(testUser, testToken)
	defer fake.Close()
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < pageSize+5; i++ {
		fake.PutJiraIssue(issue(fmt.Sprintf("OPS-%d", i), "Change", "Open", base.Add(time.Duration(i)*100*time.Millisecond)))
	}
	c := newClient(t, fake, nil)
	c.cloud = true
	n := 0
	if err := c.Poll(context.Background(), base, func(connectors.Record) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	calls := fake.Calls("/rest/api/2/search/jql")
	if n != pageSize+5 || len(calls) != 2 || !strings.Contains(calls[1].Query, "nextPageToken=100") {
		t.Errorf("%d issues, calls %+v", n, calls)
	}
	if len(fake.Calls("/rest/api/2/search?")) != 0 {
		t.Error("Cloud used the retired /search")
	}
	if got, err := c.FindCreated(context.Background(), "rel-none"); !errors.Is(err, connectors.ErrNotFound) {
		t.Errorf("FindCreated = %q, %v", got, err)
	}
}

func TestAuthModes(t *testing.T) {
	fake := itsmfake.New(testUser, testToken)
	defer fake.Close()
	fake.AddToken("pat-123")
	fake.PutJiraIssue(issue("OPS-1", "Change", "Open", time.Now()))
	for _, mut := range []func(*connectors.API){nil, func(a *connectors.API) { a.Username, a.Password, a.Token = "", "", "pat-123" }} {
		if _, err := newClient(t, fake, mut).GetIssue(context.Background(), "OPS-1"); err != nil {
			t.Fatal(err)
		}
	}
	calls := fake.Calls("/rest/api/2/issue/OPS-1")
	if len(calls) != 2 || calls[0].User != testUser || calls[1].User != "bearer" {
		t.Errorf("calls %+v", calls)
	}
	// A wrong token: one call, a 401 named, no secret in the error.
	_, err := newClient(t, fake, func(a *connectors.API) { a.Password = "wrong-token-xyz" }).GetIssue(context.Background(), "OPS-1")
	var se *apiclient.StatusError
	if !errors.As(err, &se) || se.Status != 401 || strings.Contains(err.Error(), "wrong-token-xyz") {
		t.Errorf("401: %v", err)
	}
}

func TestJiraFaults(t *testing.T) {
	tests := []struct {
		name    string
		fault   itsmfake.Fault
		wantErr string
	}{
		{"429 then ok", itsmfake.Fault{Status: 429, RetryAfter: "0"}, ""},
		{"500 always", itsmfake.Fault{Status: 500, Times: 10}, "Jira ops: issue OPS-1: HTTP 500"},
		{"slow past timeout", itsmfake.Fault{Slow: time.Second, Times: 10}, "Jira ops: issue OPS-1"},
		{"malformed JSON", itsmfake.Fault{Malformed: true}, "not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := itsmfake.New(testUser, testToken)
			defer fake.Close()
			fake.PutJiraIssue(issue("OPS-1", "Change", "Open", time.Now()))
			tc.fault.Match = "OPS-1"
			fake.Inject(tc.fault)
			_, err := newClient(t, fake, nil).GetIssue(context.Background(), "OPS-1")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestEnrichApprovals: a change issue gets its JSM approvers.
func TestEnrichApprovals(t *testing.T) {
	fake := itsmfake.New(testUser, testToken)
	defer fake.Close()
	fake.PutJiraIssue(issue("OPS-7", "Change", "Awaiting implementation", time.Now()))
	fake.PutJSMApprovals("OPS-7", []map[string]any{{"finalDecision": "approved", "completedDate": map[string]any{"iso8601": "2026-12-01T10:00:00+0000"},
		"approvers": []any{map[string]any{"approver": map[string]any{"displayName": "dana.ops", "accountId": "a1"}, "approverDecision": "approved"}}}})
	c := newClient(t, fake, nil)
	rec, err := c.GetIssue(context.Background(), "OPS-7")
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Enrich(context.Background(), rec.Type, rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := gjson.GetBytes(out, "issue."+ApprovalsMember+".0")
	if a.Get("approver.displayName").String() != "dana.ops" || a.Get("approverDecision").String() != "approved" || a.Get("completedDate").String() == "" {
		t.Errorf("approvals: %s", out)
	}
	// An incident is not enriched (no call).
	fake.ResetCalls()
	inc := []byte(`{"webhookEvent":"jira:issue_updated","issue":{"key":"OPS-8","fields":{"issuetype":{"name":"Incident"}}}}`)
	if out, err := c.Enrich(context.Background(), EventType, inc); err != nil || string(out) != string(inc) || len(fake.Calls("")) != 0 {
		t.Errorf("incident enriched: %s %v", out, err)
	}
}

func TestCreateAndFind(t *testing.T) {
	fake := itsmfake.New(testUser, testToken)
	defer fake.Close()
	c := newClient(t, fake, nil)
	n := connectors.NewChange{ReleaseID: "rel-9", Service: "payments-api", Environment: "production", Version: "2.0.0", Commit: "9fceb02", RunURL: "https://ci/runs/1"}
	key, err := c.CreateChange(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, "OPS-") {
		t.Errorf("key %q", key)
	}
	if got, err := c.FindCreated(context.Background(), "rel-9"); err != nil || got != key {
		t.Errorf("FindCreated = %q, %v", got, err)
	}
	if _, err := c.FindCreated(context.Background(), "rel-10"); !errors.Is(err, connectors.ErrNotFound) {
		t.Errorf("FindCreated of another release: %v", err)
	}
	if err := c.AddWorkNote(context.Background(), key, "deployment started"); err != nil {
		t.Fatal(err)
	}
	if got := fake.JiraComments(key); len(got) != 1 || got[0] != "deployment started" {
		t.Errorf("comments %v", got)
	}
}

// TestCreateJSMRequest: with service_desk_id and request_type_id the
// change is a JSM request, found again by its label.
func TestCreateJSMRequest(t *testing.T) {
	fake := itsmfake.New(testUser, testToken)
	defer fake.Close()
	c := newClient(t, fake, nil)
	c.creation = &connectors.ChangeCreation{Environments: []string{"production"}, ServiceDeskID: "1", RequestTypeID: "10"}
	key, err := c.CreateChange(context.Background(), connectors.NewChange{ReleaseID: "rel-7", Service: "payments-api", Version: "1.0.0", Environment: "production"})
	if err != nil {
		t.Fatal(err)
	}
	calls := fake.Calls("/rest/servicedeskapi/request")
	if len(calls) != 1 || !strings.Contains(calls[0].Body, `"serviceDeskId":"1"`) || !strings.Contains(calls[0].Body, "payments-api 1.0.0") {
		t.Fatalf("calls %+v", calls)
	}
	if got, err := c.FindCreated(context.Background(), "rel-7"); err != nil || got != key {
		t.Errorf("FindCreated = %q, %v; want %q", got, err, key)
	}
	// A refusal carries Jira's own words.
	fake.Inject(itsmfake.Fault{Match: "servicedeskapi/request", Status: 400})
	if _, err := c.CreateChange(context.Background(), connectors.NewChange{ReleaseID: "rel-8"}); err == nil || !strings.Contains(err.Error(), "HTTP 400: Bad Request") {
		t.Errorf("refusal: %v", err)
	}
}

// TestHasWorkNote: the outbox's look before commenting again finds a
// comment by its exact text, and nothing else.
func TestHasWorkNote(t *testing.T) {
	fake := healthySite()
	defer fake.Close()
	c := newClient(t, fake, nil)
	ctx := context.Background()
	// The actor is the pipeline's: its mention, link and image are
	// written as text, and the note is still found as written.
	note := "tollgate: deployment of payments-api 2.0.0 to production started\nRun: https://ci/runs/1\nActor: [~accountid:5b10] approve [here|https://evil/a] !https://evil/p.png!"
	if ok, err := c.HasWorkNote(ctx, "OPS-1", note); err != nil || ok {
		t.Fatalf("before the comment: %v, %v", ok, err)
	}
	if err := c.AddWorkNote(ctx, "OPS-1", note); err != nil {
		t.Fatal(err)
	}
	posts := 0
	for _, call := range fake.Calls("/rest/api/2/issue/OPS-1/comment") {
		if call.Method == "POST" {
			posts++
		}
		if call.Method == "POST" && (!strings.Contains(call.Body, `\\[~accountid`) || strings.Contains(call.Body, `approve [here`) || !strings.Contains(call.Body, `\\!https://evil`)) {
			t.Errorf("comment written with live markup: %s", call.Body)
		}
	}
	if posts != 1 {
		t.Fatalf("%d comments posted, want 1", posts)
	}
	// A note a build before the escaping wrote as it was: a retry across
	// the upgrade finds it rather than writing it again.
	older := "[EMERGENCY] tollgate: deployment of payments-api 2.0.1 to production started"
	req, _ := http.NewRequest("POST", fake.URL+"/rest/api/2/issue/OPS-1/comment", strings.NewReader(`{"body":`+strconv.Quote(older)+`}`))
	req.SetBasicAuth(testUser, testToken)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode >= 300 {
		t.Fatalf("an older build's comment: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if ok, err := c.HasWorkNote(ctx, "OPS-1", older); err != nil || !ok {
		t.Errorf("the note an older build wrote unescaped: %v, %v", ok, err)
	}
	if ok, err := c.HasWorkNote(ctx, "OPS-1", note); err != nil || !ok {
		t.Errorf("after the comment: %v, %v", ok, err)
	}
	if ok, err := c.HasWorkNote(ctx, "OPS-1", "tollgate: deployment of payments-api 2.0.0 to production succeeded"); err != nil || ok {
		t.Errorf("another note: %v, %v", ok, err)
	}
}

// TestPollCloudBusyMinute: on Jira Cloud a minute with many issues (a bulk
// transition) is read page after page by token, in as many calls as
// pages: a continued page starts after the last one, so its new first
// issue is no sign of a shift to read the minute again from its start.
func TestPollCloudBusyMinute(t *testing.T) {
	fake := itsmfake.New(testUser, testToken)
	defer fake.Close()
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	const n = 12*pageSize + 30
	for i := range n {
		fake.PutJiraIssue(issue(fmt.Sprintf("OPS-%d", i), "Change", "Open", base.Add(time.Duration(i)*time.Millisecond)))
	}
	c := newClient(t, fake, nil)
	c.cloud = true
	got := map[string]bool{}
	if err := c.Poll(context.Background(), base, func(r connectors.Record) error { got[r.Key] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	calls := fake.Calls("/rest/api/2/search/jql")
	if len(got) != n || len(calls) > 14 {
		t.Fatalf("%d of %d issues in %d calls, want all in about one call a page", len(got), n, len(calls))
	}
}
