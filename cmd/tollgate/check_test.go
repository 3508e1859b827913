package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

func TestCheckExitCodes(t *testing.T) {
	answer := func(decisions ...string) http.HandlerFunc {
		var n atomic.Int32
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer tok" {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"invalid or revoked token"}}`))
				return
			}
			var req core.GateRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Service != "payments-api" || len(req.Changes) != 1 {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			i := int(n.Add(1)) - 1
			if i >= len(decisions) {
				i = len(decisions) - 1
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"decision": decisions[i], "decision_id": "d1", "release_id": "r1",
				"reasons": []core.Reason{{Code: "CHANGE_NOT_APPROVED", Message: "change CHG1 is awaiting approval", Ref: "CHG1"}}})
		}
	}
	closed := func() string { // an address nothing listens on
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr
	}()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		url     string
		args    []string
		want    int
		out     string
	}{
		{"allow", answer("allow"), "", nil, 0, "ALLOW"},
		{"deny", answer("deny"), "", nil, 1, "CHANGE_NOT_APPROVED [CHG1]"},
		{"wait without --wait", answer("wait"), "", nil, 2, "WAIT"},
		{"wait then allow", answer("wait", "allow"), "", []string{"--wait", "1m"}, 0, "ALLOW"},
		{"refused token", answer("allow"), "", []string{"--token", "bad"}, 1, ""},
		{"unreachable", nil, closed, []string{"--retries", "1"}, 3, ""},
		{"server error", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }, "", []string{"--retries", "0"}, 3, ""},
		{"database down", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
		}, "", []string{"--retries", "0"}, 3, ""},
		{"rate limited", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}, "", []string{"--retries", "0"}, 3, ""},
		// Too many checks waiting at the gateway: --wait asks again after
		// Retry-After until its deadline, as for a wait.
		{"busy, then allow", busyThen(answer("allow")), "", []string{"--retries", "0", "--wait", "1m"}, 0, "ALLOW"},
		{"busy past --wait", busyThen(nil), "", []string{"--retries", "0", "--wait", "2s"}, 3, ""},
		// What is not a recorded decision is no answer: never a deploy,
		// and not a deny the pipeline would read as the policy's.
		{"200 with an error body", body(`{"error":{"code":"internal","message":"boom"}}`), "", nil, 3, ""},
		{"an empty object", body(`{}`), "", nil, 3, ""},
		{"an unknown decision", body(`{"decision":"ALLOW","decision_id":"d1"}`), "", nil, 3, ""},
		{"an allow without its decision id", body(`{"decision":"allow"}`), "", nil, 3, ""},
		// A redirect is not followed: the token would go with it, and
		// the place it points at could answer allow.
		{"redirected", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://elsewhere.example/api/v1/gate/check", http.StatusPermanentRedirect)
		}, "", nil, 3, ""},
		{"no timeout at all", answer("allow"), "", []string{"--timeout", "0s"}, 1, ""},
		{"observe mode says what enforcing would do", body(`{"decision":"allow","decision_id":"d1","would_be":"deny","reasons":[{"code":"NO_CHANGE","message":"no change"}]}`), "", nil, 0, "observe mode: enforcing would deny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := tt.url
			if tt.handler != nil {
				srv := httptest.NewServer(tt.handler)
				defer srv.Close()
				url = srv.URL
			}
			args := append([]string{"check", "--url", url, "--token", "tok", "--service", "payments-api",
				"--environment", "production", "--version", "1.4.2", "--change", "CHG1"}, tt.args...)
			var stdout, stderr bytes.Buffer
			got := run(context.Background(), args, &stdout, &stderr, func(string) string { return "" })
			if got != tt.want {
				t.Errorf("exit %d, want %d; stdout %q stderr %q", got, tt.want, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.out) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tt.out)
			}
		})
	}
}

// body answers 200 with raw, whatever was asked.
func body(raw string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(raw)) }
}

// busyThen answers 429 (Retry-After 1) to the first request, and to every
// one when next is nil; then next.
func busyThen(next http.HandlerFunc) http.HandlerFunc {
	var n atomic.Int32
	return func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 || next == nil {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"error":{"code":"rate_limited","message":"3 checks are waiting on this replica"}}`))
			return
		}
		next(w, r)
	}
}
