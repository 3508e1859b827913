// Package api is tollgate's HTTP layer: echo routes, bearer-token
// authorization by role, request ids, body limits, the JSON error shape and
// the one place where errors become HTTP statuses, access logs and
// Prometheus metrics. Handlers parse, call a service, and render; they do
// no storage or policy work of their own.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/httperr"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/service"
)

// Reader is the read side of the store that handlers render directly.
type Reader interface {
	GetChange(ctx context.Context, key string) (core.Change, error)
	ChangeHistory(ctx context.Context, key string) ([]core.ChangeVersion, error)
	GetIncident(ctx context.Context, key string) (core.Incident, error)
	IncidentHistory(ctx context.Context, key string) ([]core.IncidentVersion, error)
	ListReleases(ctx context.Context, f core.ReleaseFilter) ([]core.Release, error)
	ListDeployments(ctx context.Context, f core.ReleaseFilter) ([]core.Deployment, error)
	GetRelease(ctx context.Context, id string) (core.Release, error)
	GetDecision(ctx context.Context, id string) (core.GateDecision, error)
	ListAudit(ctx context.Context, f core.AuditFilter) ([]core.AuditEntry, error)
	VerifyAuditTo(ctx context.Context, expect core.AuditHead) (*core.AuditBreak, int64, error)
	AuditHead(ctx context.Context) (core.AuditHead, error)
}

// Inbox receives webhooks and manages stored events.
type Inbox interface {
	// Receive verifies, classifies and durably stores one delivery.
	Receive(ctx context.Context, connector string, h http.Header, query url.Values, body []byte, admit func() error) (id string, duplicate bool, err error)
	ListEvents(ctx context.Context, f core.EventFilter) ([]core.Event, error)
	GetEvent(ctx context.Context, id string) (core.Event, error)
	Replay(ctx context.Context, id, actor string) error
	ReplayQuarantined(ctx context.Context, connector, actor string) (int, error)
}

// Mappings manages mapping profiles.
type Mappings interface {
	List(ctx context.Context) ([]core.MappingProfile, error)
	Get(ctx context.Context, name string) (core.MappingProfile, error)
	Versions(ctx context.Context, name string) ([]core.MappingProfile, error)
	Put(ctx context.Context, name string, src []byte, actor string) (core.MappingProfile, error)
	Delete(ctx context.Context, name, actor string) error
	// Preview applies the named profile (or, when src is given, that
	// unsaved source) to a sample payload.
	Preview(ctx context.Context, name string, src, payload []byte) (any, error)
}

// Deps is what the HTTP layer needs.
type Deps struct {
	Logger      *slog.Logger
	Metrics     *metrics.Set
	Clock       core.Clock
	Tokens      *service.Tokens
	Gate        *service.Gate
	Deployments *service.Deployments
	Policies    *service.Policies
	Reviews     *service.Reviews
	Holds       *service.Holds
	Evidence    *service.Evidence
	Proposals   *service.Proposals
	Simulator   *service.Simulator
	Reader      Reader
	Inbox       Inbox
	Mappings    Mappings
	// Pending lists the gates waiting now: the gate requests CIs wait on
	// and this replica's long-polled checks.
	Pending PendingLister
	// UI, when set, registers the web UI's routes (/ui/…): public to the
	// API's bearer check, the UI checks its own sessions and roles.
	UI interface {
		Routes(add func(method, path string, h echo.HandlerFunc))
	}
	// Reports runs and reads reconciliation reports (nil: no report routes).
	Reports Reports
	// Ready reports whether the server can take traffic (database reachable,
	// migrations applied).
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds /readyz (0: 5 s): past it the probe answers 503
	// even if Ready has not returned.
	ReadyTimeout time.Duration
	// ReadyDetails, when set, adds "details" to /readyz (each ITSM API's
	// circuit): informative, they do not make the server unready.
	ReadyDetails func() map[string]any
	MaxBodyBytes int64
	Version      string
	// RateLimits caps requests per API token and per webhook connector.
	RateLimits RateLimits
	// AuthFailures, when set, bounds each client's failed
	// authentications (shared with the UI's sign-in).
	AuthFailures *AuthFailureLimit
	// Doctor, when set, runs tollgate doctor's checks for GET
	// /api/v1/doctor (the serving app's CheckConnectors).
	Doctor interface {
		CheckConnectors(ctx context.Context) []connectors.Section
	}
	// Replicas, when set, lists the replicas running on the database for
	// GET /api/v1/replicas.
	Replicas interface {
		Replicas(ctx context.Context) ([]core.Replica, error)
	}
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client (clientIPExtractor); none: the connection's peer is the
	// client.
	TrustedProxies []netip.Prefix
	// EvidenceKeys sign the evidence bundles and are served at GET
	// /api/v1/evidence/public-key (none: bundles are unsigned).
	EvidenceKeys EvidenceKeys
}

