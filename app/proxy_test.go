package app_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClientAddressBehindProxy: the failed-authentication limit (burst 3
// here, no refill within the test) is kept per client address, and the
// address is the connection's peer unless the peer is one of
// http.trusted_proxies, whose X-Forwarded-For then names the client (its
// right-most untrusted address). A client cannot escape the limit by
// writing X-Forwarded-For itself, directly or through the proxy; two
// clients behind one proxy do not share a budget; requests with no
// credential at all spend it too. The request log names the client as
// remote_ip and the proxy as peer_ip.
func TestClientAddressBehindProxy(t *testing.T) {
	type req struct {
		from, xff, bearer string
		want              int
	}
	const bad = "tg_guessed-token"
	tests := []struct {
		name    string
		proxies string // http.trusted_proxies
		reqs    []req
		logs    []string // must appear in the log
		noLogs  []string // must not
	}{
		{
			name: "no trusted proxy: a direct client's X-Forwarded-For is ignored",
			reqs: []req{
				{"127.0.0.1", "203.0.113.1", bad, 401}, {"127.0.0.1", "203.0.113.2", bad, 401}, {"127.0.0.1", "203.0.113.3", bad, 401},
				{"127.0.0.1", "203.0.113.4", bad, 429}, {"127.0.0.1", "203.0.113.5", adminSecret, 429},
				{"127.0.0.2", "", adminSecret, 200},
			},
			logs:   []string{`"remote_ip":"127.0.0.1"`},
			noLogs: []string{`"remote_ip":"203.0.113.`, `"peer_ip"`},
		},
		{
			name:    "trusted proxy: each client behind it has a budget of its own",
			proxies: `["127.0.0.1/32"]`,
			reqs: []req{
				{"127.0.0.1", "203.0.113.1", bad, 401}, {"127.0.0.1", "203.0.113.1", bad, 401}, {"127.0.0.1", "203.0.113.1", bad, 401},
				{"127.0.0.1", "203.0.113.1", bad, 429},
				// The client writes an address of its own; the proxy
				// appends the one it saw.
				{"127.0.0.1", "198.51.100.9, 203.0.113.1", adminSecret, 429},
				{"127.0.0.1", "203.0.113.2", adminSecret, 200}, {"127.0.0.1", "203.0.113.2", bad, 401},
				// Two proxies, both trusted: the client is further left.
				{"127.0.0.1", "203.0.113.3, 127.0.0.1", adminSecret, 200},
			},
			logs: []string{`"remote_ip":"203.0.113.1","peer_ip":"127.0.0.1"`, `"remote_ip":"203.0.113.2","peer_ip":"127.0.0.1"`,
				`"remote_ip":"203.0.113.3","peer_ip":"127.0.0.1"`},
			noLogs: []string{`"remote_ip":"198.51.100.9"`},
		},
		{
			// 127.0.0.2 is a loopback address, which echo's extractor
			// trusts by default: only the configured ranges may be.
			name:    "trusted proxy: a peer that is not one is the client whatever it sends",
			proxies: `["127.0.0.1"]`,
			reqs: []req{
				{"127.0.0.2", "203.0.113.1", bad, 401}, {"127.0.0.2", "203.0.113.2", bad, 401}, {"127.0.0.2", "203.0.113.3", bad, 401},
				{"127.0.0.2", "203.0.113.4", adminSecret, 429}, {"127.0.0.2", "", adminSecret, 429},
				{"127.0.0.1", "203.0.113.9", adminSecret, 200},
			},
			logs:   []string{`"remote_ip":"127.0.0.2"`},
			noLogs: []string{`"remote_ip":"203.0.113.1"`, `"remote_ip":"203.0.113.4"`},
		},
		{
			name: "requests with no credential spend the budget too",
			reqs: []req{
				{"127.0.0.3", "", "", 401}, {"127.0.0.3", "", "", 401}, {"127.0.0.3", "", "", 401},
				{"127.0.0.3", "", "", 429}, {"127.0.0.3", "", adminSecret, 429},
				{"127.0.0.1", "", adminSecret, 200},
			},
			logs: []string{`"reason":"missing_token"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e2eConfig + "rate_limit:\n  auth_failures_per_client: {rate: 0.01, burst: 3}\n"
			if tt.proxies != "" {
				cfg += "http:\n  trusted_proxies: " + tt.proxies + "\n"
			}
			logs := &lockedBuffer{}
			s := serve(t, cfg, map[string]string{"TOLLGATE_ADMIN_TOKEN": adminSecret,
				"TOLLGATE_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "tollgate.db")},
				slog.New(slog.NewJSONHandler(logs, nil)))
			for i, r := range tt.reqs {
				req, _ := http.NewRequest(http.MethodGet, s.url+"/api/v1/audit", nil)
				if r.bearer != "" {
					req.Header.Set("Authorization", "Bearer "+r.bearer)
				}
				if r.xff != "" {
					req.Header.Set("X-Forwarded-For", r.xff)
					req.Header.Set("X-Real-IP", strings.Split(r.xff, ",")[0])
				}
				resp, err := clientFrom(r.from).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != r.want {
					t.Errorf("request %d (from %s, X-Forwarded-For %q, token %t): %d, want %d", i, r.from, r.xff, r.bearer != "", resp.StatusCode, r.want)
				}
			}
			s.stop()
			log := logs.String()
			for _, want := range tt.logs {
				if !strings.Contains(log, want) {
					t.Errorf("the log lacks %s", want)
				}
			}
			for _, not := range tt.noLogs {
				if strings.Contains(log, not) {
					t.Errorf("the log has %s", not)
				}
			}
		})
	}
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (each a client of its own to the server's limits), following
// no redirect.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
		return d.DialContext(ctx, n, a)
	}}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
