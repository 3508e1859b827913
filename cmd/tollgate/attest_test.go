package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

// TestAttest: the CLI reads the report, refuses degenerate ones before
// sending anything, names the release by id or by service, environment
// and version, and exits non-zero when the server refuses.
func TestAttest(t *testing.T) {
	var (
		mu   sync.Mutex
		sent []map[string]json.RawMessage
		path string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]json.RawMessage
		_ = json.Unmarshal(raw, &body)
		mu.Lock()
		sent, path = append(sent, body), r.URL.Path
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if strings.Contains(string(raw), `"status":"bogus"`) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"code":"invalid","field":"status","message":"\"bogus\" is not a status"}}`))
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(core.Evidence{ID: "ev1", ReleaseID: "rel", Kind: "tests", Name: "unit", Status: "passed"})
	}))
	defer srv.Close()
	td := func(name string) string { return filepath.Join("..", "..", "evidence", "testdata", name) }
	base := []string{"attest", "--url", srv.URL, "--token", "tok", "--service", "pay", "--environment", "production", "--version", "1.0.0"}
	tests := []struct {
		name   string
		args   []string
		code   int
		sent   bool
		stderr string
		field  string
	}{
		{name: "junit", args: []string{"--kind", "tests", "--name", "unit", "--junit", td("surefire-TEST-com.example.pay.PaymentServiceTest.xml")}, sent: true, field: "junit"},
		{name: "sarif", args: []string{"--kind", "security_scan", "--name", "gosec", "--sarif", td("gosec.sarif")}, sent: true, field: "sarif"},
		{name: "status with metric", args: []string{"--kind", "performance", "--name", "k6", "--status", "passed", "--metric", "p99_ms=240"}, sent: true, field: "metrics"},
		{name: "zero tests", args: []string{"--kind", "tests", "--name", "unit", "--junit", td("junit-zero-tests.xml")}, code: 1, stderr: "zero tests"},
		{name: "empty file", args: []string{"--kind", "tests", "--name", "unit", "--junit", td("junit-empty.xml")}, code: 1, stderr: "empty"},
		{name: "no run", args: []string{"--kind", "security_scan", "--name", "gosec", "--sarif", td("sarif-no-runs.sarif")}, code: 1, stderr: "no run"},
		{name: "missing file", args: []string{"--kind", "tests", "--name", "unit", "--junit", td("nope.xml")}, code: 1, stderr: "nope.xml"},
		{name: "two documents", args: []string{"--kind", "tests", "--name", "unit", "--status", "passed", "--junit", td("gotestsum-passing.xml")}, code: 1, stderr: "exactly one"},
		{name: "bad metric", args: []string{"--kind", "performance", "--name", "k6", "--status", "passed", "--metric", "p99"}, code: 1, stderr: "NAME=NUMBER"},
		{name: "server refuses", args: []string{"--kind", "tests", "--name", "unit", "--status", "bogus"}, code: 1, sent: true, stderr: "is not a status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			sent = nil
			mu.Unlock()
			code, _, stderr := runCLI(t, nil, append(base, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Fatalf("exit %d stderr %q, want %d with %q", code, stderr, tt.code, tt.stderr)
			}
			mu.Lock()
			defer mu.Unlock()
			if (len(sent) > 0) != tt.sent {
				t.Fatalf("sent %d requests, want sent=%v", len(sent), tt.sent)
			}
			if tt.field != "" {
				if sent[0][tt.field] == nil || sent[0]["release"] == nil {
					t.Fatalf("body lacks %s or the release: %v", tt.field, sent[0])
				}
				if want := "/api/v1/releases/" + core.ReleaseID("pay", "1.0.0", "production") + "/evidence"; path != want {
					t.Fatalf("path %s, want %s", path, want)
				}
			}
		})
	}
	code, _, _ := runCLI(t, nil, "attest", "--url", srv.URL, "--token", "tok", "--release", "rel-1", "--kind", "tests", "--name", "unit", "--status", "passed")
	if code != 0 || path != "/api/v1/releases/rel-1/evidence" || sent[len(sent)-1]["release"] != nil {
		t.Fatalf("--release: exit %d path %s", code, path)
	}
	if code, _, stderr := runCLI(t, nil, "attest", "--url", srv.URL, "--token", "tok", "--service", "pay", "--kind", "tests", "--name", "unit", "--status", "passed"); code != 1 || !strings.Contains(stderr, "name the release") {
		t.Fatalf("no release named: %d %s", code, stderr)
	}
	// The commit binds the evidence, and travels with the release's name.
	n := len(sent)
	if code, _, stderr := runCLI(t, nil, "attest", "--url", srv.URL, "--token", "tok", "--release", "rel-1", "--commit", "abc1234", "--kind", "tests", "--name", "unit", "--status", "passed"); code != 1 || !strings.Contains(stderr, "--commit binds") || len(sent) != n {
		t.Fatalf("--release with --commit: %d %s, %d sent", code, stderr, len(sent)-n)
	}
	if code, _, _ := runCLI(t, nil, append(base, "--commit", "abc1234", "--kind", "performance", "--name", "k6", "--status", "passed")...); code != 0 || !strings.Contains(string(sent[len(sent)-1]["release"]), `"commit":"abc1234"`) {
		t.Fatalf("--commit: exit %d, release %s", code, sent[len(sent)-1]["release"])
	}
}
