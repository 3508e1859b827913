package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// lockedBuffer collects the server's whole log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// metricValue reads one sample of /metrics ("" when absent).
func (s *server) metricValue(series string) string {
	s.t.Helper()
	_, out, err := s.raw("GET", "/metrics", nil, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestRateLimits(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig+`
rate_limit:
  per_token: {rate: 0.5, burst: 3}
  per_connector: {rate: 0.5, burst: 2}
`)
	ci, _ := s.token(core.RoleCI)
	other, _ := s.token(core.RoleAuditor)
	statuses := func(n int, send func() (int, http.Header)) (codes []int, last http.Header) {
		for range n {
			st, h := send()
			codes, last = append(codes, st), h
		}
		return codes, last
	}
	get := func(token string) func() (int, http.Header) {
		return func() (int, http.Header) {
			req, _ := http.NewRequest("GET", s.url+"/api/v1/audit/verify", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := s.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode, resp.Header
		}
	}
	codes, h := statuses(4, get(other))
	if want := []int{200, 200, 200, 429}; !equalInts(codes, want) {
		t.Errorf("per token: %v, want %v", codes, want)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Errorf("Retry-After %q, want 1–2 s (one request at 0.5/s)", h.Get("Retry-After"))
	}
	// Another token has its own bucket (the ci token's 403 here is
	// refused before the limit is consulted, and so spends nothing).
	if codes, _ := statuses(1, get(ci)); codes[0] != http.StatusForbidden {
		t.Errorf("ci on an auditor route: %v, want 403", codes)
	}
	hook := func() (int, http.Header) {
		body := []byte(`{"kind":"change","key":"CHG1","approval":"approved","updated_at":"2026-11-27T10:00:00Z"}`)
		req, _ := http.NewRequest("POST", s.url+"/webhooks/itsm", bytes.NewReader(body))
		req.Header.Set("X-Tollgate-Signature", signed(body))
		resp, err := s.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	// Deliveries nobody signed are refused before the connector's limit
	// is consulted: they spend none of the real sender's.
	forged := func() (int, http.Header) {
		req, _ := http.NewRequest("POST", s.url+"/webhooks/itsm", strings.NewReader(`{"kind":"change"}`))
		req.Header.Set("X-Tollgate-Signature", "sha256="+strings.Repeat("0", 64))
		resp, err := s.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	if codes, _ := statuses(3, forged); !equalInts(codes, []int{401, 401, 401}) {
		t.Errorf("unsigned deliveries: %v, want 401s", codes)
	}
	codes, h = statuses(3, hook)
	if codes[0] != 202 || codes[1] != 202 || codes[2] != 429 || h.Get("Retry-After") == "" {
		t.Errorf("per connector: %v (Retry-After %q), want 202 202 429 with Retry-After", codes, h.Get("Retry-After"))
	}
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	req, _ := http.NewRequest("GET", s.url+"/api/v1/audit/verify", nil)
	req.Header.Set("Authorization", "Bearer "+other)
	if resp, err := s.http.Do(req); err == nil {
		_ = decodeJSON(resp, &body)
		if body.Error.Code != "rate_limited" {
			t.Errorf("429 body code %q, want rate_limited", body.Error.Code)
		}
	}
	if v := s.metricValue(`tollgate_rate_limited_total{scope="token"}`); v == "" || v == "0" {
		t.Errorf("tollgate_rate_limited_total{scope=token} = %q", v)
	}
	if v := s.metricValue(`tollgate_rate_limited_total{scope="connector"}`); v != "1" {
		t.Errorf("tollgate_rate_limited_total{scope=connector} = %q, want 1", v)
	}
}

// TestWaitingChecksCapped: a token opening long-polls without end cannot
// hold more than gate.max_waiting_per_token of them, nor all tokens more
// than gate.max_waiting: past either a check that would wait is answered
// 429 with Retry-After at once, and records no decision; a check that
// need not wait (or asks without ?wait=) is answered as ever, and a slot
// freed by a wait that ended is taken again.
func TestWaitingChecksCapped(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig+`
gate:
  max_waiting: 3
  max_waiting_per_token: 2
`)
	ci, _ := s.token(core.RoleCI)
	other, _ := s.token(core.RoleCI)
	s.sendWebhook(change("CHG5001", core.ApprovalRequested, time.Now().UTC()))
	s.waitFor("CHG5001 stored", func() bool { return s.changeState("CHG5001") == "requested" })
	req := func(v string) []byte {
		b, _ := json.Marshal(map[string]any{"service": "payments-api", "environment": "production", "version": v, "changes": []string{"CHG5001"}})
		return b
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits sync.WaitGroup
	hold := func(token, v string) context.CancelFunc {
		wctx, stop := context.WithCancel(ctx)
		waits.Add(1)
		go func() {
			defer waits.Done()
			r, _ := http.NewRequestWithContext(wctx, "POST", s.url+"/api/v1/gate/check?wait=1m", bytes.NewReader(req(v)))
			r.Header.Set("Authorization", "Bearer "+token)
			if resp, err := http.DefaultClient.Do(r); err == nil {
				resp.Body.Close()
			}
		}()
		return stop
	}
	waiting := func(n string) {
		s.waitFor(n+" checks waiting", func() bool { return s.metricValue("tollgate_gate_waiting_checks") == n })
	}
	ask := func(token, query, v string) (int, string) {
		r, _ := http.NewRequest("POST", s.url+"/api/v1/gate/check"+query, bytes.NewReader(req(v)))
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("Content-Type", "application/json")
		resp, err := s.http.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "5" {
			t.Errorf("a refused wait's Retry-After %q, want 5", resp.Header.Get("Retry-After"))
		}
		return resp.StatusCode, string(body)
	}
	decisions := func() int { // every decision is one audit entry
		var head struct{ Seq int }
		if st := s.do("GET", "/api/v1/audit/head", adminSecret, nil, &head); st != http.StatusOK {
			t.Fatalf("audit head: %d", st)
		}
		return head.Seq
	}

	first := hold(ci, "5.0.1")
	hold(ci, "5.0.2")
	waiting("2")
	before := decisions()
	if st, body := ask(ci, "?wait=1m", "5.0.3"); st != http.StatusTooManyRequests || !strings.Contains(body, "gate.max_waiting_per_token") {
		t.Errorf("a third wait of one token: %d %s, want 429 naming gate.max_waiting_per_token", st, body)
	}
	if st, _ := ask(ci, "", "5.0.3"); st != http.StatusOK {
		t.Errorf("a check of the same token without ?wait=: %d, want its answer", st)
	}
	hold(other, "5.0.4")
	waiting("3")
	st, body := ask(other, "?wait=1m", "5.0.5")
	if st != http.StatusTooManyRequests || !strings.Contains(body, "gate.max_waiting)") {
		t.Errorf("a wait past the replica's limit: %d %s, want 429 naming gate.max_waiting", st, body)
	}
	if got := decisions(); got != before+1 {
		t.Errorf("%d decisions recorded while waits were refused, want only the check without ?wait= (1)", got-before)
	}
	first()
	waiting("2")
	hold(other, "5.0.6")
	waiting("3")
	if v := s.metricValue(`tollgate_gate_waits_refused_total{limit="token"}`); v != "1" {
		t.Errorf(`tollgate_gate_waits_refused_total{limit="token"} = %q, want 1`, v)
	}
	if v := s.metricValue(`tollgate_gate_waits_refused_total{limit="replica"}`); v != "1" {
		t.Errorf(`tollgate_gate_waits_refused_total{limit="replica"} = %q, want 1`, v)
	}
	cancel()
	waits.Wait()
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func decodeJSON(resp *http.Response, v any) error {
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		return err
	}
	return jsonUnmarshal(b.String(), v)
}

// TestNoSecretLeaks boots the server with its whole log captured at debug
// level, exercises it (good and bad tokens, signed and forged webhooks,
// gate checks, token management, errors), and greps the log, every
// response body and /metrics for every configured secret and every token
// issued or tried: none may appear. Failed authentications are counted by
// bounded reason.
func TestNoSecretLeaks(t *testing.T) {
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const itsmPassword = "itsm-api-password-0123456789"
	dbURL := testpg.NewMigratedDatabase(t)
	s := serve(t, `
connectors:
  - name: itsm
    type: generic
    webhook_secret: `+webhookSecret+`
    records: [changes, incidents, reviews]
  - name: snow
    type: servicenow
    webhook_secret: snow-hook-secret-0123456789
    options: {base_url: "http://127.0.0.1:1", password: `+itsmPassword+`}
`, map[string]string{"TOLLGATE_ADMIN_TOKEN": adminSecret, "TOLLGATE_DATABASE_URL": dbURL, "TOLLGATE_LOG_LEVEL": "debug"}, log)

	var bodies strings.Builder
	call := func(method, path, token string, body []byte, hdr map[string]string) int {
		h := map[string]string{"Content-Type": "application/json"}
		for k, v := range hdr {
			h[k] = v
		}
		if token != "" {
			h["Authorization"] = "Bearer " + token
		}
		var rd *bytes.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		} else {
			rd = bytes.NewReader(nil)
		}
		st, out, err := s.raw(method, path, rd, h)
		if err != nil {
			t.Fatal(err)
		}
		bodies.WriteString(out)
		return st
	}
	ci, _ := s.token(core.RoleCI)
	revoked, revokedID := s.token(core.RoleAuditor)
	call("DELETE", "/api/v1/tokens/"+revokedID, adminSecret, nil, nil)
	const forged = "tg_forged-token-0123456789abcdef"
	secrets := map[string]string{
		"admin token": adminSecret, "ci token": ci, "revoked token": revoked, "forged token": forged,
		"webhook secret": webhookSecret, "servicenow secret": "snow-hook-secret-0123456789",
		"connector password": itsmPassword, "database URL": dbURL,
	}

	gate := []byte(`{"service":"pay","environment":"production","version":"1.0.0","changes":["CHG1"]}`)
	call("POST", "/api/v1/gate/check", ci, gate, nil)
	call("POST", "/api/v1/gate/check", forged, gate, nil)
	call("POST", "/api/v1/gate/check", revoked, gate, nil)
	call("POST", "/api/v1/gate/check", "", gate, nil)
	call("GET", "/api/v1/tokens", ci, nil, nil)                                // forbidden
	call("POST", "/api/v1/gate/check", ci, []byte(`{"service":`+"\xff}"), nil) // invalid
	hook := []byte(`{"kind":"change","key":"CHG1","approval":"approved","updated_at":"2026-11-27T10:00:00Z"}`)
	call("POST", "/webhooks/itsm", "", hook, map[string]string{"X-Tollgate-Signature": signed(hook)})
	call("POST", "/webhooks/itsm", "", hook, map[string]string{"X-Tollgate-Signature": "sha256=" + strings.Repeat("0", 64)})
	call("POST", "/webhooks/snow", "", hook, map[string]string{"X-Tollgate-Signature": "sha256=" + webhookSecret})
	call("POST", "/webhooks/itsm", "", hook, map[string]string{"Authorization": "Bearer " + webhookSecret})
	call("POST", "/webhooks/no-such-connector", "", hook, map[string]string{"X-Tollgate-Signature": signed(hook)})
	call("GET", "/api/v1/tokens", adminSecret, nil, nil)
	call("GET", "/api/v1/audit", adminSecret, nil, nil)
	call("GET", "/api/v1/events", adminSecret, nil, nil)
	call("GET", "/readyz", "", nil, nil)
	time.Sleep(200 * time.Millisecond) // let the normalizer log its work
	_, metrics, _ := s.raw("GET", "/metrics", nil, nil)
	s.stop()

	all := map[string]string{"log": logs.String(), "response bodies": bodies.String(), "metrics": metrics}
	if len(all["log"]) < 1000 {
		t.Fatalf("log captured only %d bytes: the test is not looking at the server's log", len(all["log"]))
	}
	for where, text := range all {
		for what, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("the %s appears in the %s", what, where)
			}
		}
	}
	for reason, want := range map[string]string{"missing_token": "1", "invalid_token": "2", "forbidden": "1", "webhook_signature": "3", "unknown_connector": "1"} {
		series := `tollgate_auth_failures_total{reason="` + reason + `"}`
		if !strings.Contains(metrics, series+" "+want+"\n") {
			t.Errorf("%s: want %s in /metrics", series, want)
		}
	}
	if !strings.Contains(all["log"], `"msg":"authentication refused","reason":"invalid_token"`) {
		t.Error("refused authentications are not logged")
	}
}

// BenchmarkWaitingCheckMemory measures what one long-polled check holds
// on the server while it waits — its goroutines, connection buffers,
// subscription and decision — as the heap and stacks in use before and
// after 500 checks start waiting (each from a bare connection that only
// writes its request). Reported as bytes/wait; gate.max_waiting times it
// bounds what waits can hold.
func BenchmarkWaitingCheckMemory(b *testing.B) {
	const n = 500
	s := boot(b, "sqlite", e2eConfig+"gate: {max_waiting: 1000, max_waiting_per_token: 1000}\n")
	ci, _ := s.token(core.RoleCI)
	s.sendWebhook(change("CHG5101", core.ApprovalRequested, time.Now().UTC()))
	s.waitFor("CHG5101 stored", func() bool { return s.changeState("CHG5101") == "requested" })
	addr := strings.TrimPrefix(s.url, "http://")
	inUse := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	for b.Loop() {
		before := inUse()
		conns := make([]net.Conn, 0, n)
		for i := range n {
			body := fmt.Sprintf(`{"service":"payments-api","environment":"production","version":"9.%d.0","changes":["CHG5101"]}`, i)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(c, "POST /api/v1/gate/check?wait=1m HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", ci, len(body), body)
			conns = append(conns, c)
		}
		s.waitFor("the checks waiting", func() bool { return s.metricValue("tollgate_gate_waiting_checks") == strconv.Itoa(n) })
		after := inUse()
		b.ReportMetric(float64(after-before)/n, "bytes/wait")
		for _, c := range conns {
			c.Close()
		}
		s.waitFor("the waits ended", func() bool { return s.metricValue("tollgate_gate_waiting_checks") == "0" })
	}
}
