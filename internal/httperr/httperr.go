// Package httperr is the one mapping of errors to HTTP statuses: the
// API's error handler (api.Server) answers with it in JSON and the web
// UI's error pages (ui.UI) with it in HTML, so a kind of error gets the
// same status, and the same Retry-After, whichever door it came through.
package httperr

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
)

// StatusClientClosed is the status of a request whose client closed its
// connection before the answer (no HTTP status says so; 499 is nginx's).
const StatusClientClosed = 499

// RetryAfterUnavailable is the Retry-After sent with a 503: a dependency
// (the database) is down, and senders such as webhook providers retry.
const RetryAfterUnavailable = "5"

// RetryAfterBusy is the Retry-After of a 429 a service refused with (not
// a rate limit's, which knows its own wait and sets it): too many checks
// waiting, so a few seconds let some end.
const RetryAfterBusy = "5"

var kindStatus = map[core.ErrorKind]int{
	core.KindInvalid:      http.StatusBadRequest,
	core.KindNotFound:     http.StatusNotFound,
	core.KindConflict:     http.StatusConflict,
	core.KindUnauthorized: http.StatusUnauthorized,
	core.KindForbidden:    http.StatusForbidden,
	core.KindTooLarge:     http.StatusRequestEntityTooLarge,
	core.KindUnavailable:  http.StatusServiceUnavailable,
	core.KindRateLimited:  http.StatusTooManyRequests,
	core.KindInternal:     http.StatusInternalServerError,
}

// Status is the HTTP status of err, met while serving r:
// StatusClientClosed when r's client went away (err is the cancellation),
// the status of a core.Error's kind, an echo HTTP error's own status, and
// 500 for anything else.
func Status(r *http.Request, err error) int {
	var ce *core.Error
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return StatusClientClosed
	case errors.As(err, &ce):
		if st, ok := kindStatus[ce.Kind]; ok {
			return st
		}
		return http.StatusInternalServerError
	case echo.StatusCode(err) != 0:
		return echo.StatusCode(err)
	}
	return http.StatusInternalServerError
}

// SetRetryAfter sets the Retry-After that goes with status: on a 503
// always, on a 429 unless the refusal set its own wait.
func SetRetryAfter(h http.Header, status int) {
	switch {
	case status == http.StatusServiceUnavailable:
		h.Set("Retry-After", RetryAfterUnavailable)
	case status == http.StatusTooManyRequests && h.Get("Retry-After") == "":
		h.Set("Retry-After", RetryAfterBusy)
	}
}
