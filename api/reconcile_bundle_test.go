package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/bundle"
)

// bundleReports serves one report with one finding; with failLater, every
// walk of its findings after the first fails, as a connection lost while
// the bundle is written would.
type bundleReports struct {
	Reports
	failLater bool
	walks     *int
}

func (bundleReports) Get(_ context.Context, id string) (core.Report, error) {
	if id != "r1" {
		return core.Report{}, core.Errorf(core.KindNotFound, "report %s not found", id)
	}
	return core.Report{ID: id, Summary: core.ReconcileSummary{Findings: 1, ByCode: map[string]int{core.CodeGateBypassed: 1}}}, nil
}

func (r bundleReports) Findings(_ context.Context, _ string, fn func(core.ReconcileFinding) error) error {
	if *r.walks++; r.failLater && *r.walks > 1 {
		return errors.New("connection lost")
	}
	return fn(core.ReconcileFinding{ID: 1, Code: core.CodeGateBypassed, Ref: "payments-api"})
}

func (r bundleReports) FindingsOfCode(ctx context.Context, id, code string, fn func(core.ReconcileFinding) error) error {
	return r.Findings(ctx, id, func(f core.ReconcileFinding) error {
		if f.Code != code {
			return nil
		}
		return fn(f)
	})
}

// bundleReader answers the audit reads of a bundle with nothing.
type bundleReader struct{ Reader }

func (bundleReader) ListAudit(context.Context, core.AuditFilter) ([]core.AuditEntry, error) {
	return nil, nil
}

func (bundleReader) AuditHead(context.Context) (core.AuditHead, error) { return core.AuditHead{}, nil }

// The bundle is streamed: a report that cannot be found is still a 404
// (read before the first byte), a whole bundle verifies, and a failure
// once the archive has started aborts the connection (the archive lacks
// its manifest) instead of ending it as if it were whole.
func TestReportBundleStreams(t *testing.T) {
	for _, tc := range []struct {
		name      string
		id        string
		failLater bool
	}{
		{"whole", "r1", false},
		{"missing report", "nope", false},
		{"cut short", "r1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Reports: bundleReports{failLater: tc.failLater, walks: new(int)}, Reader: bundleReader{}})
			rec := httptest.NewRecorder()
			c := s.echo.NewContext(httptest.NewRequest(http.MethodGet, "/api/v1/reports/reconciliation/"+tc.id+"/bundle", nil), rec)
			c.SetPathValues(echo.PathValues{{Name: "id", Value: tc.id}})
			var err error
			aborted := aborts(func() { err = s.reportBundle(c) })
			switch tc.name {
			case "whole":
				if err != nil || aborted || rec.Code != http.StatusOK {
					t.Fatalf("bundle: %d %v aborted=%v", rec.Code, err, aborted)
				}
				if _, err := bundle.Verify(rec.Body); err != nil {
					t.Fatalf("verify: %v", err)
				}
			case "missing report":
				if !core.IsKind(err, core.KindNotFound) || aborted || rec.Body.Len() != 0 {
					t.Fatalf("missing report: %v aborted=%v, %d bytes written", err, aborted, rec.Body.Len())
				}
			case "cut short":
				if !aborted {
					t.Fatalf("a bundle cut short ended normally (%v)", err)
				}
				if _, err := bundle.Verify(rec.Body); err == nil {
					t.Fatal("the bundle cut short verifies")
				}
			}
		})
	}
}

// A report whose findings fail once its 200 is sent (the database lost
// mid-stream) aborts the connection in every format, so a client never
// takes a short report that ended cleanly for the whole.
func TestReportStreamCutShortAborts(t *testing.T) {
	for _, format := range []string{"json", "csv", "html"} {
		t.Run(format, func(t *testing.T) {
			s := New(Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Reports: bundleReports{failLater: true, walks: new(int)}, Reader: bundleReader{}})
			// The first walk succeeds: the html format walks per code.
			rec := httptest.NewRecorder()
			c := s.echo.NewContext(httptest.NewRequest(http.MethodGet, "/api/v1/reports/reconciliation/r1?format="+format, nil), rec)
			c.SetPathValues(echo.PathValues{{Name: "id", Value: "r1"}})
			*(s.deps.Reports.(bundleReports).walks) = 1 // every walk fails
			aborted := aborts(func() { _ = s.getReport(c) })
			if !aborted {
				t.Fatalf("a %s report cut short ended normally (%d bytes)", format, rec.Body.Len())
			}
		})
	}
}

// aborts runs f and reports whether it aborted the connection
// (http.ErrAbortHandler); any other panic goes on.
func aborts(f func()) (aborted bool) {
	defer func() {
		if r := recover(); r != nil {
			if r != http.ErrAbortHandler {
				panic(r)
			}
			aborted = true
		}
	}()
	f()
	return false
}
