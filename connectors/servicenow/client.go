package servicenow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/connectors/internal/rebase"
	"github.com/tollgate-dev/tollgate/internal/inert"
)

// The API client reads records through the Table API
// (/api/now/table/{table}, sysparm_display_value=all, so every field is a
// {display_value, value} pair and references carry their names), reads
// approvals from sysapproval_approver, opens changes through the Change
// Management API (/api/sn_chg_rest/change/normal or
// /change/standard/{template}) and writes work notes. Records it hands out
// are the Table API's own JSON, which the webhook path's mapping profiles
// read unchanged.

// Tables the poller reads, and the number prefixes of their records.
const (
	TableChange   = "change_request"
	TableIncident = "incident"
	tableApproval = "sysapproval_approver"
)

// timeLayout is how ServiceNow writes date-times (value form, UTC for an
// integration user in UTC).
const timeLayout = "2006-01-02 15:04:05"

// maxComment bounds an approval's comment as stored with the change.
const maxComment = 4000

// pageSize is sysparm_limit of list reads; maxPages bounds one poll (the
// next poll continues from the watermark). Pages the integration user's
// ACLs emptied whole count apart, up to maxHiddenPages: a user who may
// read a small part of a busy table meets long runs of them, and a poll
// that stopped inside one would start again before it, from the same
// watermark, every time.
const (
	pageSize       = 100
	maxPages       = 50
	maxHiddenPages = 500
	maxBody        = 16 << 20
)

// ApprovalsMember is the member the client adds to a change_request record
// with its approvals from sysapproval_approver; the servicenow-change
// mapping profile reads it.
const ApprovalsMember = "tollgate_approvals"

// Client is one ServiceNow instance's API client.
type Client struct {
	name     string
	base     string
	api      connectors.API
	creation *connectors.ChangeCreation
	hc       *apiclient.Client
	log      *slog.Logger
	keys     *regexp.Regexp

	// writeBack: the connector writes work notes (connectors.Config's
	// WriteBack), which the outbox looks for before writing one again
	// (HasWorkNote).
	writeBack bool

	tokenMu  sync.Mutex
	token    string
	tokenExp time.Time

	refs refCache

	// pages bounds one poll's reads of a table (maxPages, maxHiddenPages;
	// the tests lower them).
	pages pageLimits
}

// pageLimits are the pages one poll reads of a table: those that bring
// rows, and those the ACLs emptied whole.
type pageLimits struct{ read, hidden int }

// changeNumber is the default shape of a ServiceNow change number.
var changeNumber = regexp.MustCompile(`^CHG[0-9]+$`)

// NewClient builds the client for a connector with an api block.
func NewClient(cfg connectors.Config, hc *apiclient.Client, log *slog.Logger) (*Client, error) {
	if cfg.API == nil {
		return nil, fmt.Errorf("connector %s has no api", cfg.Name)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		name: cfg.Name, base: strings.TrimRight(cfg.API.URL, "/"), api: *cfg.API, creation: cfg.ChangeCreation, writeBack: cfg.WriteBack,
		hc: hc, log: log, keys: changeNumber, refs: refCache{m: map[string]refEntry{}, ttl: time.Hour},
		pages: pageLimits{read: maxPages, hidden: maxHiddenPages},
	}, nil
}

// Name is the connector's name.
func (c *Client) Name() string { return c.name }

// System names the instance for messages ("ServiceNow acme").
func (c *Client) System() string { return "ServiceNow " + c.name }

// OwnsChange reports whether key looks like one of this instance's change
// numbers.
func (c *Client) OwnsChange(key string) bool { return c.keys.MatchString(key) }

// errorBody is ServiceNow's error answer.
type errorBody struct {
	Error struct {
		Message string `json:"message"`
		Detail  string `json:"detail"`
	} `json:"error"`
}

// call sends one request and returns the answer's body for a 2xx; 404 is
// connectors.ErrNotFound (wrapped); other statuses are
// *apiclient.StatusError naming the instance, what and the status.
func (c *Client) call(ctx context.Context, method, path, what string, q url.Values, body any) ([]byte, error) {
	b, _, err := c.callHeader(ctx, method, path, what, q, body)
	return b, err
}

