package ui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
)

// failingVerifier fails the audit page's verification with err.
type failingVerifier struct {
	emptyReader
	err error
}

func (f failingVerifier) VerifyAudit(context.Context) (*core.AuditBreak, int64, error) {
	return nil, 0, f.err
}

// TestErrorPagesUseTheAPIMapping: an error page has the status the API
// answers the same error with (internal/httperr): a database down is 503
// with Retry-After (the UI's own table had no Retry-After there), a client
// gone is 499 (it was a 500 logged as the server's failure), an echo HTTP
// error keeps its status (it was a 500), and only client errors show
// their message.
func TestErrorPagesUseTheAPIMapping(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	tests := []struct {
		name       string
		err        error
		cancel     bool // the client closed the request
		status     int
		retryAfter bool
		shows      string
	}{
		{"invalid", core.Invalid("from", "not a day"), false, http.StatusBadRequest, false, "from: not a day"},
		{"rate limited", core.Errorf(core.KindRateLimited, "already running"), false, http.StatusTooManyRequests, true, "already running"},
		{"store down", core.StoreDown(errors.New("dial tcp: refused"), "database unavailable"), false, http.StatusServiceUnavailable, true, "database unavailable"},
		{"client gone", fmt.Errorf("verify: %w", context.Canceled), true, 499, false, ""},
		{"echo error", echo.NewHTTPError(http.StatusRequestEntityTooLarge, "too big"), false, http.StatusRequestEntityTooLarge, false, "Request Entity Too Large"},
		{"internal", core.Errorf(core.KindInternal, "secret detail"), false, http.StatusInternalServerError, false, "Something went wrong"},
		{"driver error", errors.New("pq: secret detail"), false, http.StatusInternalServerError, false, "Something went wrong"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("GET", "/ui/audit?verify=1", nil)
		if tt.cancel {
			ctx, cancel := context.WithCancel(req.Context())
			cancel()
			req = req.WithContext(ctx)
		}
		rec := serveAsAuditor(t, clock, Deps{Reader: failingVerifier{err: tt.err}}, req)
		if rec.Code != tt.status {
			t.Errorf("%s: status %d, want %d", tt.name, rec.Code, tt.status)
		}
		if got := rec.Header().Get("Retry-After") != ""; got != tt.retryAfter {
			t.Errorf("%s: Retry-After %q, want set %v", tt.name, rec.Header().Get("Retry-After"), tt.retryAfter)
		}
		body := rec.Body.String()
		if !strings.Contains(body, tt.shows) || strings.Contains(body, "secret detail") {
			t.Errorf("%s: the page does not show %q, or shows the internal detail: %.300s", tt.name, tt.shows, body)
		}
	}
}
