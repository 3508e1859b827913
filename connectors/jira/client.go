package jira

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	gojira "github.com/andygrunwald/go-jira"
	"github.com/tidwall/gjson"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/connectors/internal/rebase"
	"github.com/tollgate-dev/tollgate/internal/inert"
)

// The API client is go-jira on the connector's outbound client (the
// go-retryablehttp round tripper inside the instance's circuit), so
// retries, timeouts and the circuit are the same as ServiceNow's. Reads go
// through go-jira's raw request helper into json.RawMessage: the mapping
// profiles read the issue JSON as Jira sent it (custom fields included),
// and go-jira's types never leave this file.

// EventType is the event type of records read through the API: they are
// mapped as an issue-updated webhook delivery would be.
const EventType = "jira:issue_updated"

// ApprovalsMember is the member the client adds to an issue with its JSM
// approvals; the jira-change mapping profile reads it.
const ApprovalsMember = "tollgate_approvals"

const (
	pageSize = 100
	maxPages = 50
)

// jiraTime is how Jira writes date-times.
const jiraTime = "2006-01-02T15:04:05.000-0700"

// Client is one Jira site's API client.
type Client struct {
	name     string
	api      connectors.API
	projects []string
	creation *connectors.ChangeCreation
	jc       *gojira.Client
	hc       *apiclient.Client
	log      *slog.Logger
	// cloud selects Jira Cloud's enhanced search (/search/jql, paged by
	// nextPageToken), which replaced /search there; Data Center keeps
	// /search paged by startAt.
	cloud bool

	// zoneMu guards the API user's time zone (userZone), read at most
	// once an hour.
	zoneMu   sync.Mutex
	loc      *time.Location
	locUntil time.Time
}

// issueKey is the shape of a Jira issue key.
var issueKey = regexp.MustCompile(`^([A-Z][A-Z0-9_]*)-[0-9]+$`)

// NewClient builds the client for a connector with an api block: Basic
// auth (Cloud: e-mail + API token) or a bearer personal access token
// (Data Center).
func NewClient(cfg connectors.Config, hc *apiclient.Client, log *slog.Logger) (*Client, error) {
	if cfg.API == nil {
		return nil, fmt.Errorf("connector %s has no api", cfg.Name)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := hc.HTTPClient().Transport
	var rt http.RoundTripper
	if cfg.API.Token != "" {
		rt = &gojira.BearerAuthTransport{Token: cfg.API.Token, Transport: base}
	} else {
		rt = &gojira.BasicAuthTransport{Username: cfg.API.Username, Password: cfg.API.Password, Transport: base}
	}
	jc, err := gojira.NewClient(&http.Client{Transport: rt}, strings.TrimRight(cfg.API.URL, "/")+"/")
	if err != nil {
		return nil, fmt.Errorf("connector %s: api.url: %w", cfg.Name, err)
	}
	u, _ := url.Parse(cfg.API.URL)
	cloud := u != nil && (strings.HasSuffix(u.Hostname(), ".atlassian.net") || strings.HasSuffix(u.Hostname(), ".jira.com"))
	return &Client{name: cfg.Name, api: *cfg.API, projects: cfg.Projects, creation: cfg.ChangeCreation, jc: jc, hc: hc, log: log, cloud: cloud}, nil
}

// Name is the connector's name.
func (c *Client) Name() string { return c.name }

// System names the site for messages ("Jira ops").
func (c *Client) System() string { return "Jira " + c.name }

// OwnsChange reports whether key is an issue key of one of the configured
// projects (of any project when none is configured).
func (c *Client) OwnsChange(key string) bool {
	m := issueKey.FindStringSubmatch(key)
	if m == nil {
		return false
	}
	return len(c.projects) == 0 || slices.Contains(c.projects, m[1])
}

// raw sends one request through go-jira and decodes the answer into out.
// 404 is connectors.ErrNotFound (wrapped); other failures name the site,
// what was asked and the status, with Jira's own error text.
func (c *Client) raw(ctx context.Context, method, path, what string, body, out any) error {
	req, err := c.jc.NewRequestWithContext(ctx, method, path, body)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", c.System(), what, err)
	}
	resp, err := c.jc.Do(req, out)
	if err == nil {
		return nil
	}
	var hr *http.Response
	if resp != nil {
		hr = resp.Response
	}
	return c.failed(what, hr, err)
}