// Server is the HTTP API.
type Server struct {
	deps Deps
	echo *echo.Echo
	// rules maps "METHOD path" to the roles allowed, for every route; the
	// authorization test walks it against the router.
	rules map[string]access
	// paths holds every registered route template (metrics labels).
	paths map[string]struct{}
	// contract is the OpenAPI document and its reference page, built on
	// first request.
	contract contract

	tokenLimit, connectorLimit *limiter
}

// New builds the server with every route registered.
func New(deps Deps) *Server {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Clock == nil {
		deps.Clock = core.SystemClock
	}
	if deps.MaxBodyBytes <= 0 {
		deps.MaxBodyBytes = 1 << 20
	}
	s := &Server{deps: deps, rules: map[string]access{}, paths: map[string]struct{}{},
		tokenLimit:     newLimiter(deps.RateLimits.TokenRate, deps.RateLimits.TokenBurst),
		connectorLimit: newFixedLimiter(deps.RateLimits.ConnectorRate, deps.RateLimits.ConnectorBurst, deps.RateLimits.Connectors)}
	e := echo.NewWithConfig(echo.Config{Logger: deps.Logger, HTTPErrorHandler: s.handleError,
		IPExtractor: clientIPExtractor(deps.TrustedProxies),
		// Record keys may hold "/" and "#" (CHG1/2, OPS-7#a): a client
		// escapes them in the path, and the handlers get them unescaped.
		Router: echo.NewRouter(echo.RouterConfig{UnescapePathParamValues: true})})
	s.echo = e
	e.Use(ownRequestID)
	e.Use(middleware.RequestIDWithConfig(middleware.RequestIDConfig{
		TargetHeader: echo.HeaderXRequestID,
	}))
	e.Use(s.accessLog)
	e.Use(middleware.Recover())
	e.Use(middleware.BodyLimit(deps.MaxBodyBytes))
	s.routes()
	return s
}

// ownRequestID drops a client's X-Request-ID unless it is a plain id of at
// most 64 characters: it is echoed in the answer, its error body and every
// log line of the request, so a long or odd one would flood the logs with
// the client's text (any header up to max_header_bytes) or pass for
// another request's. The next middleware then makes one.
func ownRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if id := c.Request().Header.Get(echo.HeaderXRequestID); id != "" && !plainRequestID(id) {
			c.Request().Header.Del(echo.HeaderXRequestID)
		}
		return next(c)
	}
}

func plainRequestID(id string) bool {
	if len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch b := id[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '-', b == '_', b == '.', b == ':':
		default:
			return false
		}
	}
	return true
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// Echo exposes the router (for tests that walk the routes).
func (s *Server) Echo() *echo.Echo { return s.echo }

// Rules returns each route's access rule, keyed "METHOD path".
func (s *Server) Rules() map[string][]core.Role {
	out := make(map[string][]core.Role, len(s.rules))
	for k, a := range s.rules {
		out[k] = a.roles
	}
	return out
}

// access is a route's rule: public (no token; the handler may check its
// own secret, as webhooks do) or one of roles (admin always passes).
type access struct {
	public bool
	roles  []core.Role
}

var (
	public    = access{public: true}
	adminOnly = access{roles: []core.Role{core.RoleAdmin}}
	auditorUp = access{roles: []core.Role{core.RoleAuditor, core.RoleChangeManager, core.RoleAdmin}}
	ciOnly    = access{roles: []core.Role{core.RoleCI, core.RoleAdmin}}
	ciAuditor = access{roles: []core.Role{core.RoleCI, core.RoleAuditor, core.RoleChangeManager, core.RoleAdmin}}
	changeMgr = access{roles: []core.Role{core.RoleChangeManager, core.RoleAdmin}}
)

// route registers a handler with its access rule. Every route goes through
// here, so none can exist without a rule.
func (s *Server) route(method, path string, a access, h echo.HandlerFunc) {
	s.rules[method+" "+path] = a
	s.paths[path] = struct{}{}
	if a.public {
		s.echo.Add(method, path, h)
		return
	}
	s.echo.Add(method, path, h, s.authorize(a.roles))
}

