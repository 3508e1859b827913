package app_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// uiClient is a browser-like client of the web UI: a cookie jar, no
// automatic redirects (tests look at them).
type uiClient struct {
	s    *server
	c    *http.Client
	csrf string
}

func (s *server) uiClient() *uiClient {
	jar, _ := cookiejar.New(nil)
	return &uiClient{s: s, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (u *uiClient) get(path string) (int, http.Header, string) {
	u.s.t.Helper()
	return u.send("GET", path, nil, nil)
}

func (u *uiClient) send(method, path string, form url.Values, hdr map[string]string) (int, http.Header, string) {
	u.s.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u.s.url+path, body)
	if err != nil {
		u.s.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := u.c.Do(req)
	if err != nil {
		u.s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if m := csrfInput.FindStringSubmatch(string(raw)); m != nil {
		u.csrf = m[1]
	}
	return resp.StatusCode, resp.Header, string(raw)
}

// post sends a form with the session's CSRF token.
func (u *uiClient) post(path string, form url.Values) (int, http.Header, string) {
	u.s.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", u.csrf)
	return u.send("POST", path, form, nil)
}

func (u *uiClient) signIn(secret string) (int, http.Header) {
	u.s.t.Helper()
	st, h, _ := u.send("POST", "/ui/signin", url.Values{"token": {secret}, "next": {"/ui/"}}, nil)
	if st == http.StatusSeeOther {
		u.get("/ui/") // picks up the CSRF token
	}
	return st, h
}

func checkSecurityHeaders(t *testing.T, path string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: CSP %q lacks %s", path, csp, want)
		}
	}
	if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") == "" {
		t.Errorf("%s: headers %v", path, h)
	}
}

// TestUIPagesByRole opens every page as every role that can sign in: a
// page the role may see renders (200, or the page's own 404 for a made-up
// id), any other is the 403 page — never blank, always with the security
// headers. Roles are the API's: the mirrored API route's rule decides.
func TestUIPagesByRole(t *testing.T) {
	s := boot(t, "sqlite", "")
	clients := map[core.Role]*uiClient{}
	for _, r := range []core.Role{core.RoleAdmin, core.RoleChangeManager, core.RoleAuditor} {
		secret, _ := s.token(r)
		clients[r] = s.uiClient()
		if st, _ := clients[r].signIn(secret); st != http.StatusSeeOther {
			t.Fatalf("%s sign-in: %d", r, st)
		}
	}
	all := []core.Role{core.RoleAdmin, core.RoleChangeManager, core.RoleAuditor}
	admin := []core.Role{core.RoleAdmin}
	pages := []struct {
		path  string
		roles []core.Role
		want  int // for the roles allowed
	}{
		{"/ui/", all, 200},
		{"/ui/releases", all, 200},
		{"/ui/releases?service=payments-api&environment=production&team=x&from=2026-01-01&to=2026-12-31", all, 200},
		{"/ui/releases/no-such-release", all, 404},
		{"/ui/deployments", all, 200},
		{"/ui/changes", all, 200},
		{"/ui/changes/CHG-NONE", all, 404},
		{"/ui/audit", all, 200},
		{"/ui/audit?verify=1", all, 200},
		{"/ui/mappings", all, 200},
		{"/ui/mappings/generic-change", all, 200},
		{"/ui/policy", admin, 200},
		{"/ui/inbox", admin, 200},
		{"/ui/inbox/no-such-event", admin, 404},
		{"/ui/tokens", admin, 200},
		{"/ui/connections", admin, 200},
		{"/ui/reconciliation", all, 200},
		{"/ui/reconciliation/no-such-report", all, 404},
		{"/ui/no-such-page", all, 404},
	}
	for _, p := range pages {
		for role, c := range clients {
			st, h, body := c.get(p.path)
			checkSecurityHeaders(t, p.path, h)
			may := role == core.RoleAdmin || containsRole(p.roles, role)
			switch {
			case may && st != p.want:
				t.Errorf("%s as %s: %d, want %d", p.path, role, st, p.want)
			case !may && (st != http.StatusForbidden || !strings.Contains(body, "may not open this page")):
				t.Errorf("%s as %s: %d, want the 403 page", p.path, role, st)
			case !strings.Contains(body, "<html") || !strings.Contains(body, "Sign out"):
				t.Errorf("%s as %s: not a full page", p.path, role)
			}
		}
	}
	// Forms are the API's writes: admin only.
	for _, role := range []core.Role{core.RoleChangeManager, core.RoleAuditor} {
		c := clients[role]
		for _, path := range []string{"/ui/tokens", "/ui/mappings/generic-change", "/ui/inbox/replay"} {
			if st, _, body := c.post(path, url.Values{"name": {"x"}, "role": {"admin"}, "action": {"save"}, "source": {"x"}, "connector": {"x"}}); st != http.StatusForbidden || !strings.Contains(body, "may not") {
				t.Errorf("POST %s as %s: %d, want the 403 page", path, role, st)
			}
		}
	}
}

