package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/auth"
)

const (
	cookieName = "tollgate_session"
	// hostCookieName is the session cookie's name over TLS: the __Host-
	// prefix makes browsers refuse it unless Secure, Path=/ and without a
	// Domain, so a sibling subdomain cannot plant its own session cookie
	// for this host (cookie tossing).
	hostCookieName = "__Host-" + cookieName
	csrfField      = "csrf"
)

// sessionCookie is the session cookie this request carries (its name
// depends on whether it came over TLS). More than one of that name — one
// planted from a sibling subdomain beside the real one — is no session.
func (u *UI) sessionCookie(c *echo.Context) (string, bool) {
	name := cookieName
	if u.secure(c) {
		name = hostCookieName
	}
	value, n := "", 0
	for _, ck := range c.Request().Cookies() {
		if ck.Name == name {
			value, n = ck.Value, n+1
		}
	}
	return value, n == 1 && value != "" && len(value) <= 128
}

// session is a signed-in person: the token they signed in with, the
// hash of the session id and the session's CSRF token.
type session struct {
	idHash string
	token  core.Token
	csrf   string
}

func (s *session) checkCSRF(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// actor names the signed-in person in the audit trail as the API does
// ("token:<name>(<id>)"), with the channel.
func (s *session) actor() string { return core.TokenActor(s.token, "ui") }

func randomString() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func hashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// load returns the request's live session, nil when there is none (no
// cookie, unknown, ended, expired, or its token revoked).
func (u *UI) load(c *echo.Context) (*session, error) {
	value, ok := u.sessionCookie(c)
	if !ok {
		return nil, nil // no cookie (or one too many): not signed in
	}
	ctx := c.Request().Context()
	// A session cookie nobody was given costs a database read: a client
	// sending made-up ones is refused once past its failed attempts, as
	// a made-up token is, and each unknown one counts.
	if u.deps.AuthFailures != nil {
		if err := u.deps.AuthFailures.Refuse(c); err != nil {
			return nil, err
		}
	}
	h := hashID(value)
	st, err := u.deps.Sessions.Session(ctx, h)
	if core.IsKind(err, core.KindNotFound) {
		if u.deps.AuthFailures != nil {
			u.deps.AuthFailures.Failed(c)
		}
		u.setCookie(c, "", -1) // a browser's stale cookie counts once
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := u.deps.Clock.Now()
	if !now.Before(st.ExpiresAt) || now.Sub(st.LastSeenAt) >= u.deps.IdleTimeout {
		if err := u.deps.Sessions.EndSession(ctx, h, auth.SessionExpired, now); err != nil {
			return nil, err
		}
		return nil, nil
	}
	// Touch at most once a minute: reading pages should not be a write each.
	if now.Sub(st.LastSeenAt) >= time.Minute {
		if err := u.deps.Sessions.TouchSession(ctx, h, now); err != nil {
			return nil, err
		}
	}
	return &session{idHash: h, token: st.Token, csrf: st.CSRF}, nil
}

// secure reports whether the request came over TLS (directly, or through
// a trusted proxy that says so).
func (u *UI) secure(c *echo.Context) bool {
	r := c.Request()
	if r.TLS != nil {
		return true
	}
	if !u.deps.TrustProxy || !strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return false
	}
	if len(u.deps.TrustedProxies) == 0 {
		return true
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := peer.Addr().Unmap()
	for _, p := range u.deps.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// sameOrigin refuses forms posted from another site: browsers say so in
// Sec-Fetch-Site and Origin (SameSite=Strict keeps the session cookie
// away from such posts too; this also covers the sign-in form). Where
// the browser does not vouch for the post (Sec-Fetch-Site same-origin),
// an Origin of "null" is another site's too: a sandboxed frame's form,
// which a browser without Sec-Fetch-Site would otherwise let sign the
// victim in with the attacker's token (the UI's own pages send their
// origin: their Referrer-Policy is same-origin).
func (u *UI) sameOrigin(c *echo.Context) bool {
	r := c.Request()
	site := r.Header.Get("Sec-Fetch-Site")
	if site == "cross-site" || site == "same-site" {
		return false
	}
	if o := r.Header.Get("Origin"); o == "null" {
		return site == "same-origin"
	} else if o != "" {
		ou, err := url.Parse(o)
		if err != nil || !strings.EqualFold(ou.Host, r.Host) {
			return false
		}
	}
	return true
}

func (u *UI) setCookie(c *echo.Context, value string, maxAge int) {
	ck := &http.Cookie{Name: cookieName, Value: value, Path: "/ui", MaxAge: maxAge, HttpOnly: true, SameSite: http.SameSiteStrictMode}
	if u.secure(c) {
		ck.Name, ck.Path, ck.Secure = hostCookieName, "/", true
	}
	c.SetCookie(ck)
}

type signinView struct {
	Error string
	Next  string
}

func (u *UI) signinPage(c *echo.Context, status int, msg, next string) error {
	if !safeNext(next) {
		next = "/ui/"
	}
	return u.render(c, nil, status, "signin", "Sign in", signinView{Error: msg, Next: next})
}

// safeNext accepts only a UI path on this server as a place to return to.
func safeNext(p string) bool {
	return strings.HasPrefix(p, "/ui/") && !strings.HasPrefix(p, "//") && !strings.ContainsAny(p, "\\\r\n")
}

// signin exchanges an API token for a session. The ci role cannot sign in:
// pipelines have no business in the UI.
func (u *UI) signin(c *echo.Context) error {
	u.securityHeaders(c)
	next := c.FormValue("next")
	ctx := c.Request().Context()
	// A client past its failed attempts is refused before anything is
	// checked or logged; a cross-site post is one such attempt.
	if u.deps.AuthFailures != nil {
		if err := u.deps.AuthFailures.Refuse(c); err != nil {
			return u.signinPage(c, http.StatusTooManyRequests, "Too many failed sign-ins from your address: wait a few seconds and try again.", next)
		}
	}
	if !u.sameOrigin(c) {
		u.refused(c, "cross_site", "")
		if u.deps.AuthFailures != nil {
			u.deps.AuthFailures.Failed(c)
		}
		return u.signinPage(c, http.StatusForbidden, "This sign-in form was posted from another site.", next)
	}
	t, err := u.deps.Tokens.Authenticate(ctx, strings.TrimSpace(c.FormValue("token")))
	if core.IsKind(err, core.KindUnauthorized) {
		if u.deps.AuthFailures != nil {
			u.deps.AuthFailures.Failed(c)
		}
		u.refused(c, "invalid_token", "")
		return u.signinPage(c, http.StatusUnauthorized, "That token is unknown or revoked.", next)
	}
	if err != nil {
		return u.fail(c, nil, err)
	}
	if t.Role == core.RoleCI {
		u.refused(c, "forbidden", t.ID)
		return u.signinPage(c, http.StatusForbidden, "A ci token cannot sign in to the UI: use a change_manager, auditor or admin token.", next)
	}
	// Each sign-in writes a session and an audit entry: it spends the
	// token's request budget, as an API call does.
	if err := u.limitToken(c, t.ID); err != nil {
		return u.fail(c, nil, err)
	}
	id, err := randomString()
	if err != nil {
		return u.fail(c, nil, err)
	}
	csrf, err := randomString()
	if err != nil {
		return u.fail(c, nil, err)
	}
	now := u.deps.Clock.Now()
	// A session this browser already had ends here: signing in as
	// someone else must not leave the earlier one usable until it idles.
	if value, ok := u.sessionCookie(c); ok {
		if err := u.deps.Sessions.EndSession(ctx, hashID(value), auth.SessionSignedOut, now); err != nil && !core.IsKind(err, core.KindNotFound) {
			return u.fail(c, nil, err)
		}
	}
	if err := u.deps.Sessions.CreateSession(ctx, auth.UISession{IDHash: hashID(id), Token: t, CSRF: csrf,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(u.deps.MaxAge)}); err != nil {
		return u.fail(c, nil, err)
	}
	// A session cookie (no Max-Age): the server ends it at the idle or
	// absolute expiry, and the browser forgets it when closed.
	u.setCookie(c, id, 0)
	if !safeNext(next) {
		next = "/ui/"
	}
	return c.Redirect(http.StatusSeeOther, next)
}

// signout ends the session server-side: the cookie is worthless after.
func (u *UI) signout(c *echo.Context, s *session) error {
	if err := u.deps.Sessions.EndSession(c.Request().Context(), s.idHash, auth.SessionSignedOut, u.deps.Clock.Now()); err != nil {
		return err
	}
	u.setCookie(c, "", -1)
	return c.Redirect(http.StatusSeeOther, "/ui/")
}
