package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/api"
	"github.com/tollgate-dev/tollgate/app"
	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/apitest"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

const adminSecret = "test-admin-token-0123456789"

// server is a real tollgate serving on a loopback port.
type server struct {
	stop func() // graceful shutdown (idempotent)
	t    testing.TB
	app  *app.App
	url  string
	http *http.Client
}

// testShutdownTimeout bounds a test server's graceful drain: above
// net/http's 5 s grace for a connection that was dialled but never carried
// a request (a concurrent client leaves some), so the drain cannot expire
// on one under load.
const testShutdownTimeout = config.Duration(10 * time.Second)

// boot starts the real server on port 0. dialect is "postgres" or "sqlite";
// cfgYAML is extra configuration. A PostgreSQL server starts on a clone of
// testpg's migrated template (its start-up migration then finds nothing to
// do); TestLongPollAcrossReplicas starts two replicas on an empty one.
func boot(t testing.TB, dialect, cfgYAML string) *server {
	t.Helper()
	return bootURL(t, newDatabase(t, dialect), cfgYAML)
}

// newDatabase returns the URL of a new database of dialect ("postgres":
// a clone of testpg's migrated template; "sqlite": a file in a temporary
// directory), for servers that share it or start on it again.
func newDatabase(t testing.TB, dialect string) string {
	t.Helper()
	if dialect == "postgres" {
		return testpg.NewMigratedDatabase(t)
	}
	return "sqlite:" + filepath.Join(t.TempDir(), "tollgate.db")
}

// bootURL starts a server on the given database (replicas share one).
func bootURL(t testing.TB, dbURL, cfgYAML string) *server {
	t.Helper()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	env := map[string]string{"TOLLGATE_ADMIN_TOKEN": adminSecret, "TOLLGATE_DATABASE_URL": dbURL}
	return serve(t, cfgYAML, env, log)
}

// serve runs app.New and Serve on a loopback port as `tollgate serve` would,
// with the configuration cfgYAML and env as the environment. stop, also
// run when t ends, shuts it down gracefully and closes the app.
func serve(t testing.TB, cfgYAML string, env map[string]string, log *slog.Logger) *server {
	t.Helper()
	cfg, err := config.Parse([]byte(cfgYAML), func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.ShutdownTimeout = testShutdownTimeout
	if !strings.Contains(cfgYAML, "auth_failures_per_client") {
		// Every test client is 127.0.0.1, and the auth and matrix tests
		// fail authentication on purpose far past the default burst.
		cfg.RateLimit.AuthFailuresPerClient.Off = true
	}
	ctx, cancel, a, ln := newApp(t, cfg, log, app.Options{})
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
			a.Close()
		})
	}
	t.Cleanup(stop)
	client := &http.Client{Timeout: 60 * time.Second}
	if _, bench := t.(*testing.B); !bench { // benchmarks time the server, not the validator
		client.Transport = contract(t).Transport(nil, t.Errorf)
	}
	return &server{stop: stop, t: t, app: a, url: "http://" + ln.Addr().String(), http: client}
}

// newApp builds an app as `tollgate serve` would and a loopback listener
// for it; cancel ends the context Serve is to run under.
func newApp(t testing.TB, cfg *config.Config, log *slog.Logger, opts app.Options) (context.Context, context.CancelFunc, *app.App, net.Listener) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, log, opts)
	if err != nil {
		cancel()
		t.Fatalf("app: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		a.Close()
		t.Fatal(err)
	}
	return ctx, cancel, a, ln
}

// loadContract reads the OpenAPI document once per test binary.
var loadContract = sync.OnceValues(func() (*apitest.Validator, error) {
	doc, err := api.LoadOpenAPI(context.Background(), app.Version)
	if err != nil {
		return nil, err
	}
	return apitest.New(doc)
})

// contract is the validator every test client sends its traffic through:
// each request and response is checked against api/openapi.yaml.
func contract(t testing.TB) *apitest.Validator {
	t.Helper()
	v, err := loadContract()
	if err != nil {
		t.Fatalf("OpenAPI contract: %v", err)
	}
	return v
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// do sends a request with an optional bearer token and JSON (or raw) body,
// and decodes a JSON answer into out when given.
func (s *server) do(method, path, token string, body any, out any) int {
	s.t.Helper()
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ctype = bytes.NewReader(b), contentType(b)
	case string:
		rd, ctype = strings.NewReader(b), contentType([]byte(b))
	default:
		j, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode
}

// contentType labels a raw body as the document asks: JSON (also when
// malformed, as the bad-input tests send it) or YAML (policies, mapping
// profiles).
func contentType(b []byte) string {
	if t := bytes.TrimSpace(b); len(t) > 0 && (t[0] == '{' || t[0] == '[' || t[0] == '"') {
		return "application/json"
	}
	return "application/yaml"
}

// token creates an API token with role and returns its secret and id.
func (s *server) token(role core.Role) (string, string) {
	s.t.Helper()
	var out struct{ ID, Token string }
	if st := s.do("POST", "/api/v1/tokens", adminSecret, map[string]any{"name": "test-" + string(role), "role": role}, &out); st != http.StatusCreated {
		s.t.Fatalf("create %s token: status %d", role, st)
	}
	return out.Token, out.ID
}

// signOffPIR signs off, as the bootstrap admin, the review the release of
// service, version and environment requires: a test whose subject is not
// PIR_PENDING lets the service's next release through that way.
func (s *server) signOffPIR(service, version, environment string) {
	s.t.Helper()
	id := core.ReleaseID(service, version, environment)
	if st := s.do("POST", "/api/v1/releases/"+id+"/pir", adminSecret, map[string]any{"summary": "reviewed"}, nil); st != http.StatusOK {
		s.t.Fatalf("sign off the review of %s %s in %s: status %d", service, version, environment, st)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
