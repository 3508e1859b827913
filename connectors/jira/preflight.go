package jira

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
)

// maxListed bounds the issue types a finding lists.
const maxListed = 10

// Preflight checks, with the configured credentials, what tollgate will
// ask of the site, in this order:
//
//   - credentials: who the credentials are (GET /rest/api/2/myself).
//     Refused credentials (401, or 403 as Jira answers once it wants a
//     CAPTCHA) end the preflight there (that finding alone), and so does
//     a site whose answer cannot be had at all (unreachable, timing out, a
//     login page instead of JSON): every other check would say the same.
//   - project <KEY>, for each configured project: the project can be read
//     (the poller reads its issues).
//   - change creation, when configured: the JSM request type exists, or
//     the project has the issue type changes are opened as; nothing is
//     created.
//   - webhook: one of the site's webhooks points at …/webhooks/<name>, is
//     enabled and sends the events in.Events names (listing them needs the
//     Jira administrator permission: without it, a warning).
//
// It only reads: every call is a GET.
func (c *Client) Preflight(ctx context.Context, in connectors.PreflightInput) []connectors.Finding {
	first, stop := c.checkCredentials(ctx)
	out := []connectors.Finding{first}
	if stop {
		return out
	}
	projects := map[string]projectRead{}
	for _, key := range c.projects {
		out = append(out, c.checkProject(ctx, key, projects))
	}
	if c.creation != nil {
		out = append(out, c.checkCreation(ctx, projects))
	}
	return append(out, c.checkWebhook(ctx, in))
}

// checkCredentials reads the user the credentials are; stop is true when
// the other checks cannot tell anything more (refused, or no answer).
func (c *Client) checkCredentials(ctx context.Context) (f connectors.Finding, stop bool) {
	const check = "credentials"
	var me struct {
		DisplayName string `json:"displayName"`
		AccountID   string `json:"accountId"`
		Name        string `json:"name"`
		TimeZone    string `json:"timeZone"`
	}
	err := c.raw(ctx, http.MethodGet, "rest/api/2/myself", "credentials", nil, &me)
	switch s := apiclient.Status(err); {
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		return connectors.Fail(check, c.refusedDetail(err)), true
	case err != nil:
		return connectors.Fail(check, err.Error()), s == 0
	}
	id := me.AccountID
	if id == "" {
		id = me.Name
	}
	if z := strings.TrimSpace(me.TimeZone); z != "" {
		if _, err := time.LoadLocation(z); err != nil {
			return connectors.Warn(check, fmt.Sprintf("as %s (%s), whose time zone %q is unknown here: the poller writes its JQL dates in UTC, and Jira reads them in the user's zone, so updates may be missed; set the user's time zone to UTC",
				me.DisplayName, id, z)), false
		}
	}
	return connectors.OK(check, fmt.Sprintf("as %s (%s)", me.DisplayName, id)), false
}

// refusedDetail says which credentials were refused and what to check,
// naming no secret.
func (c *Client) refusedDetail(err error) string {
	s := "credentials refused (" + err.Error() + "): "
	if c.api.Token != "" {
		s += "check the personal access token (api.token) and that its user is active"
	} else {
		s += fmt.Sprintf("check the user %q and its password (api.username, api.password; Jira Cloud: the account's e-mail and an API token)", c.api.Username)
	}
	if apiclient.Status(err) == http.StatusForbidden {
		s += "; Jira answers 403 when it wants a CAPTCHA after failed logins: log in once in a browser"
	}
	return s
}

// jiraProject is the part of GET /rest/api/2/project/{key} read here.
type jiraProject struct {
	Key        string `json:"key"`
	Name       string `json:"name"`
	IssueTypes []struct {
		Name string `json:"name"`
	} `json:"issueTypes"`
}

// projectRead is one project's answer, kept for the preflight's later
// checks.
type projectRead struct {
	p   jiraProject
	err error
}

// project reads project key once per preflight.
func (c *Client) project(ctx context.Context, key string, seen map[string]projectRead) (jiraProject, error) {
	if r, ok := seen[key]; ok {
		return r.p, r.err
	}
	var p jiraProject
	err := c.raw(ctx, http.MethodGet, "rest/api/2/project/"+url.PathEscape(key), "project "+key, nil, &p)
	seen[key] = projectRead{p, err}
	return p, err
}

// checkProject reads a project the poller reads issues of.
func (c *Client) checkProject(ctx context.Context, key string, seen map[string]projectRead) connectors.Finding {
	check := "project " + key
	p, err := c.project(ctx, key, seen)
	switch {
	case errors.Is(err, connectors.ErrNotFound):
		return connectors.Fail(check, "no project "+key+", or the user may not browse it: the poller cannot read its issues")
	case err != nil:
		return connectors.Fail(check, err.Error())
	}
	return connectors.OK(check, fmt.Sprintf("read (%s)", p.Name))
}