// callHeader is call that also returns the answer's headers.
func (c *Client) callHeader(ctx context.Context, method, path, what string, q url.Values, body any) ([]byte, http.Header, error) {
	for attempt := 0; ; attempt++ {
		b, h, status, err := c.once(ctx, method, path, what, q, body)
		// An OAuth token the instance revoked early: fetch a new one once.
		if status == http.StatusUnauthorized && attempt == 0 && c.api.ClientID != "" {
			c.dropToken()
			continue
		}
		return b, h, err
	}
}

func (c *Client) once(ctx context.Context, method, path, what string, q url.Values, body any) ([]byte, http.Header, int, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("%s: %s: encode request: %w", c.System(), what, err)
		}
		rd = bytes.NewReader(b)
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequestWithContext(ctx, method, u, rd)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, u, nil)
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%s: %s: %w", c.System(), what, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := c.authorize(ctx, req); err != nil {
		return nil, nil, 0, err
	}
	resp, err := c.hc.HTTPClient().Do(req)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%s: %s: %w", c.System(), what, apiclient.UnwrapURL(err))
	}
	b, err := apiclient.ReadBody(resp, maxBody)
	if err != nil {
		return nil, resp.Header, resp.StatusCode, fmt.Errorf("%s: %s: %w", c.System(), what, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, resp.Header, resp.StatusCode, fmt.Errorf("%s: %s: %w", c.System(), what, connectors.ErrNotFound)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		var eb errorBody
		_ = json.Unmarshal(b, &eb)
		msg := eb.Error.Message
		if eb.Error.Detail != "" {
			msg += " (" + eb.Error.Detail + ")"
		}
		return nil, resp.Header, resp.StatusCode, &apiclient.StatusError{Instance: c.System(), What: what, Status: resp.StatusCode, Message: apiclient.Trim(msg)}
	}
	if !json.Valid(b) {
		return nil, resp.Header, resp.StatusCode, fmt.Errorf("%s: %s: the answer is not valid JSON", c.System(), what)
	}
	return b, resp.Header, resp.StatusCode, nil
}

