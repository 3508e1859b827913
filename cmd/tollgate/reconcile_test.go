package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeReports answers the two requests `tollgate reconcile` makes, with a
// report of the given findings and acknowledgements.
func fakeReports(t *testing.T, findings, acked int, seen *map[string]any) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer cm" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":{"code":"forbidden","message":"role ci may not POST"}}`))
			return
		}
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/reports/reconciliation":
			if err := json.NewDecoder(r.Body).Decode(seen); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(map[string]any{"id": "r1", "summary": map[string]any{
				"deployments_checked": 5, "compliant": 5 - findings, "findings": findings, "acknowledged": acked}})
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/reports/reconciliation/r1":
			if f := r.URL.Query().Get("format"); f == "json" {
				_, _ = w.Write([]byte(`{"echo":"format=json"}` + "\n"))
			} else {
				_, _ = w.Write([]byte("format=" + f + "\n"))
			}
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/reports/reconciliation/cut":
			_, _ = w.Write([]byte(`{"id":"cut","findings":[{"id":1`)) // the stream ended part-way
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
}

func TestReconcileCommand(t *testing.T) {
	var seen map[string]any
	withFindings := fakeReports(t, 2, 0, &seen)
	defer withFindings.Close()
	allAcked := fakeReports(t, 2, 2, &seen)
	defer allAcked.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"prints the report", []string{"--url", withFindings.URL, "--token", "cm", "--from", "2026-11-01", "--to", "2026-12-01", "--format", "csv"}, 0, "format=csv", "2 unacknowledged"},
		{"fails on findings", []string{"--url", withFindings.URL, "--token", "cm", "--from", "7d", "--fail-on-findings"}, 1, "format=json", "2 unacknowledged findings"},
		{"acknowledged findings pass", []string{"--url", allAcked.URL, "--token", "cm", "--from", "7d", "--fail-on-findings", "--format", "html"}, 0, "format=html", "0 unacknowledged"},
		{"refused", []string{"--url", withFindings.URL, "--token", "ci", "--from", "7d"}, 2, "", "role ci may not POST"},
		{"unreachable", []string{"--url", down, "--token", "cm", "--from", "7d", "--retries", "0"}, 3, "", "unreachable"},
		{"bad period", []string{"--url", withFindings.URL, "--token", "cm", "--from", "last tuesday"}, 2, "", "--from"},
		{"bad format", []string{"--url", withFindings.URL, "--token", "cm", "--from", "7d", "--format", "pdf"}, 2, "", "--format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCLI(t, nil, append([]string{"reconcile"}, tc.args...)...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) || !strings.Contains(stderr, tc.wantErr) {
				t.Fatalf("exit %d out %q err %q; want %d, %q, %q", code, out, stderr, tc.wantCode, tc.wantOut, tc.wantErr)
			}
		})
	}
	// The period went out as RFC 3339 bounds.
	from, _ := time.Parse(time.RFC3339, seen["from"].(string))
	if d := time.Since(from); d < 7*24*time.Hour-time.Minute || d > 7*24*time.Hour+time.Minute {
		t.Errorf("--from 7d sent %v", seen["from"])
	}
	// --control narrows the report to one compliance control.
	if code, _, stderr := runCLI(t, nil, "reconcile", "--url", withFindings.URL, "--token", "cm", "--from", "7d", "--control", "SOX-ITGC-CM-03"); code != 0 {
		t.Fatalf("--control: exit %d %s", code, stderr)
	}
	if seen["control"] != "SOX-ITGC-CM-03" {
		t.Errorf("--control sent %v", seen["control"])
	}
}

// TestReconcileReportCutShort: a JSON report that ends part-way (the
// gateway's database failing while its findings stream) exits 3, never 0
// with half a report on stdout.
func TestReconcileReportCutShort(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"id":"cut","summary":{"deployments_checked":5,"compliant":5}}`))
			return
		}
		_, _ = w.Write([]byte(`{"id":"cut","findings":[{"id":1`))
	}))
	defer srv.Close()
	code, _, stderr := runCLI(t, nil, "reconcile", "--url", srv.URL, "--token", "cm", "--from", "7d")
	if code != 3 || !strings.Contains(stderr, "arrived incomplete") {
		t.Fatalf("exit %d %s; want 3, the report incomplete", code, stderr)
	}
}
