package servicenow

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
)

// The tables the outbound check reads: what sends the instance's
// deliveries to tollgate is an Outbound REST Message (and its HTTP
// methods) called from a business rule.
const (
	tableRESTMessage = "sys_rest_message"
	tableRESTMethod  = "sys_rest_message_fn"
	tableRule        = "sys_script"
	// tableTask is the table change_request and incident extend: a
	// business rule on it runs for theirs too (its condition, not read
	// here, may narrow it).
	tableTask = "task"
)

// outboundLimit is sysparm_limit of the outbound check's reads.
const outboundLimit = 20

// checkOutbound is the outbound check (see Preflight): one finding per
// watched table ("outbound change_request", "outbound incident"), or one
// "outbound" finding when nothing could be read or nothing points at
// /webhooks/<name>. It warns at worst: a webhook is the fast path, the
// poll the fallback, and the integration user rightly may not read these
// tables at all.
func (c *Client) checkOutbound(ctx context.Context, in connectors.PreflightInput) []connectors.Finding {
	if in.Name == "" {
		return nil
	}
	hook := "/webhooks/" + in.Name
	messages, elsewhere, err := c.outboundMessages(ctx, in.Name)
	if err != nil {
		return []connectors.Finding{c.outboundError(err, hook, nil)}
	}
	rules, err := c.outboundRules(ctx, in.Name, messages)
	if err != nil {
		return []connectors.Finding{c.outboundError(err, hook, messages)}
	}
	watched := watchedTables(in)
	if len(messages) == 0 && len(rules) == 0 {
		detail := fmt.Sprintf("no REST message and no active business rule on %s points at %s: %s; "+
			"create a REST message with the endpoint https://<tollgate>%s and, on each table, an after (or async) business rule on insert and update that calls it "+
			"(a rule that takes the URL from elsewhere, e.g. a system property, or rows ACLs hide from the user, are not seen)",
			strings.Join(watched, " or "), hook, c.unsent(whole, watched...), hook)
		if len(elsewhere) > 0 {
			detail += "; found instead: " + strings.Join(elsewhere, ", ")
		}
		return []connectors.Finding{connectors.Warn("outbound", detail)}
	}
	var out []connectors.Finding
	for _, t := range watched {
		out = append(out, c.outboundTable(t, hook, messages, rules))
	}
	return out
}

// watchedTables are the tables whose business rules are looked for: those
// of change_request and incident the connector's profiles consume, or
// both.
func watchedTables(in connectors.PreflightInput) []string {
	var out []string
	for _, t := range []string{TableChange, TableIncident} {
		if in.Wants(t) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		out = []string{TableChange, TableIncident}
	}
	return out
}

// tableNoun names a record of table in prose, with its article.
func tableNoun(table string) (noun, article string) {
	if table == TableChange {
		return "change", "a"
	}
	return table, "an"
}

// What of the records of a table a rule does not send.
const (
	whole = iota // none is sent
	fresh        // a new one is not sent
	later        // its updates are not sent
)

// unsent says how the records of tables (what) reach tollgate without a
// business rule sending them: by the poll when the connector polls; else
// a change when a gate check reads back one the store does not know, an
// incident never.
func (c *Client) unsent(what int, tables ...string) string {
	polled := c.api.PollInterval > 0
	poll := fmt.Sprintf("polling (every %s, api.poll_interval)", shortDuration(c.api.PollInterval))
	if what == whole && polled {
		var nouns []string
		for _, t := range tables {
			n, _ := tableNoun(t)
			nouns = append(nouns, n+"s")
		}
		return strings.Join(nouns, " and ") + " reach tollgate only by " + poll
	}
	var parts []string
	for _, t := range tables {
		noun, article := tableNoun(t)
		change := t == TableChange
		var p string
		switch {
		case what == whole && change:
			p = "changes reach tollgate only when a gate check reads one back"
		case what == whole:
			p = noun + "s never reach tollgate"
		case what == fresh && polled:
			p = fmt.Sprintf("a new %s reaches tollgate at its first update, or by %s", noun, poll)
		case what == fresh && change:
			p = "a new change reaches tollgate at its first update, or when a gate check reads it back"
		case what == fresh:
			p = fmt.Sprintf("a new %s reaches tollgate only at its first update", noun)
		case polled:
			p = fmt.Sprintf("%s %s's later updates reach tollgate only by %s", article, noun, poll)
		default:
			p = fmt.Sprintf("%s %s's later updates never reach tollgate", article, noun)
		}
		parts = append(parts, p)
	}
	s := strings.Join(parts, ", and ")
	if !polled {
		s += " (nothing polls: api.poll_interval is not set)"
	}
	return s
}

