// Package ui is tollgate's web UI at /ui/: server-rendered pages from
// templates and a stylesheet embedded in the binary (no JavaScript is
// needed, no asset comes from elsewhere), for change managers, auditors
// and admins. A person signs in with an API token into a server-side
// session; every page and form checks the same roles as the API and calls
// the same services, so the UI can do nothing the token could not.
package ui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/httperr"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store/auth"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Tokens authenticates sign-ins and manages tokens (the tokens page).
type Tokens interface {
	Authenticate(ctx context.Context, secret string) (core.Token, error)
	Create(ctx context.Context, name string, role core.Role, actor string) (string, core.Token, error)
	List(ctx context.Context) ([]core.Token, error)
	Revoke(ctx context.Context, id, actor string) error
}

// Sessions stores sessions durably (by the hash of their id).
type Sessions interface {
	CreateSession(ctx context.Context, s auth.UISession) error
	Session(ctx context.Context, idHash string) (auth.UISession, error)
	TouchSession(ctx context.Context, idHash string, at time.Time) error
	EndSession(ctx context.Context, idHash, action string, at time.Time) error
}

// Reader is the read side of the store the pages render.
type Reader interface {
	GetChange(ctx context.Context, key string) (core.Change, error)
	ChangeHistory(ctx context.Context, key string) ([]core.ChangeVersion, error)
	ListReleases(ctx context.Context, f core.ReleaseFilter) ([]core.Release, error)
	ListDeployments(ctx context.Context, f core.ReleaseFilter) ([]core.Deployment, error)
	GetRelease(ctx context.Context, id string) (core.Release, error)
	DecisionsForRelease(ctx context.Context, releaseID string, limit int) ([]core.GateDecision, error)
	RecentDecisions(ctx context.Context, limit int) ([]core.GateDecision, error)
	ActiveIncidents(ctx context.Context) ([]core.Incident, error)
	ListAudit(ctx context.Context, f core.AuditFilter) ([]core.AuditEntry, error)
	VerifyAudit(ctx context.Context) (*core.AuditBreak, int64, error)
}

// Pending lists the gates waiting now (service.WaitingGates), as GET
// /api/v1/gate/pending does: the requests CIs wait on at their own gates
// and this process's long-polled checks.
type Pending interface {
	List(ctx context.Context, q service.PendingQuery) (service.PendingListing, error)
}

// Policies gives the policy in force.
type Policies interface {
	Current() *core.CompiledPolicy
	Source(ctx context.Context) (core.PolicyVersion, error)
	// HistoryEnvironments resolves a listing's environment filter under
	// cp, to the names stored records carry (service.Policies).
	HistoryEnvironments(ctx context.Context, cp *core.CompiledPolicy, field, name string) (env string, also []string, err error)
}

// Mappings manages mapping profiles.
type Mappings interface {
	List(ctx context.Context) ([]core.MappingProfile, error)
	Get(ctx context.Context, name string) (core.MappingProfile, error)
	Versions(ctx context.Context, name string) ([]core.MappingProfile, error)
	Put(ctx context.Context, name string, src []byte, actor string) (core.MappingProfile, error)
	Preview(ctx context.Context, name string, src, payload []byte) (any, error)
}

// Proposals is four-eyes governance: when it is on, a mapping save is a
// proposal a second admin confirms (as PUT /api/v1/mappings/{name} then
// answers), never a direct write.
type Proposals interface {
	FourEyes() bool
	Propose(ctx context.Context, kind, target string, src []byte, actor string) (core.Proposal, error)
	Get(ctx context.Context, id string) (core.Proposal, error)
}

// Inbox lists and replays stored webhook events.
type Inbox interface {
	ListEvents(ctx context.Context, f core.EventFilter) ([]core.Event, error)
	GetEvent(ctx context.Context, id string) (core.Event, error)
	Replay(ctx context.Context, id, actor string) error
	ReplayQuarantined(ctx context.Context, connector, actor string) (int, error)
}

// Holds lists change managers' holds (HOLD), as GET /api/v1/holds does.
type Holds interface {
	List(ctx context.Context, all bool) ([]core.Hold, error)
}

