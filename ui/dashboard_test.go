package ui

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/auth"
)

type dashReader struct{ emptyReader }

func (dashReader) ListDeployments(context.Context, core.ReleaseFilter) ([]core.Deployment, error) {
	return nil, nil
}
func (dashReader) RecentDecisions(context.Context, int) ([]core.GateDecision, error) { return nil, nil }
func (dashReader) ActiveIncidents(context.Context) ([]core.Incident, error)          { return nil, nil }

type noPolicy struct{}

func (noPolicy) Current() *core.CompiledPolicy { return nil }
func (noPolicy) Source(context.Context) (core.PolicyVersion, error) {
	return core.PolicyVersion{}, nil
}

// getAsAuditor serves GET path to an auditor's session on a UI built from
// deps (its clock, tokens, sessions, gate and policy filled in here).
func getAsAuditor(t *testing.T, clock *fakeClock, deps Deps, path string) *httptest.ResponseRecorder {
	t.Helper()
	return serveAsAuditor(t, clock, deps, httptest.NewRequest("GET", path, nil))
}

// serveAsAuditor is getAsAuditor of a request made by the caller.
func serveAsAuditor(t *testing.T, clock *fakeClock, deps Deps, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	sessions := &memSessions{m: map[string]auth.UISession{}}
	tok := core.Token{ID: "t1", Name: "ana", Role: core.RoleAuditor}
	deps.Clock, deps.Tokens, deps.Sessions, deps.Gate, deps.Policies = clock, oneToken{tok}, sessions, noGate{}, noPolicy{}
	u, err := New(deps)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	u.Routes(func(method, path string, h echo.HandlerFunc) { e.Add(method, path, h) })
	sessions.m[hashID("sid")] = auth.UISession{IDHash: hashID("sid"), Token: tok,
		CSRF: "c", CreatedAt: clock.t, LastSeenAt: clock.t, ExpiresAt: clock.t.Add(time.Hour)}
	req.AddCookie(&http.Cookie{Name: cookieName, Value: "sid"})
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

type ciGates []core.PendingGate

func (c ciGates) List(context.Context) ([]core.PendingGate, error) { return c, nil }

// TestDashboardListsCIGates: the requests CIs wait on at their own gates
// show among the waiting gates, with their provider, run and reasons, as
// GET /api/v1/gate/pending lists them.
func TestDashboardListsCIGates(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	rec := getAsAuditor(t, clock, Deps{Reader: dashReader{},
		CIGates: ciGates{{ID: "p1", Provider: "github", State: core.PendingWaiting, RunURL: "https://ci.example/run/7",
			Request:   core.GateRequest{Service: "pay", Version: "2.0", Environment: "production", Changes: []string{"CHG7"}},
			Reasons:   []core.Reason{{Code: core.CodeChangeNotApproved, Message: "change CHG7 is awaiting approval"}},
			CreatedAt: clock.t.Add(-time.Hour)}}}, "/ui/")
	body := rec.Body.String()
	for _, want := range []string{`<tr class="waiting">`, "pay 2.0 → production", "github protection_rule",
		`href="https://ci.example/run/7"`, core.CodeChangeNotApproved} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %q (status %d)", want, rec.Code)
		}
	}
}

type holdList []core.Hold

func (h holdList) List(context.Context, bool) ([]core.Hold, error) { return h, nil }

// TestDashboardListsHolds: the holds in force show on the dashboard with
// their scope, reason, who placed them and until when (escaped).
func TestDashboardListsHolds(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	until := clock.t.Add(2 * time.Hour)
	for _, tc := range []struct {
		name  string
		holds Holds
		want  []string
	}{
		{"one hold", holdList{{ID: "h1", Scope: "service", Name: "payments-api", Reason: "ledger <migration>",
			CreatedBy: "token:cm(t2)", CreatedAt: clock.t.Add(-time.Hour), Until: &until}},
			[]string{"Holds in force", "service payments-api", "ledger &lt;migration&gt;", "token:cm(t2)", "2026-11-27 12:00 UTC"}},
		{"a team hold and its services", holdList{{ID: "h2", Scope: "team", Name: "search", Reason: "outage review", Services: []string{"search-api", "indexer"},
			CreatedBy: "token:cm(t2)", CreatedAt: clock.t.Add(-time.Hour)}},
			[]string{"team search", "(services search-api, indexer)", "outage review"}},
		{"none", holdList{}, []string{"No hold is in force."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := getAsAuditor(t, clock, Deps{Reader: dashReader{}, Holds: tc.holds}, "/ui/")
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(rec.Body.String(), want) {
					t.Errorf("dashboard lacks %q", want)
				}
			}
		})
	}
}

type busyVerifier struct{ emptyReader }

func (busyVerifier) VerifyAudit(context.Context) (*core.AuditBreak, int64, error) {
	return nil, 0, core.Errorf(core.KindRateLimited, "a verification of the audit chain is already running on this replica")
}

// TestAuditVerifyBusy: the audit page's verification refused because
// another runs (rate limited) is a 429 page with Retry-After and the
// reason, not a 500.
func TestAuditVerifyBusy(t *testing.T) {
	rec := getAsAuditor(t, &fakeClock{t: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}, Deps{Reader: busyVerifier{}}, "/ui/audit?verify=1")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" ||
		!strings.Contains(rec.Body.String(), "already running on this replica") {
		t.Fatalf("status %d, Retry-After %q, body lacks the reason: %.300s", rec.Code, rec.Header().Get("Retry-After"), rec.Body.String())
	}
}
