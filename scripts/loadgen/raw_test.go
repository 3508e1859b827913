package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestRawExchange: the lean client reads Content-Length and chunked
// answers, keeps the connection for the next request, reports a non-200
// status as an error and redials after "Connection: close".
func TestRawExchange(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Path != "/api/v1/gate/check" {
			http.Error(w, "bad request line or headers", http.StatusBadRequest)
			return
		}
		write := func(b string) { _, _ = w.Write([]byte(b)) }
		switch string(body) {
		case "chunked":
			write(`{"decision":`)
			w.(http.Flusher).Flush() // forces chunked framing
			write(`"wait"}`)
		case "fail":
			http.Error(w, "nope", http.StatusServiceUnavailable)
		case "close":
			w.Header().Set("Connection", "close")
			write(`{"decision":"deny"}`)
		default:
			write(`{"decision":"allow"}`)
		}
	}))
	defer srv.Close()
	send := rawClient(config{URL: srv.URL, Token: "tok", Concurrency: 1, Timeout: 5 * time.Second})
	gate := func(body string) request {
		return request{path: "/api/v1/gate/check", header: [][2]string{{"Authorization", "Bearer tok"}}, body: []byte(body)}
	}
	for _, tc := range []struct{ body, want, wantErr string }{
		{"plain", `{"decision":"allow"}`, ""},
		{"chunked", `{"decision":"wait"}`, ""},
		{"fail", "", "status 503"},
		{"close", `{"decision":"deny"}`, ""},
		{"plain", `{"decision":"allow"}`, ""}, // on a new connection
	} {
		out, err := send(0, gate(tc.body))
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.body, err, tc.wantErr)
			}
		case err != nil || string(out) != tc.want:
			t.Errorf("%s: got %q, %v; want %q", tc.body, out, err, tc.want)
		}
	}
}

// TestReadChunkedRejectsGarbage: a bad chunk size is an error, not a hang.
func TestReadChunkedRejectsGarbage(t *testing.T) {
	if _, err := readChunked(bufio.NewReader(strings.NewReader("zz\r\n"))); err == nil {
		t.Fatal("no error for a bad chunk size")
	}
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	go func() { _, _ = c2.Write([]byte("5\r\nhello\r\n0\r\n\r\n")) }()
	out, err := readChunked(bufio.NewReader(c1))
	if err != nil || string(out) != "hello" {
		t.Fatalf("got %q, %v", out, err)
	}
}
