package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
)

// Reports runs and reads reconciliation reports (service.Reconciler).
type Reports interface {
	Run(ctx context.Context, q core.ReconcileQuery, actor, name string) (core.Report, error)
	Get(ctx context.Context, id string) (core.Report, error)
	List(ctx context.Context, limit int, before string) ([]core.Report, error)
	Findings(ctx context.Context, id string, fn func(core.ReconcileFinding) error) error
	Ack(ctx context.Context, reportID string, findingID int, comment, actor string) (core.ReconcileFinding, error)
	Metrics(ctx context.Context, q service.MetricsQuery) (core.ReleaseMetrics, error)
}

// Downloads serves a report's files with the API's own handlers (the same
// CSV, HTML and evidence bundle as GET /api/v1/reports/reconciliation/{id}
// ?format= and …/bundle); the UI calls them after its session and role
// checks. The request carries the report id as the route parameter "id".
// Each marks its answer an attachment only once the report is found: an
// error is answered as itself, never as the file.
type Downloads interface {
	ReportFile(c *echo.Context) error
	ReportBundle(c *echo.Context) error
}

// Roles of the reconciliation routes, as the API's: auditors read, change
// managers (and admins) run reports and acknowledge findings.
var changeManager = []core.Role{core.RoleChangeManager, core.RoleAdmin}

func (u *UI) reconcileRoutes(add func(method, path string, h echo.HandlerFunc)) {
	get, post := http.MethodGet, http.MethodPost
	add(get, "/ui/reconciliation", u.page(anyReader, u.reports))
	add(post, "/ui/reconciliation", u.page(changeManager, u.runReport))
	add(get, "/ui/reconciliation/:id", u.page(anyReader, u.report))
	add(post, "/ui/reconciliation/:id/findings/:fid/ack", u.page(changeManager, u.ackFinding))
	add(get, "/ui/reconciliation/:id/download", u.page(anyReader, u.download))
	add(get, "/ui/reconciliation/:id/bundle", u.page(anyReader, u.bundle))
}

type reportsView struct {
	Reports  []core.Report
	From, To string
	Env      string
	Service  string
	Team     string
	CanRun   bool
	Next     string
	Problem  string
}

func (u *UI) reports(c *echo.Context, s *session) error {
	now := u.deps.Clock.Now().UTC()
	v := reportsView{From: now.AddDate(0, 0, -7).Format(time.DateOnly), To: now.Format(time.DateOnly), CanRun: s.may(changeManager)}
	return u.renderReports(c, s, http.StatusOK, v)
}

func (u *UI) renderReports(c *echo.Context, s *session, status int, v reportsView) error {
	rs, err := u.deps.Reports.List(c.Request().Context(), pageSize, c.QueryParam("after"))
	if err != nil {
		return err
	}
	v.Reports = rs
	if len(rs) == pageSize {
		v.Next = url.Values{"after": {rs[len(rs)-1].ID}}.Encode()
	}
	return u.render(c, s, status, "reconciliation", "Reconciliation", v)
}

// runReport runs a report over whole days (UTC; "to" inclusive).
func (u *UI) runReport(c *echo.Context, s *session) error {
	v := reportsView{From: c.FormValue("from"), To: c.FormValue("to"), Env: strings.TrimSpace(c.FormValue("environment")),
		Service: strings.TrimSpace(c.FormValue("service")), Team: strings.TrimSpace(c.FormValue("team")), CanRun: true}
	q := core.ReconcileQuery{Environment: v.Env, Service: v.Service, Team: v.Team}
	var err error
	if q.From, err = time.Parse(time.DateOnly, v.From); err != nil {
		v.Problem = "from: pick a day"
	} else if q.To, err = time.Parse(time.DateOnly, v.To); err != nil {
		v.Problem = "to: pick a day"
	}
	if v.Problem != "" {
		return u.renderReports(c, s, http.StatusBadRequest, v)
	}
	q.To = q.To.AddDate(0, 0, 1)
	rep, err := u.deps.Reports.Run(c.Request().Context(), q, s.actor(), "")
	if core.IsKind(err, core.KindInvalid) {
		v.Problem = strings.Join(problemLines(err), "; ")
		return u.renderReports(c, s, http.StatusBadRequest, v)
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/ui/reconciliation/"+url.PathEscape(rep.ID))
}

type findingGroup struct {
	Code     string
	Findings []core.ReconcileFinding
	Open     int
}

type reportView struct {
	Report core.Report
	Groups []findingGroup
	CanAck bool
	Acked  int
}

func (u *UI) report(c *echo.Context, s *session) error {
	ctx := c.Request().Context()
	id := c.Param("id")
	rep, err := u.deps.Reports.Get(ctx, id)
	if err != nil {
		return err
	}
	v := reportView{Report: rep, CanAck: s.may(changeManager)}
	byCode := map[string]*findingGroup{}
	if err := u.deps.Reports.Findings(ctx, id, func(f core.ReconcileFinding) error {
		g, ok := byCode[f.Code]
		if !ok {
			g = &findingGroup{Code: f.Code}
			byCode[f.Code] = g
		}
		g.Findings = append(g.Findings, f)
		if f.Ack == nil {
			g.Open++
		}
		return nil
	}); err != nil {
		return err
	}
	for _, g := range byCode {
		v.Groups = append(v.Groups, *g)
	}
	slices.SortFunc(v.Groups, func(a, b findingGroup) int {
		if len(a.Findings) != len(b.Findings) {
			return len(b.Findings) - len(a.Findings)
		}
		return strings.Compare(a.Code, b.Code)
	})
	return u.render(c, s, http.StatusOK, "report", "Reconciliation report", v)
}

func (u *UI) ackFinding(c *echo.Context, s *session) error {
	id := c.Param("id")
	fid, err := service.ParseFindingID(id, c.Param("fid"))
	if err != nil {
		return err
	}
	if _, err := u.deps.Reports.Ack(c.Request().Context(), id, fid, c.FormValue("comment"), s.actor()); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, fmt.Sprintf("/ui/reconciliation/%s#finding-%d", url.PathEscape(id), fid))
}

// download serves the report as CSV, HTML or JSON, always as a file (the
// HTML report carries its own styles, which the UI's CSP would block
// inline). Downloads.ReportFile marks it an attachment only once the
// report is found: an unknown one is the 404 page, not a saved file.
func (u *UI) download(c *echo.Context, s *session) error {
	f := c.QueryParam("format")
	switch f {
	case "csv", "html", "json":
	default:
		return core.Invalid("format", "%q is not one of csv, html, json", f)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return u.deps.Downloads.ReportFile(c)
}

func (u *UI) bundle(c *echo.Context, s *session) error {
	return u.deps.Downloads.ReportBundle(c)
}

// openFindings are the latest report's findings nobody acknowledged yet.
type openFindings struct {
	Report core.Report
	ByCode []countRow
	Open   int
}

type countRow struct {
	Code  string
	Count int
}

func (u *UI) latestFindings(ctx context.Context) (*openFindings, error) {
	rs, err := u.deps.Reports.List(ctx, 1, "")
	if err != nil || len(rs) == 0 {
		return nil, err
	}
	of := &openFindings{Report: rs[0]}
	counts := map[string]int{}
	if err := u.deps.Reports.Findings(ctx, rs[0].ID, func(f core.ReconcileFinding) error {
		if f.Ack == nil {
			counts[f.Code]++
			of.Open++
		}
		return nil
	}); err != nil {
		return nil, err
	}
	for code, n := range counts {
		of.ByCode = append(of.ByCode, countRow{code, n})
	}
	slices.SortFunc(of.ByCode, func(a, b countRow) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Code, b.Code)
	})
	return of, nil
}

// weekly release metrics for the dashboard: the last weeks, all groups
// summed.
type weekMetrics struct {
	From, To          time.Time
	Deployments       int
	Failed            int
	FailureRatePct    string
	Allow, Wait, Deny int
}

func (u *UI) weeklyMetrics(ctx context.Context, weeks int) ([]weekMetrics, error) {
	now := u.deps.Clock.Now().UTC()
	end := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, 1)
	out := make([]weekMetrics, 0, weeks)
	for i := weeks - 1; i >= 0; i-- {
		w := weekMetrics{From: end.AddDate(0, 0, -7*(i+1)), To: end.AddDate(0, 0, -7*i)}
		m, err := u.deps.Reports.Metrics(ctx, service.MetricsQuery{From: w.From, To: w.To, GroupBy: core.GroupByTeam})
		if err != nil {
			return nil, err
		}
		for _, g := range m.Groups {
			w.Deployments += g.Deployments
			w.Failed += g.FailedDeployments
			w.Allow += g.Gate.Allow
			w.Wait += g.Gate.Wait
			w.Deny += g.Gate.Deny
		}
		w.FailureRatePct = "—"
		if w.Deployments > 0 {
			w.FailureRatePct = fmt.Sprintf("%.0f%%", 100*float64(w.Failed)/float64(w.Deployments))
		}
		out = append(out, w)
	}
	return out, nil
}

var gateParts = []chartPart{{"ok", "allowed"}, {"run", "waited"}, {"bad", "denied"}}

// weeksChart draws the gate's decisions per week (the table beside it has
// every figure).
func weeksChart(ws []weekMetrics) chart {
	labels := make([]string, len(ws))
	values := make([][]int, len(ws))
	for i, w := range ws {
		labels[i] = w.From.Format("Jan 2")
		values[i] = []int{w.Allow, w.Wait, w.Deny}
	}
	return stackedChart(labels, gateParts, values)
}