// failed names what went wrong with a go-jira call: no answer (the
// outbound client's timeout, reset …), 404 as connectors.ErrNotFound,
// another status with Jira's own error text, or a 2xx whose body could
// not be decoded: not JSON, or a read that failed (a timeout while the
// body trickled in is a timeout, not bad JSON).
func (c *Client) failed(what string, resp *http.Response, err error) error {
	switch {
	case resp == nil:
		if isBadJSON(err) {
			return fmt.Errorf("%s: %s: the answer is not valid JSON", c.System(), what)
		}
		return fmt.Errorf("%s: %s: %w", c.System(), what, apiclient.UnwrapURL(err))
	case resp.StatusCode == http.StatusNotFound:
		resp.Body.Close()
		return fmt.Errorf("%s: %s: %w", c.System(), what, connectors.ErrNotFound)
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		resp.Body.Close()
		if isBadJSON(err) {
			return fmt.Errorf("%s: %s: the answer is not valid JSON", c.System(), what)
		}
		return fmt.Errorf("%s: %s: %w", c.System(), what, apiclient.ReadError(err))
	}
	return &apiclient.StatusError{Instance: c.System(), What: what, Status: resp.StatusCode, Message: apiclient.Trim(jiraMessage(resp))}
}

// isBadJSON reports a decode error of the answer itself (not of reading
// it): a syntax error, a wrong type, or JSON cut off at a clean end.
func isBadJSON(err error) bool {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	return errors.As(err, &se) || errors.As(err, &te) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// jiraMessage reads Jira's own error text from an error answer
// (errorMessages and errors of the platform API, errorMessage of JSM) and
// closes it.
func jiraMessage(resp *http.Response) string {
	b, err := apiclient.ReadBody(resp, 1<<20)
	if err != nil {
		return ""
	}
	var e struct {
		ErrorMessages []string          `json:"errorMessages"`
		Errors        map[string]string `json:"errors"`
		ErrorMessage  string            `json:"errorMessage"`
	}
	if json.Unmarshal(b, &e) != nil {
		return ""
	}
	parts := append([]string(nil), e.ErrorMessages...)
	for k, v := range e.Errors {
		parts = append(parts, k+": "+v)
	}
	if e.ErrorMessage != "" {
		parts = append(parts, e.ErrorMessage)
	}
	slices.Sort(parts[len(e.ErrorMessages):])
	return strings.Join(parts, "; ")
}

// GetIssue reads one issue as a record (wrapped as an issue-updated
// delivery).
func (c *Client) GetIssue(ctx context.Context, key string) (connectors.Record, error) {
	var raw json.RawMessage
	if err := c.raw(ctx, http.MethodGet, "rest/api/2/issue/"+url.PathEscape(key), "issue "+key, nil, &raw); err != nil {
		return connectors.Record{}, err
	}
	return c.record(raw)
}

// ReadChange reads one issue for the gate's read-back.
func (c *Client) ReadChange(ctx context.Context, key string) (connectors.Record, error) {
	return c.GetIssue(ctx, key)
}

func (c *Client) record(issue json.RawMessage) (connectors.Record, error) {
	r := gjson.ParseBytes(issue)
	if !r.IsObject() {
		return connectors.Record{}, fmt.Errorf("%s: an issue is not a JSON object", c.System())
	}
	key := r.Get("key").String()
	rec := connectors.Record{Type: EventType, Key: key}
	if v := r.Get("fields.updated").String(); v != "" {
		t, err := time.Parse(jiraTime, v)
		if err != nil {
			t, err = time.Parse(time.RFC3339, v)
		}
		if err != nil {
			return connectors.Record{}, fmt.Errorf("%s: issue %s: updated %q is not a date-time", c.System(), key, v)
		}
		rec.UpdatedAt = t.UTC()
	}
	body, err := json.Marshal(map[string]any{"webhookEvent": EventType, "issue": issue})
	if err != nil {
		return connectors.Record{}, fmt.Errorf("encode issue %s: %w", key, err)
	}
	rec.Body = body
	return rec, nil
}

// searchResult is /rest/api/2/search's answer.
type searchResult struct {
	StartAt    int               `json:"startAt"`
	MaxResults int               `json:"maxResults"`
	Total      int               `json:"total"`
	Issues     []json.RawMessage `json:"issues"`
}

// JQL is the poller's query for issues of the projects updated since,
// oldest first, ties by key so that pages of one minute stay in one
// order. JQL dates have minute precision and no zone: Jira reads them in
// the API user's profile time zone, loc; the poller's overlap covers the
// minute.
func JQL(projects []string, since time.Time, loc *time.Location) string {
	q := make([]string, len(projects))
	for i, p := range projects {
		q[i] = `"` + p + `"`
	}
	return fmt.Sprintf(`project in (%s) AND updated >= "%s" ORDER BY updated ASC, key ASC`, strings.Join(q, ", "), since.In(loc).Format("2006/01/02 15:04"))
}

// userZone returns the API user's profile time zone, in which Jira reads
// JQL dates (GET /rest/api/2/myself, read at most once an hour): a user
// west of UTC would otherwise make the poller skip hours of updates. UTC
// when it cannot be read (then asked again next time) or named.
func (c *Client) userZone(ctx context.Context) *time.Location {
	c.zoneMu.Lock()
	defer c.zoneMu.Unlock()
	if c.loc != nil && time.Now().Before(c.locUntil) {
		return c.loc
	}
	var me struct {
		TimeZone string `json:"timeZone"`
	}
	if err := c.raw(ctx, http.MethodGet, "rest/api/2/myself", "user time zone", nil, &me); err != nil {
		c.log.WarnContext(ctx, "the Jira user's time zone could not be read; polling in UTC", "connector", c.name, "error", err.Error())
		return time.UTC
	}
	loc := time.UTC
	if z := strings.TrimSpace(me.TimeZone); z != "" {
		l, err := time.LoadLocation(z)
		if err != nil {
			c.log.WarnContext(ctx, "the Jira user's time zone is unknown; polling in UTC", "connector", c.name, "zone", z)
		} else {
			loc = l
		}
	}
	c.loc, c.locUntil = loc, time.Now().Add(time.Hour)
	return loc
}

// cloudSearchLag is how far back a poll of Jira Cloud reads again: its
// search (/search/jql) "doesn't provide read-after-write consistency",
// an update showing from seconds to minutes later (more after a bulk
// edit), so an issue updated just before the newest one read may be found
// only after it. The inbox drops the repeats.
const cloudSearchLag = 15 * time.Minute

// PollOverlap is how far before its watermark a poll reads (the service's
// poller takes at least a minute): cloudSearchLag on Jira Cloud.
func (c *Client) PollOverlap() time.Duration {
	if c.cloud {
		return cloudSearchLag
	}
	return 0
}

// Poll calls emit for every issue of the configured projects updated at
// or after since (to the minute), oldest first, page by page. Each page
// is asked from the newest update read so far (package rebase): paged by
// a plain startAt, an issue updated while the pages are read would shift
// the listing and the issue at the next page's boundary would be skipped
// for good. Jira Cloud's pages go by token, which cannot be asked from
// inside a minute: a page is asked afresh unless the last one ended
// inside a minute of more issues than the overlap, when the token goes
// on.
func (c *Client) Poll(ctx context.Context, since time.Time, emit func(connectors.Record) error) error {
	loc := c.userZone(ctx)
	cur := rebase.New(since, time.Minute, pageSize)
	jql, token := "", ""
	for page := 0; page < maxPages; page++ {
		at, offset := cur.Next()
		continued := c.cloud && !cur.Fresh() && token != ""
		if !continued {
			jql, token = JQL(c.projects, at, loc), ""
		}
		issues, next, last, err := c.searchPage(ctx, jql, pageSize, offset, token)
		if err != nil {
			return err
		}
		token = next
		recs := make([]connectors.Record, len(issues))
		keys := make([]string, len(issues))
		times := make([]time.Time, len(issues))
		for i, is := range issues {
			if recs[i], err = c.record(is); err != nil {
				return err
			}
			keys[i], times[i] = recs[i].Key, recs[i].UpdatedAt
		}
		read := cur.Read
		if continued {
			read = cur.ReadContinued
		}
		for i, fresh := range read(keys, times) {
			if !fresh {
				continue
			}
			if err := emit(recs[i]); err != nil {
				return err
			}
		}
		if last || len(issues) == 0 {
			return nil
		}
	}
	return nil
}

// enhancedResult is Jira Cloud's /search/jql answer.
type enhancedResult struct {
	Issues        []json.RawMessage `json:"issues"`
	NextPageToken string            `json:"nextPageToken"`
	IsLast        *bool             `json:"isLast"`
}

// search runs a JQL query and calls emit for each issue (all fields), at
// most maxPages pages of size issues.
func (c *Client) search(ctx context.Context, jql string, size int, emit func(json.RawMessage) error) error {
	token := ""
	for page := 0; page < maxPages; page++ {
		issues, next, last, err := c.searchPage(ctx, jql, size, page*size, token)
		if err != nil {
			return err
		}
		token = next
		for _, is := range issues {
			if err := emit(is); err != nil {
				return err
			}
		}
		if last || len(issues) == 0 {
			return nil
		}
	}
	return nil
}

// searchPage reads one page of a JQL query's issues (all fields): on
// Jira Cloud the page token gives (none: the first page), on Data Center
// startAt. next is Cloud's token for the page after; last says no page
// follows.
func (c *Client) searchPage(ctx context.Context, jql string, size, startAt int, token string) (issues []json.RawMessage, next string, last bool, err error) {
	q := url.Values{"jql": {jql}, "maxResults": {fmt.Sprint(size)}, "fields": {"*all"}}
	if c.cloud {
		if token != "" {
			q.Set("nextPageToken", token)
		}
		var er enhancedResult
		if err := c.raw(ctx, http.MethodGet, "rest/api/2/search/jql?"+q.Encode(), "search", nil, &er); err != nil {
			return nil, "", false, err
		}
		return er.Issues, er.NextPageToken, er.NextPageToken == "" || (er.IsLast != nil && *er.IsLast), nil
	}
	q.Set("startAt", fmt.Sprint(startAt))
	var sr searchResult
	if err := c.raw(ctx, http.MethodGet, "rest/api/2/search?"+q.Encode(), "search", nil, &sr); err != nil {
		return nil, "", false, err
	}
	return sr.Issues, "", sr.StartAt+len(sr.Issues) >= sr.Total, nil
}

// approvalPage is one page of a JSM request's approvals.
type approvalPage struct {
	IsLastPage bool `json:"isLastPage"`
	Values     []struct {
		FinalDecision string `json:"finalDecision"`
		CompletedDate struct {
			ISO8601 string `json:"iso8601"`
		} `json:"completedDate"`
		Approvers []struct {
			Approver         json.RawMessage `json:"approver"`
			ApproverDecision string          `json:"approverDecision"`
		} `json:"approvers"`
	} `json:"values"`
}

// approverEntry is one approver as the jira-change profile reads it (the
// element shape of JSM's Approvals field).
type approverEntry struct {
	Approver         json.RawMessage `json:"approver"`
	ApproverDecision string          `json:"approverDecision"`
	CompletedDate    string          `json:"completedDate,omitempty"`
}

// Approvals reads a JSM request's approvals: each approver with their
// decision. An issue that is not a JSM request has none.
func (c *Client) Approvals(ctx context.Context, key string) ([]approverEntry, error) {
	out := []approverEntry{}
	for start := 0; start < 10*pageSize; start += pageSize {
		var p approvalPage
		path := fmt.Sprintf("rest/servicedeskapi/request/%s/approval?start=%d&limit=%d", url.PathEscape(key), start, pageSize)
		if err := c.raw(ctx, http.MethodGet, path, "approvals of "+key, nil, &p); err != nil {
			if errors.Is(err, connectors.ErrNotFound) {
				return out, nil
			}
			return nil, err
		}
		for _, v := range p.Values {
			for _, a := range v.Approvers {
				e := approverEntry{Approver: a.Approver, ApproverDecision: a.ApproverDecision}
				if a.ApproverDecision != "pending" {
					e.CompletedDate = v.CompletedDate.ISO8601
				}
				out = append(out, e)
			}
		}
		if p.IsLastPage || len(p.Values) == 0 {
			break
		}
	}
	return out, nil
}

// Enrich adds the JSM approvals of a change issue (issue type named like
// a change) under ApprovalsMember, webhook and poll alike. Other events
// and issues pass unchanged.
func (c *Client) Enrich(ctx context.Context, eventType string, body []byte) ([]byte, error) {
	if eventType != "jira:issue_created" && eventType != EventType {
		return body, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return body, nil
	}
	var issue map[string]json.RawMessage
	if err := json.Unmarshal(top["issue"], &issue); err != nil {
		return body, nil
	}
	typ := strings.ToLower(gjson.GetBytes(issue["fields"], "issuetype.name").String())
	if !strings.Contains(typ, "change") {
		return body, nil
	}
	var key string
	_ = json.Unmarshal(issue["key"], &key)
	if key == "" {
		return body, nil
	}
	apps, err := c.Approvals(ctx, key)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(apps)
	issue[ApprovalsMember] = b
	ib, err := json.Marshal(issue)
	if err != nil {
		return nil, fmt.Errorf("encode issue %s: %w", key, err)
	}
	top["issue"] = ib
	return json.Marshal(top)
}

// releaseLabel is the label that marks the issue opened for a release.
func releaseLabel(releaseID string) string {
	id := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, releaseID)
	return "tollgate-release-" + id
}