func containsRole(rs []core.Role, r core.Role) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// TestUISessionLifecycle: the sign-in page is public, other pages need a
// session; a ci token or a wrong token cannot sign in; the cookie is
// HttpOnly, SameSite=Strict and never the token; a form without its CSRF
// token (or posted from another site) is refused; sign-out ends the
// session on the server, so the old cookie opens nothing.
func TestUISessionLifecycle(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, "")
			anon := s.uiClient()
			st, h, body := anon.get("/ui/")
			if st != http.StatusOK || !strings.Contains(body, `type="password"`) {
				t.Fatalf("sign-in page: %d", st)
			}
			checkSecurityHeaders(t, "/ui/", h)
			if st, _, body := anon.get("/ui/audit"); st != http.StatusUnauthorized || !strings.Contains(body, `name="token"`) {
				t.Errorf("page without a session: %d, want 401 with the sign-in form", st)
			}
			ci, _ := s.token(core.RoleCI)
			if st, h := s.uiClient().signIn(ci); st != http.StatusForbidden || h.Get("Set-Cookie") != "" {
				t.Errorf("ci sign-in: %d, cookie %q", st, h.Get("Set-Cookie"))
			}
			if st, _ := s.uiClient().signIn("tg_wrong"); st != http.StatusUnauthorized {
				t.Errorf("wrong token: %d", st)
			}

			secret, _ := s.token(core.RoleChangeManager)
			c := s.uiClient()
			st, h = c.signIn(secret)
			cookie := h.Get("Set-Cookie")
			if st != http.StatusSeeOther || !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Strict") ||
				strings.Contains(cookie, "Secure") || strings.Contains(cookie, secret) {
				t.Fatalf("sign-in: %d, cookie %q", st, cookie)
			}
			if c.csrf == "" {
				t.Fatal("no CSRF token on the dashboard")
			}
			if st, _, _ := c.send("POST", "/ui/signout", url.Values{}, nil); st != http.StatusForbidden {
				t.Errorf("sign-out without CSRF token: %d, want 403", st)
			}
			if st, _, _ := c.send("POST", "/ui/signout", url.Values{"csrf": {"forged"}}, nil); st != http.StatusForbidden {
				t.Errorf("sign-out with a wrong CSRF token: %d, want 403", st)
			}
			if st, _, _ := c.send("POST", "/ui/signout", url.Values{"csrf": {c.csrf}}, map[string]string{"Origin": "https://evil.example"}); st != http.StatusForbidden {
				t.Errorf("cross-site post: %d, want 403", st)
			}
			if st, _, _ := c.get("/ui/audit"); st != http.StatusOK {
				t.Fatalf("still signed in after refused posts: %d", st)
			}
			old := c.c.Jar.Cookies(mustURL(t, s.url+"/ui/"))
			if st, _, _ := c.post("/ui/signout", nil); st != http.StatusSeeOther {
				t.Fatalf("sign-out: %d", st)
			}
			replay := s.uiClient()
			replay.c.Jar.SetCookies(mustURL(t, s.url+"/ui/"), old)
			if st, _, body := replay.get("/ui/audit"); st != http.StatusUnauthorized || strings.Contains(body, "Sign out") {
				t.Errorf("old cookie after sign-out: %d, want 401", st)
			}
		})
	}
}

