package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
)

const pageSize = 50

// --- dashboard ---

type dashboardView struct {
	Deployments []core.Deployment
	// Waiting are the oldest waiting gates; WaitingMore says there are
	// more than shown, WaitingCounts how many of each state.
	Waiting       []waitingRow
	WaitingCounts pendingCounts
	WaitingMore   bool
	Recent        []core.GateDecision
	Incidents     []core.Incident
	Holds         []core.Hold
	HasHolds      bool
	Freezes       []freezeRow
	Days          []dayCount
	Chart         chart
	// With reconciliation reports: the latest report's open findings and
	// the release metrics of the last weeks.
	Findings   *openFindings
	Weeks      []weekMetrics
	WeeksChart chart
	HasReports bool
}

type freezeRow struct {
	Environment string
	NowName     string
	NowUntil    time.Time
	Next        *freezeSpan
}

func (u *UI) dashboard(c *echo.Context, s *session) error {
	ctx := c.Request().Context()
	now := u.deps.Clock.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	var v dashboardView
	if err := u.dashboardGates(ctx, &v); err != nil {
		return err
	}
	var err error
	if v.Recent, err = u.deps.Reader.RecentDecisions(ctx, 10); err != nil {
		return err
	}
	if v.Deployments, err = u.deps.Reader.ListDeployments(ctx, core.ReleaseFilter{From: today, Limit: 100}); err != nil {
		return err
	}
	incidents, err := u.deps.Reader.ActiveIncidents(ctx)
	if err != nil {
		return err
	}
	if u.deps.Holds != nil {
		v.HasHolds = true
		if v.Holds, err = u.deps.Holds.List(ctx, false); err != nil {
			return err
		}
	}
	cp := u.deps.Policies.Current()
	for _, in := range incidents {
		if cp == nil || cp.IsMajor(in) {
			v.Incidents = append(v.Incidents, in)
		}
	}
	if cp != nil {
		for _, env := range cp.Environments() {
			row := freezeRow{Environment: env}
			if name, until, ok := cp.ActiveFreeze(env, now); ok {
				row.NowName, row.NowUntil = name, until
			}
			if spans := freezeSpans(cp, env, now, now.Add(30*24*time.Hour)); len(spans) > 0 {
				for i := range spans {
					if spans[i].From.After(now) {
						row.Next = &spans[i]
						break
					}
				}
			}
			v.Freezes = append(v.Freezes, row)
		}
	}
	past, err := u.deps.Reader.ListDeployments(ctx, core.ReleaseFilter{From: today.AddDate(0, 0, -13), Limit: 1000})
	if err != nil {
		return err
	}
	v.Days = deploymentDays(past, today, 14)
	v.Chart = deploymentChart(v.Days)
	if u.deps.Reports != nil {
		v.HasReports = true
		if v.Findings, err = u.latestFindings(ctx); err != nil {
			return err
		}
		if v.Weeks, err = u.weeklyMetrics(ctx, 8); err != nil {
			return err
		}
		v.WeeksChart = weeksChart(v.Weeks)
	}
	return u.render(c, s, http.StatusOK, "dashboard", "Dashboard", v)
}

// --- releases and deployments ---

type filterView struct {
	Service, Environment, Team, From, To string
	Status                               string // deployments only
}

type listView[T any] struct {
	Filter filterView
	Items  []T
	Next   string // query string of the next page, when there is one
}

// releaseFilter reads the list filters; the period is given in days
// (YYYY-MM-DD, UTC), "to" inclusive. The environment and service resolve
// to the names records carry, as the API's listings do (an environment the
// policy no longer lists, by the name the stored records carry).
func (u *UI) releaseFilter(c *echo.Context) (core.ReleaseFilter, filterView, error) {
	fv := filterView{Service: strings.TrimSpace(c.QueryParam("service")), Environment: strings.TrimSpace(c.QueryParam("environment")),
		Team: strings.TrimSpace(c.QueryParam("team")), From: c.QueryParam("from"), To: c.QueryParam("to")}
	f := core.ReleaseFilter{Service: fv.Service, Environment: fv.Environment, Team: fv.Team, Limit: pageSize, After: c.QueryParam("after")}
	cp := u.deps.Policies.Current()
	var err error
	if f.Environment, f.AlsoEnvironments, err = u.deps.Policies.HistoryEnvironments(c.Request().Context(), cp, "environment", f.Environment); err != nil {
		return f, fv, err
	}
	if f.Service != "" {
		f.Service = cp.Subject(f.Service, "", "").Service
	}
	if fv.From != "" {
		t, err := time.Parse(time.DateOnly, fv.From)
		if err != nil {
			return f, fv, core.Invalid("from", "%q is not a day like 2026-11-27", fv.From)
		}
		f.From = t
	}
	if fv.To != "" {
		t, err := time.Parse(time.DateOnly, fv.To)
		if err != nil {
			return f, fv, core.Invalid("to", "%q is not a day like 2026-11-27", fv.To)
		}
		f.To = t.AddDate(0, 0, 1)
	}
	return f, fv, nil
}

func nextQuery(fv filterView, after string) string {
	q := url.Values{}
	for k, v := range map[string]string{"service": fv.Service, "environment": fv.Environment, "team": fv.Team, "from": fv.From, "to": fv.To, "status": fv.Status, "after": after} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q.Encode()
}

func (u *UI) releases(c *echo.Context, s *session) error {
	f, fv, err := u.releaseFilter(c)
	if err != nil {
		return err
	}
	rs, err := u.deps.Reader.ListReleases(c.Request().Context(), f)
	if err != nil {
		return err
	}
	v := listView[core.Release]{Filter: fv, Items: rs}
	if len(rs) == pageSize {
		v.Next = nextQuery(fv, rs[len(rs)-1].ID)
	}
	return u.render(c, s, http.StatusOK, "releases", "Releases", v)
}

func (u *UI) deployments(c *echo.Context, s *session) error {
	f, fv, err := u.releaseFilter(c)
	if err != nil {
		return err
	}
	if fv.Status = c.QueryParam("status"); fv.Status != "" && !core.ValidDeployStatus(fv.Status) {
		return core.Invalid("status", "%q is not one of %s", fv.Status, strings.Join(core.DeployStatuses(), ", "))
	}
	f.Status = fv.Status
	ds, err := u.deps.Reader.ListDeployments(c.Request().Context(), f)
	if err != nil {
		return err
	}
	v := listView[core.Deployment]{Filter: fv, Items: ds}
	if len(ds) == pageSize {
		v.Next = nextQuery(fv, ds[len(ds)-1].ID)
	}
	return u.render(c, s, http.StatusOK, "deployments", "Deployments", v)
}

type releaseView struct {
	Release     core.Release
	Decisions   []core.GateDecision
	Deployments []core.Deployment
}

func (u *UI) release(c *echo.Context, s *session) error {
	ctx := c.Request().Context()
	r, err := u.deps.Reader.GetRelease(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	v := releaseView{Release: r}
	if v.Decisions, err = u.deps.Reader.DecisionsForRelease(ctx, r.ID, 100); err != nil {
		return err
	}
	ds, err := u.deps.Reader.ListDeployments(ctx, core.ReleaseFilter{Service: r.Service, Environment: r.Environment, Limit: 1000})
	if err != nil {
		return err
	}
	for _, d := range ds {
		if d.ReleaseID == r.ID {
			v.Deployments = append(v.Deployments, d)
		}
	}
	return u.render(c, s, http.StatusOK, "release", "Release "+r.Service+" "+r.Version, v)
}

// --- changes ---

func (u *UI) changeLookup(c *echo.Context, s *session) error {
	if key := strings.TrimSpace(c.QueryParam("key")); key != "" {
		return c.Redirect(http.StatusSeeOther, "/ui/changes/"+url.PathEscape(key))
	}
	return u.render(c, s, http.StatusOK, "changes", "Changes", nil)
}

type changeView struct {
	Change      core.Change
	Versions    []versionDiff
	Deployments []core.Deployment
}

type versionDiff struct {
	Version    int
	ValidFrom  time.Time
	RecordedAt time.Time
	Changed    []fieldChange
}

type fieldChange struct{ Field, Old, New string }

func (u *UI) change(c *echo.Context, s *session) error {
	ctx := c.Request().Context()
	ch, err := u.deps.Reader.GetChange(ctx, c.Param("key"))
	if err != nil {
		return err
	}
	hist, err := u.deps.Reader.ChangeHistory(ctx, ch.Key)
	if err != nil {
		return err
	}
	v := changeView{Change: ch}
	var prev map[string]any
	for _, h := range hist {
		cur := asMap(h.Change)
		v.Versions = append(v.Versions, versionDiff{Version: h.Version, ValidFrom: h.ValidFrom, RecordedAt: h.RecordedAt, Changed: diff(prev, cur)})
		prev = cur
	}
	slices.Reverse(v.Versions)
	// The deployments that name the change, among the latest thousand.
	ds, err := u.deps.Reader.ListDeployments(ctx, core.ReleaseFilter{From: u.deps.Clock.Now().AddDate(0, 0, -90), Limit: 1000})
	if err != nil {
		return err
	}
	for _, d := range ds {
		if slices.ContainsFunc(d.Changes, func(k string) bool { return strings.EqualFold(k, ch.Key) }) {
			v.Deployments = append(v.Deployments, d)
		}
	}
	return u.render(c, s, http.StatusOK, "change", "Change "+ch.Key, v)
}

func asMap(v any) map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// diff lists the fields that differ between two versions (every set field
// for the first version), in field order.
func diff(prev, cur map[string]any) []fieldChange {
	keys := map[string]struct{}{}
	for k := range prev {
		keys[k] = struct{}{}
	}
	for k := range cur {
		keys[k] = struct{}{}
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []fieldChange
	for _, k := range names {
		a, b := prev[k], cur[k]
		if prev != nil && reflect.DeepEqual(a, b) {
			continue
		}
		if prev == nil && b == nil {
			continue
		}
		out = append(out, fieldChange{Field: k, Old: show(a), New: show(b)})
	}
	return out
}

func show(v any) string {
	if v == nil {
		return "—"
	}
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// --- audit ---

type auditView struct {
	Subject, Action string
	Rows            []core.AuditEntry
	Next            string
	Verified        bool
	Break           *core.AuditBreak
	Count           int64
}

func (u *UI) audit(c *echo.Context, s *session) error {
	ctx := c.Request().Context()
	v := auditView{Subject: strings.TrimSpace(c.QueryParam("subject")), Action: strings.TrimSpace(c.QueryParam("action"))}
	f := core.AuditFilter{Limit: pageSize, Subject: v.Subject, Action: v.Action}
	if a := c.QueryParam("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			return core.Invalid("after", "must be a row number")
		}
		f.AfterSeq = n
	}
	var err error
	if v.Rows, err = u.deps.Reader.ListAudit(ctx, f); err != nil {
		return err
	}
	if len(v.Rows) == pageSize {
		q := url.Values{"after": {strconv.FormatInt(v.Rows[len(v.Rows)-1].Seq, 10)}}
		if v.Subject != "" {
			q.Set("subject", v.Subject)
		}
		if v.Action != "" {
			q.Set("action", v.Action)
		}
		v.Next = q.Encode()
	}
	if c.QueryParam("verify") == "1" {
		brk, n, err := u.deps.Reader.VerifyAudit(ctx)
		if err != nil {
			return err
		}
		v.Verified, v.Break, v.Count = true, brk, n
	}
	return u.render(c, s, http.StatusOK, "audit", "Audit trail", v)
}

// --- mappings ---

type mappingsView struct{ Items []core.MappingProfile }

func (u *UI) mappings(c *echo.Context, s *session) error {
	ms, err := u.deps.Mappings.List(c.Request().Context())
	if err != nil {
		return err
	}
	return u.render(c, s, http.StatusOK, "mappings", "Mappings", mappingsView{Items: ms})
}

type mappingView struct {
	Profile  core.MappingProfile
	Source   string
	Sample   string
	Versions []core.MappingProfile
	Preview  string   // the mapped record, indented JSON
	Problems []string // every error of the preview or the save
	Saved    bool
	Proposed string // the id of the proposal a save made under four-eyes governance
}

func (u *UI) mapping(c *echo.Context, s *session) error {
	ctx := c.Request().Context()
	m, err := u.deps.Mappings.Get(ctx, c.Param("name"))
	if err != nil {
		return err
	}
	v := mappingView{Profile: m, Source: m.Source}
	if v.Versions, err = u.deps.Mappings.Versions(ctx, m.Name); err != nil {
		return err
	}
	// The banners come back in the redirect's query, which anyone can
	// write into a link: each is shown only when true of this session —
	// its own save is the newest version, its own proposal is pending.
	v.Saved = c.QueryParam("saved") == "1" && m.Version > 0 && m.UpdatedBy == s.actor()
	if id := c.QueryParam("proposed"); id != "" && u.deps.Proposals != nil {
		if p, err := u.deps.Proposals.Get(ctx, id); err == nil && p.Status == core.ProposalPending && p.ProposedBy == s.actor() && p.Target == m.Name {
			v.Proposed = p.ID
		}
	}
	return u.render(c, s, http.StatusOK, "mapping", "Mapping "+m.Name, v)
}

// mappingPost previews the edited source against a sample (action
// preview) or saves it as a new version (action save). Either way a
// mistake shows every problem next to the text, nothing is lost.
func (u *UI) mappingPost(c *echo.Context, s *session) error {
	ctx := c.Request().Context()
	name := c.Param("name")
	src := strings.ReplaceAll(c.FormValue("source"), "\r\n", "\n")
	v := mappingView{Profile: core.MappingProfile{Name: name}, Source: src, Sample: c.FormValue("sample")}
	if m, err := u.deps.Mappings.Get(ctx, name); err == nil {
		v.Profile = m
	} else if !core.IsKind(err, core.KindNotFound) {
		return err
	}
	status := http.StatusOK
	switch c.FormValue("action") {
	case "save":
		if u.deps.Proposals != nil && u.deps.Proposals.FourEyes() {
			p, err := u.deps.Proposals.Propose(ctx, core.ProposalMapping, name, []byte(src), s.actor())
			if err == nil {
				return c.Redirect(http.StatusSeeOther, "/ui/mappings/"+url.PathEscape(name)+"?proposed="+url.QueryEscape(p.ID))
			}
			if !isClientError(err) {
				return err
			}
			v.Problems, status = problemLines(err), http.StatusBadRequest
			break
		}
		m, err := u.deps.Mappings.Put(ctx, name, []byte(src), s.actor())
		if err == nil {
			return c.Redirect(http.StatusSeeOther, "/ui/mappings/"+url.PathEscape(m.Name)+"?saved=1")
		}
		if !isClientError(err) {
			return err
		}
		v.Problems, status = problemLines(err), http.StatusBadRequest
	case "preview":
		if strings.TrimSpace(v.Sample) == "" {
			v.Problems, status = []string{"sample: paste a sample payload to preview"}, http.StatusBadRequest
			break
		}
		res, err := u.deps.Mappings.Preview(ctx, name, []byte(src), []byte(v.Sample))
		if err != nil {
			if !isClientError(err) {
				return err
			}
			v.Problems, status = problemLines(err), http.StatusBadRequest
			break
		}
		if v.Preview, v.Problems, err = previewText(res); err != nil {
			return err
		}
		if len(v.Problems) > 0 {
			status = http.StatusBadRequest
		}
	default:
		return core.Invalid("action", "must be preview or save")
	}
	var err error
	if v.Versions, err = u.deps.Mappings.Versions(ctx, name); err != nil && !core.IsKind(err, core.KindNotFound) {
		return err
	}
	return u.render(c, s, status, "mapping", "Mapping "+name, v)
}

// previewText splits the service's preview into the mapped record
// (indented JSON) and every field error ("field (payload path): message").
func previewText(res any) (string, []string, error) {
	raw, err := json.Marshal(res)
	if err != nil {
		return "", nil, fmt.Errorf("render preview: %w", err)
	}
	var p struct {
		OK     bool            `json:"ok"`
		Kind   string          `json:"kind"`
		Record json.RawMessage `json:"record"`
		Errors []struct {
			Field, Path, Message string
		} `json:"errors"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", nil, fmt.Errorf("read preview: %w", err)
	}
	var problems []string
	for _, e := range p.Errors {
		line := e.Message
		switch {
		case e.Field != "" && e.Path != "":
			line = e.Field + " (payload " + e.Path + "): " + e.Message
		case e.Field != "":
			line = e.Field + ": " + e.Message
		}
		problems = append(problems, line)
	}
	if !p.OK && len(problems) == 0 {
		problems = []string{"the sample does not map"}
	}
	if !p.OK {
		return "", problems, nil
	}
	var rec any
	if err := json.Unmarshal(p.Record, &rec); err != nil {
		return "", nil, fmt.Errorf("read preview record: %w", err)
	}
	out, err := json.MarshalIndent(map[string]any{"kind": p.Kind, "record": rec}, "", "  ")
	if err != nil {
		return "", nil, fmt.Errorf("render preview: %w", err)
	}
	return string(out), nil, nil
}

func isClientError(err error) bool {
	return core.IsKind(err, core.KindInvalid) || core.IsKind(err, core.KindNotFound) ||
		core.IsKind(err, core.KindConflict) || core.IsKind(err, core.KindTooLarge)
}

// problemLines is every problem of err, one line each ("field: message").
func problemLines(err error) []string {
	if ps := problemList(err); ps != nil {
		return ps
	}
	var ce *core.Error
	if errors.As(err, &ce) {
		if ce.Field != "" {
			return []string{ce.Field + ": " + ce.Message}
		}
		return []string{ce.Message}
	}
	return []string{"the request was refused"}
}

// --- policy ---

type policyView struct {
	Version     core.PolicyVersion
	Policy      core.Policy
	Envs        []envView
	Freezes     []freezeSpan
	TimeZone    string
	BusinessDay string
}

type envView struct {
	Name    string
	Policy  core.EnvironmentPolicy
	Rules   []string
	Aliases []string
}

func (u *UI) policy(c *echo.Context, s *session) error {
	ctx := c.Request().Context()
	pv, err := u.deps.Policies.Source(ctx)
	if err != nil {
		return err
	}
	cp := u.deps.Policies.Current()
	p := cp.Policy()
	v := policyView{Version: pv, Policy: p, TimeZone: cp.Location().String()}
	now := u.deps.Clock.Now()
	for _, env := range cp.Environments() {
		ep := p.Environments[env]
		v.Envs = append(v.Envs, envView{Name: env, Policy: ep, Rules: cp.Rules(env, ""), Aliases: ep.Aliases})
		for _, sp := range freezeSpans(cp, env, now, now.Add(30*24*time.Hour)) {
			v.Freezes = append(v.Freezes, sp)
		}
	}
	slices.SortFunc(v.Freezes, func(a, b freezeSpan) int { return a.From.Compare(b.From) })
	return u.render(c, s, http.StatusOK, "policy", "Policy", v)
}

// --- inbox ---

type inboxView struct {
	Status, Connector string
	Events            []core.Event
	Next              string
	Replayed          string
}

func (u *UI) inbox(c *echo.Context, s *session) error {
	v := inboxView{Status: c.QueryParam("status"), Connector: strings.TrimSpace(c.QueryParam("connector"))}
	// The banner's words are the UI's, from the query's number or event
	// id alone: a link cannot put its own text in an admin's page.
	if n, err := strconv.Atoi(c.QueryParam("replayed")); err == nil && n >= 0 && v.Connector != "" {
		v.Replayed = fmt.Sprintf("%d quarantined events of %s", n, v.Connector)
	} else if id := c.QueryParam("replayed_event"); id != "" {
		if e, err := u.deps.Inbox.GetEvent(c.Request().Context(), id); err == nil {
			v.Replayed = "event " + e.ID
		}
	}
	if v.Status == "" {
		v.Status = core.EventQuarantined
	}
	switch v.Status {
	case core.EventPending, core.EventProcessed, core.EventQuarantined, core.EventIgnored:
	default:
		return core.Invalid("status", "%q is not one of pending, processed, quarantined, ignored", v.Status)
	}
	es, err := u.deps.Inbox.ListEvents(c.Request().Context(), core.EventFilter{Status: v.Status, Connector: v.Connector, Limit: pageSize, After: c.QueryParam("after")})
	if err != nil {
		return err
	}
	v.Events = es
	if len(es) == pageSize {
		q := url.Values{"status": {v.Status}, "after": {es[len(es)-1].ID}}
		if v.Connector != "" {
			q.Set("connector", v.Connector)
		}
		v.Next = q.Encode()
	}
	return u.render(c, s, http.StatusOK, "inbox", "Inbox", v)
}

type eventView struct {
	Event core.Event
	Body  string
}

func (u *UI) event(c *echo.Context, s *session) error {
	e, err := u.deps.Inbox.GetEvent(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	// Indented as received (json.Indent keeps every string's bytes), shown
	// as text: html/template escapes it.
	body := string(e.Body)
	var buf bytes.Buffer
	if json.Indent(&buf, e.Body, "", "  ") == nil {
		body = buf.String()
	}
	return u.render(c, s, http.StatusOK, "event", "Event "+e.ID, eventView{Event: e, Body: strings.ToValidUTF8(body, "\uFFFD")})
}

func (u *UI) replayEvent(c *echo.Context, s *session) error {
	id := c.Param("id")
	if err := u.deps.Inbox.Replay(c.Request().Context(), id, s.actor()); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/ui/inbox?status=pending&replayed_event="+url.QueryEscape(id))
}

func (u *UI) replayConnector(c *echo.Context, s *session) error {
	conn := strings.TrimSpace(c.FormValue("connector"))
	if conn == "" {
		return core.Invalid("connector", "is required: replays every quarantined event of that connector")
	}
	n, err := u.deps.Inbox.ReplayQuarantined(c.Request().Context(), conn, s.actor())
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/ui/inbox?"+url.Values{"replayed": {strconv.Itoa(n)}, "connector": {conn}}.Encode())
}

// --- tokens ---

type tokensView struct {
	Tokens  []core.Token
	Created string // the new token's secret, shown once
	NewName string
	Roles   []core.Role
}

var allRoles = []core.Role{core.RoleChangeManager, core.RoleAuditor, core.RoleCI, core.RoleAdmin}

func (u *UI) tokens(c *echo.Context, s *session) error {
	return u.renderTokens(c, s, http.StatusOK, tokensView{})
}

func (u *UI) renderTokens(c *echo.Context, s *session, status int, v tokensView) error {
	ts, err := u.deps.Tokens.List(c.Request().Context())
	if err != nil {
		return err
	}
	v.Tokens, v.Roles = ts, allRoles
	return u.render(c, s, status, "tokens", "Tokens", v)
}

// createToken shows the new secret in the response to the POST itself and
// nowhere else: it is never stored, so reloading cannot show it again.
func (u *UI) createToken(c *echo.Context, s *session) error {
	secret, t, err := u.deps.Tokens.Create(c.Request().Context(), strings.TrimSpace(c.FormValue("name")), core.Role(c.FormValue("role")), s.actor())
	if err != nil {
		return err
	}
	return u.renderTokens(c, s, http.StatusCreated, tokensView{Created: secret, NewName: t.Name})
}

func (u *UI) revokeToken(c *echo.Context, s *session) error {
	if err := u.deps.Tokens.Revoke(c.Request().Context(), c.Param("id"), s.actor()); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/ui/tokens")
}

// connectionsView is the Connections page: tollgate doctor's findings,
// and the replicas running.
type connectionsView struct {
	Sections         []connectors.Section
	Failed, Warnings int
	At               time.Time
	Replicas         []core.Replica
}

// connections runs (or reuses, within seconds) the doctor's checks and
// shows them: what an admin looks at when a connector goes quiet.
func (u *UI) connections(c *echo.Context, s *session) error {
	if u.deps.Doctor == nil {
		return u.notFound(c, s)
	}
	sections := u.deps.Doctor.CheckConnectors(c.Request().Context())
	failed, warnings := connectors.Count(sections)
	v := connectionsView{Sections: sections, Failed: failed, Warnings: warnings, At: u.deps.Clock.Now()}
	if u.deps.Replicas != nil {
		reps, err := u.deps.Replicas.Replicas(c.Request().Context())
		if err != nil {
			return err
		}
		v.Replicas = reps
	}
	return u.render(c, s, http.StatusOK, "connections", "Connections", v)
}
