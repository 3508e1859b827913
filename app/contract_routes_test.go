package app_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/auth"
)

// Who may call what, written from DESIGN.md's HTTP contract table — not
// from the router's own rule map, so that a wrong rule in the code fails
// here. Admin may call every route (the server's rule: an admin token
// passes every role check), so roles lists the other roles. A new route
// needs a line here or TestEveryServedRouteIsInTheContract fails.
type contractRoute struct {
	method, path string // path as the router writes it (":param")
	// auth is "none" (public), "bearer" (roles below), "webhook" (the
	// connector's secret; bearer tokens grant nothing) or "session" (the
	// UI's cookie and CSRF, tested by the UI's own suite).
	auth  string
	roles []core.Role
}

var (
	ci           = []core.Role{core.RoleCI}
	changeMgr    = []core.Role{core.RoleChangeManager}
	adminOnly    = []core.Role{}
	auditorPlus  = []core.Role{core.RoleAuditor, core.RoleChangeManager}
	ciAuditorUp  = []core.Role{core.RoleCI, core.RoleAuditor, core.RoleChangeManager}
	uiRoles      = []core.Role{core.RoleAuditor, core.RoleChangeManager}
	contractAPIs = []contractRoute{
		{"GET", "/healthz", "none", nil},
		{"HEAD", "/healthz", "none", nil},
		{"GET", "/readyz", "none", nil},
		{"HEAD", "/readyz", "none", nil},
		{"GET", "/metrics", "none", nil},
		{"POST", "/webhooks/:connector", "webhook", nil},

		{"POST", "/api/v1/gate/check", "bearer", ci},
		{"GET", "/api/v1/gate/decisions/:id", "bearer", ciAuditorUp},
		{"GET", "/api/v1/gate/pending", "bearer", auditorPlus},
		{"POST", "/api/v1/deployments", "bearer", ci},
		{"GET", "/api/v1/deployments", "bearer", auditorPlus},
		{"GET", "/api/v1/changes/:key", "bearer", auditorPlus},
		{"GET", "/api/v1/incidents/:key", "bearer", auditorPlus},
		{"GET", "/api/v1/releases", "bearer", auditorPlus},
		{"GET", "/api/v1/releases/:id", "bearer", auditorPlus},
		{"POST", "/api/v1/releases/:id/pir", "bearer", changeMgr},
		{"POST", "/api/v1/releases/:id/evidence", "bearer", ci},

		{"POST", "/api/v1/reports/reconciliation", "bearer", changeMgr},
		{"GET", "/api/v1/reports/reconciliation", "bearer", auditorPlus},
		{"GET", "/api/v1/reports/reconciliation/:id", "bearer", auditorPlus},
		{"GET", "/api/v1/reports/reconciliation/:id/bundle", "bearer", auditorPlus},
		{"POST", "/api/v1/reports/reconciliation/:id/findings/:fid/ack", "bearer", changeMgr},

		{"GET", "/api/v1/mappings", "bearer", auditorPlus},
		{"GET", "/api/v1/mappings/:name", "bearer", auditorPlus},
		{"PUT", "/api/v1/mappings/:name", "bearer", adminOnly},
		{"DELETE", "/api/v1/mappings/:name", "bearer", adminOnly},
		{"POST", "/api/v1/mappings/:name/preview", "bearer", adminOnly},

		{"GET", "/api/v1/policy", "bearer", adminOnly},
		{"PUT", "/api/v1/policy", "bearer", adminOnly},
		{"POST", "/api/v1/policy/simulate", "bearer", changeMgr},

		{"GET", "/api/v1/events", "bearer", adminOnly},
		{"GET", "/api/v1/events/:id", "bearer", adminOnly},
		{"POST", "/api/v1/events/:id/replay", "bearer", adminOnly},
		// Not a row of DESIGN's table: replaying a connector's quarantine
		// belongs with the inbox routes, which are admin's.
		{"POST", "/api/v1/events/replay", "bearer", adminOnly},

		{"GET", "/api/v1/metrics/releases", "bearer", auditorPlus},
		// Not rows of DESIGN's table (README, docs/governance.md): what
		// observe mode let through is a report, read like the others;
		// four-eyes proposals are changes to admin-only resources,
		// confirmed by a second admin.
		{"GET", "/api/v1/reports/observe", "bearer", auditorPlus},
		{"GET", "/api/v1/proposals", "bearer", adminOnly},
		{"GET", "/api/v1/proposals/:id", "bearer", adminOnly},
		{"POST", "/api/v1/proposals/:id/confirm", "bearer", adminOnly},
		{"POST", "/api/v1/proposals/:id/withdraw", "bearer", adminOnly},

		{"POST", "/api/v1/tokens", "bearer", adminOnly},
		{"GET", "/api/v1/tokens", "bearer", adminOnly},
		{"DELETE", "/api/v1/tokens/:id", "bearer", adminOnly},

		{"POST", "/api/v1/holds", "bearer", changeMgr},
		{"GET", "/api/v1/holds", "bearer", auditorPlus},
		{"DELETE", "/api/v1/holds/:id", "bearer", changeMgr},

		{"GET", "/api/v1/audit", "bearer", auditorPlus},
		{"GET", "/api/v1/audit/verify", "bearer", auditorPlus},
		{"GET", "/api/v1/audit/head", "bearer", auditorPlus},
		// Not a row of DESIGN's table (docs/reconciliation.md): the public
		// key evidence bundles are signed with is no secret, and whoever
		// verifies a bundle offline may hold no token.
		{"GET", "/api/v1/evidence/public-key", "none", nil},
		{"GET", "/api/v1/doctor", "bearer", adminOnly},
		{"GET", "/api/v1/replicas", "bearer", adminOnly},

		{"GET", "/api/v1/openapi.json", "none", nil},
		{"GET", "/api/docs", "none", nil},
		{"GET", "/ui", "none", nil},       // a redirect to /ui/
		{"*", "/ui/", "session", uiRoles}, // every route under /ui/
	}
)