// authorize sets Basic auth or the OAuth bearer token.
func (c *Client) authorize(ctx context.Context, req *http.Request) error {
	if c.api.ClientID == "" {
		req.SetBasicAuth(c.api.Username, c.api.Password)
		return nil
	}
	tok, err := c.oauthToken(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

func (c *Client) dropToken() {
	c.tokenMu.Lock()
	c.token = ""
	c.tokenMu.Unlock()
}

// oauthToken returns a client-credentials access token from
// {url}/oauth_token.do, cached until shortly before it expires.
func (c *Client) oauthToken(ctx context.Context) (string, error) {
	c.tokenMu.Lock()
	defer c.tokenMu.Unlock()
	if c.token != "" && time.Now().Before(c.tokenExp) {
		return c.token, nil
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.api.ClientID}, "client_secret": {c.api.ClientSecret}}
	// A token grant is safe to repeat: a lost answer only leaves a token
	// unused until it expires.
	req, err := http.NewRequestWithContext(apiclient.Idempotent(ctx), http.MethodPost, c.base+"/oauth_token.do", strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("%s: oauth token: %w", c.System(), err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.HTTPClient().Do(req)
	if err != nil {
		return "", fmt.Errorf("%s: oauth token: %w", c.System(), apiclient.UnwrapURL(err))
	}
	b, err := apiclient.ReadBody(resp, 1<<20)
	if err != nil {
		return "", fmt.Errorf("%s: oauth token: %w", c.System(), err)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		Error       string `json:"error_description"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &tr) != nil || tr.AccessToken == "" {
		return "", &apiclient.StatusError{Instance: c.System(), What: "oauth token", Status: resp.StatusCode, Message: apiclient.Trim(tr.Error)}
	}
	life := time.Duration(tr.ExpiresIn) * time.Second
	if life <= 0 {
		life = 30 * time.Minute
	}
	c.token, c.tokenExp = tr.AccessToken, time.Now().Add(life*9/10)
	return c.token, nil
}

// listResult is the Table API's list answer.
type listResult struct {
	Result []json.RawMessage `json:"result"`
}

// list GETs table's records the query q asks for (what names the read in
// errors) and returns them as the Table API lists them.
func (c *Client) list(ctx context.Context, table, what string, q url.Values) ([]json.RawMessage, error) {
	p, err := c.listPage(ctx, table, what, q)
	return p.rows, err
}

// listPage is one Table API list answer: the records it shows, and what
// its headers say of the rows the query lists.
type listPage struct {
	rows []json.RawMessage
	// total is X-Total-Count, the rows the query lists, hidden ones
	// among them (-1: not sent).
	total int
	// linked says a Link header came, next that it names a next page.
	linked, next bool
}

// follows reports whether more rows follow the page asked at offset with
// limit, and whether the answer says: ServiceNow applies sysparm_limit
// before the integration user's ACLs hide rows, so a page shorter than
// the limit, or empty, is not the end.
func (p listPage) follows(offset, limit int) (more, known bool) {
	switch {
	case p.total >= 0:
		return offset+limit < p.total, true
	case p.linked:
		return p.next, true
	}
	return false, false
}

// listPage is list with what the answer's headers say of the listing.
func (c *Client) listPage(ctx context.Context, table, what string, q url.Values) (listPage, error) {
	b, h, err := c.callHeader(ctx, http.MethodGet, "/api/now/table/"+table, what, q, nil)
	if err != nil {
		return listPage{}, err
	}
	var lr listResult
	if err := json.Unmarshal(b, &lr); err != nil {
		return listPage{}, fmt.Errorf("%s: %s: the answer is not a Table API list: %w", c.System(), what, err)
	}
	p := listPage{rows: lr.Result, total: -1}
	if n, err := strconv.Atoi(strings.TrimSpace(h.Get("X-Total-Count"))); err == nil && n >= 0 {
		p.total = n
	}
	if links := h.Values("Link"); len(links) > 0 {
		p.linked, p.next = true, linksNext(strings.Join(links, ","))
	}
	return p, nil
}

// linksNext reports whether a Link header (RFC 8288: <url>;rel="next",
// <url>;rel="last" …) names a next page. The URLs are skipped whole: a
// query in them may hold commas and semicolons.
func linksNext(h string) bool {
	for {
		open := strings.IndexByte(h, '<')
		if open < 0 {
			return false
		}
		end := strings.IndexByte(h[open:], '>')
		if end < 0 {
			return false
		}
		h = h[open+end+1:]
		params := h
		if i := strings.IndexByte(h, '<'); i >= 0 {
			params = h[:i]
		}
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(p, "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
				continue
			}
			// The last parameter of a link runs to the comma before the next.
			v = strings.Trim(strings.TrimRight(strings.TrimSpace(v), ", \t"), `"`)
			for _, rel := range strings.Fields(v) {
				if strings.EqualFold(rel, "next") {
					return true
				}
			}
		}
	}
}

// GetRecord reads one record by number from table with display values;
// connectors.ErrNotFound (wrapped) when the instance has none.
func (c *Client) GetRecord(ctx context.Context, table, number string) (connectors.Record, error) {
	q := url.Values{
		"sysparm_query":         {"number=" + number},
		"sysparm_display_value": {"all"},
		"sysparm_limit":         {"1"},
	}
	rows, err := c.list(ctx, table, table+" "+number, q)
	if err != nil {
		return connectors.Record{}, err
	}
	if len(rows) == 0 {
		return connectors.Record{}, fmt.Errorf("%s: %s %s: %w", c.System(), table, number, connectors.ErrNotFound)
	}
	return c.record(table, rows[0])
}

// record turns one Table API record into a connectors.Record.
func (c *Client) record(table string, raw json.RawMessage) (connectors.Record, error) {
	r := gjson.ParseBytes(raw)
	if !r.IsObject() {
		return connectors.Record{}, fmt.Errorf("%s: %s: a record is not a JSON object", c.System(), table)
	}
	typ := fieldValue(r.Get("sys_class_name"))
	if typ == "" {
		typ = table
	}
	rec := connectors.Record{Type: typ, Key: fieldValue(r.Get("number")), Body: append([]byte(nil), raw...)}
	if v := fieldValue(r.Get("sys_updated_on")); v != "" {
		t, err := time.Parse(timeLayout, v)
		if err != nil {
			return connectors.Record{}, fmt.Errorf("%s: %s %s: sys_updated_on %q is not a date-time", c.System(), table, rec.Key, v)
		}
		rec.UpdatedAt = t.UTC()
	}
	return rec, nil
}

// fieldValue is a field's machine value in any of its shapes.
func fieldValue(v gjson.Result) string {
	if v.IsObject() {
		return v.Get("value").String()
	}
	return v.String()
}

// fieldDisplay is a field's display value, or "" when it has none.
func fieldDisplay(v gjson.Result) string {
	if v.IsObject() {
		return v.Get("display_value").String()
	}
	return ""
}

// Poll implements the poller's source: changes and incidents updated at
// or after since, oldest first across the two tables.
func (c *Client) Poll(ctx context.Context, since time.Time, emit func(connectors.Record) error) error {
	return c.listMerged(ctx, since, emit, TableChange, TableIncident)
}

// listMerged emits the records of tables updated at or after since,
// oldest first across them, holding one page of each. The poller keeps
// the newest record stored as its watermark, so no record may be emitted
// while an older one of another table is unread: a failure part-way, or
// a table with more than one poll's pages (it stops there), would
// otherwise leave the older ones behind the watermark for good.
func (c *Client) listMerged(ctx context.Context, since time.Time, emit func(connectors.Record) error, tables ...string) error {
	curs := make([]*tableCursor, len(tables))
	for i, t := range tables {
		curs[i] = &tableCursor{c: c, table: t, at: rebase.New(since.UTC(), time.Second, pageSize)}
	}
	emitted := 0
	for {
		var next *tableCursor
		for _, tc := range curs {
			if err := tc.fill(ctx); err != nil {
				return err
			}
			if len(tc.buf) == 0 && !tc.done {
				if emitted == 0 {
					// The next poll, from the same watermark, would read the
					// same pages again: say so rather than stop quietly.
					return tc.stalled(since)
				}
				return nil // read as far as one poll goes; the next goes on from here
			}
			if len(tc.buf) > 0 && (next == nil || tc.buf[0].UpdatedAt.Before(next.buf[0].UpdatedAt)) {
				next = tc
			}
		}
		if next == nil {
			return nil
		}
		if err := emit(next.buf[0]); err != nil {
			return err
		}
		emitted++
		next.buf = next.buf[1:]
	}
}

// tableCursor reads one table's records oldest first, a page at a time,
// each page asked from the newest update read so far (package rebase):
// with a plain offset, a change updated while the pages are read would
// shift the listing and one record would be skipped for good.
type tableCursor struct {
	c     *Client
	table string
	at    *rebase.Cursor
	page  int
	// hidden counts the pages read that the ACLs emptied whole while more
	// rows followed; they do not count in page.
	hidden int
	buf    []connectors.Record
	done   bool // the table's last page is read
}

// fill reads pages while the buffer is empty, until the table's last
// page or one poll's pages (maxPages, and maxHiddenPages emptied by the
// ACLs) are read.
func (tc *tableCursor) fill(ctx context.Context) error {
	for len(tc.buf) == 0 && !tc.done && tc.page < tc.c.pages.read && tc.hidden < tc.c.pages.hidden {
		if err := tc.readPage(ctx); err != nil {
			return err
		}
	}
	return nil
}

// readPage reads one page into the buffer, leaving out the records an
// earlier page held.
func (tc *tableCursor) readPage(ctx context.Context) error {
	since, offset := tc.at.Next()
	q := url.Values{
		"sysparm_query":         {"sys_updated_on>=" + since.Format(timeLayout) + "^ORDERBYsys_updated_on^ORDERBYsys_id"},
		"sysparm_display_value": {"all"},
		"sysparm_limit":         {fmt.Sprint(pageSize)},
		"sysparm_offset":        {fmt.Sprint(offset)},
	}
	pg, err := tc.c.listPage(ctx, tc.table, tc.table, q)
	if err != nil {
		return err
	}
	rows := pg.rows
	more, known := pg.follows(offset, pageSize)
	listed := len(rows)
	if more {
		listed = pageSize // cut full, then thinned by the ACLs: hidden rows hold places
	}
	recs := make([]connectors.Record, 0, len(rows))
	ids := make([]string, len(rows))
	times := make([]time.Time, len(rows))
	for i, raw := range rows {
		rec, err := tc.c.record(tc.table, raw)
		if err != nil {
			return err
		}
		recs = append(recs, rec)
		ids[i], times[i] = fieldValue(gjson.GetBytes(raw, "sys_id")), rec.UpdatedAt
	}
	fresh := 0
	for i, f := range tc.at.ReadListed(ids, times, listed) {
		if f {
			tc.buf = append(tc.buf, recs[i])
			fresh++
		}
	}
	if len(rows) == 0 && more {
		tc.hidden++
	} else {
		tc.page++
	}
	if known {
		// X-Total-Count (or the Link header) counts the rows the ACLs
		// hide: a page they emptied is not the end.
		tc.done = !more
		return nil
	}
	// Without either header, a short page ends the table only when it
	// brings nothing new (the records the next page re-reads of its
	// instant): ServiceNow leaves out the rows the integration user's
	// ACLs hide after cutting the page, so a short page can have more
	// after it; taken for the end, the merge would go on to the other
	// table's newer records and the watermark past the rows not read.
	tc.done = len(rows) < pageSize && fresh == 0
	return nil
}

// stalled is the error of a poll whose pages of the table, as many as one
// poll reads, showed nothing to hand on while the instance said more
// rows follow: its ACLs hide a run of rows longer than that from the
// integration user (or it answers wrongly), and the rows after the run
// are not read until it may read them.
func (tc *tableCursor) stalled(since time.Time) error {
	return fmt.Errorf("%s: %s: %d pages of the records updated since %s showed none to read while the instance says more follow "+
		"(hidden by the integration user's ACLs?); the records after them are not read", tc.c.System(), tc.table, tc.page+tc.hidden, since.UTC().Format(timeLayout))
}

// ReadChange reads one change by number for the gate's read-back.
func (c *Client) ReadChange(ctx context.Context, key string) (connectors.Record, error) {
	return c.GetRecord(ctx, TableChange, key)
}

// Approval is one row of sysapproval_approver, as stored with the change.
type Approval struct {
	Approver string `json:"approver"`
	// Name is the approver's display name (the change's requested_by is
	// one): SELF_APPROVAL compares either.
	Name    string `json:"name,omitempty"`
	State   string `json:"state"`
	At      string `json:"at,omitempty"`
	Comment string `json:"comment,omitempty"`
}

// Approvals reads the approvers of the change with sysID (or, without
// one, number): who, their decision and when. Rows that are not a
// decision (not yet requested, no longer required, cancelled) are left
// out.
func (c *Client) Approvals(ctx context.Context, sysID, number string) ([]Approval, error) {
	cond := "sysapproval=" + sysID
	if sysID == "" {
		cond = "sysapproval.number=" + number
	}
	q := url.Values{
		"sysparm_query":         {cond + "^ORDERBYsys_updated_on"},
		"sysparm_display_value": {"all"},
		"sysparm_fields":        {"approver,approver.user_name,state,sys_updated_on,comments"},
		"sysparm_limit":         {"200"},
	}
	rows, err := c.list(ctx, tableApproval, tableApproval+" of "+number, q)
	if err != nil {
		return nil, err
	}
	out := []Approval{}
	for _, raw := range rows {
		r := gjson.ParseBytes(raw)
		state := strings.ToLower(fieldValue(r.Get("state")))
		switch state {
		case "approved", "rejected", "requested":
		default:
			continue
		}
		who := fieldValue(r.Get("approver\\.user_name"))
		if who == "" {
			who = fieldDisplay(r.Get("approver"))
		}
		if who == "" {
			who = fieldValue(r.Get("approver"))
		}
		a := Approval{Approver: who, Name: fieldDisplay(r.Get("approver")), State: state, At: fieldValue(r.Get("sys_updated_on"))}
		if state != "requested" {
			// The approver's words are the approval's evidence: kept
			// with their lines, within a bound for the stored record.
			a.Comment = apiclient.Clip(strings.TrimSpace(fieldDisplay(r.Get("comments"))), maxComment)
		}
		out = append(out, a)
	}
	return out, nil
}

// Enrich completes a raw change or incident record before it is mapped,
// webhook and poll alike: references that arrive as bare sys_ids get
// their display values (cached), and a change gets its approvals from
// sysapproval_approver under ApprovalsMember. Other records pass
// unchanged. A failed call is an error: the record is mapped later rather
// than stored without its approvers.
func (c *Client) Enrich(ctx context.Context, eventType string, body []byte) ([]byte, error) {
	if eventType != TableChange && eventType != TableIncident {
		return body, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return body, nil // the mapping reports the body's own problem
	}
	rec, wrapped := top, false
	if _, ok := top[fieldClass]; !ok {
		if inner, ok := top[fieldResult]; ok {
			if err := json.Unmarshal(inner, &rec); err != nil {
				return body, nil
			}
			wrapped = true
		}
	}
	if err := c.completeRefs(ctx, rec); err != nil {
		return nil, err
	}
	if eventType == TableChange {
		sysID := fieldValue(gjson.ParseBytes(rec["sys_id"]))
		number := fieldValue(gjson.ParseBytes(rec["number"]))
		if number != "" || sysID != "" {
			apps, err := c.Approvals(ctx, sysID, number)
			if err != nil {
				return nil, err
			}
			b, _ := json.Marshal(apps)
			rec[ApprovalsMember] = b
		}
	}
	if wrapped {
		inner, err := json.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("encode record: %w", err)
		}
		top[fieldResult] = inner
		rec = top
	}
	out, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return out, nil
}

// refFields are the reference fields the mapping profiles read by display
// value, with the table each points at.
var refFields = map[string]string{
	"cmdb_ci": "cmdb_ci", "business_service": "cmdb_ci_service", "service_offering": "service_offering",
	"assignment_group": "sys_user_group", "requested_by": "sys_user", "assigned_to": "sys_user",
	"opened_by": "sys_user", "caller_id": "sys_user", "rfc": "change_request",
	"std_change_producer_version": "std_change_producer_version", "chg_model": "chg_model",
}

var sysIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// completeRefs replaces each bare sys_id reference in rec (a plain string
// or a {link,value} without display_value) with a {display_value, value}
// pair.
func (c *Client) completeRefs(ctx context.Context, rec map[string]json.RawMessage) error {
	for field, table := range refFields {
		raw, ok := rec[field]
		if !ok {
			continue
		}
		v := gjson.ParseBytes(raw)
		if v.IsObject() && v.Get("display_value").Exists() {
			continue
		}
		id := fieldValue(v)
		if !sysIDPattern.MatchString(id) {
			continue
		}
		name, err := c.display(ctx, table, id)
		if err != nil {
			if errors.Is(err, connectors.ErrNotFound) {
				continue // a dangling reference keeps its sys_id
			}
			return err
		}
		b, _ := json.Marshal(map[string]string{"display_value": name, "value": id})
		rec[field] = b
	}
	return nil
}

// displayField is the field each referenced table displays.
func displayField(table string) string {
	switch table {
	case "change_request", "incident":
		return "number"
	}
	return "name"
}

// display returns a referenced record's display value, cached.
func (c *Client) display(ctx context.Context, table, id string) (string, error) {
	if v, ok := c.refs.get(table + "/" + id); ok {
		return v, nil
	}
	f := displayField(table)
	b, err := c.call(ctx, http.MethodGet, "/api/now/table/"+table+"/"+id, table, url.Values{"sysparm_fields": {f}}, nil)
	if err != nil {
		return "", err
	}
	name := gjson.GetBytes(b, "result."+f)
	v := fieldDisplay(name)
	if v == "" {
		v = fieldValue(name)
	}
	c.refs.put(table+"/"+id, v)
	return v, nil
}

// refCache keeps display values of referenced records for ttl; it is
// bounded (cleared when full), since the names change rarely and a miss
// costs one call.
type refCache struct {
	mu  sync.Mutex
	m   map[string]refEntry
	ttl time.Duration
}

type refEntry struct {
	v   string
	exp time.Time
}

const refCacheMax = 10000

func (r *refCache) get(k string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[k]
	if !ok || time.Now().After(e.exp) {
		return "", false
	}
	return e.v, true
}

func (r *refCache) put(k, v string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) >= refCacheMax {
		clear(r.m)
	}
	r.m[k] = refEntry{v: v, exp: time.Now().Add(r.ttl)}
}

