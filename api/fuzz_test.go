package api

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"

	"github.com/tollgate-dev/tollgate/core"
)

// FuzzGateRequestDecode feeds arbitrary bodies to the gate check's
// decoder (behind the same body limit as the server): it never panics,
// refuses only with a client error (400 or 413), and what it accepts is
// valid UTF-8.
func FuzzGateRequestDecode(f *testing.F) {
	for _, s := range []string{
		`{"service":"payments-api","environment":"production","version":"1.4.2","changes":["CHG0000024"],"incidents":[],"pipeline":{"provider":"github","run_id":"1","url":"https://x"}}`,
		`{"service":"a","unknown":1}`, `{"changes":"CHG1"}`, `[]`, `{} {}`, `{"service":"\u0000"}`,
		"{\"service\":\"\xff\"}", strings.Repeat("[", 20000), `{"evaluated_at":"tomorrow"}`,
	} {
		f.Add([]byte(s))
	}
	e := echo.New()
	limit := middleware.BodyLimit(4096)
	f.Fuzz(func(t *testing.T, body []byte) {
		c := e.NewContext(httptest.NewRequest("POST", "/api/v1/gate/check", bytes.NewReader(body)), httptest.NewRecorder())
		var req core.GateRequest
		err := limit(func(c *echo.Context) error { return decodeGateRequest(c, &req) })(c)
		if err != nil {
			if echo.StatusCode(err) == 413 { // refused by the limit up front (Content-Length)
				return
			}
			if k := core.KindOf(err); k != core.KindInvalid && k != core.KindTooLarge {
				t.Fatalf("decode error of kind %q: %v", k, err)
			}
			return
		}
		for _, s := range append([]string{req.Service, req.Environment, req.Version, req.Team, req.Actor, req.Commit}, req.Changes...) {
			if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
				t.Fatalf("accepted invalid UTF-8 or a NUL %q", s)
			}
		}
	})
}

// FuzzReportRequestDecode feeds arbitrary bodies to the reconciliation
// report's filter decoder and its validation: no panic, refusals only as
// client errors, and an accepted period always runs forward.
func FuzzReportRequestDecode(f *testing.F) {
	for _, s := range []string{
		`{"from":"2026-11-01T00:00:00Z","to":"2026-12-01T00:00:00Z","environment":"production","service":"pay","team":"core"}`,
		`{"from":"2026-12-01T00:00:00Z","to":"2026-11-01T00:00:00Z"}`, `{"from":"yesterday"}`, `{"to":null}`,
		`{"from":"0001-01-01T00:00:00Z","to":"9999-12-31T23:59:59.999999999+14:00"}`, `{"team":1}`,
	} {
		f.Add([]byte(s))
	}
	e := echo.New()
	limit := middleware.BodyLimit(4096)
	f.Fuzz(func(t *testing.T, body []byte) {
		c := e.NewContext(httptest.NewRequest("POST", "/api/v1/reports/reconciliation", bytes.NewReader(body)), httptest.NewRecorder())
		var r reportRequest
		err := limit(func(c *echo.Context) error { return decodeJSON(c, &r) })(c)
		if err == nil {
			q := core.ReconcileQuery{Environment: r.Environment, Service: r.Service, Team: r.Team}
			if r.From != nil {
				q.From = *r.From
			}
			if r.To != nil {
				q.To = *r.To
			}
			if err = q.Validate(); err == nil && !q.To.After(q.From) {
				t.Fatalf("accepted a period that does not run forward: %v → %v", q.From, q.To)
			}
		}
		if err != nil && echo.StatusCode(err) != 413 {
			if k := core.KindOf(err); k != core.KindInvalid && k != core.KindTooLarge {
				t.Fatalf("error of kind %q: %v", k, err)
			}
		}
	})
}