// shortDuration is d as in the configuration: 5m, not 5m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// outboundList reads at most outboundLimit records of table matching the
// encoded query q (only fields).
func (c *Client) outboundList(ctx context.Context, table, q, fields string, display bool) ([]gjson.Result, error) {
	v := url.Values{"sysparm_query": {q}, "sysparm_fields": {fields}, "sysparm_limit": {fmt.Sprint(outboundLimit)}}
	if display {
		v.Set("sysparm_display_value", "true")
	}
	rows, err := c.list(ctx, table, table, v)
	if err != nil {
		return nil, err
	}
	out := make([]gjson.Result, len(rows))
	for i, r := range rows {
		out[i] = gjson.ParseBytes(r)
	}
	return out, nil
}

// outboundMessages returns the names of the REST messages whose endpoint,
// or one of whose HTTP methods' endpoint, points at /webhooks/<name>, and
// the endpoints the query matched that point elsewhere (another
// connector's /webhooks/<name>-other), described by path only.
func (c *Client) outboundMessages(ctx context.Context, name string) (messages, elsewhere []string, err error) {
	q := "rest_endpointLIKE" + escapeQuery("/webhooks/"+name)
	msgs, err := c.outboundList(ctx, tableRESTMessage, q+"^ORDERBYname", "sys_id,name,rest_endpoint", false)
	if err != nil {
		return nil, nil, err
	}
	found := func(msg, method, ep string) {
		switch {
		case msg == "":
		case pointsHere(ep, name):
			messages = appendNew(messages, msg)
		case method == "":
			elsewhere = append(elsewhere, fmt.Sprintf("REST message %q → %s", msg, endpointPath(ep)))
		default:
			elsewhere = append(elsewhere, fmt.Sprintf("REST message %q method %q → %s", msg, method, endpointPath(ep)))
		}
	}
	for _, m := range msgs {
		found(displayOf(m.Get("name")), "", fieldValue(m.Get("rest_endpoint")))
	}
	fns, err := c.outboundList(ctx, tableRESTMethod, q+"^ORDERBYfunction_name", "sys_id,function_name,http_method,rest_endpoint,rest_message", true)
	if err != nil {
		return nil, nil, err
	}
	for _, f := range fns {
		found(displayOf(f.Get("rest_message")), displayOf(f.Get("function_name")), fieldValue(f.Get("rest_endpoint")))
	}
	return messages, elsewhere, nil
}

// outboundRule is an active business rule that sends to /webhooks/<name>.
type outboundRule struct {
	name, table, when string
	insert, update    bool
	// via is how it sends: `by REST message "Tollgate"`, or by a URL in
	// its script.
	via string
}

// outboundRules reads the active business rules on change_request,
// incident and task (whose rules run for both) whose script names one of
// messages or holds /webhooks/<name> (LIKE on the instance, confirmed
// here).
func (c *Client) outboundRules(ctx context.Context, name string, messages []string) ([]outboundRule, error) {
	q := "active=true^collectionIN" + TableChange + "," + TableIncident + "," + tableTask + "^scriptLIKE" + escapeQuery("/webhooks/"+name)
	for _, m := range messages {
		q += "^ORscriptLIKE" + escapeQuery(m)
	}
	rs, err := c.outboundList(ctx, tableRule, q+"^ORDERBYname", "sys_id,name,collection,when,action_insert,action_update,script", false)
	if err != nil {
		return nil, err
	}
	// The path, not a longer one (/webhooks/<name>-other); a message's
	// name as a string literal.
	urlRe := regexp.MustCompile(`/webhooks/` + regexp.QuoteMeta(name) + `/?(?:[^A-Za-z0-9._~%/+-]|$)`)
	named := make([]*regexp.Regexp, len(messages))
	for i, m := range messages {
		named[i] = regexp.MustCompile(`(?i)['"]` + regexp.QuoteMeta(m) + `['"]`)
	}
	var out []outboundRule
	for _, r := range rs {
		script := fieldValue(r.Get("script"))
		via := ""
		for i, re := range named {
			if re.MatchString(script) {
				via = fmt.Sprintf("by REST message %q", messages[i])
				break
			}
		}
		if via == "" && urlRe.MatchString(script) {
			via = "by the URL in its script"
		}
		if via == "" {
			continue // the LIKE matched a comment or another name's prefix
		}
		out = append(out, outboundRule{
			name: fieldValue(r.Get("name")), table: fieldValue(r.Get("collection")), via: via,
			when:   strings.ToLower(fieldValue(r.Get("when"))),
			insert: fieldValue(r.Get("action_insert")) == "true", update: fieldValue(r.Get("action_update")) == "true",
		})
	}
	return out, nil
}