// CreateChange opens a change for a release through the Change
// Management API: /change/normal, or /change/standard/{template}. The
// release id goes in correlation_id, so FindCreated finds it after a
// crash. It returns the new change's number.
func (c *Client) CreateChange(ctx context.Context, n connectors.NewChange) (string, error) {
	path := "/api/sn_chg_rest/change/normal"
	if c.creation != nil && c.creation.Type == "standard" {
		id, err := c.templateID(ctx, c.creation.Template)
		if err != nil {
			return "", err
		}
		path = "/api/sn_chg_rest/change/standard/" + url.PathEscape(id)
	}
	body := map[string]string{
		"short_description":   inert.ServiceNow(n.Title()),
		"description":         inert.ServiceNow(n.Description()),
		"justification":       inert.ServiceNow("Release " + n.Version + " of " + n.Service + " (pipeline " + inert.Line(n.RunURL) + ")"),
		"correlation_id":      n.ReleaseID,
		"correlation_display": "tollgate",
	}
	// The POST is not repeated once it may have been acted on (apiclient
	// retries it only when it certainly was not): a repeat after a reset
	// or a 500 could open a second change.
	b, err := c.call(ctx, http.MethodPost, path, "change creation", nil, body)
	num := ""
	if err == nil {
		if num = fieldValue(gjson.GetBytes(b, "result.number")); num == "" {
			err = fmt.Errorf("%s: change creation: the answer names no change number", c.System())
		}
	}
	if err == nil || errors.Is(err, connectors.ErrNotFound) || !apiclient.Uncertain(err) {
		return num, err
	}
	// The instance may have opened the change and then failed, or the
	// answer was lost: look for it by correlation_id before anything else.
	num, ferr := c.FindCreated(ctx, n.ReleaseID)
	if ferr == nil {
		return num, nil
	}
	return "", &CreationUnknown{System: c.System(), ReleaseID: n.ReleaseID, Err: err, Lookup: ferr}
}

