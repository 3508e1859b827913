package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/api"
	"github.com/tollgate-dev/tollgate/core"
)

// TestHealthHEAD: load balancers probe with HEAD; /healthz and /readyz
// answer it with GET's status (503 when not ready).
func TestHealthHEAD(t *testing.T) {
	ready := error(nil)
	s := api.New(api.Deps{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:  func(context.Context) error { return ready },
	})
	probe := func(method, path string) int {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec.Code
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code := probe(http.MethodHead, path); code != http.StatusOK {
			t.Errorf("HEAD %s: %d", path, code)
		}
	}
	ready = core.Errorf(core.KindUnavailable, "database unreachable")
	if code := probe(http.MethodHead, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("HEAD /readyz not ready: %d", code)
	}
	if code := probe(http.MethodGet, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz not ready: %d", code)
	}
}

// TestReadyDetails: /readyz carries the ITSM circuits in details, ready or
// not, and an open circuit does not make the server unready.
func TestReadyDetails(t *testing.T) {
	ready := error(nil)
	s := api.New(api.Deps{
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:        func(context.Context) error { return ready },
		ReadyDetails: func() map[string]any { return map[string]any{"api_circuits": map[string]string{"servicenow": "open"}} },
	})
	for _, want := range []int{http.StatusOK, http.StatusServiceUnavailable} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		var body struct {
			Status  string `json:"status"`
			Details struct {
				Circuits map[string]string `json:"api_circuits"`
			} `json:"details"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if rec.Code != want || body.Details.Circuits["servicenow"] != "open" {
			t.Errorf("readyz %d %s", rec.Code, rec.Body)
		}
		ready = core.Errorf(core.KindUnavailable, "database unreachable")
	}
}

// TestReadyzBounded: a readiness check that does not return — a ping to a
// database gone from the network, which lib/pq does not abandon when its
// context ends — still gets its 503 at the probe's deadline.
func TestReadyzBounded(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := api.New(api.Deps{
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:        func(context.Context) error { <-release; return nil },
		ReadyTimeout: 100 * time.Millisecond,
	})
	start := time.Now()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	took := time.Since(start)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("readyz with a check that hangs: %d %s", rec.Code, rec.Body)
	}
	if took > 5*time.Second {
		t.Errorf("readyz answered after %v, its bound is 100ms", took)
	}
	var body struct{ Status, Reason string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Status != "unavailable" || body.Reason == "" {
		t.Errorf("body %s (%v): want status unavailable with a reason", rec.Body, err)
	}
}

// TestReadyzProbeGone: a probe whose connection closed before its answer
// (the prober gave up; a draining server closed the connection) is not a
// fault: logged at info, never as the database not answering; and a check
// that answers at once as the context ends (a draining server) is the
// answer, not the deadline's.
func TestReadyzProbeGone(t *testing.T) {
	for _, c := range []struct {
		name  string
		ready func(context.Context) error
		want  string
	}{
		{"a check that waits for the context", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, "connection closed"},
		{"a draining server", func(context.Context) error { return api.ErrShuttingDown }, "shutting down"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			s := api.New(api.Deps{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Ready: c.ready})
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // gone before the server looked
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil).WithContext(ctx))
			if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), c.want) {
				t.Errorf("readyz: %d %s, want 503 naming %q", rec.Code, rec.Body, c.want)
			}
			if strings.Contains(logs.String(), `"level":"WARN"`) || strings.Contains(logs.String(), `"level":"ERROR"`) {
				t.Errorf("logged as a fault:\n%s", logs.String())
			}
		})
	}
}

// goneInbox is an Inbox whose Receive waits for the request's context to
// end, as a delivery queued for the writer does when its client leaves.
type goneInbox struct{ api.Inbox }

func (goneInbox) Receive(ctx context.Context, _ string, _ http.Header, _ url.Values, _ []byte, _ func() error) (string, bool, error) {
	<-ctx.Done()
	return "", false, ctx.Err()
}

// TestClientGoneIsNotAServerError: a request whose client closes its
// connection while it is served ends as 499 in the access log and
// metrics, logged as the client's doing — never as a 500, an error the
// server made.
func TestClientGoneIsNotAServerError(t *testing.T) {
	var logs bytes.Buffer
	s := api.New(api.Deps{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Inbox:  goneInbox{},
	})
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest(http.MethodPost, "/webhooks/github", strings.NewReader(`{}`)).WithContext(ctx)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	time.AfterFunc(20*time.Millisecond, cancel)
	s.ServeHTTP(rec, req)
	if rec.Code != 499 {
		t.Errorf("status %d, want 499", rec.Code)
	}
	if strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "client closed the request") {
		t.Errorf("logged:\n%s", logs.String())
	}
}
