package servicenow

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/tidwall/gjson"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
)

// tableJournal holds the work notes HasWorkNote reads.
const tableJournal = "sys_journal_field"

// tableTemplate holds the standard change templates (record producers)
// a template name is looked up in.
const tableTemplate = "std_change_record_producer"

// Preflight checks, with the configured credentials (Basic or OAuth
// client credentials, through the client's own call path), what tollgate
// will ask of the instance, in this order:
//
//   - change_request: one record is read. Refused credentials end the
//     preflight there (that finding alone), and so does an instance whose
//     answer cannot be had at all (unreachable, timing out, a login page
//     instead of JSON): every other check would say the same.
//   - incident: one record is read (the poll reads both tables).
//   - sysapproval_approver: one row is read (the approvers of a change).
//   - change creation, when configured: a standard change's template is
//     found (by sys_id or by name); nothing is created.
//   - sys_journal_field, with write-back: one row is read (the outbox
//     looks for a note there before writing it again).
//   - outbound: what sends the instance's deliveries to
//     /webhooks/<in.Name>. The Outbound REST Messages (sys_rest_message)
//     and their HTTP methods (sys_rest_message_fn) whose endpoint's path
//     is that one are found (a ${variable} host is fine), then the active
//     business rules (sys_script) on change_request and incident whose
//     script names one of those messages or holds the path itself
//     (setEndpoint). One finding per table the connector's profiles read
//     (in.Events; both when they name neither), "outbound change_request"
//     and "outbound incident": ok naming the rule and the message; a warn
//     for a rule that runs before or on display, or that does not fire on
//     both insert and update, and for a table no rule sends from (its
//     records then arrive only by the poll, if one runs). A single
//     "outbound" warn instead when nothing points at the path at all
//     (other connectors' paths the search met are named), when the user
//     may not read those tables (a 403: reading them needs admin or a
//     role granting it, which the integration user rightly lacks) or on
//     any other error. It never fails: the webhook is the fast path, the
//     poll the fallback.
//
// It only reads: every call is a GET, of at most one record (the
// outbound check's of at most 20), and, with OAuth, the token grant.
func (c *Client) Preflight(ctx context.Context, in connectors.PreflightInput) []connectors.Finding {
	n, err := c.peek(ctx, TableChange, "sys_id,number")
	if c.refused(err) {
		return []connectors.Finding{connectors.Fail(TableChange, c.refusedDetail(err))}
	}
	out := []connectors.Finding{tableFinding(TableChange, n, err, connectors.Fail,
		"the user may not read change_request: the poller and the gate's read-back fail; grant it read access (e.g. the sn_change_read role)", true)}
	if err != nil && apiclient.Status(err) == 0 {
		return out
	}
	n, err = c.peek(ctx, TableIncident, "sys_id,number")
	out = append(out, tableFinding(TableIncident, n, err, connectors.Fail,
		"the user may not read incident: the poll reads both tables and stops at one it may not read, so no change is polled either; grant it read access (e.g. the sn_incident_read role)", true))
	n, err = c.peek(ctx, tableApproval, "sys_id")
	out = append(out, tableFinding(tableApproval, n, err, connectors.Fail,
		"the user may not read sysapproval_approver, where the approvers of a change are read: "+
			"every change (webhook and poll alike) is then quarantined instead of recorded; grant it read access", false))
	if c.creation != nil {
		out = append(out, c.checkCreation(ctx))
	}
	if c.writeBack {
		n, err = c.peek(ctx, tableJournal, "sys_id")
		out = append(out, tableFinding(tableJournal, n, err, connectors.Warn,
			"the user may not read sys_journal_field: a work note whose first write failed is looked for there before it is written again, "+
				"so it stays queued and is never written; grant it read access", false))
	}
	return append(out, c.checkOutbound(ctx, in)...)
}

// peek reads at most one record of table (only fields) and returns how
// many it got.
func (c *Client) peek(ctx context.Context, table, fields string) (int, error) {
	rows, err := c.list(ctx, table, table, url.Values{"sysparm_limit": {"1"}, "sysparm_fields": {fields}})
	return len(rows), err
}

// tableFinding is the finding of a peek at table: bad (Fail or Warn) with
// forbidden's words on a 403, with the error's text on another failure;
// a Warn when needRows and no record is visible; else ok.
func tableFinding(table string, n int, err error, bad func(check, detail string) connectors.Finding, forbidden string, needRows bool) connectors.Finding {
	switch {
	case apiclient.Status(err) == http.StatusForbidden:
		return bad(table, forbidden+" ("+err.Error()+")")
	case err != nil:
		return bad(table, err.Error())
	case needRows && n == 0:
		return connectors.Warn(table, "read, but no record is visible to the user: the table is empty, or ACLs hide its rows from the user (the poller would read nothing)")
	}
	return connectors.OK(table, "read")
}

// checkCreation finds the standard change template changes are opened
// from; a normal change needs nothing that can be read beforehand.
func (c *Client) checkCreation(ctx context.Context) connectors.Finding {
	const check = "change creation"
	t := c.creation.Template
	if c.creation.Type != "standard" {
		return connectors.OK(check, "normal changes through the Change Management API (not tried: the preflight only reads)")
	}
	var (
		id     = t
		active = "true"
		err    error
	)
	if sysIDPattern.MatchString(t) {
		var b []byte
		b, err = c.call(ctx, http.MethodGet, "/api/now/table/"+tableTemplate+"/"+t, "standard change template "+t, url.Values{"sysparm_fields": {"name,active"}}, nil)
		active = fieldValue(gjson.GetBytes(b, "result.active"))
	} else {
		id, err = c.templateID(ctx, t)
	}
	switch {
	case apiclient.Status(err) == http.StatusNotFound:
		return connectors.Fail(check, fmt.Sprintf("no active standard change template %q in %s: changes cannot be opened", t, tableTemplate))
	case apiclient.Status(err) == http.StatusForbidden:
		return connectors.Fail(check, fmt.Sprintf("the user may not read %s, so the template %q cannot be found: changes cannot be opened (%v)", tableTemplate, t, err))
	case err != nil:
		return connectors.Fail(check, err.Error())
	case active == "false":
		return connectors.Fail(check, fmt.Sprintf("the standard change template %s is inactive: changes cannot be opened from it", t))
	}
	if id != t {
		t = fmt.Sprintf("%q (sys_id %s)", t, id)
	}
	return connectors.OK(check, "standard change template "+t+" found (not tried: the preflight only reads)")
}

// refused reports whether err is the instance refusing the credentials:
// a 401, or (OAuth) a token grant refused with a 4xx or without a token.
func (c *Client) refused(err error) bool {
	var se *apiclient.StatusError
	if !errors.As(err, &se) {
		return false
	}
	return se.Status == http.StatusUnauthorized || (c.api.ClientID != "" && se.What == "oauth token" && se.Status < 500)
}

// refusedDetail says which credentials were refused and what to check,
// naming no secret.
func (c *Client) refusedDetail(err error) string {
	if c.api.ClientID != "" {
		return "credentials refused (" + err.Error() + "): check the OAuth client id and secret (api.client_id, api.client_secret), " +
			"or the user the OAuth application acts as (active, not locked out)"
	}
	return fmt.Sprintf("credentials refused (%v): check the user %q and its password (api.username, api.password); the user must be active and not locked out",
		err, c.api.Username)
}