func (s *Server) routes() {
	// Load balancers probe with HEAD as often as with GET.
	s.route(http.MethodGet, "/healthz", public, s.healthz)
	s.route(http.MethodHead, "/healthz", public, s.healthz)
	s.route(http.MethodGet, "/readyz", public, s.readyz)
	s.route(http.MethodHead, "/readyz", public, s.readyz)
	s.route(http.MethodGet, "/metrics", public, s.metricsHandler())
	s.route(http.MethodPost, "/webhooks/:connector", public, s.webhook)
	s.route(http.MethodGet, "/api/v1/openapi.json", public, s.openAPI)
	s.route(http.MethodGet, "/api/docs", public, s.apiDocs)

	s.route(http.MethodPost, "/api/v1/gate/check", ciOnly, s.gateCheck)
	s.route(http.MethodGet, "/api/v1/gate/decisions/:id", ciAuditor, s.getDecision)
	s.route(http.MethodGet, "/api/v1/gate/pending", auditorUp, s.gatePending)
	s.route(http.MethodPost, "/api/v1/deployments", ciOnly, s.postDeployment)
	s.route(http.MethodGet, "/api/v1/deployments", auditorUp, s.listDeployments)
	s.route(http.MethodGet, "/api/v1/releases", auditorUp, s.listReleases)
	s.route(http.MethodPost, "/api/v1/releases/:id/pir", changeMgr, s.signOffPIR)
	s.route(http.MethodGet, "/api/v1/releases/:id", auditorUp, s.getRelease)
	s.route(http.MethodPost, "/api/v1/releases/:id/evidence", ciOnly, s.attachEvidence)
	s.route(http.MethodPost, "/api/v1/holds", changeMgr, s.placeHold)
	s.route(http.MethodGet, "/api/v1/holds", auditorUp, s.listHolds)
	s.route(http.MethodDelete, "/api/v1/holds/:id", changeMgr, s.liftHold)
	s.route(http.MethodGet, "/api/v1/changes/:key", auditorUp, s.getChange)
	s.route(http.MethodGet, "/api/v1/incidents/:key", auditorUp, s.getIncident)

	s.route(http.MethodGet, "/api/v1/policy", adminOnly, s.getPolicy)
	s.route(http.MethodPut, "/api/v1/policy", adminOnly, s.putPolicy)
	s.route(http.MethodPost, "/api/v1/policy/simulate", changeMgr, s.simulatePolicy)
	s.route(http.MethodGet, "/api/v1/reports/observe", auditorUp, s.observeReport)
	s.route(http.MethodGet, "/api/v1/proposals", adminOnly, s.listProposals)
	s.route(http.MethodGet, "/api/v1/proposals/:id", adminOnly, s.getProposal)
	s.route(http.MethodPost, "/api/v1/proposals/:id/confirm", adminOnly, s.confirmProposal)
	s.route(http.MethodPost, "/api/v1/proposals/:id/withdraw", adminOnly, s.withdrawProposal)

	s.route(http.MethodGet, "/api/v1/mappings", auditorUp, s.listMappings)
	s.route(http.MethodGet, "/api/v1/mappings/:name", auditorUp, s.getMapping)
	s.route(http.MethodPut, "/api/v1/mappings/:name", adminOnly, s.putMapping)
	s.route(http.MethodDelete, "/api/v1/mappings/:name", adminOnly, s.deleteMapping)
	s.route(http.MethodPost, "/api/v1/mappings/:name/preview", adminOnly, s.previewMapping)

	s.route(http.MethodGet, "/api/v1/events", adminOnly, s.listEvents)
	s.route(http.MethodGet, "/api/v1/events/:id", adminOnly, s.getEvent)
	s.route(http.MethodPost, "/api/v1/events/:id/replay", adminOnly, s.replayEvent)
	s.route(http.MethodPost, "/api/v1/events/replay", adminOnly, s.replayConnector)

	s.route(http.MethodPost, "/api/v1/tokens", adminOnly, s.createToken)
	s.route(http.MethodGet, "/api/v1/tokens", adminOnly, s.listTokens)
	s.route(http.MethodDelete, "/api/v1/tokens/:id", adminOnly, s.revokeToken)

	s.route(http.MethodGet, "/api/v1/audit", auditorUp, s.listAudit)
	s.route(http.MethodGet, "/api/v1/audit/verify", auditorUp, s.verifyAudit)
	s.route(http.MethodGet, "/api/v1/audit/head", auditorUp, s.auditHead)
	s.route(http.MethodGet, "/api/v1/evidence/public-key", public, s.evidencePublicKey)
	if s.deps.Doctor != nil {
		s.route(http.MethodGet, "/api/v1/doctor", adminOnly, s.doctor)
	}
	if s.deps.Replicas != nil {
		s.route(http.MethodGet, "/api/v1/replicas", adminOnly, s.replicas)
	}

	if s.deps.UI != nil {
		s.deps.UI.Routes(func(method, path string, h echo.HandlerFunc) { s.route(method, path, public, h) })
	}
	if s.deps.Reports != nil {
		s.reconcileRoutes()
	}
}

