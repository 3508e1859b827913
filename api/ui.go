package api

import "github.com/labstack/echo/v5"

// ReportFile serves a reconciliation report as GET
// /api/v1/reports/reconciliation/{id}?format= does, as a download
// (Content-Disposition: attachment, once the report is found), for the
// web UI: the UI has checked the session and role, and calls this with
// the report id as the route parameter "id".
func (s *Server) ReportFile(c *echo.Context) error { return s.serveReport(c, true) }

// ReportBundle serves a report's evidence bundle as …/{id}/bundle does,
// for the web UI.
func (s *Server) ReportBundle(c *echo.Context) error { return s.reportBundle(c) }