// TestUIRefusalsCounted: the UI's refused authentications are counted and
// logged as the API's are — a failed sign-in, a ci token signing in, a
// role the page does not allow, a form from another site — and a sign-in
// form posted from a sandboxed frame (Origin: null) is refused.
func TestUIRefusalsCounted(t *testing.T) {
	s := boot(t, "sqlite", "")
	if st, _ := s.uiClient().signIn("tg_wrong"); st != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", st)
	}
	ci, _ := s.token(core.RoleCI)
	if st, _ := s.uiClient().signIn(ci); st != http.StatusForbidden {
		t.Fatalf("ci sign-in: %d", st)
	}
	auditor, _ := s.token(core.RoleAuditor)
	null := s.uiClient()
	if st, h, _ := null.send("POST", "/ui/signin", url.Values{"token": {auditor}, "next": {"/ui/"}}, map[string]string{"Origin": "null"}); st != http.StatusForbidden || h.Get("Set-Cookie") != "" {
		t.Fatalf("sign-in posted with Origin: null: %d, cookie %q, want 403 and no session", st, h.Get("Set-Cookie"))
	}
	c := s.uiClient()
	if st, _ := c.signIn(auditor); st != http.StatusSeeOther {
		t.Fatalf("auditor sign-in: %d", st)
	}
	if st, _, _ := c.get("/ui/tokens"); st != http.StatusForbidden {
		t.Fatalf("auditor on the tokens page: %d, want 403", st)
	}
	for reason, want := range map[string]string{"invalid_token": "1", "forbidden": "2", "cross_site": "1"} {
		if got := s.metricValue(`tollgate_auth_failures_total{reason="` + reason + `"}`); got != want {
			t.Errorf("tollgate_auth_failures_total{reason=%q} = %q, want %s", reason, got, want)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestUISessionEndsWithItsToken: revoking the token ends its sessions.
func TestUISessionEndsWithItsToken(t *testing.T) {
	s := boot(t, "sqlite", "")
	secret, id := s.token(core.RoleAuditor)
	c := s.uiClient()
	c.signIn(secret)
	if st, _, _ := c.get("/ui/audit"); st != http.StatusOK {
		t.Fatalf("signed in: %d", st)
	}
	if st := s.do("DELETE", "/api/v1/tokens/"+id, adminSecret, nil, nil); st != http.StatusNoContent {
		t.Fatalf("revoke: %d", st)
	}
	if st, _, _ := c.get("/ui/audit"); st != http.StatusUnauthorized {
		t.Errorf("session of a revoked token: %d, want 401", st)
	}
}

// TestUISecureCookieBehindTrustedProxy: Secure is set when a trusted
// proxy says the request came over TLS, and only then.
func TestUISecureCookieBehindTrustedProxy(t *testing.T) {
	for _, tc := range []struct {
		cfg  string
		want bool
	}{{"", false}, {"ui:\n  trust_proxy: true\n", true}} {
		s := boot(t, "sqlite", tc.cfg)
		secret, _ := s.token(core.RoleAuditor)
		_, h, _ := s.uiClient().send("POST", "/ui/signin", url.Values{"token": {secret}}, map[string]string{"X-Forwarded-Proto": "https"})
		if got := strings.Contains(h.Get("Set-Cookie"), "Secure"); got != tc.want {
			t.Errorf("config %q: Secure %v, want %v (%q)", tc.cfg, got, tc.want, h.Get("Set-Cookie"))
		}
		// Over TLS the cookie is __Host- (Path=/, no Domain): a sibling
		// subdomain cannot plant one for this host.
		if host := strings.HasPrefix(h.Get("Set-Cookie"), "__Host-tollgate_session=") && strings.Contains(h.Get("Set-Cookie"), "Path=/;"); host != tc.want {
			t.Errorf("config %q: __Host- cookie %v, want %v (%q)", tc.cfg, host, tc.want, h.Get("Set-Cookie"))
		}
	}
}

// TestUISessionCookieTossed: a request carrying two session cookies (one
// planted from a sibling subdomain beside the browser's own) is not
// signed in, whichever of them is real.
func TestUISessionCookieTossed(t *testing.T) {
	s := boot(t, "sqlite", "")
	secret, _ := s.token(core.RoleAuditor)
	c := s.uiClient()
	c.signIn(secret)
	real := c.c.Jar.Cookies(mustURL(t, s.url+"/ui/"))
	if len(real) != 1 {
		t.Fatalf("cookies %v", real)
	}
	req, _ := http.NewRequest("GET", s.url+"/ui/audit", nil)
	req.AddCookie(&http.Cookie{Name: "tollgate_session", Value: "planted-by-a-sibling"})
	req.AddCookie(real[0])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("two session cookies: %d, want 401 (not signed in)", resp.StatusCode)
	}
}

// TestUIMappingPreviewAndSave: an admin previews an edited profile on a
// sample (the mapped record, or every problem), then saves it as a new
// version listed with who saved it.
func TestUIMappingPreviewAndSave(t *testing.T) {
	s := boot(t, "sqlite", "")
	c := s.uiClient()
	c.signIn(adminSecret)
	st, _, body := c.get("/ui/mappings/generic-change")
	if st != http.StatusOK {
		t.Fatalf("mapping page: %d", st)
	}
	src := htmlUnescape(regexp.MustCompile(`(?s)<textarea id="source"[^>]*>(.*?)</textarea>`).FindStringSubmatch(body)[1])
	edited := strings.Replace(src, "type: {path: type, default: normal}", "type: {path: type, default: standard}", 1)
	if edited == src {
		t.Fatal("fixture: the profile's type line changed")
	}
	sample := `{"key":"CHG1","state":"scheduled","approval":"approved","source_updated_at":"2026-11-27T10:00:00Z"}`
	st, _, body = c.post("/ui/mappings/generic-change", url.Values{"action": {"preview"}, "source": {edited}, "sample": {sample}})
	if st != http.StatusOK || !strings.Contains(body, "Mapped record") || !strings.Contains(body, "standard") {
		t.Fatalf("preview: %d\n%s", st, body)
	}
	st, _, body = c.post("/ui/mappings/generic-change", url.Values{"action": {"preview"}, "source": {edited}, "sample": {`{"key":"CHG1"}`}})
	if st != http.StatusBadRequest || !strings.Contains(body, "problem") {
		t.Errorf("preview of a sample missing required fields: %d", st)
	}
	st, _, body = c.post("/ui/mappings/generic-change", url.Values{"action": {"save"}, "source": {"name: generic-change\nkind: nonsense\n"}})
	if st != http.StatusBadRequest || !strings.Contains(body, "problem") || !strings.Contains(body, "kind: nonsense") {
		t.Errorf("save of a broken profile: %d (the text must stay)", st)
	}
	st, h, _ := c.post("/ui/mappings/generic-change", url.Values{"action": {"save"}, "source": {edited}})
	if st != http.StatusSeeOther {
		t.Fatalf("save: %d", st)
	}
	st, _, body = c.get(h.Get("Location"))
	if st != http.StatusOK || !strings.Contains(body, "Saved as version 1") || !strings.Contains(body, "via ui") {
		t.Errorf("after save: %d\n%s", st, body)
	}
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&", "&#34;", `"`, "&#39;", "'", "&quot;", `"`).Replace(s)
}

// TestUITokensCreatedShownOnce: the new secret is on the creating
// response only; the list never shows secrets; revoke works from the page.
func TestUITokensCreatedShownOnce(t *testing.T) {
	s := boot(t, "sqlite", "")
	c := s.uiClient()
	c.signIn(adminSecret)
	c.get("/ui/tokens")
	st, _, body := c.post("/ui/tokens", url.Values{"name": {"release-bot"}, "role": {"auditor"}})
	m := regexp.MustCompile(`id="new-token" readonly value="([^"]+)"`).FindStringSubmatch(body)
	if st != http.StatusCreated || m == nil {
		t.Fatalf("create: %d", st)
	}
	secret := m[1]
	if _, _, list := c.get("/ui/tokens"); strings.Contains(list, secret) || !strings.Contains(list, "release-bot") {
		t.Error("the list shows the secret, or not the token")
	}
	if st, _, _ := c.post("/ui/tokens", url.Values{"name": {"x"}, "role": {"root"}}); st != http.StatusBadRequest {
		t.Errorf("unknown role: %d, want 400", st)
	}
	other := s.uiClient()
	if st, _ := other.signIn(secret); st != http.StatusSeeOther {
		t.Fatalf("the new token cannot sign in: %d", st)
	}
}

// TestUIDashboardWaitingThenAllowed: a long-polled check waiting on a
// change shows on the dashboard with its reason; once the change's approval
// arrives by webhook the check is answered and the dashboard's newest
// gate decision shows it allowed, and the release page lists both decisions.
func TestUIDashboardWaitingThenAllowed(t *testing.T) {
	s := boot(t, "postgres", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	t0 := time.Now().UTC().Add(-time.Minute)
	s.sendWebhook(change("CHG3001", core.ApprovalRequested, t0))
	s.waitFor("CHG3001 stored", func() bool { return s.changeState("CHG3001") == "requested" })

	c := s.uiClient()
	c.signIn(adminSecret)
	req := map[string]any{"service": "payments-api", "environment": "production", "version": "2.0.0",
		"team": "payments", "changes": []string{"CHG3001"}}
	answered := make(chan gateAnswer, 1)
	go func() { answered <- s.check(ci, "?wait=30s", req) }()
	s.waitFor("the waiting check on the dashboard", func() bool {
		_, _, body := c.get("/ui/")
		return strings.Contains(body, `<tr class="waiting">`) && strings.Contains(body, "payments-api 2.0.0") &&
			strings.Contains(body, core.CodeChangeNotApproved)
	})
	s.sendWebhook(change("CHG3001", core.ApprovalApproved, t0.Add(time.Second)))
	select {
	case a := <-answered:
		if a.Decision != "allow" {
			t.Fatalf("after approval: %s %s", a.Decision, a.codes())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("long-poll did not answer")
	}
	_, _, body := c.get("/ui/")
	if strings.Contains(body, `<tr class="waiting">`) || !regexp.MustCompile(`<tr class="decision">\s*<td><a [^>]*>payments-api 2.0.0 → production</a></td>\s*<td><span class="badge allow">`).MatchString(body) {
		t.Errorf("dashboard after the approval:\n%s", body)
	}
	_, _, body = c.get("/ui/changes/CHG3001")
	if !strings.Contains(body, "Version 2") || !strings.Contains(body, "requested") || !strings.Contains(body, "ana.lima") {
		t.Errorf("change page lacks the history or approvals:\n%s", body)
	}
}

// TestUIDeploymentLinksChanged: a deployment whose links a later report
// changed says so in the deployments list, linking to the audit entries.
func TestUIDeploymentLinksChanged(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	dep := map[string]any{"service": "payments-api", "environment": "production", "version": "3.1.0", "status": "succeeded",
		"provider": "github", "run_id": "902", "changes": []string{"CHG5001"}, "started_at": time.Now().UTC().Add(-time.Hour)}
	var first core.Deployment
	if st := s.do("POST", "/api/v1/deployments", ci, dep, &first); st != http.StatusCreated {
		t.Fatalf("deployment: %d", st)
	}
	aud, _ := s.token(core.RoleAuditor)
	ui := s.uiClient()
	ui.signIn(aud)
	if _, _, body := ui.get("/ui/deployments"); strings.Contains(body, "links changed") {
		t.Fatal("a deployment as first reported shows a change of links")
	}
	dep["changes"] = []string{"CHG5002"}
	if st := s.do("POST", "/api/v1/deployments", ci, dep, nil); st != http.StatusOK {
		t.Fatalf("relink: %d", st)
	}
	st, _, body := ui.get("/ui/deployments")
	if st != http.StatusOK || !strings.Contains(body, "links changed") ||
		!strings.Contains(body, `href="/ui/audit?subject=deployment:`+first.ID+`&amp;action=deployment.links"`) {
		t.Fatalf("deployments page: %d\n%s", st, body)
	}
	if st, _, body := ui.get("/ui/audit?subject=deployment:" + first.ID + "&action=deployment.links"); st != http.StatusOK || !strings.Contains(body, "deployment.links") {
		t.Fatalf("audit page: %d\n%s", st, body)
	}
}

// TestUIReconciliation: a change manager runs a report for a period, reads
// its findings grouped by code, finds the deployment made without the
// gate's allow and acknowledges it with a comment; the downloads are the
// API's files. An auditor reads but may not run or acknowledge.
func TestUIReconciliation(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	start := time.Now().UTC().Add(-3 * time.Hour)
	if st := s.do("POST", "/api/v1/deployments", ci, map[string]any{"service": "payments-api", "environment": "production",
		"version": "3.0.0", "status": "succeeded", "provider": "github", "run_id": "901", "actor": "eve",
		"changes": []string{"CHG5001"}, "started_at": start}, nil); st != http.StatusCreated {
		t.Fatalf("deployment: %d", st)
	}
	cmSecret, _ := s.token(core.RoleChangeManager)
	cm := s.uiClient()
	cm.signIn(cmSecret)
	cm.get("/ui/reconciliation")
	day := time.Now().UTC().Format(time.DateOnly)
	if st, _, body := cm.post("/ui/reconciliation", url.Values{"from": {"not-a-day"}, "to": {day}}); st != http.StatusBadRequest || !strings.Contains(body, "from") {
		t.Errorf("bad period: %d", st)
	}
	st, h, _ := cm.post("/ui/reconciliation", url.Values{"from": {time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)}, "to": {day}, "environment": {"production"}})
	if st != http.StatusSeeOther {
		t.Fatalf("run: %d", st)
	}
	reportPath := h.Get("Location")
	st, _, body := cm.get(reportPath)
	if st != http.StatusOK || !strings.Contains(body, `id="code-`+core.CodeGateBypassed+`"`) || !strings.Contains(body, "payments-api 3.0.0") {
		t.Fatalf("report page: %d\n%s", st, body)
	}
	m := regexp.MustCompile(`action="(/ui/reconciliation/[^"]+/findings/(\d+)/ack)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no acknowledge form")
	}
	if st, _, _ := cm.post(m[1], url.Values{"comment": {"  "}}); st != http.StatusBadRequest {
		t.Errorf("ack without comment: %d, want 400", st)
	}
	if st, _, _ := cm.post(m[1], url.Values{"comment": {"hotfix agreed on the bridge call"}}); st != http.StatusSeeOther {
		t.Fatalf("ack: %d", st)
	}
	_, _, body = cm.get(reportPath)
	if !strings.Contains(body, "hotfix agreed on the bridge call") || !strings.Contains(body, "via ui") {
		t.Errorf("acknowledgement not shown")
	}
	_, _, dash := cm.get("/ui/")
	if !strings.Contains(dash, "Open findings") || !strings.Contains(dash, "Release metrics, last 8 weeks") {
		t.Errorf("dashboard lacks findings or metrics")
	}
	for format, ctype := range map[string]string{"csv": "text/csv", "html": "text/html"} {
		st, h, body := cm.get(reportPath + "/download?format=" + format)
		if st != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), ctype) || !strings.Contains(h.Get("Content-Disposition"), "attachment") ||
			!strings.Contains(body, core.CodeGateBypassed) {
			t.Errorf("%s download: %d %v", format, st, h)
		}
	}
	if st, h, body := cm.get(reportPath + "/bundle"); st != http.StatusOK || len(body) < 100 || !strings.Contains(h.Get("Content-Disposition"), ".tar.gz") {
		t.Errorf("bundle: %d %v", st, h)
	}

	audSecret, _ := s.token(core.RoleAuditor)
	aud := s.uiClient()
	aud.signIn(audSecret)
	if st, _, body := aud.get(reportPath); st != http.StatusOK || strings.Contains(body, "/ack") {
		t.Errorf("auditor reads the report without ack forms: %d", st)
	}
	if st, _, _ := aud.post("/ui/reconciliation", url.Values{"from": {day}, "to": {day}}); st != http.StatusForbidden {
		t.Errorf("auditor runs a report: %d, want 403", st)
	}
	if st, _, _ := aud.post(m[1], url.Values{"comment": {"x"}}); st != http.StatusForbidden {
		t.Errorf("auditor acknowledges: %d, want 403", st)
	}
}

// TestUIInboxReplayAndEscaping: an admin sees a quarantined event with its
// reason and body and replays it, alone or with its connector's; what
// arrived from outside is shown escaped, never as markup.
func TestUIInboxReplayAndEscaping(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig)
	if st, raw := s.sendRaw([]byte(`{"key":"CHG-X1","approval":"approved","title":"<script>alert(1)</script>"}`)); st != http.StatusAccepted {
		t.Fatalf("webhook: %d %s", st, raw)
	}
	c := s.uiClient()
	c.signIn(adminSecret)
	var body string
	s.waitFor("the quarantined event in the inbox", func() bool {
		_, _, body = c.get("/ui/inbox")
		return strings.Contains(body, "/ui/inbox/") && strings.Contains(body, "Replay")
	})
	m := regexp.MustCompile(`href="/ui/inbox/([0-9a-f-]{36})"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no event link:\n%s", body)
	}
	st, _, ev := c.get("/ui/inbox/" + m[1])
	if st != http.StatusOK || strings.Contains(ev, "<script>alert") || !strings.Contains(ev, "&lt;script&gt;alert(1)&lt;/script&gt;") ||
		!strings.Contains(ev, "quarantined") {
		t.Fatalf("event page: %d\n%s", st, ev)
	}
	st, h, _ := c.post("/ui/inbox/"+m[1]+"/replay", nil)
	if st != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "replayed_event=") {
		t.Errorf("replay: %d %v", st, h)
	}
	if _, _, body := c.get(h.Get("Location")); !strings.Contains(body, "Replayed: event "+m[1]) {
		t.Errorf("no replay banner after the replay")
	}
	if _, _, body := c.get("/ui/inbox?replayed=" + url.QueryEscape("all your changes were approved")); strings.Contains(body, "approved") {
		t.Error("the inbox banner shows a link's own text")
	}
	if st, _, _ := c.post("/ui/inbox/replay", url.Values{"connector": {""}}); st != http.StatusBadRequest {
		t.Errorf("replay without a connector: %d, want 400", st)
	}
	if st, h, _ := c.post("/ui/inbox/replay", url.Values{"connector": {"itsm"}}); st != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "itsm") {
		t.Errorf("replay a connector: %d %v", st, h)
	}
}