// CreationUnknown is a change creation that may or may not have opened the
// change (no answer after the request was sent, a 5xx, an unreadable
// answer) and whose lookup by correlation_id found none, or failed. It is
// not retried here: the creator's next attempt looks again before opening
// one (the lookup may lag the creation), or an operator checks.
type CreationUnknown struct {
	System    string
	ReleaseID string
	Err       error // the creation's failure
	Lookup    error // connectors.ErrNotFound, or why the lookup failed
}

func (e *CreationUnknown) Error() string {
	s := e.Err.Error()
	if !errors.Is(e.Err, apiclient.ErrOutcomeUnknown) {
		s += "; outcome unknown: the change may have been opened"
	}
	if errors.Is(e.Lookup, connectors.ErrNotFound) {
		s += "; no change with correlation_id " + e.ReleaseID + " found yet"
	} else {
		s += "; the lookup by correlation_id failed too: " + e.Lookup.Error()
	}
	return s + "; the next attempt looks again before opening one"
}

func (e *CreationUnknown) Unwrap() error { return e.Err }

// Is matches apiclient.ErrOutcomeUnknown whatever the failure was.
func (e *CreationUnknown) Is(target error) bool { return target == apiclient.ErrOutcomeUnknown }

// templateID is the sys_id of a standard change template given by sys_id
// or by name (looked up in std_change_record_producer, cached).
func (c *Client) templateID(ctx context.Context, t string) (string, error) {
	if sysIDPattern.MatchString(t) {
		return t, nil
	}
	if id, ok := c.refs.get("template/" + t); ok {
		return id, nil
	}
	q := url.Values{"sysparm_query": {"name=" + t + "^active=true"}, "sysparm_fields": {"sys_id"}, "sysparm_limit": {"1"}}
	b, err := c.call(ctx, http.MethodGet, "/api/now/table/std_change_record_producer", "standard change template "+t, q, nil)
	if err != nil {
		return "", err
	}
	id := fieldValue(gjson.GetBytes(b, "result.0.sys_id"))
	if id == "" {
		return "", &apiclient.StatusError{Instance: c.System(), What: "standard change template " + t, Status: http.StatusNotFound,
			Message: "no active template of that name"}
	}
	c.refs.put("template/"+t, id)
	return id, nil
}

