package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	neturl "net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// metricsSize fetches /metrics and returns its size and text.
func (s *server) metricsText() string {
	s.t.Helper()
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return string(raw)
}

// TestMetricsLabelsAreBounded: invented method names and paths no route
// knows add no series: 200 requests with random methods on known and
// unknown paths grow /metrics by far less than 20 KB (each used to add a
// counter and a histogram series, ~2 KB apiece).
func TestMetricsLabelsAreBounded(t *testing.T) {
	s := boot(t, "sqlite", "")
	before := s.metricsText()
	paths := []string{"/healthz", "/readyz", "/api/v1/changes/CHG1", "/no/such/path", "/api/v1/nothing"}
	for i := 0; i < 200; i++ {
		m := fmt.Sprintf("M%d%d", rand.IntN(1<<20), i)
		p := paths[i%len(paths)]
		if i%7 == 0 {
			p = fmt.Sprintf("/random/%d", rand.Int())
		}
		req, _ := http.NewRequest(m, s.url+p, nil)
		resp, err := s.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s: %d", m, p, resp.StatusCode)
		}
	}
	after := s.metricsText()
	if grew := len(after) - len(before); grew >= 20000 {
		t.Errorf("/metrics grew by %d bytes", grew)
	}
	if strings.Contains(after, `method="M`) || strings.Contains(after, "/random/") || strings.Contains(after, "/no/such") {
		t.Error("request-chosen method or path exported as a label")
	}
	for _, want := range []string{`method="other",route="/healthz"`, `route="unmatched"`} {
		if !strings.Contains(after, want) {
			t.Errorf("missing %s", want)
		}
	}
}

// TestHealthAnswersHEAD: load balancers probe with HEAD; both health
// endpoints answer it like GET, without a body.
func TestHealthAnswersHEAD(t *testing.T) {
	s := boot(t, "sqlite", "")
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := s.http.Head(s.url + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("HEAD %s: %d", p, resp.StatusCode)
		}
	}
}

// TestBuiltinMappingVersions: a built-in profile's versions list its
// shipped source as version 0; a stored override follows it as version 1.
func TestBuiltinMappingVersions(t *testing.T) {
	s := boot(t, "sqlite", "")
	type versions struct {
		Profile  struct{ Name string }
		Versions []struct {
			Version   int    `json:"version"`
			UpdatedBy string `json:"updated_by"`
			Source    string `json:"source"`
		}
	}
	var v versions
	if st := s.do("GET", "/api/v1/mappings/servicenow-change?versions=true", adminSecret, nil, &v); st != http.StatusOK {
		t.Fatalf("built-in versions: %d", st)
	}
	if len(v.Versions) != 1 || v.Versions[0].Version != 0 || v.Versions[0].Source == "" {
		t.Fatalf("built-in versions: %+v", v)
	}
	src := strings.Replace(v.Versions[0].Source, "name: servicenow-change", "name: servicenow-change\n# tuned", 1)
	if st := s.do("PUT", "/api/v1/mappings/servicenow-change", adminSecret, src, nil); st != http.StatusOK {
		t.Fatalf("put: %d", st)
	}
	v = versions{}
	if st := s.do("GET", "/api/v1/mappings/servicenow-change?versions=true", adminSecret, nil, &v); st != http.StatusOK || len(v.Versions) != 2 || v.Versions[1].Version != 1 {
		t.Fatalf("after put: %d %+v", st, v)
	}
	if st := s.do("GET", "/api/v1/mappings/no-such-profile?versions=true", adminSecret, nil, nil); st != http.StatusNotFound {
		t.Errorf("unknown profile: %d", st)
	}
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs a server on dbURL with env as the environment, logging into
// the returned buffer. Unlike boot, the admin token is whatever env says.
func start(t *testing.T, dbURL string, env map[string]string) (*server, *syncBuffer) {
	t.Helper()
	full := map[string]string{"TOLLGATE_DATABASE_URL": dbURL}
	maps.Copy(full, env)
	logs := &syncBuffer{}
	return serve(t, "", full, logging.New(logs, slog.LevelInfo)), logs
}

// TestBootstrapTokenReplaced: a new TOLLGATE_ADMIN_TOKEN value on the same
// database revokes the earlier value's token (audited, logged by id, the
// secret never logged); starting without any admin token warns.
func TestBootstrapTokenReplaced(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			url := "sqlite:" + filepath.Join(t.TempDir(), "tollgate.db")
			if dialect == "postgres" {
				url = testpg.NewMigratedDatabase(t)
			}
			const first, second = "first-admin-token-0123456789", "second-admin-token-0123456789"

			s1, logs1 := start(t, url, nil)
			s1.stop()
			if !strings.Contains(logs1.String(), "no admin token exists") {
				t.Errorf("no warning without any admin token:\n%s", logs1)
			}

			s2, _ := start(t, url, map[string]string{"TOLLGATE_ADMIN_TOKEN": first})
			if st := s2.do("GET", "/api/v1/tokens", first, nil, nil); st != http.StatusOK {
				t.Fatalf("first token: %d", st)
			}
			s2.stop()

			s3, logs3 := start(t, url, map[string]string{"TOLLGATE_ADMIN_TOKEN": second})
			if st := s3.do("GET", "/api/v1/tokens", first, nil, nil); st != http.StatusUnauthorized {
				t.Errorf("replaced token: %d, want 401", st)
			}
			var list struct{ Items []core.Token }
			if st := s3.do("GET", "/api/v1/tokens", second, nil, &list); st != http.StatusOK {
				t.Fatalf("second token: %d", st)
			}
			live := 0
			for _, tk := range list.Items {
				if tk.Name == "bootstrap-admin" && tk.RevokedAt == nil {
					live++
				}
			}
			if len(list.Items) != 2 || live != 1 {
				t.Errorf("tokens after the change: %+v", list.Items)
			}
			var audit struct{ Items []core.AuditEntry }
			s3.do("GET", "/api/v1/audit?action=token.revoke", second, nil, &audit)
			if len(audit.Items) != 1 || !strings.HasPrefix(audit.Items[0].Actor, "system") {
				t.Errorf("revocation audit: %+v", audit.Items)
			}
			l := logs3.String()
			if !strings.Contains(l, "earlier bootstrap admin token is revoked") || strings.Contains(l, first) || strings.Contains(l, second) {
				t.Errorf("log:\n%s", l)
			}
			if strings.Contains(l, "no admin token exists") {
				t.Errorf("warned although an admin token exists")
			}
			s3.stop()

			// The same value again: nothing revoked, nothing created.
			s4, logs4 := start(t, url, map[string]string{"TOLLGATE_ADMIN_TOKEN": second})
			if st := s4.do("GET", "/api/v1/tokens", second, nil, nil); st != http.StatusOK || strings.Contains(logs4.String(), "revoked") {
				t.Errorf("same value again: %d\n%s", st, logs4)
			}
		})
	}
}

