package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
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
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
			return d.DialContext(ctx, n, a)
		}}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	a, b := from("127.0.0.1"), from("127.0.0.2")
	send := func(c *http.Client, method, path, bearer string, form url.Values, hdr map[string]string) (int, http.Header, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, s.url+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
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
	c := from("127.0.0.3")
	for i := range 5 {
		if st, _, _ := send(c, "POST", "/ui/signin", "", url.Values{"token": {"tg_wrong"}, "next": {"/ui/"}}, nil); st != http.StatusUnauthorized {
			t.Fatalf("wrong sign-in %d: %d", i, st)
		}
	}
	st, h, _ = send(c, "POST", "/ui/signin", "", url.Values{"token": {adminSecret}, "next": {"/ui/"}}, nil)
	refused("a sign-in after five wrong ones", st, h)
}
