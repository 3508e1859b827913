package app_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestAuthFailureLimit: one client that fails authentication past the
// burst (bad bearer tokens, a bad webhook signature, a wrong UI sign-in
// token; rate_limit.auth_failures_per_client 1/s, burst 5 here) gets 429
// with Retry-After on every request carrying a credential — a valid admin
// token too, since the limit acts before the credential is checked —
// counted as tollgate_rate_limited_total{scope="client"}; another client
// address is not affected; a second later the first client may try again.
func TestAuthFailureLimit(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig+"rate_limit:\n  auth_failures_per_client: {rate: 1, burst: 5}\n")
	a, b := clientFrom("127.0.0.1"), clientFrom("127.0.0.2")
	send := func(c *http.Client, method, path, bearer string, form url.Values, hdr map[string]string) (int, http.Header, string) {
		t.Helper()
		if bearer != "" {
			hdr = map[string]string{"Authorization": "Bearer " + bearer}
		}
		return sendFrom(t, c, method, s.url+path, form, hdr)
	}
	for i := range 5 {
		if st, _, _ := send(a, "GET", "/api/v1/audit", "tg_guess-"+string(rune('a'+i)), nil, nil); st != http.StatusUnauthorized {
			t.Fatalf("bad token %d within the burst: %d, want 401", i, st)
		}
	}
	refused := func(what string, st int, h http.Header) {
		t.Helper()
		if st != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
			t.Errorf("%s past the burst: %d (Retry-After %q), want 429 with Retry-After", what, st, h.Get("Retry-After"))
		}
	}
	st, h, body := send(a, "GET", "/api/v1/audit", "tg_guess-f", nil, nil)
	refused("a bad token", st, h)
	if !strings.Contains(body, "too many failed authentications") {
		t.Errorf("429 body %s", body)
	}
	st, h, _ = send(a, "GET", "/api/v1/audit", adminSecret, nil, nil)
	refused("the admin token", st, h)
	st, h, _ = send(a, "POST", "/webhooks/itsm", "", nil, map[string]string{"X-Tollgate-Signature": "sha256=00", "Content-Type": "application/json"})
	refused("a webhook", st, h)
	st, h, body = send(a, "POST", "/ui/signin", "", url.Values{"token": {adminSecret}, "next": {"/ui/"}}, nil)
	refused("a UI sign-in", st, h)
	if !strings.Contains(body, "Too many failed sign-ins") {
		t.Errorf("UI sign-in 429 page lacks its message")
	}
	if st, _, _ := send(a, "GET", "/healthz", "", nil, nil); st != http.StatusOK {
		t.Errorf("/healthz (no credential) from the limited client: %d", st)
	}
	if st, _, _ := send(b, "GET", "/api/v1/audit", adminSecret, nil, nil); st != http.StatusOK {
		t.Errorf("another client address: %d, want 200", st)
	}
	if !strings.Contains(s.metricsText(), `tollgate_rate_limited_total{scope="client"} 4`) {
		t.Errorf("metrics: want tollgate_rate_limited_total{scope=\"client\"} 4")
	}
	time.Sleep(1100 * time.Millisecond) // one failure's worth refilled
	if st, _, _ := send(a, "GET", "/api/v1/audit", adminSecret, nil, nil); st != http.StatusOK {
		t.Errorf("the admin token a second later: %d, want 200", st)
	}
	// The UI's own failures count too: a fresh client fails five sign-ins.
	c := clientFrom("127.0.0.3")
	for i := range 5 {
		if st, _, _ := send(c, "POST", "/ui/signin", "", url.Values{"token": {"tg_wrong"}, "next": {"/ui/"}}, nil); st != http.StatusUnauthorized {
			t.Fatalf("wrong sign-in %d: %d", i, st)
		}
	}
	st, h, _ = send(c, "POST", "/ui/signin", "", url.Values{"token": {adminSecret}, "next": {"/ui/"}}, nil)
	refused("a sign-in after five wrong ones", st, h)
}

// TestUIAndRoleProbesSpendLimits: what costs the server without a valid
// credential is bounded like a bad token — made-up session cookies (each
// a database read), cross-site sign-in posts (each a warning) and a
// token probing routes beyond its role — and a signed-in session's pages
// and a sign-in spend its token's request budget as API calls do. A client
// id (X-Request-ID) is echoed only when it is a plain id of ≤64 characters.
func TestUIAndRoleProbesSpendLimits(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig+"rate_limit:\n  auth_failures_per_client: {rate: 0.01, burst: 3}\n  per_token: {rate: 0.01, burst: 4}\n")
	ci, _ := s.token(core.RoleCI)
	auditor, _ := s.token(core.RoleAuditor)
	from := clientFrom
	send := func(c *http.Client, method, path string, form url.Values, hdr map[string]string) (int, http.Header) {
		t.Helper()
		st, h, _ := sendFrom(t, c, method, s.url+path, form, hdr)
		return st, h
	}
	for _, tc := range []struct {
		name, ip string
		req      func(i int) (int, http.Header)
		first    int
	}{
		{"made-up session cookies", "127.0.0.3", func(i int) (int, http.Header) {
			return send(from("127.0.0.3"), "GET", "/ui/changes", nil, map[string]string{"Cookie": fmt.Sprintf("tollgate_session=made-up-%d", i)})
		}, http.StatusUnauthorized},
		{"cross-site sign-ins", "127.0.0.4", func(int) (int, http.Header) {
			return send(from("127.0.0.4"), "POST", "/ui/signin", url.Values{"token": {"x"}}, map[string]string{"Origin": "https://evil.example"})
		}, http.StatusForbidden},
		{"a ci token on an auditor route", "127.0.0.5", func(int) (int, http.Header) {
			return send(from("127.0.0.5"), "GET", "/api/v1/audit", nil, map[string]string{"Authorization": "Bearer " + ci})
		}, http.StatusForbidden},
	} {
		for i := range 3 {
			if st, _ := tc.req(i); st != tc.first {
				t.Fatalf("%s, attempt %d within the burst: %d, want %d", tc.name, i, st, tc.first)
			}
		}
		if st, h := tc.req(3); st != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
			t.Errorf("%s past the burst: %d (Retry-After %q), want 429", tc.name, st, h.Get("Retry-After"))
		}
	}

	// A stale cookie (a session pruned since) is cleared, so a browser
	// spends one failed attempt on it, not one per page.
	if _, h := send(from("127.0.0.7"), "GET", "/ui/changes", nil, map[string]string{"Cookie": "tollgate_session=pruned"}); !strings.Contains(h.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("an unknown session cookie was not cleared: Set-Cookie %q", h.Get("Set-Cookie"))
	}

	u := s.uiClient()
	if st, _ := u.signIn(auditor); st != http.StatusSeeOther { // the sign-in and its page: 2 of 4
		t.Fatalf("sign-in: %d", st)
	}
	codes := []int{}
	for range 3 {
		st, _, _ := u.get("/ui/changes")
		codes = append(codes, st)
	}
	if codes[0] != http.StatusOK || codes[2] != http.StatusTooManyRequests {
		t.Errorf("pages of one session past its token's budget: %v, want 200 … 429", codes)
	}

	long := strings.Repeat("A", 5000)
	if _, h := send(from("127.0.0.6"), "GET", "/healthz", nil, map[string]string{"X-Request-ID": long}); len(h.Get("X-Request-ID")) > 64 {
		t.Errorf("a 5,000-character X-Request-ID was echoed (%d characters)", len(h.Get("X-Request-ID")))
	}
	if _, h := send(from("127.0.0.6"), "GET", "/healthz", nil, map[string]string{"X-Request-ID": "ci-run-42.7"}); h.Get("X-Request-ID") != "ci-run-42.7" {
		t.Errorf("a plain X-Request-ID not echoed: %q", h.Get("X-Request-ID"))
	}
}

// sendFrom sends a request (a form when form is set) with headers hdr and
// returns its status, headers and body.
func sendFrom(t *testing.T, c *http.Client, method, url string, form url.Values, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, url, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(raw)
}