// TestUIMappingSaveUnderFourEyes: with four-eyes governance a save from the
// UI is a proposal, as through the API, and the profile is unchanged until
// a second admin confirms it.
func TestUIMappingSaveUnderFourEyes(t *testing.T) {
	s := boot(t, "sqlite", "governance:\n  four_eyes: true\n")
	c := s.uiClient()
	c.signIn(adminSecret)
	_, _, body := c.get("/ui/mappings/generic-change")
	src := htmlUnescape(regexp.MustCompile(`(?s)<textarea id="source"[^>]*>(.*?)</textarea>`).FindStringSubmatch(body)[1])
	edited := strings.Replace(src, "type: {path: type, default: normal}", "type: {path: type, default: standard}", 1)
	st, h, _ := c.post("/ui/mappings/generic-change", url.Values{"action": {"save"}, "source": {edited}})
	if st != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "proposed=") {
		t.Fatalf("save under four-eyes: %d %v", st, h)
	}
	if _, _, body := c.get(h.Get("Location")); !strings.Contains(body, "second admin confirms") {
		t.Error("no proposal message")
	}
	// The banners are the server's: a link carrying made-up ones shows
	// none (an admin must not be told a save or proposal happened).
	for _, q := range []string{"?proposed=01FAKE", "?saved=1"} {
		if _, _, body := c.get("/ui/mappings/generic-incident" + q); strings.Contains(body, `class="good"`) {
			t.Errorf("%s: a banner shown for what this session did not do", q)
		}
	}
	var m core.MappingProfile
	if s.do("GET", "/api/v1/mappings/generic-change", adminSecret, nil, &m); m.Version != 0 || strings.Contains(m.Source, "default: standard") {
		t.Errorf("the profile changed without a second admin: version %d", m.Version)
	}
	var ps struct {
		Proposals []core.Proposal `json:"proposals"`
	}
	if s.do("GET", "/api/v1/proposals", adminSecret, nil, &ps); len(ps.Proposals) != 1 || ps.Proposals[0].Kind != core.ProposalMapping ||
		!strings.Contains(ps.Proposals[0].ProposedBy, "via ui") {
		t.Fatalf("proposals: %+v", ps.Proposals)
	}
	// The same token is the same admin through the API: the channel in
	// the proposer's name does not make it a second one.
	if st := s.do("POST", "/api/v1/proposals/"+ps.Proposals[0].ID+"/confirm", adminSecret, nil, nil); st != http.StatusForbidden {
		t.Fatalf("confirmed through the API by the token that proposed it in the UI: %d, want 403", st)
	}
}