// outboundTable is the finding of one watched table.
func (c *Client) outboundTable(table, hook string, messages []string, rules []outboundRule) connectors.Finding {
	check := "outbound " + table
	noun, article := tableNoun(table)
	var on, good []outboundRule
	for _, r := range rules {
		if r.table == table || r.table == tableTask {
			on = append(on, r)
		}
	}
	if len(on) == 0 {
		how := "sending to " + hook
		if len(messages) > 0 {
			how = fmt.Sprintf("calling the REST message %q", messages[0])
		}
		return connectors.Warn(check, fmt.Sprintf("no active business rule on %s sends to %s: %s; add an after (or async) business rule on insert and update %s",
			table, hook, c.unsent(whole, table), how))
	}
	var problems []string
	for _, r := range on {
		who := "it"
		if len(on) > 1 {
			who = fmt.Sprintf("%q", r.name)
		}
		switch r.when {
		case "before":
			problems = append(problems, who+" runs before the record is saved: make it run after (or async), so tollgate is sent what was committed")
		case "display":
			problems = append(problems, fmt.Sprintf("%s runs on display (when a form is shown), not when %s %s is saved: make it run after (or async)", who, article, noun))
		default:
			good = append(good, r)
		}
	}
	insert := slices.ContainsFunc(good, func(r outboundRule) bool { return r.insert })
	update := slices.ContainsFunc(good, func(r outboundRule) bool { return r.update })
	switch {
	case len(good) == 0:
	case !insert && !update:
		problems = append(problems, "fires on neither insert nor update: "+c.unsent(whole, table)+"; tick Insert and Update")
	case !insert:
		problems = append(problems, "fires on update only: "+c.unsent(fresh, table)+"; tick Insert too")
	case !update:
		problems = append(problems, "fires on insert only: "+c.unsent(later, table)+"; tick Update too")
	}
	var sends []string
	for i, r := range on {
		if i == 3 {
			sends = append(sends, fmt.Sprintf("and %d more", len(on)-i))
			break
		}
		onTask := ""
		if r.table == tableTask {
			onTask = fmt.Sprintf(" on task, which runs for every kind of task unless its condition says otherwise (%s among them),", table)
		}
		sends = append(sends, fmt.Sprintf("business rule %q%s (%s) sends to %s %s", r.name, onTask, r.describe(), hook, r.via))
	}
	detail := strings.Join(sends, "; ")
	if len(problems) == 0 {
		return connectors.OK(check, detail)
	}
	return connectors.Warn(check, detail+", but "+strings.Join(problems, "; "))
}

// describe says when a rule runs: "after, on insert and update".
func (r outboundRule) describe() string {
	var on []string
	if r.insert {
		on = append(on, "insert")
	}
	if r.update {
		on = append(on, "update")
	}
	when := r.when
	if when == "" {
		when = "when unknown"
	}
	if len(on) == 0 {
		return when + ", on neither insert nor update"
	}
	return when + ", on " + strings.Join(on, " and ")
}

// outboundError is the finding of an outbound read that failed: a warn,
// as the integration user rightly may not read these tables.
func (c *Client) outboundError(err error, hook string, messages []string) connectors.Finding {
	found := ""
	if len(messages) > 0 {
		found = fmt.Sprintf(" (the REST message %q points there)", messages[0])
	}
	if apiclient.Status(err) == http.StatusForbidden {
		return connectors.Warn("outbound", fmt.Sprintf("the user may not read the REST messages and business rules (%s, %s, %s), "+
			"so what sends the instance's deliveries to %s was not checked%s; the integration user needs no such right to serve, "+
			"but to have it checked here, grant read on those tables (admin has it), or check the business rule by hand (%v)",
			tableRESTMessage, tableRESTMethod, tableRule, hook, found, err))
	}
	return connectors.Warn("outbound", fmt.Sprintf("what sends the instance's deliveries to %s was not checked%s: %v", hook, found, err))
}

// pointsHere reports whether a REST endpoint is the connector named
// name's webhook. A ${variable} (a host taken from the message's
// variables) does not hide the path.
func pointsHere(endpoint, name string) bool {
	return connectors.PointsAt(endpointVars.ReplaceAllString(endpoint, "var"), name)
}

// endpointVars are the ${variables} of a REST endpoint.
var endpointVars = regexp.MustCompile(`\$\{[^}]*\}`)

// endpointPath is an endpoint's path, for a detail: its host, user and
// query are left out, as they may hold a secret.
func endpointPath(endpoint string) string {
	u, err := url.Parse(endpointVars.ReplaceAllString(endpoint, "var"))
	if err != nil {
		return "an endpoint that is not a URL"
	}
	return u.EscapedPath()
}

// displayOf is a field's display value, else its value: a reference's
// name when sysparm_display_value=true made it one.
func displayOf(v gjson.Result) string {
	if d := fieldDisplay(v); d != "" {
		return d
	}
	return fieldValue(v)
}

// escapeQuery escapes a value for an encoded query (^ is written ^^).
func escapeQuery(v string) string { return strings.ReplaceAll(v, "^", "^^") }

// appendNew appends s unless list holds it.
func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