// FindCreated returns the number of the change opened for releaseID
// (by correlation_id), or connectors.ErrNotFound.
func (c *Client) FindCreated(ctx context.Context, releaseID string) (string, error) {
	q := url.Values{
		"sysparm_query":  {"correlation_id=" + releaseID + "^ORDERBYsys_created_on"},
		"sysparm_fields": {"number"},
		"sysparm_limit":  {"1"},
	}
	b, err := c.call(ctx, http.MethodGet, "/api/now/table/"+TableChange, TableChange, q, nil)
	if err != nil {
		return "", err
	}
	num := fieldValue(gjson.GetBytes(b, "result.0.number"))
	if num == "" {
		return "", fmt.Errorf("%s: change for release %s: %w", c.System(), releaseID, connectors.ErrNotFound)
	}
	return num, nil
}

// changeID is the sys_id of the change with number key.
func (c *Client) changeID(ctx context.Context, key string) (string, error) {
	q := url.Values{"sysparm_query": {"number=" + key}, "sysparm_fields": {"sys_id"}, "sysparm_limit": {"1"}}
	b, err := c.call(ctx, http.MethodGet, "/api/now/table/"+TableChange, TableChange+" "+key, q, nil)
	if err != nil {
		return "", err
	}
	id := fieldValue(gjson.GetBytes(b, "result.0.sys_id"))
	if id == "" {
		return "", fmt.Errorf("%s: %s %s: %w", c.System(), TableChange, key, connectors.ErrNotFound)
	}
	return id, nil
}