const ctxToken = "tollgate.token"

// ctxExpected503 marks an answer of 503 that is no fault (a draining
// replica's /readyz): its access line is not logged as an error.
const ctxExpected503 = "tollgate.expected503"

// ErrShuttingDown is what Deps.Ready returns once the server is draining
// (shutdown_delay): /readyz answers 503 "shutting down", logged at info.
var ErrShuttingDown = core.Errorf(core.KindUnavailable, "shutting down")

// tokenOf returns the authenticated token of the request.
func tokenOf(c *echo.Context) core.Token {
	t, _ := c.Get(ctxToken).(core.Token)
	return t
}

// actor names the caller in the audit trail: "token:<name>(<id>)".
func actor(c *echo.Context) string {
	t := tokenOf(c)
	if t.ID == "" {
		return "anonymous"
	}
	return core.TokenActor(t, "")
}

func (s *Server) authorize(roles []core.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			h := c.Request().Header.Get(echo.HeaderAuthorization)
			const prefix = "Bearer "
			ctx := c.Request().Context()
			// A client past its failed authentications is refused before
			// anything is checked. A request with no credential at all
			// spends one too: a flood of them is abuse as well, and no
			// pipeline, webhook or UI page sends one to these routes (the
			// CLI needs a token, webhooks and the UI are public routes
			// with checks of their own).
			if err := s.deps.AuthFailures.Refuse(c); err != nil {
				return err
			}
			if len(h) <= len(prefix) || !equalFoldASCII(h[:len(prefix)], prefix) {
				s.authFailed(ctx, c, authMissingToken, "")
				s.deps.AuthFailures.Failed(c)
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="tollgate"`)
				return core.Errorf(core.KindUnauthorized, "missing bearer token (Authorization: Bearer <token>)")
			}
			t, err := s.deps.Tokens.Authenticate(ctx, h[len(prefix):])
			if err != nil {
				if core.IsKind(err, core.KindUnauthorized) {
					s.authFailed(ctx, c, authInvalidToken, "")
					s.deps.AuthFailures.Failed(c)
				}
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="tollgate", error="invalid_token"`)
				return err
			}
			allowed := t.Role == core.RoleAdmin
			for _, r := range roles {
				allowed = allowed || t.Role == r
			}
			if !allowed {
				// Counted and spent like a bad token: a token probing
				// routes beyond its role is refused, then slowed down,
				// and its warnings are bounded.
				s.authFailed(ctx, c, authForbidden, t.ID)
				s.deps.AuthFailures.Failed(c)
				return core.Errorf(core.KindForbidden, "role %s may not %s %s", t.Role, c.Request().Method, c.Path())
			}
			c.Set(ctxToken, t)
			if err := s.limitToken(c, t); err != nil {
				return err
			}
			return next(c)
		}
	}
}

// clientIPExtractor is how the server tells a request's client address:
// the key of the failed-authentication limit and remote_ip in the logs
// (c.RealIP()). With no trusted proxy it is the connection's peer:
// X-Forwarded-For and X-Real-IP are anyone's to write, so they are
// ignored. With trusted proxies it is echo's X-Forwarded-For extractor:
// when the peer is a trusted proxy, the client is the right-most address
// of X-Forwarded-For that is not one (each proxy appends the address it
// got the request from, so whatever the client wrote itself stays on the
// left of the address its proxy saw); a peer that is not trusted is the
// client whatever it sends. Echo also trusts every loopback, link-local
// and private address by default: those defaults are turned off, so only
// the configured ranges are trusted.
func clientIPExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		bits := p.Addr().BitLen()
		opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: net.IP(p.Masked().Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// peerIP is the address of the connection the request came on (a proxy's,
// when one forwarded it).
func peerIP(c *echo.Context) string { return echo.ExtractIPDirect()(c.Request()) }

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// errorBody is the one error shape: {"error":{"code","message"}}, with the
// field and request id when known.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// Details lists every problem when there were several (a policy or a
	// mapping profile with many mistakes).
	Details []problem `json:"details,omitempty"`
}