// Deps is what the UI needs.
type Deps struct {
	Logger   *slog.Logger
	Clock    core.Clock
	Tokens   Tokens
	Sessions Sessions
	Reader   Reader
	// Pending, when set, shows the gates waiting now.
	Pending  Pending
	Policies Policies
	Mappings Mappings
	// Proposals may be nil (no four-eyes governance).
	Proposals Proposals
	Inbox     Inbox
	// Holds, when set, shows the holds in force on the dashboard.
	Holds Holds
	// Reports and Downloads, when set, add the reconciliation pages and
	// the dashboard's open findings and release metrics.
	Reports   Reports
	Downloads Downloads
	// IdleTimeout ends a session after this long without a request;
	// MaxAge ends it this long after sign-in whatever happens.
	IdleTimeout, MaxAge time.Duration
	// TrustProxy makes X-Forwarded-Proto: https count as TLS (cookies
	// are then Secure), for a server behind a TLS-terminating proxy:
	// from a peer in TrustedProxies when that is set (http.trusted_proxies),
	// from any peer otherwise.
	TrustProxy     bool
	TrustedProxies []netip.Prefix
	// AuthFailures, when set, bounds each client's failed sign-ins
	// (shared with the API's bearer tokens and webhook signatures).
	AuthFailures AuthFailures
	// LimitToken, when set, spends one of the token's requests (the
	// API's per-token limit, rate_limit.per_token): each page and sign-in
	// does, so a session cannot read through the UI what its token may
	// not through the API. It returns the rate-limited error.
	LimitToken func(c *echo.Context, tokenID string) error
	// OnRefused, when set, counts and logs a refused authentication as
	// the API does (tollgate_auth_failures_total{reason}, a warning
	// without the secret): a failed sign-in (invalid_token), a role the
	// page does not allow or a ci token signing in (forbidden, with the
	// token id), a form posted from another site (cross_site).
	OnRefused func(c *echo.Context, reason, tokenID string)
	// Doctor, when set, shows tollgate doctor's checks of the database and
	// each connector's system on the Connections page.
	Doctor Doctor
	// Replicas, when set, lists the replicas running on the database on
	// the Connections page.
	Replicas Replicas
}

// Doctor runs tollgate doctor's read-only checks (the serving app's).
type Doctor interface {
	CheckConnectors(ctx context.Context) []connectors.Section
}

// Replicas lists the replicas the database knows (GET /api/v1/replicas).
type Replicas interface {
	Replicas(ctx context.Context) ([]core.Replica, error)
}

// UI serves the pages.
type UI struct {
	deps  Deps
	pages map[string]*template.Template
	css   []byte
}

// New parses the embedded templates.
func New(d Deps) (*UI, error) {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Clock == nil {
		d.Clock = core.SystemClock
	}
	if d.IdleTimeout <= 0 {
		d.IdleTimeout = 30 * time.Minute
	}
	if d.MaxAge <= 0 {
		d.MaxAge = 12 * time.Hour
	}
	u := &UI{deps: d, pages: map[string]*template.Template{}}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", n)
		if err != nil {
			return nil, err
		}
		u.pages[n[len("templates/"):len(n)-len(".html")]] = t
	}
	if u.css, err = assets.ReadFile("static/style.css"); err != nil {
		return nil, err
	}
	return u, nil
}

// Roles per page and form: the same sets as the API routes they mirror.
var (
	anyReader = []core.Role{core.RoleAuditor, core.RoleChangeManager, core.RoleAdmin}
	adminOnly = []core.Role{core.RoleAdmin}
)

// Routes registers every UI route through add (the API server gives each
// a public access rule: the UI checks its own sessions and roles).
func (u *UI) Routes(add func(method, path string, h echo.HandlerFunc)) {
	get, post := http.MethodGet, http.MethodPost
	add(get, "/ui", func(c *echo.Context) error { return c.Redirect(http.StatusMovedPermanently, "/ui/") })
	add(get, "/ui/static/style.css", u.stylesheet)
	add(post, "/ui/signin", u.signin)
	add(post, "/ui/signout", u.page(nil, u.signout))

	add(get, "/ui/", u.page(anyReader, u.dashboard))
	add(get, "/ui/gates", u.page(anyReader, u.gates))
	add(get, "/ui/releases", u.page(anyReader, u.releases))
	add(get, "/ui/releases/:id", u.page(anyReader, u.release))
	add(get, "/ui/deployments", u.page(anyReader, u.deployments))
	add(get, "/ui/changes", u.page(anyReader, u.changeLookup))
	add(get, "/ui/changes/:key", u.page(anyReader, u.change))
	add(get, "/ui/audit", u.page(anyReader, u.audit))
	add(get, "/ui/mappings", u.page(anyReader, u.mappings))
	add(get, "/ui/mappings/:name", u.page(anyReader, u.mapping))
	add(post, "/ui/mappings/:name", u.page(adminOnly, u.mappingPost))
	add(get, "/ui/policy", u.page(adminOnly, u.policy))
	add(get, "/ui/inbox", u.page(adminOnly, u.inbox))
	add(get, "/ui/inbox/:id", u.page(adminOnly, u.event))
	add(post, "/ui/inbox/:id/replay", u.page(adminOnly, u.replayEvent))
	add(post, "/ui/inbox/replay", u.page(adminOnly, u.replayConnector))
	add(get, "/ui/tokens", u.page(adminOnly, u.tokens))
	add(post, "/ui/tokens", u.page(adminOnly, u.createToken))
	add(post, "/ui/tokens/:id/revoke", u.page(adminOnly, u.revokeToken))
	add(get, "/ui/connections", u.page(adminOnly, u.connections))
	if u.deps.Reports != nil && u.deps.Downloads != nil {
		u.reconcileRoutes(add)
	}
	// Any other UI path: the 404 page (after the sign-in, like every page).
	add(get, "/ui/*", u.page(anyReader, u.notFound))
}