// checkCreation finds the JSM request type, or the project's issue type,
// changes are opened as.
func (c *Client) checkCreation(ctx context.Context, seen map[string]projectRead) connectors.Finding {
	const check = "change creation"
	cr := c.creation
	if cr.ServiceDeskID != "" {
		var rt struct {
			Name string `json:"name"`
		}
		path := "rest/servicedeskapi/servicedesk/" + url.PathEscape(cr.ServiceDeskID) + "/requesttype/" + url.PathEscape(cr.RequestTypeID)
		err := c.raw(ctx, http.MethodGet, path, "request type "+cr.RequestTypeID, nil, &rt)
		switch {
		case errors.Is(err, connectors.ErrNotFound):
			return connectors.Fail(check, fmt.Sprintf("no request type %s in service desk %s, or the user may not see it: changes cannot be opened", cr.RequestTypeID, cr.ServiceDeskID))
		case err != nil:
			return connectors.Fail(check, err.Error())
		}
		return connectors.OK(check, fmt.Sprintf("JSM request type %q (%s) of service desk %s (not tried: the preflight only reads)", rt.Name, cr.RequestTypeID, cr.ServiceDeskID))
	}
	if cr.Project == "" {
		return connectors.Fail(check, "change_creation names no project (nor service_desk_id and request_type_id): changes cannot be opened")
	}
	typ := cr.IssueType
	if typ == "" {
		typ = "Change" // as CreateChange
	}
	p, err := c.project(ctx, cr.Project, seen)
	switch {
	case errors.Is(err, connectors.ErrNotFound):
		return connectors.Fail(check, "no project "+cr.Project+", or the user may not browse it: changes cannot be opened there")
	case err != nil:
		return connectors.Fail(check, err.Error())
	}
	var names []string
	for _, it := range p.IssueTypes {
		if strings.EqualFold(it.Name, typ) {
			return connectors.OK(check, fmt.Sprintf("issue type %s of project %s (not tried: the preflight only reads)", it.Name, cr.Project))
		}
		names = append(names, it.Name)
	}
	return connectors.Fail(check, fmt.Sprintf("project %s has no issue type %q: changes cannot be opened; it has %s", cr.Project, typ, listed(names)))
}

// listed joins names, at most maxListed of them.
func listed(names []string) string {
	switch {
	case len(names) == 0:
		return "none"
	case len(names) > maxListed:
		return fmt.Sprintf("%s and %d more", strings.Join(names[:maxListed], ", "), len(names)-maxListed)
	}
	return strings.Join(names, ", ")
}

// jiraWebhook is an admin webhook as GET /rest/webhooks/1.0/webhook lists
// it.
type jiraWebhook struct {
	Name    string   `json:"name"`
	URL     string   `json:"url"`
	Enabled *bool    `json:"enabled"`
	Events  []string `json:"events"`
}

func (h jiraWebhook) enabled() bool { return h.Enabled == nil || *h.Enabled }

// String names the webhook and its URL without the query, which may hold
// a secret.
func (h jiraWebhook) String() string { return fmt.Sprintf("%q (%s)", h.Name, redactURL(h.URL)) }

// checkWebhook looks for the connector's webhook among the site's.
func (c *Client) checkWebhook(ctx context.Context, in connectors.PreflightInput) connectors.Finding {
	const check = "webhook"
	path := "…/webhooks/" + in.Name
	var hooks []jiraWebhook
	err := c.raw(ctx, http.MethodGet, "rest/webhooks/1.0/webhook", "webhooks", nil, &hooks)
	switch s := apiclient.Status(err); {
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		return connectors.Warn(check, "cannot list webhooks (needs the Jira administrator permission): whether one points at "+path+" is not checked")
	case err != nil:
		return connectors.Warn(check, "cannot list webhooks ("+err.Error()+"): whether one points at "+path+" is not checked")
	}
	var own, on []jiraWebhook
	for _, h := range hooks {
		if connectors.PointsAt(h.URL, in.Name) {
			own = append(own, h)
			if h.enabled() {
				on = append(on, h)
			}
		}
	}
	switch {
	case len(own) == 0 && c.api.PollInterval > 0:
		return connectors.Warn(check, "no webhook points at "+path+": unless an automation rule sends them, Jira's changes reach tollgate only when the poller reads them")
	case len(own) == 0:
		return connectors.Warn(check, "no webhook points at "+path+" and no poller runs (no api.poll_interval): unless an automation rule sends them, Jira's changes do not reach tollgate")
	case len(on) == 0:
		return connectors.Fail(check, fmt.Sprintf("webhook %s is disabled: Jira sends it nothing; enable it", own[0]))
	}
	if missing := missingEvents(on, in); len(missing) > 0 {
		return connectors.Warn(check, fmt.Sprintf("webhook %s is not subscribed to %s: those events never reach tollgate", on[0], strings.Join(missing, ", ")))
	}
	return connectors.OK(check, fmt.Sprintf("webhook %s points at %s, enabled", on[0], path))
}

// missingEvents are the events of in.Events that no webhook of hooks
// sends (none when in names no event: a profile takes any).
func missingEvents(hooks []jiraWebhook, in connectors.PreflightInput) []string {
	var sent, missing []string
	for _, h := range hooks {
		sent = append(sent, h.Events...)
	}
	for _, e := range in.Events {
		if !slices.ContainsFunc(sent, func(s string) bool { return strings.EqualFold(s, e) }) {
			missing = append(missing, e)
		}
	}
	return missing
}

// redactURL is rawURL without its query, fragment and user information.
func redactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		s, _, _ := strings.Cut(rawURL, "?")
		s, _, _ = strings.Cut(s, "#")
		if i := strings.LastIndex(s, "@"); i >= 0 {
			return "…" + s[i+1:] // no user information
		}
		return s
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}
