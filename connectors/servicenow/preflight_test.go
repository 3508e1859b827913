package servicenow

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
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
// creation and write-back, whose business rules send changes and
// incidents to /webhooks/acme by a REST message.
var allGood = []finding{
	{TableChange, statusOK, "read"},
	{TableIncident, statusOK, "read"},
	{tableApproval, statusOK, "read"},
	{"change creation", statusOK, "normal changes"},
	{tableJournal, statusOK, "read"},
	{"outbound change_request", statusOK, `business rule "Tollgate: send changes" (after, on insert and update) sends to /webhooks/acme by REST message "Tollgate"`},
	{"outbound incident", statusOK, `business rule "Tollgate: send incidents" (async, on insert and update) sends to /webhooks/acme by REST message "Tollgate"`},
}

// withOutbound is allGood with the outbound findings fs instead of its
// own.
func withOutbound(fs ...finding) []finding {
	return append(append([]finding(nil), allGood[:5]...), fs...)
}

// sys_ids of preflightInstance's outbound records, to change them.
const (
	snMessageID    = "0000000000000000000000000000m5g1"
	snMethodID     = "0000000000000000000000000000f0n1"
	snRuleChange   = "0000000000000000000000000000r0c1"
	snRuleIncident = "0000000000000000000000000000r0i1"
)

// restScript is a business rule's script calling the REST message
// message (method post).
func restScript(message string) string {
	return "(function executeRule(current, previous /*null when async*/) {\n" +
		"\tvar r = new sn_ws.RESTMessageV2('" + message + "', 'post');\n" +
		"\tr.setRequestBody(new global.JSON().encode(new GlideRecordUtil().getFields(current)));\n" +
		"\tr.executeAsync();\n})(current, previous);"
}

// endpointScript is a business rule's script setting the URL itself.
func endpointScript(url string) string {
	return "(function executeRule(current, previous) {\n\tvar r = new sn_ws.RESTMessageV2();\n" +
		"\tr.setHttpMethod('post');\n\tr.setEndpoint('" + url + "');\n" +
		"\tr.setRequestBody(JSON.stringify({result: current}));\n\tr.execute();\n})(current, previous);"
}

// rule is a business rule record.
func rule(id, name, table, when, insert, update, script string) map[string]any {
	return map[string]any{"sys_id": id, "name": name, "collection": table, "active": "true", "when": when,
		"action_insert": insert, "action_update": update, "action_delete": "false", "script": script}
}

// putOutbound adds a healthy outbound side: the REST message "Tollgate"
// (method post) at /webhooks/acme, called by an after rule on
// change_request and an async rule on incident, and rules that do not
// send there.
func putOutbound(fake *itsmfake.Server) {
	fake.PutSN(tableRESTMessage, map[string]any{"sys_id": snMessageID, "name": "Tollgate",
		"rest_endpoint": "https://tollgate.example.com/webhooks/acme"})
	fake.PutSN(tableRESTMethod, map[string]any{"sys_id": snMethodID, "function_name": "post", "http_method": "POST",
		"rest_endpoint": "", "rest_message": map[string]any{"display_value": "Tollgate", "value": snMessageID}})
	fake.PutSN(tableRESTMessage, map[string]any{"name": "PagerDuty", "rest_endpoint": "https://events.pagerduty.com/v2/enqueue"})
	fake.PutSN(tableRule, rule(snRuleChange, "Tollgate: send changes", TableChange, "after", "true", "true", restScript("Tollgate")))
	fake.PutSN(tableRule, rule(snRuleIncident, "Tollgate: send incidents", TableIncident, "async", "true", "true", restScript("Tollgate")))
	// Rules that do not count: another table's, an inactive one, one
	// that does not send, one naming tollgate only in a comment.
	fake.PutSN(tableRule, rule("", "Problem to tollgate", "problem", "after", "true", "true", restScript("Tollgate")))
	old := rule("", "Old tollgate rule", TableChange, "after", "true", "true", restScript("Tollgate"))
	old["active"] = "false"
	fake.PutSN(tableRule, old)
	fake.PutSN(tableRule, rule("", "Set risk", TableChange, "before", "true", "true", "current.risk = 3;"))
	fake.PutSN(tableRule, rule("", "Audit", TableIncident, "after", "true", "true", "// tollgate reads this table too\ngs.info(current.number);"))
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
	putOutbound(fake)
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
			want: append(append([]finding(nil), allGood[:3]...), allGood[5:]...)},
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