func (u *UI) notFound(c *echo.Context, s *session) error {
	return u.render(c, s, http.StatusNotFound, "error", "Not found", errorView{
		Status: http.StatusNotFound, Message: "There is no page at " + c.Request().URL.Path + "."})
}

// securityHeaders go on every UI response.
func (u *UI) securityHeaders(c *echo.Context) {
	h := c.Response().Header()
	if u.secure(c) {
		// Over TLS (or a trusted proxy's): browsers keep to HTTPS for a
		// year, so a session cookie is never offered over plain HTTP.
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: under no-referrer browsers send
	// "Origin: null" with the UI's own form posts, which sameOrigin must
	// refuse (a sandboxed frame sends it); other sites still get no
	// referrer.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
}

func (u *UI) stylesheet(c *echo.Context) error {
	u.securityHeaders(c)
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	return c.Blob(http.StatusOK, "text/css; charset=utf-8", u.css)
}

// handler is a page or form handler for a signed-in session.
type handler func(c *echo.Context, s *session) error

// page wraps h: security headers, the session (else the sign-in page),
// the role check (else the 403 page), the CSRF check on every non-GET,
// and errors rendered as pages.
func (u *UI) page(roles []core.Role, h handler) echo.HandlerFunc {
	return func(c *echo.Context) error {
		u.securityHeaders(c)
		s, err := u.load(c)
		if err != nil {
			return u.fail(c, nil, err)
		}
		if s == nil {
			status := http.StatusUnauthorized
			if c.Request().Method == http.MethodGet && c.Request().URL.Path == "/ui/" {
				status = http.StatusOK
			}
			return u.signinPage(c, status, "", c.Request().URL.RequestURI())
		}
		if c.Request().Method != http.MethodGet && c.Request().Method != http.MethodHead {
			if !u.sameOrigin(c) || !s.checkCSRF(c.FormValue(csrfField)) {
				u.refused(c, "cross_site", s.token.ID)
				return u.render(c, s, http.StatusForbidden, "error", "Refused", errorView{
					Status: http.StatusForbidden, Message: "This form was refused: its security token is missing or stale. Reload the page and try again."})
			}
			if err := refuseNUL(c.Request().Form); err != nil {
				return u.fail(c, s, err)
			}
		}
		if roles != nil && !s.may(roles) {
			u.refused(c, "forbidden", s.token.ID)
			return u.render(c, s, http.StatusForbidden, "error", "Not allowed", errorView{
				Status: http.StatusForbidden, Message: "Your role (" + string(s.token.Role) + ") may not open this page."})
		}
		if err := u.limitToken(c, s.token.ID); err != nil {
			return u.fail(c, s, err)
		}
		if err := h(c, s); err != nil {
			return u.fail(c, s, err)
		}
		return nil
	}
}

// refuseNUL refuses a form holding U+0000 in any value, naming the first
// field (by name) that does, as the API refuses one in a JSON body.
func refuseNUL(form url.Values) error {
	for _, k := range slices.Sorted(maps.Keys(form)) {
		for _, v := range form[k] {
			if strings.IndexByte(v, 0) >= 0 {
				return core.Invalid(k, "must not contain a NUL character")
			}
		}
	}
	return nil
}

// refused reports a refused authentication to OnRefused.
func (u *UI) refused(c *echo.Context, reason, tokenID string) {
	if u.deps.OnRefused != nil {
		u.deps.OnRefused(c, reason, tokenID)
	}
}

type errorView struct {
	Status  int
	Message string
	Details []string
}

// limitToken spends one of token id's requests (Deps.LimitToken).
func (u *UI) limitToken(c *echo.Context, id string) error {
	if u.deps.LimitToken == nil {
		return nil
	}
	return u.deps.LimitToken(c, id)
}

// AuthFailures bounds a client's failed authentications: Refuse returns
// a rate-limited error (Retry-After set) while the client has none left;
// Failed spends one.
type AuthFailures interface {
	Refuse(c *echo.Context) error
	Failed(c *echo.Context)
}

// fail renders err as a page with the status the API would answer
// (internal/httperr, the one mapping, with its Retry-After): client
// errors with their message, anything else as a 500 whose detail goes to
// the log only.
func (u *UI) fail(c *echo.Context, s *session, err error) error {
	status := httperr.Status(c.Request(), err)
	msg := "Something went wrong on the server; the log has the details."
	var ce *core.Error
	switch {
	case status >= 500 && status != http.StatusServiceUnavailable:
	case errors.As(err, &ce):
		msg = ce.Message
		if ce.Field != "" {
			msg = ce.Field + ": " + msg
		}
	default:
		msg = http.StatusText(status)
	}
	httperr.SetRetryAfter(c.Response().Header(), status)
	var details []string
	switch {
	case status == httperr.StatusClientClosed: // nobody reads the page; the access log records 499
		u.deps.Logger.InfoContext(c.Request().Context(), "client closed the request", "error", err.Error(),
			"method", c.Request().Method, "path", c.Request().URL.Path)
	case status >= 500:
		u.deps.Logger.ErrorContext(c.Request().Context(), "ui request failed", "error", err.Error(),
			"method", c.Request().Method, "path", c.Request().URL.Path)
	default:
		details = problemList(err)
	}
	return u.render(c, s, status, "error", http.StatusText(status), errorView{Status: status, Message: msg, Details: details})
}

// problemList flattens joined errors into "field: message" lines, when
// there are several.
func problemList(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		switch x := e.(type) { //nolint:errorlint // walks the unwrap tree itself
		case *core.Error:
			if x.Field != "" {
				out = append(out, x.Field+": "+x.Message)
			} else {
				out = append(out, x.Message)
			}
		case interface{ Unwrap() []error }:
			for _, y := range x.Unwrap() {
				walk(y)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	if len(out) < 2 {
		return nil
	}
	return out
}

// navItem is one link of the navigation, shown to the roles that may open it.
type navItem struct {
	Path, Label string
	roles       []core.Role
}

var nav = []navItem{
	{"/ui/", "Dashboard", anyReader},
	{"/ui/gates", "Waiting gates", anyReader},
	{"/ui/releases", "Releases", anyReader},
	{"/ui/deployments", "Deployments", anyReader},
	{"/ui/changes", "Changes", anyReader},
	{"/ui/reconciliation", "Reconciliation", anyReader},
	{"/ui/mappings", "Mappings", anyReader},
	{"/ui/inbox", "Inbox", adminOnly},
	{"/ui/policy", "Policy", adminOnly},
	{"/ui/audit", "Audit", anyReader},
	{"/ui/tokens", "Tokens", adminOnly},
	{"/ui/connections", "Connections", adminOnly},
}

// view is what the layout renders around a page.
type view struct {
	Title   string
	Nav     []navLink
	User    string
	Role    string
	CSRF    string
	Page    any
	Now     time.Time
	IsAdmin bool
}

type navLink struct {
	Path, Label string
	Current     bool
}

func (u *UI) render(c *echo.Context, s *session, status int, name, title string, page any) error {
	t, ok := u.pages[name]
	if !ok {
		return errors.New("ui: no template " + name)
	}
	v := view{Title: title, Page: page, Now: u.deps.Clock.Now()}
	if s != nil {
		v.User, v.Role, v.CSRF = s.token.Name, string(s.token.Role), s.csrf
		v.IsAdmin = s.token.Role == core.RoleAdmin
		for _, n := range nav {
			if n.Path == "/ui/reconciliation" && u.deps.Reports == nil {
				continue
			}
			if s.may(n.roles) {
				cur := c.Request().URL.Path == n.Path || (n.Path != "/ui/" && len(c.Request().URL.Path) > len(n.Path) && c.Request().URL.Path[:len(n.Path)+1] == n.Path+"/")
				v.Nav = append(v.Nav, navLink{Path: n.Path, Label: n.Label, Current: cur})
			}
		}
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, v); err != nil {
		// Never half a page: the error goes to the log, the person gets a 500.
		u.deps.Logger.ErrorContext(c.Request().Context(), "ui template failed", "template", name, "error", err.Error())
		buf.Reset()
		buf.WriteString("<!doctype html><title>Error</title><p>The page could not be rendered; the log has the details.</p>")
		status = http.StatusInternalServerError
	}
	u.securityHeaders(c)
	return c.HTMLBlob(status, buf.Bytes())
}

func (s *session) may(roles []core.Role) bool {
	return s.token.Role == core.RoleAdmin || slices.Contains(roles, s.token.Role)
}