// contractEntry finds the contract line of a served route.
func contractEntry(method, path string) (contractRoute, bool) {
	for _, r := range contractAPIs {
		if r.method == method && r.path == path {
			return r, true
		}
		if r.auth == "session" && strings.HasPrefix(path, r.path) {
			return r, true
		}
	}
	return contractRoute{}, false
}

// TestEveryServedRouteIsInTheContract fails for a route the router serves
// without a line in contractAPIs: whoever adds a route writes down who may
// call it.
func TestEveryServedRouteIsInTheContract(t *testing.T) {
	s := boot(t, "sqlite", "")
	for _, rt := range s.app.Server.Echo().Router().Routes() {
		if _, ok := contractEntry(rt.Method, rt.Path); !ok {
			t.Errorf("route %s %s is served but has no line in contractAPIs (app/contract_routes_test.go): add it with the roles DESIGN.md gives it", rt.Method, rt.Path)
		}
	}
}

// TestRouteRoleMatrix calls every route of the contract with no token, a
// forged token, a revoked token, an admin's UI session past its absolute
// lifetime and one past its idle timeout (as cookies: the API takes none)
// and a token of every role, against the real server, and checks 401 / 403
// / access as the contract says. Every UI page refuses both expired
// sessions exactly as it refuses a request without one (the sign-in form,
// 401). Routes of the contract not served yet are listed (go test -v) and
// skipped.
func TestRouteRoleMatrix(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig)
	served := map[string]bool{}
	for _, rt := range s.app.Server.Echo().Router().Routes() {
		served[rt.Method+" "+rt.Path] = true
	}
	tokens := map[core.Role]string{}
	for _, r := range []core.Role{core.RoleAdmin, core.RoleChangeManager, core.RoleAuditor, core.RoleCI} {
		tokens[r], _ = s.token(r)
	}
	revoked, revokedID := s.token(core.RoleAdmin)
	if st := s.do("DELETE", "/api/v1/tokens/"+revokedID, adminSecret, nil, nil); st != http.StatusNoContent {
		t.Fatalf("revoke: %d", st)
	}
	const forged = "tg_forged-0123456789abcdef"
	_, adminID := s.token(core.RoleAdmin)
	sessions := newSessionMaker(t, s, core.Token{ID: adminID, Name: "test-admin", Role: core.RoleAdmin})
	if st, body := sessions.send("GET", "/ui/audit", sessions.make("live")); st != http.StatusOK || strings.Contains(body, `name="token"`) {
		t.Fatalf("a live admin session on /ui/audit: %d (the session maker is broken)", st)
	}
	expired := []string{"expired session", "idle session"}

	var absent []string
	for _, r := range contractAPIs {
		key := r.method + " " + r.path
		if r.auth == "session" {
			t.Run(key, func(t *testing.T) { uiPagesRefuseExpiredSessions(t, s, sessions, expired) })
			continue
		}
		if !served[key] {
			absent = append(absent, key)
			continue
		}
		path := fillParams(r.path)
		if r.auth == "webhook" {
			path = "/webhooks/itsm"
		}
		t.Run(key, func(t *testing.T) {
			expectDenied := func(who, token string, want int) {
				t.Helper()
				if st := s.do(r.method, path, token, nil, nil); st != want {
					t.Errorf("%s: status %d, want %d", who, st, want)
				}
			}
			switch r.auth {
			case "none":
				for who, tok := range map[string]string{"no token": "", "forged token": forged, "ci token": tokens[core.RoleCI]} {
					if st := s.do(r.method, path, tok, nil, nil); st == 401 || st == 403 || st >= 500 {
						t.Errorf("%s on a public route: status %d", who, st)
					}
				}
				return
			case "webhook": // only the connector's secret opens it
				expectDenied("no signature", "", 401)
				expectDenied("admin bearer token", tokens[core.RoleAdmin], 401)
				for _, who := range expired {
					if st, _ := sessions.send(r.method, path, sessions.make(who)); st != 401 {
						t.Errorf("%s: status %d, want 401", who, st)
					}
				}
				return
			}
			expectDenied("no token", "", 401)
			expectDenied("forged token", forged, 401)
			expectDenied("revoked token", revoked, 401)
			for _, who := range expired {
				if st, _ := sessions.send(r.method, path, sessions.make(who)); st != 401 {
					t.Errorf("%s: status %d, want 401", who, st)
				}
			}
			for role, tok := range tokens {
				st := s.do(r.method, path, tok, nil, nil)
				may := role == core.RoleAdmin || slices.Contains(r.roles, role)
				switch {
				case may && (st == 401 || st == 403):
					t.Errorf("role %s: status %d, want access", role, st)
				case !may && st != 403:
					t.Errorf("role %s: status %d, want 403", role, st)
				case st >= 500:
					t.Errorf("role %s: status %d (a server error on an empty request)", role, st)
				}
			}
		})
	}
	sort.Strings(absent)
	t.Logf("contract routes not served by this build (skipped): %d\n  %s", len(absent), strings.Join(absent, "\n  "))
}

