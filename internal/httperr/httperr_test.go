package httperr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
)

func TestStatus(t *testing.T) {
	live := httptest.NewRequest("GET", "/", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := live.WithContext(ctx)
	tests := []struct {
		name string
		r    *http.Request
		err  error
		want int
	}{
		{"invalid", live, core.Invalid("f", "bad"), 400},
		{"not found, wrapped", live, fmt.Errorf("load: %w", core.NotFound("report", "r1")), 404},
		{"conflict", live, core.Errorf(core.KindConflict, "x"), 409},
		{"unauthorized", live, core.Errorf(core.KindUnauthorized, "x"), 401},
		{"forbidden", live, core.Errorf(core.KindForbidden, "x"), 403},
		{"too large", live, core.Errorf(core.KindTooLarge, "x"), 413},
		{"rate limited", live, core.Errorf(core.KindRateLimited, "x"), 429},
		{"store down", live, core.StoreDown(errors.New("refused"), "database unavailable"), 503},
		{"internal", live, core.Errorf(core.KindInternal, "x"), 500},
		{"unknown kind", live, core.Errorf("nonsense", "x"), 500},
		{"echo", live, echo.NewHTTPError(http.StatusMethodNotAllowed, "x"), 405},
		{"plain", live, errors.New("boom"), 500},
		{"client gone", gone, fmt.Errorf("read: %w", context.Canceled), StatusClientClosed},
		{"cancelled, client still there", live, context.Canceled, 500},
	}
	for _, tt := range tests {
		if got := Status(tt.r, tt.err); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestSetRetryAfter(t *testing.T) {
	tests := []struct {
		status int
		before string
		want   string
	}{
		{503, "", RetryAfterUnavailable},
		{429, "", RetryAfterBusy},
		{429, "17", "17"}, // a rate limit's own wait stands
		{500, "", ""},
		{400, "", ""},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.before != "" {
			h.Set("Retry-After", tt.before)
		}
		SetRetryAfter(h, tt.status)
		if got := h.Get("Retry-After"); got != tt.want {
			t.Errorf("%d (before %q): Retry-After %q, want %q", tt.status, tt.before, got, tt.want)
		}
	}
}
