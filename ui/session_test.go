package ui

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/auth"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

type memSessions struct {
	mu sync.Mutex
	m  map[string]auth.UISession
}

func (m *memSessions) CreateSession(_ context.Context, s auth.UISession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[s.IDHash] = s
	return nil
}

func (m *memSessions) Session(_ context.Context, h string) (auth.UISession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.m[h]
	if !ok {
		return s, core.Errorf(core.KindNotFound, "no such session")
	}
	return s, nil
}

func (m *memSessions) TouchSession(_ context.Context, h string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.m[h]
	s.LastSeenAt = at
	m.m[h] = s
	return nil
}

func (m *memSessions) EndSession(_ context.Context, h, _ string, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, h)
	return nil
}

type oneToken struct{ core.Token }

func (o oneToken) Authenticate(_ context.Context, secret string) (core.Token, error) {
	if secret != "good" {
		return core.Token{}, core.Errorf(core.KindUnauthorized, "invalid or revoked token")
	}
	return o.Token, nil
}
func (oneToken) Create(context.Context, string, core.Role, string) (string, core.Token, error) {
	return "", core.Token{}, nil
}
func (oneToken) List(context.Context) ([]core.Token, error)   { return nil, nil }
func (oneToken) Revoke(context.Context, string, string) error { return nil }

type emptyReader struct{ Reader }

func (emptyReader) ListAudit(context.Context, core.AuditFilter) ([]core.AuditEntry, error) {
	return nil, nil
}

// TestSessionExpiry: a session ends after the idle timeout without a
// request, and at its absolute age however busy it is.
func TestSessionExpiry(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	sessions := &memSessions{m: map[string]auth.UISession{}}
	u, err := New(Deps{Clock: clock, Tokens: oneToken{core.Token{ID: "t1", Name: "ana", Role: core.RoleAuditor}},
		Sessions: sessions, Reader: emptyReader{}, IdleTimeout: 30 * time.Minute, MaxAge: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	u.Routes(func(method, path string, h echo.HandlerFunc) { e.Add(method, path, h) })
	signIn := func() *http.Cookie {
		req := httptest.NewRequest("POST", "/ui/signin", strings.NewReader(url.Values{"token": {"good"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("sign-in: %d", rec.Code)
		}
		return rec.Result().Cookies()[0]
	}
	open := func(ck *http.Cookie) int {
		req := httptest.NewRequest("GET", "/ui/audit", nil)
		req.AddCookie(ck)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec.Code
	}

	ck := signIn()
	for _, step := range []struct {
		after time.Duration
		want  int
	}{{29 * time.Minute, 200}, {29 * time.Minute, 200}, {29 * time.Minute, 200}, {30 * time.Minute, 401}} {
		clock.t = clock.t.Add(step.after)
		if got := open(ck); got != step.want {
			t.Fatalf("idle: after %v: %d, want %d", step.after, got, step.want)
		}
	}
	ck = signIn()
	for i := 0; i < 7; i++ { // busy: a request every 20 minutes
		clock.t = clock.t.Add(20 * time.Minute)
		want := http.StatusOK
		if i == 5 { // 2h after sign-in
			want = http.StatusUnauthorized
		}
		if got := open(ck); got != want && i <= 5 {
			t.Fatalf("absolute: request %d at +%v: %d, want %d", i, time.Duration(i+1)*20*time.Minute, got, want)
		}
	}
	if len(sessions.m) != 0 {
		t.Errorf("expired sessions not ended: %d left", len(sessions.m))
	}
}

// TestSecureCookieBehindProxy: the session cookie is Secure over TLS, and
// over plain HTTP only with trust_proxy and X-Forwarded-Proto: https —
// from a peer in the trusted proxies when they are listed.
func TestSecureCookieBehindProxy(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	for _, tt := range []struct {
		name      string
		trust     bool
		trusted   []netip.Prefix
		peer      string
		forwarded string
		tls       bool
		want      bool
	}{
		{"tls", false, nil, "192.0.2.1:4000", "", true, true},
		{"plain http", false, nil, "192.0.2.1:4000", "", false, false},
		{"header without trust_proxy", false, nil, "192.0.2.1:4000", "https", false, false},
		{"trust_proxy, any peer", true, nil, "192.0.2.1:4000", "https", false, true},
		{"trust_proxy, http forwarded", true, nil, "192.0.2.1:4000", "http", false, false},
		{"trusted proxy", true, proxies, "10.1.2.3:4000", "https", false, true},
		{"trusted proxy, IPv6", true, proxies, "[2001:db8::7]:4000", "https", false, true},
		{"trusted proxy, v4-mapped", true, proxies, "[::ffff:10.1.2.3]:4000", "https", false, true},
		{"not a trusted proxy", true, proxies, "192.0.2.1:4000", "https", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
			u, err := New(Deps{Clock: clock, Tokens: oneToken{core.Token{ID: "t1", Name: "ana", Role: core.RoleAuditor}},
				Sessions: &memSessions{m: map[string]auth.UISession{}}, Reader: emptyReader{},
				IdleTimeout: time.Hour, MaxAge: time.Hour, TrustProxy: tt.trust, TrustedProxies: tt.trusted})
			if err != nil {
				t.Fatal(err)
			}
			e := echo.New()
			u.Routes(func(method, path string, h echo.HandlerFunc) { e.Add(method, path, h) })
			req := httptest.NewRequest("POST", "/ui/signin", strings.NewReader(url.Values{"token": {"good"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.RemoteAddr = tt.peer
			if tt.forwarded != "" {
				req.Header.Set("X-Forwarded-Proto", tt.forwarded)
			}
			if tt.tls {
				req.TLS = &tls.ConnectionState{}
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != http.StatusSeeOther || len(rec.Result().Cookies()) == 0 {
				t.Fatalf("sign-in: %d", rec.Code)
			}
			if got := rec.Result().Cookies()[0].Secure; got != tt.want {
				t.Fatalf("Secure %v, want %v", got, tt.want)
			}
			if hsts := rec.Header().Get("Strict-Transport-Security"); (hsts != "") != tt.want {
				t.Fatalf("Strict-Transport-Security %q over a secure connection %v", hsts, tt.want)
			}
		})
	}
}

// TestSignInEndsTheEarlierSession: signing in from a browser that holds a
// session ends that session; only the new one opens pages.
func TestSignInEndsTheEarlierSession(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	sessions := &memSessions{m: map[string]auth.UISession{}}
	u, err := New(Deps{Clock: clock, Tokens: oneToken{core.Token{ID: "t1", Name: "ana", Role: core.RoleAuditor}},
		Sessions: sessions, Reader: emptyReader{}, IdleTimeout: time.Hour, MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	u.Routes(func(method, path string, h echo.HandlerFunc) { e.Add(method, path, h) })
	signIn := func(cookie *http.Cookie) *http.Cookie {
		t.Helper()
		req := httptest.NewRequest("POST", "/ui/signin", strings.NewReader(url.Values{"token": {"good"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusSeeOther || len(rec.Result().Cookies()) == 0 {
			t.Fatalf("sign-in: %d", rec.Code)
		}
		return rec.Result().Cookies()[0]
	}
	first := signIn(nil)
	second := signIn(first)
	sessions.mu.Lock()
	defer sessions.mu.Unlock()
	if _, ok := sessions.m[hashID(first.Value)]; ok || len(sessions.m) != 1 {
		t.Fatalf("the earlier session is still open (%d sessions)", len(sessions.m))
	}
	if _, ok := sessions.m[hashID(second.Value)]; !ok {
		t.Fatal("the new session is not open")
	}
}