// uiPagesRefuseExpiredSessions calls every served UI route with no session
// and with each kind of expired session (a fresh one per request, so that
// every page meets the expiry itself, not a session an earlier request
// already ended): the expired ones must get exactly what no session gets,
// the sign-in form, on every page that needs a session.
func uiPagesRefuseExpiredSessions(t *testing.T, s *server, sessions *sessionMaker, expired []string) {
	protected := 0
	for _, rt := range s.app.Server.Echo().Router().Routes() {
		if !strings.HasPrefix(rt.Path, "/ui/") {
			continue
		}
		path := fillParams(strings.Replace(rt.Path, "*", "no-such-page", 1))
		want, body := sessions.send(rt.Method, path, "")
		if !strings.Contains(body, `name="token"`) {
			continue // public: the sign-in form's post, the stylesheet
		}
		protected++
		for _, who := range expired {
			st, body := sessions.send(rt.Method, path, sessions.make(who))
			if st != want || !strings.Contains(body, `name="token"`) || strings.Contains(body, "Sign out") {
				t.Errorf("%s %s with an %s: status %d, want %d and the sign-in form, as without a session", rt.Method, path, who, st, want)
			}
		}
	}
	if protected < 10 {
		t.Errorf("only %d UI routes ask for a session", protected)
	}
	t.Logf("%d UI routes ask for a session; each refused both expired ones", protected)
}

// sessionMaker stores UI sessions of one token with chosen lifetimes, as
// sign-in would have stored them earlier, and sends requests carrying
// their cookie.
type sessionMaker struct {
	t      *testing.T
	s      *server
	tok    core.Token
	client *http.Client
}

func newSessionMaker(t *testing.T, s *server, tok core.Token) *sessionMaker {
	return &sessionMaker{t: t, s: s, tok: tok,
		client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// make stores a session and returns its cookie value: "live", "expired
// session" (signed in 13 h ago, past the default 12 h max_age, seen a
// moment ago) or "idle session" (within its max_age, unseen for longer
// than the default 30 m idle_timeout).
func (m *sessionMaker) make(kind string) string {
	m.t.Helper()
	now := time.Now().UTC()
	sess := auth.UISession{Token: m.tok, CSRF: "csrf-" + kind}
	switch kind {
	case "live":
		sess.CreatedAt, sess.LastSeenAt, sess.ExpiresAt = now, now, now.Add(12*time.Hour)
	case "expired session":
		sess.CreatedAt, sess.LastSeenAt, sess.ExpiresAt = now.Add(-13*time.Hour), now.Add(-10*time.Second), now.Add(-time.Hour)
	case "idle session":
		sess.CreatedAt, sess.LastSeenAt, sess.ExpiresAt = now.Add(-2*time.Hour), now.Add(-31*time.Minute), now.Add(10*time.Hour)
	default:
		m.t.Fatalf("session kind %q", kind)
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	h := sha256.Sum256([]byte(id))
	sess.IDHash = hex.EncodeToString(h[:])
	if err := m.s.app.DB.CreateSession(context.Background(), sess); err != nil {
		m.t.Fatalf("store a %s: %v", kind, err)
	}
	return id
}

// send makes a request with the session cookie (none when "") and returns
// the status and body.
func (m *sessionMaker) send(method, path, cookie string) (int, string) {
	m.t.Helper()
	req, err := http.NewRequest(method, m.s.url+path, nil)
	if err != nil {
		m.t.Fatal(err)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: "tollgate_session", Value: cookie})
	}
	resp, err := m.client.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}