type problem struct {
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// problems flattens joined errors into their *core.Error parts.
func problems(err error) []problem {
	var out []problem
	var walk func(error)
	walk = func(e error) {
		switch x := e.(type) { //nolint:errorlint // walks the unwrap tree itself
		case *core.Error:
			out = append(out, problem{Field: x.Field, Message: x.Message})
		case interface{ Unwrap() []error }:
			for _, y := range x.Unwrap() {
				walk(y)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}

// handleError answers err with the status of the one mapping
// (internal/httperr, which the UI's pages use too). Client errors carry
// their message; internal details go to the log only.
func (s *Server) handleError(c *echo.Context, err error) {
	if r, uerr := echo.UnwrapResponse(c.Response()); uerr == nil && r.Committed {
		return
	}
	status := httperr.Status(c.Request(), err)
	var (
		detail errorDetail
		ce     *core.Error
	)
	switch {
	case status == httperr.StatusClientClosed:
		// The client went away (its connection closed) while the request
		// was served: nobody reads this answer, and it is not the server's
		// failure. 499 as nginx records it, in the access log and metrics.
		detail = errorDetail{Code: "client_closed", Message: "the client closed the request before its answer"}
		s.deps.Logger.InfoContext(c.Request().Context(), "client closed the request", "error", err.Error(),
			"method", c.Request().Method, "path", c.Request().URL.Path, "request_id", requestID(c))
	case errors.As(err, &ce):
		detail = errorDetail{Code: string(ce.Kind), Message: ce.Message, Field: ce.Field}
		if ps := problems(err); len(ps) > 1 {
			detail.Details = ps
		}
	case echo.StatusCode(err) != 0:
		detail = errorDetail{Code: codeForStatus(status), Message: messageForStatus(status, s.deps.MaxBodyBytes)}
	}
	httperr.SetRetryAfter(c.Response().Header(), status)
	switch status {
	case http.StatusInternalServerError:
		detail = errorDetail{Code: string(core.KindInternal), Message: "internal error; the request id identifies it in the server log"}
		s.deps.Logger.ErrorContext(c.Request().Context(), "request failed", "error", err.Error(),
			"method", c.Request().Method, "path", c.Request().URL.Path, "request_id", requestID(c))
	case http.StatusServiceUnavailable:
		s.deps.Logger.WarnContext(c.Request().Context(), "dependency unavailable", "error", err.Error(), "request_id", requestID(c))
	}
	detail.RequestID = requestID(c)
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = c.JSON(status, errorBody{Error: detail})
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return string(core.KindInvalid)
	case http.StatusUnauthorized:
		return string(core.KindUnauthorized)
	case http.StatusForbidden:
		return string(core.KindForbidden)
	case http.StatusNotFound:
		return string(core.KindNotFound)
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		return string(core.KindTooLarge)
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case http.StatusServiceUnavailable:
		return string(core.KindUnavailable)
	case http.StatusTooManyRequests:
		return string(core.KindRateLimited)
	case http.StatusRequestHeaderFieldsTooLarge:
		return string(core.KindTooLarge)
	}
	return string(core.KindInternal)
}

func messageForStatus(status int, limit int64) string {
	if status == http.StatusRequestEntityTooLarge {
		return "request body is larger than the limit of " + strconv.FormatInt(limit, 10) + " bytes"
	}
	return http.StatusText(status)
}

func requestID(c *echo.Context) string {
	if id := c.Response().Header().Get(echo.HeaderXRequestID); id != "" {
		return id
	}
	return c.Request().Header.Get(echo.HeaderXRequestID)
}

// accessLog writes one structured line per request and feeds the HTTP
// metrics, labelled by route pattern (never by raw path: bounded labels).
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			s.handleError(c, err) // render now so the status below is final
		}
		status := http.StatusOK
		if r, uerr := echo.UnwrapResponse(c.Response()); uerr == nil && r.Status != 0 {
			status = r.Status
		}
		route := s.routeLabel(c)
		elapsed := time.Since(start)
		if m := s.deps.Metrics; m != nil {
			method := methodLabel(c.Request().Method)
			m.HTTPRequests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
			m.HTTPDuration.WithLabelValues(method, route).Observe(elapsed.Seconds())
		}
		level := slog.LevelInfo
		if expected, _ := c.Get(ctxExpected503).(bool); status >= 500 && !expected {
			level = slog.LevelError
		}
		attrs := []slog.Attr{
			slog.String("method", c.Request().Method), slog.String("path", c.Request().URL.Path),
			slog.String("route", route), slog.Int("status", status), slog.Duration("duration", elapsed),
			slog.String("request_id", requestID(c)), slog.String("remote_ip", c.RealIP()),
		}
		if peer := peerIP(c); peer != c.RealIP() {
			attrs = append(attrs, slog.String("peer_ip", peer)) // the proxy that forwarded it
		}
		if t := tokenOf(c); t.ID != "" {
			attrs = append(attrs, slog.String("token_id", t.ID), slog.String("role", string(t.Role)))
		}
		s.deps.Logger.LogAttrs(c.Request().Context(), level, "http request", attrs...)
		return nil
	}
}

// methodLabel is the request method as a metrics label: the methods the
// API knows, else "other", so that invented method names cannot add series.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// routeLabel is the matched route's template ("/api/v1/changes/:key"), or
// "unmatched" for any path no route knows: labels stay bounded by the
// route table whatever paths clients send.
func (s *Server) routeLabel(c *echo.Context) string {
	if p := c.Path(); p != "" {
		if _, ok := s.paths[p]; ok {
			return p
		}
	}
	return "unmatched"
}

func (s *Server) healthz(c *echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok", "version": s.deps.Version})
}

func (s *Server) readyz(c *echo.Context) error {
	bound := s.deps.ReadyTimeout
	if bound <= 0 {
		bound = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), bound)
	defer cancel()
	body := map[string]any{"status": "ready"}
	if s.deps.ReadyDetails != nil {
		if d := s.deps.ReadyDetails(); len(d) > 0 {
			body["details"] = d
		}
	}
	if s.deps.Ready != nil {
		if err := readyWithin(ctx, s.deps.Ready); err != nil {
			if errors.Is(ctx.Err(), context.Canceled) && !errors.Is(err, ErrShuttingDown) {
				err = errProbeGone // whatever the check said, nobody is waiting for it
			}
			level := slog.LevelWarn
			if errors.Is(err, ErrShuttingDown) || errors.Is(err, errProbeGone) {
				// Expected on every rolling restart: the balancer is being told
				// to stop sending. Logged, but not as a fault to alert on.
				level = slog.LevelInfo
				c.Set(ctxExpected503, true)
			}
			s.deps.Logger.Log(ctx, level, "not ready", "error", err.Error())
			body["status"], body["reason"] = "unavailable", publicMessage(err)
			return c.JSON(http.StatusServiceUnavailable, body)
		}
	}
	return c.JSON(http.StatusOK, body)
}

// readyWithin runs ready and returns its answer, or an unavailable error
// once ctx ends without one. lib/pq does not interrupt a read when a
// context ends, so a ping to a database gone from the network waits for
// the connection's TCP user timeout (database_url's tcp_user_timeout);
// the probe answers at its own deadline, and the ping finishes in the
// background when the kernel gives the connection up.
func readyWithin(ctx context.Context, ready func(context.Context) error) error {
	res := make(chan error, 1)
	go func() { res <- ready(ctx) }()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-res: // answered as the context ended: the answer stands
		return err
	case <-time.After(readyGrace):
		// A check that answers at once (a draining server) has its say
		// even when the probe's context ended before its goroutine ran.
		select {
		case err := <-res:
			return err
		default:
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return errProbeGone
	}
	return core.Errorf(core.KindUnavailable, "the readiness check did not finish in time (database not answering)")
}

// readyGrace is how long a readiness check whose probe's context has
// ended may still answer: long enough for its goroutine to be scheduled on
// a busy host (a millisecond was not, under the race detector on two
// cores), short enough that nobody waits for it.
const readyGrace = 20 * time.Millisecond

// errProbeGone is a readiness probe whose connection closed before it was
// answered (the prober gave up, or a draining server closed the
// connection): nothing to report.
var errProbeGone = core.Errorf(core.KindUnavailable, "the probe's connection closed before it was answered")

// publicMessage is an error's client-safe message.
func publicMessage(err error) string {
	var ce *core.Error
	if errors.As(err, &ce) {
		return ce.Message
	}
	return "not ready"
}

func (s *Server) metricsHandler() echo.HandlerFunc {
	if s.deps.Metrics == nil {
		return func(c *echo.Context) error { return c.String(http.StatusOK, "") }
	}
	h := promhttp.HandlerFor(s.deps.Metrics.Registry, promhttp.HandlerOpts{})
	return echo.WrapHandler(h)
}