// HasWorkNote reports whether the change with number key already carries
// a work note that is exactly text, among its latest 100 (read from
// sys_journal_field: the integration user needs read access to it). The
// outbox asks before writing a note again after a failed attempt, which
// may have been taken: the PATCH is not repeated by the client.
func (c *Client) HasWorkNote(ctx context.Context, key, text string) (bool, error) {
	id, err := c.changeID(ctx, key)
	if err != nil {
		return false, err
	}
	q := url.Values{"sysparm_query": {"element_id=" + id + "^element=work_notes^ORDERBYDESCsys_created_on"},
		"sysparm_fields": {"value"}, "sysparm_limit": {"100"}}
	b, err := c.call(ctx, http.MethodGet, "/api/now/table/sys_journal_field", TableChange+" "+key+" work notes", q, nil)
	if err != nil {
		return false, err
	}
	for _, v := range gjson.GetBytes(b, "result.#.value").Array() {
		// As written now, or by a build before [code] was neutralised: a
		// retry across an upgrade must find the note an older attempt wrote.
		if stored := fieldValue(v); sameNote(stored, inert.ServiceNow(text)) || sameNote(stored, text) {
			return true, nil
		}
	}
	return false, nil
}

// sameNote compares a note as stored with the text written, ignoring line
// endings and surrounding space, which the instance may normalise.
func sameNote(stored, text string) bool {
	norm := func(s string) string { return strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n")) }
	return norm(stored) == norm(text)
}

// AddWorkNote writes a work note on the change with number key, its
// [code] tags made plain text (the journal would render what is between
// them as HTML, and the note carries pipeline-given text). The PATCH is
// not repeated once it may have been taken (see HasWorkNote).
func (c *Client) AddWorkNote(ctx context.Context, key, text string) error {
	id, err := c.changeID(ctx, key)
	if err != nil {
		return err
	}
	_, err = c.call(ctx, http.MethodPatch, "/api/now/table/"+TableChange+"/"+id, TableChange+" "+key+" work note", nil, map[string]string{"work_notes": inert.ServiceNow(text)})
	return err
}

// Circuit is the state of the instance's circuit breaker.
func (c *Client) Circuit() string { return c.hc.State() }

// CloseIdleConnections closes the client's idle connections.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }
