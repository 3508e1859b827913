package api

import (
	"context"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v5"
	"golang.org/x/time/rate"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// RateLimits are the request rates the server accepts per API token and
// per webhook connector (token buckets: Rate per second, bursts of Burst).
// A zero Rate turns that limit off.
type RateLimits struct {
	TokenRate      float64
	TokenBurst     int
	ConnectorRate  float64
	ConnectorBurst int
	// Connectors are the configured connector names: each gets its own
	// bucket; any other name in a webhook URL (answered 404 anyway) shares
	// one, so a client inventing names neither grows memory nor spends a
	// real connector's bucket.
	Connectors []string
}

// maxLimiterKeys bounds the token buckets of the token scope (keys are the
// ids of authenticated tokens); past it every further key shares one
// bucket.
const maxLimiterKeys = 10_000

// limiter holds one token bucket per key.
type limiter struct {
	rate  rate.Limit
	burst int

	mu       sync.Mutex
	buckets  map[string]*rate.Limiter
	overflow *rate.Limiter
	// fixed: only the keys made at start have buckets of their own.
	fixed bool
	// sweep: at maxLimiterKeys, full buckets (which hold no state: a new
	// one would be the same) are dropped before a new key must share the
	// overflow bucket.
	sweep bool
}

// newFixedLimiter has one bucket per key given and one shared by every
// other key.
func newFixedLimiter(perSecond float64, burst int, keys []string) *limiter {
	l := newLimiter(perSecond, burst)
	if l == nil {
		return nil
	}
	l.fixed = true
	for _, k := range keys {
		l.buckets[k] = rate.NewLimiter(l.rate, l.burst)
	}
	return l
}

func newLimiter(perSecond float64, burst int) *limiter {
	if perSecond <= 0 {
		return nil
	}
	if burst < 1 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return &limiter{
		rate: rate.Limit(perSecond), burst: burst, buckets: map[string]*rate.Limiter{},
		overflow: rate.NewLimiter(rate.Limit(perSecond), burst),
	}
}

// allow takes one request from key's bucket; when the bucket is empty it
// says how long until the request would have been allowed.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	b, ok := l.buckets[key]
	if !ok {
		if l.sweep && len(l.buckets) >= maxLimiterKeys {
			for k, b := range l.buckets {
				if b.TokensAt(now) >= float64(l.burst) {
					delete(l.buckets, k)
				}
			}
		}
		if !l.fixed && len(l.buckets) < maxLimiterKeys {
			b = rate.NewLimiter(l.rate, l.burst)
			l.buckets[key] = b
		} else {
			b = l.overflow
		}
	}
	l.mu.Unlock()
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // a refused request does not spend the bucket
		return false, d
	}
	return true, 0
}

// peek reports whether key's bucket has a request left, without taking
// it; when not, how long until it will.
func (l *limiter) peek(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	b, ok := l.buckets[key]
	if !ok && (l.fixed || len(l.buckets) >= maxLimiterKeys) {
		b, ok = l.overflow, true
	}
	l.mu.Unlock()
	if !ok {
		return true, 0
	}
	if tokens := b.TokensAt(now); tokens < 1 {
		return false, time.Duration((1 - tokens) / float64(l.rate) * float64(time.Second))
	}
	return true, 0
}

// AuthFailureLimit bounds the failed authentications of each client
// (c.RealIP(): the peer, or the client a trusted proxy names; an IPv6
// client by its /64, clientKey):
// every bad bearer token, webhook signature or UI sign-in token, and every
// request to an authenticated API route with no credential at all, spends
// one request from the client's bucket, and while it is empty the
// client's requests to authenticated routes, webhooks and the UI sign-in
// are refused (429) before any credential is checked, so a guesser gets
// rate tries a second whatever it sends. Successful authentications spend
// nothing. A nil limit is off.
type AuthFailureLimit struct {
	l       *limiter
	metrics *metrics.Set
}

// NewAuthFailureLimit makes the limit (nil, off, for a zero rate).
func NewAuthFailureLimit(perSecond float64, burst int, m *metrics.Set) *AuthFailureLimit {
	l := newLimiter(perSecond, burst)
	if l == nil {
		return nil
	}
	l.sweep = true
	return &AuthFailureLimit{l: l, metrics: m}
}

// Refuse returns the 429 (with Retry-After set) when the request's client
// has no failure left, nil otherwise. Call it before checking a
// credential.
func (a *AuthFailureLimit) Refuse(c *echo.Context) error {
	if a == nil {
		return nil
	}
	ok, wait := a.l.peek(clientKey(c.RealIP()), time.Now())
	if ok {
		return nil
	}
	secs := max(1, int(math.Ceil(wait.Seconds())))
	c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
	if a.metrics != nil {
		a.metrics.RateLimited.WithLabelValues("client").Inc()
	}
	return core.Errorf(core.KindRateLimited, "too many failed authentications from this client; retry after %d s", secs)
}

// Failed spends one of the request's client's failures.
func (a *AuthFailureLimit) Failed(c *echo.Context) {
	if a == nil {
		return
	}
	a.l.allow(clientKey(c.RealIP()), time.Now())
}

// clientKey is the bucket a client address spends from: an IPv4 address
// itself, an IPv6 address its /64 — one host is routinely given a whole
// /64, so counting each of its addresses apart would hand a guesser 2^64
// buckets. Anything unparsable is its own key.
func clientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// rateLimited is the 429 answer; Retry-After carries the wait in whole
// seconds (at least 1).
func (s *Server) rateLimited(c *echo.Context, scope string, wait time.Duration) error {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
	if m := s.deps.Metrics; m != nil {
		m.RateLimited.WithLabelValues(scope).Inc()
	}
	return core.Errorf(core.KindRateLimited, "rate limit of this %s exceeded; retry after %d s", scope, secs)
}

// limitToken applies the per-token limit to an authenticated request.
func (s *Server) limitToken(c *echo.Context, t core.Token) error {
	if ok, wait := s.tokenLimit.allow(t.ID, time.Now()); !ok {
		return s.rateLimited(c, "token", wait)
	}
	return nil
}

// limitConnector applies the per-connector limit to a webhook delivery.
func (s *Server) limitConnector(c *echo.Context, name string) error {
	if ok, wait := s.connectorLimit.allow(name, time.Now()); !ok {
		return s.rateLimited(c, "connector", wait)
	}
	return nil
}

// Reasons for tollgate_auth_failures_total: a fixed set, so that clients
// cannot add series.
const (
	authMissingToken     = "missing_token"
	authInvalidToken     = "invalid_token"
	authForbidden        = "forbidden"
	authWebhookSignature = "webhook_signature"
	authUnknownConnector = "unknown_connector"
)

// LimitToken applies the per-token limit to a web UI request of token id
// (the API's own requests spend it in authorize).
func (s *Server) LimitToken(c *echo.Context, id string) error {
	return s.limitToken(c, core.Token{ID: id})
}

// AuthRefused counts and logs an authentication the web UI refused, as
// the API's own (reason: invalid_token, forbidden, cross_site).
func (s *Server) AuthRefused(c *echo.Context, reason, tokenID string) {
	s.authFailed(c.Request().Context(), c, reason, tokenID)
}

// authFailed counts and logs a refused authentication. The log names the
// reason, route and client, and never the credential presented.
func (s *Server) authFailed(ctx context.Context, c *echo.Context, reason, tokenID string) {
	if m := s.deps.Metrics; m != nil {
		m.AuthFailures.WithLabelValues(reason).Inc()
	}
	attrs := []any{"reason", reason, "method", c.Request().Method, "route", s.routeLabel(c),
		"remote_ip", c.RealIP(), "request_id", requestID(c)}
	if peer := peerIP(c); peer != c.RealIP() {
		attrs = append(attrs, "peer_ip", peer)
	}
	if tokenID != "" {
		attrs = append(attrs, "token_id", tokenID)
	}
	s.deps.Logger.WarnContext(ctx, "authentication refused", attrs...)
}
