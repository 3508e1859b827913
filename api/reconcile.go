package api

import (
	"context"
	"log/slog"
	"net/http"
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
	FindingsOfCode(ctx context.Context, id, code string, fn func(core.ReconcileFinding) error) error
	Proofs(ctx context.Context, id string, fn func(core.ControlProof) error) error
	Ack(ctx context.Context, reportID string, findingID int, comment, actor string) (core.ReconcileFinding, error)
	Metrics(ctx context.Context, q service.MetricsQuery) (core.ReleaseMetrics, error)
}

// reconcileRoutes registers the reconciliation report routes.
func (s *Server) reconcileRoutes() {
	s.route(http.MethodPost, "/api/v1/reports/reconciliation", changeMgr, s.runReport)
	s.route(http.MethodGet, "/api/v1/reports/reconciliation", auditorUp, s.listReports)
	s.route(http.MethodGet, "/api/v1/reports/reconciliation/:id", auditorUp, s.getReport)
	s.route(http.MethodPost, "/api/v1/reports/reconciliation/:id/findings/:fid/ack", changeMgr, s.ackFinding)
	s.route(http.MethodGet, "/api/v1/reports/reconciliation/:id/bundle", auditorUp, s.reportBundle)
	s.route(http.MethodGet, "/api/v1/metrics/releases", auditorUp, s.releaseMetrics)
}

// reportRequest is the body of POST /api/v1/reports/reconciliation.
type reportRequest struct {
	From        *time.Time `json:"from"`
	To          *time.Time `json:"to"`
	Environment string     `json:"environment"`
	Service     string     `json:"service"`
	Team        string     `json:"team"`
	// Control narrows the report to one compliance control id (see
	// core.ReconcileQuery.Control).
	Control string `json:"control"`
}

func (s *Server) runReport(c *echo.Context) error {
	var r reportRequest
	if err := decodeJSON(c, &r); err != nil {
		return err
	}
	q := core.ReconcileQuery{Environment: r.Environment, Service: r.Service, Team: r.Team, Control: r.Control}
	if r.From != nil {
		q.From = *r.From
	}
	if r.To != nil {
		q.To = *r.To
	}
	rep, err := s.deps.Reports.Run(c.Request().Context(), q, actor(c), "")
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, rep)
}

func (s *Server) listReports(c *echo.Context) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	rs, err := s.deps.Reports.List(c.Request().Context(), limit, c.QueryParam("after"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(rs, limit, func(r core.Report) string { return r.ID }))
}

func (s *Server) getReport(c *echo.Context) error { return s.serveReport(c, false) }

// serveReport answers a report in the ?format= asked for. asFile sends
// every format as a download (the UI's): Content-Disposition: attachment
// is set once the report is loaded, so a refusal (an unknown report) is
// answered as the error it is, never saved as the file.
func (s *Server) serveReport(c *echo.Context, asFile bool) error {
	ctx := c.Request().Context()
	format := c.QueryParam("format")
	switch format {
	case "", "json", "csv", "html":
	default:
		return core.Invalid("format", "%q is not one of json, csv, html", format)
	}
	id := c.Param("id")
	rep, err := s.deps.Reports.Get(ctx, id)
	if err != nil {
		return err
	}
	walk := func(fn func(core.ReconcileFinding) error) error { return s.deps.Reports.Findings(ctx, id, fn) }
	resp := c.Response()
	if asFile {
		ext := format
		if ext == "" {
			ext = "json"
		}
		resp.Header().Set(echo.HeaderContentDisposition, `attachment; filename="reconciliation-`+rep.ID+"."+ext+`"`)
	}
	switch format {
	case "csv":
		resp.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
		resp.Header().Set(echo.HeaderContentDisposition, `attachment; filename="reconciliation-`+rep.ID+`.csv"`)
		resp.WriteHeader(http.StatusOK)
		err = writeReportCSV(resp, walk)
	case "html":
		resp.Header().Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
		resp.WriteHeader(http.StatusOK)
		err = writeReportHTML(resp, rep, func(code string, fn func(core.ReconcileFinding) error) error {
			return s.deps.Reports.FindingsOfCode(ctx, id, code, fn)
		})
	default:
		resp.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
		resp.WriteHeader(http.StatusOK)
		var proofs proofWalker
		if rep.Query.Control != "" {
			proofs = func(fn func(core.ControlProof) error) error { return s.deps.Reports.Proofs(ctx, id, fn) }
		}
		err = writeReportJSON(resp, rep, walk, proofs)
	}
	if err != nil {
		s.abortStream(c, "report "+rep.ID, err)
	}
	return nil
}

// abortStream ends a response whose 200 is sent and whose body failed
// part-way (the database failing while findings stream): the connection
// is aborted, so the client sees an incomplete answer, never a short
// report that ends cleanly.
func (s *Server) abortStream(c *echo.Context, what string, err error) {
	ctx := c.Request().Context()
	level := slog.LevelError
	if ctx.Err() != nil {
		level = slog.LevelInfo // the client went away
	}
	s.deps.Logger.Log(ctx, level, what+" cut short: the connection is aborted", "error", err.Error(), "request_id", requestID(c))
	panic(http.ErrAbortHandler) // net/http closes the connection mid-body
}

// ackRequest is the body of a finding's acknowledgement.
type ackRequest struct {
	Comment string `json:"comment"`
}

func (s *Server) ackFinding(c *echo.Context) error {
	var r ackRequest
	if err := decodeJSON(c, &r); err != nil {
		return err
	}
	fid, err := service.ParseFindingID(c.Param("id"), c.Param("fid"))
	if err != nil {
		return err
	}
	f, err := s.deps.Reports.Ack(c.Request().Context(), c.Param("id"), fid, r.Comment, actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, f)
}

// releaseMetrics answers GET /api/v1/metrics/releases?from&to&group_by
// (&failure_window): from and to are required RFC 3339 times.
func (s *Server) releaseMetrics(c *echo.Context) error {
	q := service.MetricsQuery{GroupBy: c.QueryParam("group_by")}
	var err error
	if q.From, err = queryTime(c, "from"); err != nil {
		return err
	}
	if q.To, err = queryTime(c, "to"); err != nil {
		return err
	}
	if w := c.QueryParam("failure_window"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d <= 0 || d > 30*24*time.Hour {
			return core.Invalid("failure_window", "%q is not a duration from 1s to 720h", w)
		}
		q.FailureWindow = d
	}
	m, err := s.deps.Reports.Metrics(c.Request().Context(), q)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}