// TestPreflightOutbound: the business rules and REST messages that send
// the instance's deliveries to /webhooks/acme. The other findings stay
// as they are whatever the outbound check finds, and it never fails.
func TestPreflightOutbound(t *testing.T) {
	set := func(table, id string, fields map[string]any) func(*itsmfake.Server, *Client) {
		return func(f *itsmfake.Server, _ *Client) {
			var rec map[string]any
			for _, r := range f.SNRecords(table) {
				if r["sys_id"] == id {
					rec = r
				}
			}
			for k, v := range fields {
				rec[k] = v
			}
			f.PutSN(table, rec)
		}
	}
	both := func(steps ...func(*itsmfake.Server, *Client)) func(*itsmfake.Server, *Client) {
		return func(f *itsmfake.Server, c *Client) {
			for _, s := range steps {
				s(f, c)
			}
		}
	}
	polled := func(_ *itsmfake.Server, c *Client) { c.api.PollInterval = 5 * time.Minute }
	elsewhere := both(
		set(tableRESTMessage, snMessageID, map[string]any{"rest_endpoint": "https://tollgate.example.com/webhooks/acme-other"}),
		set(tableRESTMethod, snMethodID, map[string]any{"rest_endpoint": "https://tollgate.example.com/webhooks/acme-other?token=s3cr3t-hook"}))
	tests := []struct {
		name   string
		events []string
		setup  func(*itsmfake.Server, *Client)
		want   []finding
	}{
		{name: "a rule and a message pointing here", want: allGood},
		{name: "the message's host a variable", setup: set(tableRESTMessage, snMessageID,
			map[string]any{"rest_endpoint": "https://${tollgate_host}/webhooks/acme/"}), want: allGood},
		{name: "only a method's endpoint points here", setup: both(
			set(tableRESTMessage, snMessageID, map[string]any{"rest_endpoint": "https://${host}/api"}),
			set(tableRESTMethod, snMethodID, map[string]any{"rest_endpoint": "${base}/webhooks/acme"})), want: allGood},
		{name: "a rule running before", setup: set(tableRule, snRuleChange, map[string]any{"when": "before"}),
			want: withOutbound(
				finding{"outbound change_request", statusWarn, `business rule "Tollgate: send changes" (before, on insert and update) sends to /webhooks/acme by REST message "Tollgate", ` +
					`but it runs before the record is saved: make it run after (or async)`},
				allGood[6])},
		{name: "a rule running on display", setup: set(tableRule, snRuleIncident, map[string]any{"when": "display"}),
			want: withOutbound(allGood[5],
				finding{"outbound incident", statusWarn, `, but it runs on display (when a form is shown), not when an incident is saved`})},
		{name: "a rule firing on update only", setup: set(tableRule, snRuleChange, map[string]any{"action_insert": "false"}),
			want: withOutbound(
				finding{"outbound change_request", statusWarn, `(after, on update) sends to /webhooks/acme by REST message "Tollgate", but fires on update only: ` +
					`a new change reaches tollgate at its first update, or when a gate check reads it back (nothing polls: api.poll_interval is not set); tick Insert too`},
				allGood[6])},
		{name: "a rule firing on update only, with the poll", setup: both(polled, set(tableRule, snRuleChange, map[string]any{"action_insert": "false"})),
			want: withOutbound(
				finding{"outbound change_request", statusWarn, "but fires on update only: a new change reaches tollgate at its first update, or by polling (every 5m, api.poll_interval); tick Insert too"},
				allGood[6])},
		{name: "a rule firing on insert only", setup: set(tableRule, snRuleIncident, map[string]any{"action_update": "false"}),
			want: withOutbound(allGood[5],
				finding{"outbound incident", statusWarn, "but fires on insert only: an incident's later updates never reach tollgate (nothing polls: api.poll_interval is not set); tick Update too"})},
		{name: "a rule before and another after cover the table", setup: func(f *itsmfake.Server, c *Client) {
			f.PutSN(tableRule, rule("", "Tollgate early", TableChange, "before", "true", "false", restScript("Tollgate")))
		}, want: withOutbound(
			finding{"outbound change_request", statusWarn, `business rule "Tollgate early" (before, on insert) sends to /webhooks/acme by REST message "Tollgate"; ` +
				`business rule "Tollgate: send changes" (after, on insert and update) sends to /webhooks/acme by REST message "Tollgate", but "Tollgate early" runs before`},
			allGood[6])},
		{name: "no rule on incident but one on change_request", setup: set(tableRule, snRuleIncident, map[string]any{"active": "false"}),
			want: withOutbound(allGood[5],
				finding{"outbound incident", statusWarn, "no active business rule on incident sends to /webhooks/acme: incidents never reach tollgate (nothing polls: api.poll_interval is not set); " +
					`add an after (or async) business rule on insert and update calling the REST message "Tollgate"`})},
		{name: "no rule on change_request, with the poll", setup: both(polled, set(tableRule, snRuleChange, map[string]any{"collection": "change_task"})),
			want: withOutbound(
				finding{"outbound change_request", statusWarn, "no active business rule on change_request sends to /webhooks/acme: changes reach tollgate only by polling (every 5m, api.poll_interval)"},
				allGood[6])},
		{name: "one rule on task covers both tables", setup: both(
			set(tableRule, snRuleChange, map[string]any{"collection": "task", "name": "Tollgate: send tasks"}),
			set(tableRule, snRuleIncident, map[string]any{"active": "false"})),
			want: withOutbound(
				finding{"outbound change_request", statusOK, `business rule "Tollgate: send tasks" on task, which runs for every kind of task unless its condition says otherwise (change_request among them), ` +
					`(after, on insert and update) sends to /webhooks/acme by REST message "Tollgate"`},
				finding{"outbound incident", statusOK, `business rule "Tollgate: send tasks" on task, which runs for every kind of task unless its condition says otherwise (incident among them),`})},
		{name: "a message pointing at another connector's path only", setup: elsewhere,
			want: withOutbound(finding{"outbound", statusWarn, "no REST message and no active business rule on change_request or incident points at /webhooks/acme: " +
				"changes reach tollgate only when a gate check reads one back, and incidents never reach tollgate (nothing polls: api.poll_interval is not set); " +
				`create a REST message with the endpoint https://<tollgate>/webhooks/acme and, on each table, an after (or async) business rule on insert and update that calls it ` +
				`(a rule that takes the URL from elsewhere, e.g. a system property, or rows ACLs hide from the user, are not seen); ` +
				`found instead: REST message "Tollgate" → /webhooks/acme-other, REST message "Tollgate" method "post" → /webhooks/acme-other`})},
		{name: "rules setting the URL in their script", setup: both(elsewhere,
			set(tableRule, snRuleChange, map[string]any{"script": endpointScript("https://tollgate.example.com/webhooks/acme")}),
			set(tableRule, snRuleIncident, map[string]any{"script": endpointScript("https://tollgate.example.com/webhooks/acme?via=incident")})),
			want: withOutbound(
				finding{"outbound change_request", statusOK, `business rule "Tollgate: send changes" (after, on insert and update) sends to /webhooks/acme by the URL in its script`},
				finding{"outbound incident", statusOK, `business rule "Tollgate: send incidents" (async, on insert and update) sends to /webhooks/acme by the URL in its script`})},
		{name: "a script's URL of another connector does not count", setup: both(elsewhere,
			set(tableRule, snRuleChange, map[string]any{"script": endpointScript("https://tollgate.example.com/webhooks/acme")}),
			set(tableRule, snRuleIncident, map[string]any{"script": endpointScript("https://tollgate.example.com/webhooks/acme-other")})),
			want: withOutbound(
				finding{"outbound change_request", statusOK, "by the URL in its script"},
				finding{"outbound incident", statusWarn, "no active business rule on incident sends to /webhooks/acme: incidents never reach tollgate (nothing polls: api.poll_interval is not set); " +
					"add an after (or async) business rule on insert and update sending to /webhooks/acme"})},
		{name: "only the change profiles", events: []string{"change_request", "approval"}, want: allGood[:6]},
		{name: "only the incident profile, no rule", events: []string{"incident"}, setup: set(tableRule, snRuleIncident, map[string]any{"active": "false"}),
			want: withOutbound(finding{"outbound incident", statusWarn, "no active business rule on incident sends to /webhooks/acme"})},
		{name: "business rules forbidden", setup: func(f *itsmfake.Server, _ *Client) {
			f.Inject(itsmfake.Fault{Match: "/api/now/table/" + tableRule + "?", Status: http.StatusForbidden, Times: 10})
		}, want: withOutbound(finding{"outbound", statusWarn, "the user may not read the REST messages and business rules (sys_rest_message, sys_rest_message_fn, sys_script), " +
			`so what sends the instance's deliveries to /webhooks/acme was not checked (the REST message "Tollgate" points there); the integration user needs no such right to serve, ` +
			"but to have it checked here, grant read on those tables (admin has it), or check the business rule by hand (ServiceNow acme: sys_script: HTTP 403: Forbidden)"})},
		{name: "REST messages forbidden", setup: func(f *itsmfake.Server, _ *Client) {
			f.Inject(itsmfake.Fault{Match: "/api/now/table/" + tableRESTMessage + "?", Status: http.StatusForbidden, Times: 10})
		}, want: withOutbound(finding{"outbound", statusWarn, "to /webhooks/acme was not checked; the integration user needs no such right to serve"})},
		{name: "a 500 on the methods", setup: func(f *itsmfake.Server, _ *Client) {
			f.Inject(itsmfake.Fault{Match: "/api/now/table/" + tableRESTMethod + "?", Status: http.StatusInternalServerError, Times: 10})
		}, want: withOutbound(finding{"outbound", statusWarn, "what sends the instance's deliveries to /webhooks/acme was not checked: ServiceNow acme: sys_rest_message_fn: HTTP 500"})},
		{name: "the rules unanswered", setup: func(f *itsmfake.Server, _ *Client) {
			f.Inject(itsmfake.Fault{Match: "/api/now/table/" + tableRule + "?", Slow: time.Second, Times: 10})
		}, want: withOutbound(finding{"outbound", statusWarn, `was not checked (the REST message "Tollgate" points there): ServiceNow acme: sys_script: `})},
		{name: "a forbidden table elsewhere leaves the outbound check running", setup: func(f *itsmfake.Server, _ *Client) {
			f.Inject(itsmfake.Fault{Match: "/api/now/table/" + tableApproval + "?", Status: http.StatusForbidden, Times: 10})
		}, want: but(2, finding{tableApproval, statusFail, "the user may not read sysapproval_approver"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := preflightInstance()
			defer fake.Close()
			c := newClient(t, fake, nil)
			c.writeBack = true
			if tc.setup != nil {
				tc.setup(fake, c)
			}
			got := c.Preflight(context.Background(), connectors.PreflightInput{Name: "acme", Events: tc.events})
			checkFindings(t, got, tc.want)
			checkReadOnly(t, fake)
			for _, f := range got {
				if strings.HasPrefix(f.Check, "outbound") && f.Status == statusFail {
					t.Errorf("the outbound check failed: %s", f.Detail)
				}
				if strings.Contains(f.Detail, "s3cr3t-hook") || strings.Contains(f.Detail, "tollgate.example.com") {
					t.Errorf("%s names an endpoint's query or host: %s", f.Check, f.Detail)
				}
			}
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
		{"outbound", statusWarn, "no REST message and no active business rule on change_request or incident points at /webhooks/acme"},
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
// (and the OAuth token grant) or read more than one record at a time
// (the outbound check: more than outboundLimit).
func checkReadOnly(t *testing.T, fake *itsmfake.Server) {
	t.Helper()
	for _, call := range fake.Calls("") {
		if call.Path == "/oauth_token.do" && call.Method == http.MethodPost {
			continue
		}
		if call.Method != http.MethodGet {
			t.Errorf("the preflight wrote: %s %s", call.Method, call.Path)
			continue
		}
		table, ok := strings.CutPrefix(call.Path, "/api/now/table/")
		if !ok || strings.Contains(table, "/") {
			continue
		}
		most := 1
		if table == tableRESTMessage || table == tableRESTMethod || table == tableRule {
			most = outboundLimit
		}
		n := 0
		if m := limitRe.FindStringSubmatch(call.Query); m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		if n < 1 || n > most {
			t.Errorf("a list read without a sysparm_limit of at most %d: %s?%s", most, call.Path, call.Query)
		}
	}
}

var limitRe = regexp.MustCompile(`(?:^|&)sysparm_limit=(\d+)(?:&|$)`)