// TestKeyValueDatabaseURL: a libpq key=value connection string works as
// the database URL (lib/pq accepts it; the group-commit path too), its
// password masked for the log.
func TestKeyValueDatabaseURL(t *testing.T) {
	u, err := neturl.Parse(testpg.NewMigratedDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	kv := fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable password='not used here'",
		u.Hostname(), u.Port(), u.User.Username(), strings.TrimPrefix(u.Path, "/"))
	s, _ := start(t, kv, map[string]string{"TOLLGATE_ADMIN_TOKEN": adminSecret})
	ci, _ := s.token(core.RoleCI)
	var d struct{ Decision string }
	if st := s.do("POST", "/api/v1/gate/check", ci, map[string]any{"service": "a", "environment": "development", "version": "1"}, &d); st != http.StatusOK || d.Decision != "allow" {
		t.Fatalf("gate on a key=value URL: %d %+v", st, d)
	}
	if got := config.MaskDatabaseURL(kv); strings.Contains(got, "not used here") || !strings.Contains(got, "password=****") {
		t.Errorf("masked: %s", got)
	}
}

// TestProfilerOnItsOwnListener: debug_addr's listener serves Go's
// profiler (the index, a heap profile, a CPU profile of the seconds asked)
// and stops with its context; the API's listener serves none of it, to
// an admin either.
func TestProfilerOnItsOwnListener(t *testing.T) {
	s := boot(t, "sqlite", "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.app.ServeDebug(ctx, ln) }()
	get := func(url, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	debug := "http://" + ln.Addr().String()
	for _, tt := range []struct{ path, want string }{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/heap?debug=1", "heap profile"},
		{"/debug/pprof/profile?seconds=1", ""}, // gzipped protobuf
	} {
		code, body := get(debug+tt.path, "")
		if code != http.StatusOK || len(body) == 0 || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s on the profiler's listener: %d, %d bytes, want 200 with %q", tt.path, code, len(body), tt.want)
		}
	}
	for _, token := range []string{"", adminSecret} {
		if code, body := get(s.url+"/debug/pprof/", token); code == http.StatusOK || strings.Contains(body, "goroutine") {
			t.Errorf("GET /debug/pprof/ on the API's listener (token %t): %d %.80s", token != "", code, body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeDebug: %v", err)
	}
	if _, err := http.Get(debug + "/debug/pprof/"); err == nil {
		t.Error("the profiler still answers after its context ended")
	}
}