// CreateChange opens the change for a release: an issue of the
// configured project and type, or, with service_desk_id and
// request_type_id, a JSM request. It is labelled with the release, so
// FindCreated finds it after a crash. It returns the new issue key.
func (c *Client) CreateChange(ctx context.Context, n connectors.NewChange) (string, error) {
	cr := c.creation
	if cr == nil {
		return "", fmt.Errorf("%s: change creation is not configured", c.System())
	}
	if cr.ServiceDeskID != "" {
		body := map[string]any{
			"serviceDeskId": cr.ServiceDeskID, "requestTypeId": cr.RequestTypeID,
			"requestFieldValues": map[string]any{"summary": inert.JiraWiki(n.Title()), "description": inert.JiraWiki(n.Description()), "labels": []string{releaseLabel(n.ReleaseID)}},
		}
		var out struct {
			IssueKey string `json:"issueKey"`
		}
		if err := c.raw(ctx, http.MethodPost, "rest/servicedeskapi/request", "change creation", body, &out); err != nil {
			return "", unknownCreation(err)
		}
		if out.IssueKey == "" {
			return "", unknownCreation(fmt.Errorf("%s: change creation: the answer names no issue key", c.System()))
		}
		return out.IssueKey, nil
	}
	typ := cr.IssueType
	if typ == "" {
		typ = "Change"
	}
	issue := &gojira.Issue{Fields: &gojira.IssueFields{
		Project:     gojira.Project{Key: cr.Project},
		Type:        gojira.IssueType{Name: typ},
		Summary:     inert.JiraWiki(n.Title()),
		Description: inert.JiraWiki(n.Description()),
		Labels:      []string{releaseLabel(n.ReleaseID)},
	}}
	created, resp, err := c.jc.Issue.CreateWithContext(ctx, issue)
	if err != nil {
		if resp != nil && resp.Response != nil {
			return "", unknownCreation(&apiclient.StatusError{Instance: c.System(), What: "change creation", Status: resp.StatusCode, Message: apiclient.Trim(err.Error())})
		}
		return "", unknownCreation(fmt.Errorf("%s: change creation: %w", c.System(), apiclient.UnwrapURL(err)))
	}
	if created == nil || created.Key == "" {
		return "", unknownCreation(fmt.Errorf("%s: change creation: the answer names no issue key", c.System()))
	}
	return created.Key, nil
}

