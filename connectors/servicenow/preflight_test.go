package servicenow

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
	"github.com/tollgate-dev/tollgate/internal/itsmfake"
)

// finding is what a test expects of one preflight finding: its check,
// its status and a part of its detail.
type finding struct {
	check  string
	status connectors.Status
	detail string
}

const (
	statusOK   = connectors.StatusOK
	statusWarn = connectors.StatusWarn
	statusFail = connectors.StatusFail
)

// allGood is the preflight of a healthy instance with normal change
// creation and write-back.
var allGood = []finding{
	{TableChange, statusOK, "read"},
	{TableIncident, statusOK, "read"},
	{tableApproval, statusOK, "read"},
	{"change creation", statusOK, "normal changes"},
	{tableJournal, statusOK, "read"},
}

// but is allGood with finding i replaced by f.
func but(i int, f finding) []finding {
	out := append([]finding(nil), allGood...)
	out[i] = f
	return out
}

func preflightInstance() *itsmfake.Server {
	fake := itsmfake.New(testUser, testPW)
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	fake.PutSN(TableChange, change("CHG0000101", at))
	fake.PutSN(TableIncident, incident("INC0000101", at))
	fake.PutSN(tableApproval, map[string]any{"state": pair("approved")})
	fake.PutSN(tableTemplate, map[string]any{"name": "Restart web tier", "active": "true"})
	fake.AddOAuthClient("cid", "csecret-91")
	return fake
}

func TestPreflight(t *testing.T) {
	forbid := func(table string) func(*itsmfake.Server, *Client) {
		return func(f *itsmfake.Server, _ *Client) {
			f.Inject(itsmfake.Fault{Match: "/api/now/table/" + table + "?", Status: http.StatusForbidden, Times: 10})
		}
	}
	standard := func(template string) func(*itsmfake.Server, *Client) {
		return func(_ *itsmfake.Server, c *Client) {
			c.creation = &connectors.ChangeCreation{Environments: []string{"production"}, Type: "standard", Template: template}
		}
	}
	tests := []struct {
		name  string
		api   func(*connectors.API)
		setup func(*itsmfake.Server, *Client)
		want  []finding
	}{
		{name: "all good", want: allGood},
		{name: "all good with OAuth", api: func(a *connectors.API) {
			a.Username, a.Password, a.ClientID, a.ClientSecret = "", "", "cid", "csecret-91"
		}, want: allGood},
		{name: "nothing configured beyond the poll", setup: func(_ *itsmfake.Server, c *Client) { c.creation, c.writeBack = nil, false },
			want: allGood[:3]},
		{name: "password refused", api: func(a *connectors.API) { a.Password = "wrong-password-77" },
			want: []finding{{TableChange, statusFail, `credentials refused (ServiceNow acme: change_request: HTTP 401: User Not Authenticated (Required to provide Auth information)): check the user "tollgate.api"`}}},
		{name: "OAuth client refused", api: func(a *connectors.API) {
			a.Username, a.Password, a.ClientID, a.ClientSecret = "", "", "cid", "wrong-secret-12"
		}, want: []finding{{TableChange, statusFail, "oauth token: HTTP 401): check the OAuth client id and secret"}}},
		{name: "instance unreachable", setup: func(f *itsmfake.Server, _ *Client) { f.Close() },
			want: []finding{{TableChange, statusFail, "ServiceNow acme: change_request: "}}},
		{name: "change_request forbidden", setup: forbid(TableChange),
			want: but(0, finding{TableChange, statusFail, "the user may not read change_request: the poller and the gate's read-back fail"})},
		{name: "incident forbidden", setup: forbid(TableIncident),
			want: but(1, finding{TableIncident, statusFail, "the poll reads both tables and stops at one it may not read"})},
		{name: "approvers forbidden", setup: forbid(tableApproval),
			want: but(2, finding{tableApproval, statusFail, "every change (webhook and poll alike) is then quarantined"})},
		{name: "work notes forbidden", setup: forbid(tableJournal),
			want: but(4, finding{tableJournal, statusWarn, "a work note whose first write failed"})},
		{name: "a 500 on the approvers leaves the others running", setup: func(f *itsmfake.Server, _ *Client) {
			f.Inject(itsmfake.Fault{Match: "/api/now/table/" + tableApproval + "?", Status: http.StatusInternalServerError, Times: 10})
		}, want: but(2, finding{tableApproval, statusFail, "ServiceNow acme: sysapproval_approver: HTTP 500"})},
		{name: "work notes unanswered", setup: func(f *itsmfake.Server, _ *Client) {
			f.Inject(itsmfake.Fault{Match: "/api/now/table/" + tableJournal + "?", Slow: time.Second, Times: 10})
		}, want: but(4, finding{tableJournal, statusWarn, "ServiceNow acme: sys_journal_field: "})},
		{name: "standard template by name", setup: standard("Restart web tier"),
			want: but(3, finding{"change creation", statusOK, `standard change template "Restart web tier" (sys_id `})},
		{name: "standard template by sys_id", setup: func(f *itsmfake.Server, c *Client) {
			id := f.PutSN(tableTemplate, map[string]any{"sys_id": "0123456789abcdef0123456789abcdef", "name": "Patch", "active": "true"})
			standard(id)(f, c)
		}, want: but(3, finding{"change creation", statusOK, "standard change template 0123456789abcdef0123456789abcdef found"})},
		{name: "standard template unknown", setup: standard("No such template"),
			want: but(3, finding{"change creation", statusFail, `no active standard change template "No such template" in std_change_record_producer`})},
		{name: "standard template sys_id unknown", setup: standard("fedcba9876543210fedcba9876543210"),
			want: but(3, finding{"change creation", statusFail, `no active standard change template "fedcba9876543210fedcba9876543210"`})},
		{name: "standard template inactive", setup: func(f *itsmfake.Server, c *Client) {
			id := f.PutSN(tableTemplate, map[string]any{"sys_id": "00000000000000000000000000000abc", "name": "Old", "active": "false"})
			standard(id)(f, c)
		}, want: but(3, finding{"change creation", statusFail, "is inactive"})},
		{name: "template table forbidden", setup: func(f *itsmfake.Server, c *Client) {
			forbid(tableTemplate)(f, c)
			standard("Restart web tier")(f, c)
		}, want: but(3, finding{"change creation", statusFail, "the user may not read std_change_record_producer"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := preflightInstance()
			defer fake.Close()
			c := newClient(t, fake, tc.api)
			c.writeBack = true
			if tc.setup != nil {
				tc.setup(fake, c)
			}
			got := c.Preflight(context.Background(), connectors.PreflightInput{Name: "acme"})
			checkFindings(t, got, tc.want)
			checkReadOnly(t, fake)
		})
	}
}

// TestPreflightNoRecordVisible: a table that answers with no record (empty,
// or its rows hidden by ACLs) is a warning for the tables the poller reads.
func TestPreflightNoRecordVisible(t *testing.T) {
	fake := itsmfake.New(testUser, testPW)
	defer fake.Close()
	fake.PutSN(TableChange, change("CHG0000101", time.Now()))
	c := newClient(t, fake, nil)
	c.creation = nil
	got := c.Preflight(context.Background(), connectors.PreflightInput{Name: "acme"})
	checkFindings(t, got, []finding{
		{TableChange, statusOK, "read"},
		{TableIncident, statusWarn, "no record is visible to the user: the table is empty, or ACLs hide its rows"},
		{tableApproval, statusOK, "read"},
	})
}

// checkFindings compares the findings with want, in order, and checks
// that no detail holds a secret.
func checkFindings(t *testing.T, got []connectors.Finding, want []finding) {
	t.Helper()
	ws := make([]hooktest.Want, len(want))
	for i, w := range want {
		ws[i] = hooktest.Want{Check: w.check, Status: w.status, Detail: w.detail}
	}
	hooktest.CheckFindings(t, got, ws, testPW, "csecret-91", "wrong-password-77", "wrong-secret-12")
}

// checkReadOnly fails the test if the preflight sent anything but GETs
// (and the OAuth token grant) or read more than one record at a time.
func checkReadOnly(t *testing.T, fake *itsmfake.Server) {
	t.Helper()
	for _, call := range fake.Calls("") {
		switch {
		case call.Path == "/oauth_token.do" && call.Method == http.MethodPost:
		case call.Method != http.MethodGet:
			t.Errorf("the preflight wrote: %s %s", call.Method, call.Path)
		case strings.HasPrefix(call.Path, "/api/now/table/") && strings.Count(call.Path, "/") == 4 && !strings.Contains(call.Query, "sysparm_limit=1"):
			t.Errorf("a list read without sysparm_limit=1: %s?%s", call.Path, call.Query)
		}
	}
}
