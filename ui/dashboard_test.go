package ui

import (
	"context"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
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
func (noPolicy) HistoryEnvironments(_ context.Context, _ *core.CompiledPolicy, _, name string) (string, []string, error) {
	return name, nil, nil
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
	deps.Clock, deps.Tokens, deps.Sessions, deps.Policies = clock, oneToken{tok}, sessions, noPolicy{}
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

// storedGates is the stored CI gate requests, in the listing's order: a
// page honours the states, the position (by id) and the limit; last is
// the filter of the last page asked for.
type storedGates struct {
	list []core.PendingGate
	last *core.PendingFilter
}

func (g storedGates) PendingGatesPage(_ context.Context, f core.PendingFilter) ([]core.PendingGate, error) {
	if g.last != nil {
		*g.last = f
	}
	var out []core.PendingGate
	started := f.After.IsZero()
	for _, p := range g.list {
		if started && len(out) < f.Limit && (len(f.States) == 0 || slices.Contains(f.States, p.State)) {
			out = append(out, p)
		}
		started = started || p.ID == f.After.ID
	}
	return out, nil
}

func (g storedGates) CountPendingGates(context.Context, core.PendingFilter) (map[string]int, error) {
	by := map[string]int{}
	for _, p := range g.list {
		by[p.State]++
	}
	return by, nil
}

// pendingOf lists stored the way the API does (service.WaitingGates), with
// no long-polled check.
func pendingOf(stored storedGates) Pending {
	gate := service.NewGate(nil, nil, nil, core.SystemClock, slog.New(slog.NewTextHandler(io.Discard, nil)), service.GateConfig{})
	return service.NewWaitingGates(stored, gate, nil)
}

// waitingGates are n requests waiting on production, a minute apart from
// at, then one whose answer failed.
func waitingGates(at time.Time, n int) []core.PendingGate {
	var out []core.PendingGate
	for i := range n {
		out = append(out, core.PendingGate{ID: fmt.Sprintf("p%03d", i), Provider: "github", Connector: "github", State: core.PendingWaiting,
			RunURL:    fmt.Sprintf("https://ci.example/run/%d", i),
			Request:   core.GateRequest{Service: "pay", Version: fmt.Sprintf("2.%d", i), Environment: "production", Changes: []string{"CHG7"}},
			Reasons:   []core.Reason{{Code: core.CodeChangeNotApproved, Message: "change CHG7 is awaiting approval"}},
			CreatedAt: at.Add(time.Duration(i) * time.Minute)})
	}
	return append(out, core.PendingGate{ID: "p999", Provider: "gitlab", Connector: "gitlab", State: core.PendingFailed,
		Request: core.GateRequest{Service: "ledger", Version: "9", Environment: "production"}, LastError: "GitLab answered 403",
		CreatedAt: at.Add(time.Duration(n) * time.Minute)})
}

// TestDashboardListsCIGates: the requests CIs wait on at their own gates
// show among the waiting gates, with their provider, run and reasons, as
// GET /api/v1/gate/pending lists them; past the dashboard's share it says
// how many there are and links to the gates page, and answers that may
// not have reached their CI are counted whatever the dashboard shows.
func TestDashboardListsCIGates(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	for _, tc := range []struct {
		name    string
		waiting int
		want    []string
		lacks   []string
	}{
		{"few", 1, []string{`<tr class="waiting">`, "pay 2.0 → production", "github protection_rule", `href="https://ci.example/run/0"`,
			core.CodeChangeNotApproved, "gitlab approval", "1 failed, 0 unknown", `href="/ui/gates?state=failed%2Cunknown"`},
			[]string{"Showing the oldest"}},
		{"more than the dashboard shows", 30, []string{"pay 2.19 → production", "Showing the oldest 20 of 31 waiting gates",
			`href="/ui/gates"`, "1 failed, 0 unknown"}, []string{"pay 2.20 → production", "ledger 9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stored := storedGates{list: waitingGates(clock.t.Add(-time.Hour), tc.waiting)}
			rec := getAsAuditor(t, clock, Deps{Reader: dashReader{}, Pending: pendingOf(stored)}, "/ui/")
			body := rec.Body.String()
			for _, want := range tc.want {
				if !strings.Contains(body, want) {
					t.Errorf("dashboard lacks %q (status %d)", want, rec.Code)
				}
			}
			for _, lack := range tc.lacks {
				if strings.Contains(body, lack) {
					t.Errorf("dashboard shows %q", lack)
				}
			}
		})
	}
}

// TestGatesPage: the gates page pages through every waiting gate with the
// API's filters, the next page keeping them; a filter the API refuses is a
// 400 page naming it.
func TestGatesPage(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	var last core.PendingFilter
	stored := storedGates{list: waitingGates(clock.t.Add(-2*time.Hour), 60), last: &last}
	deps := Deps{Reader: dashReader{}, Pending: pendingOf(stored)}

	rec := getAsAuditor(t, clock, deps, "/ui/gates?state=pending&kind=protection_rule&environment=production")
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, "pay 2.49 → production") || strings.Contains(body, "pay 2.50 ") {
		t.Fatalf("first page: status %d, want the oldest 50: %.300s", rec.Code, body)
	}
	if !slices.Equal(last.States, []string{core.PendingWaiting}) || last.Kind != core.PendingKindProtectionRule ||
		!slices.Equal(last.Environments, []string{"production"}) {
		t.Errorf("filter asked: %+v", last)
	}
	for _, want := range []string{"61 in all", "60 waiting", "1 failed", `href="?environment=production&amp;kind=protection_rule&amp;state=failed"`} {
		if !strings.Contains(body, want) {
			t.Errorf("first page lacks %q", want)
		}
	}
	i := strings.Index(body, `rel="next" href="?`)
	if i < 0 {
		t.Fatalf("first page has no next page: %.300s", body)
	}
	next := html.UnescapeString(body[i+len(`rel="next" href="`) : i+strings.IndexByte(body[i+len(`rel="next" href="`):], '"')+len(`rel="next" href="`)])
	rec = getAsAuditor(t, clock, deps, "/ui/gates"+next)
	body = rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, "pay 2.50 → production") || !strings.Contains(body, "pay 2.59 → production") ||
		strings.Contains(body, "pay 2.49 ") || strings.Contains(body, `rel="next"`) || last.Kind != core.PendingKindProtectionRule {
		t.Fatalf("next page (%s): status %d, filter %+v: %.300s", next, rec.Code, last, body)
	}

	for _, q := range []string{"state=answered", "kind=rule", "after=nope"} {
		rec := getAsAuditor(t, clock, deps, "/ui/gates?"+q)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), strings.SplitN(q, "=", 2)[0]) {
			t.Errorf("%s: status %d, want 400 naming the parameter: %.300s", q, rec.Code, rec.Body.String())
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

// fullPage is a reader whose deployments fill every page.
type fullPage struct{ emptyReader }

func (fullPage) ListDeployments(_ context.Context, f core.ReleaseFilter) ([]core.Deployment, error) {
	out := make([]core.Deployment, f.Limit)
	for i := range out {
		out[i] = core.Deployment{ID: fmt.Sprintf("d%03d", i), Service: "pay", Team: f.Team}
	}
	return out, nil
}

// TestNextPageLinkKeepsQuery: a listing's next-page link carries its
// cursor and filters as parameters; written as data after "?", the
// template escaped "=" and "&", and the link led to the first page again.
func TestNextPageLinkKeepsQuery(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	rec := getAsAuditor(t, clock, Deps{Reader: fullPage{}}, "/ui/deployments?team=payments")
	if want := `rel="next" href="?after=d049&amp;team=payments"`; rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
		t.Fatalf("status %d, want %s in %.400s", rec.Code, want, rec.Body.String())
	}
}