// unknownCreation says so when a creation that failed may have opened the
// issue anyway (apiclient.Uncertain: no answer after it was sent, a 5xx,
// an unreadable answer). It is not repeated here, nor looked up at once:
// Jira's search index lags a creation, so "not found" right away proves
// nothing. The creator's next attempt looks by the release label before
// opening one.
func unknownCreation(err error) error {
	if errors.Is(err, connectors.ErrNotFound) || !apiclient.Uncertain(err) {
		return err
	}
	if errors.Is(err, apiclient.ErrOutcomeUnknown) {
		return err // it says so already
	}
	return fmt.Errorf("%w; %w (the issue may have been opened; the next attempt looks for it by its release label before opening one)", err, apiclient.ErrOutcomeUnknown)
}

// FindCreated returns the key of the issue opened for releaseID (by its
// label), or connectors.ErrNotFound.
func (c *Client) FindCreated(ctx context.Context, releaseID string) (string, error) {
	project := ""
	if c.creation != nil {
		project = c.creation.Project
	}
	jql := fmt.Sprintf(`labels = "%s" ORDER BY created ASC`, releaseLabel(releaseID))
	if project != "" {
		jql = fmt.Sprintf(`project in ("%s") AND `, project) + jql
	}
	key := ""
	err := c.search(ctx, jql, 1, func(is json.RawMessage) error {
		if key == "" {
			key = gjson.GetBytes(is, "key").String()
		}
		return errFound
	})
	if err != nil && !errors.Is(err, errFound) {
		return "", err
	}
	if key == "" {
		return "", fmt.Errorf("%s: issue for release %s: %w", c.System(), releaseID, connectors.ErrNotFound)
	}
	return key, nil
}