// TestUIChangeKeyLinksEscaped: a change key may hold "/" and "#" (record
// keys allow them): links escape it, so a key never points at another
// page (CHG1/../../tokens), and the change page reads it back.
func TestUIChangeKeyLinksEscaped(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig)
	t0 := time.Now().UTC().Add(-time.Minute)
	s.sendWebhook(change("OPS/7#a", core.ApprovalApproved, t0))
	s.waitFor("the change stored", func() bool {
		return s.do("GET", "/api/v1/changes/"+url.PathEscape("OPS/7#a"), adminSecret, nil, nil) == http.StatusOK
	})
	ci, _ := s.token(core.RoleCI)
	s.check(ci, "", map[string]any{"service": "payments-api", "environment": "production", "version": "3.0.0",
		"team": "payments", "changes": []string{"OPS/7#a"}})
	c := s.uiClient()
	c.signIn(adminSecret)
	_, _, body := c.get("/ui/releases")
	if !strings.Contains(body, `href="/ui/changes/OPS%2F7%23a"`) {
		t.Fatalf("releases page does not escape the change key in its link:\n%s", body)
	}
	if st, _, body := c.get("/ui/changes/OPS%2F7%23a"); st != http.StatusOK || !strings.Contains(body, "OPS/7#a") {
		t.Fatalf("change page by its escaped key: %d\n%s", st, body)
	}
}