// errFound stops a search at its first issue.
var errFound = errors.New("found")

// HasWorkNote reports whether the issue already carries a comment that is
// exactly text, among its latest 100. The outbox asks before commenting
// again after a failed attempt, which may have been taken: the POST is not
// repeated by the client.
func (c *Client) HasWorkNote(ctx context.Context, key, text string) (bool, error) {
	var out struct {
		Comments []struct {
			Body string `json:"body"`
		} `json:"comments"`
	}
	path := "rest/api/2/issue/" + url.PathEscape(key) + "/comment?orderBy=-created&maxResults=100"
	if err := c.raw(ctx, http.MethodGet, path, "comments on "+key, nil, &out); err != nil {
		return false, err
	}
	norm := func(s string) string { return strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n")) }
	// As written now (escaped), or by a build before the escaping: a retry
	// across an upgrade must find the note an older attempt wrote.
	escaped, plain := norm(inert.JiraWiki(text)), norm(text)
	for _, cm := range out.Comments {
		if b := norm(cm.Body); b == escaped || b == plain {
			return true, nil
		}
	}
	return false, nil
}

// AddWorkNote comments on the issue, its wiki markup escaped
// (inert.JiraWiki): the comment carries pipeline-given text, which must
// not mention, link or embed images under tollgate's name.
func (c *Client) AddWorkNote(ctx context.Context, key, text string) error {
	// Through raw rather than go-jira's AddComment, whose error wrapping
	// reads the body again and loses a timeout or a status's text.
	var out json.RawMessage
	return c.raw(ctx, http.MethodPost, "rest/api/2/issue/"+url.PathEscape(key)+"/comment", "comment on "+key, &gojira.Comment{Body: inert.JiraWiki(text)}, &out)
}

// Circuit is the state of the site's circuit breaker.
func (c *Client) Circuit() string { return c.hc.State() }

// CloseIdleConnections closes the client's idle connections.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }
