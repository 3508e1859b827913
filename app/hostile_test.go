package app_test

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

const hostileConfig = e2eConfig + `
http:
  read_header_timeout: 300ms
  read_timeout: 2s
  max_header_bytes: 8192
`

// deepJSON is n nested arrays: far past encoding/json's depth limit.
func deepJSON(n int) []byte {
	return append(bytes.Repeat([]byte("["), n), bytes.Repeat([]byte("]"), n)...)
}

func signed(body []byte) string {
	mac := hmac.New(sha256.New, []byte(webhookSecret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// raw sends one request with the given headers and returns status and body.
func (s *server) raw(method, path string, body io.Reader, hdr map[string]string) (int, string, error) {
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		return 0, "", err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestHostileInput sends what an attacker or a broken client would: each
// gets a clear 4xx (or a closed connection), never a 500 or a crash, and
// the server keeps answering afterwards.
func TestHostileInput(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, hostileConfig)
			ci, _ := s.token(core.RoleCI)
			bearer := map[string]string{"Authorization": "Bearer " + ci, "Content-Type": "application/json"}
			invalidUTF8 := []byte(`{"service":"pay` + "\xff\xfe" + `","environment":"production","version":"1.0.0"}`)
			tests := []struct {
				name string
				path string
				body []byte
				hdr  map[string]string
				want int
			}{
				{"gate: 100k-deep JSON", "/api/v1/gate/check", deepJSON(100_000), bearer, 400},
				{"gate: invalid UTF-8", "/api/v1/gate/check", invalidUTF8, bearer, 400},
				{"gate: NUL bytes", "/api/v1/gate/check", []byte("{\"service\":\"a\x00b\"}"), bearer, 400},
				{"deployment: 100k-deep JSON", "/api/v1/deployments", deepJSON(100_000), bearer, 400},
				{"webhook: 100k-deep JSON", "/webhooks/itsm", deepJSON(100_000), map[string]string{"X-Tollgate-Signature": signed(deepJSON(100_000))}, 400},
				{"webhook: unsigned", "/webhooks/itsm", []byte(`{}`), nil, 401},
				{"webhook: unknown connector", "/webhooks/nope", []byte(`{}`), nil, 404},
			}
			for _, tt := range tests {
				st, body, err := s.raw("POST", tt.path, bytes.NewReader(tt.body), tt.hdr)
				if err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				if st != tt.want || !strings.Contains(body, `"error"`) {
					t.Errorf("%s: %d %.200s, want %d with an error body", tt.name, st, body, tt.want)
				}
			}
			if st := s.do("GET", "/healthz", "", nil, nil); st != 200 {
				t.Fatalf("server unhealthy after hostile input: %d", st)
			}
			// A signed delivery that is not valid UTF-8 is the sender's
			// real payload: kept byte for byte (202) and settled by the
			// normalizer, never rewritten or dropped at the door.
			var ack struct {
				EventID string `json:"event_id"`
			}
			st, body, err := s.raw("POST", "/webhooks/itsm", bytes.NewReader(invalidUTF8), map[string]string{"X-Tollgate-Signature": signed(invalidUTF8)})
			if err != nil || st != http.StatusAccepted || jsonUnmarshal(body, &ack) != nil {
				t.Fatalf("signed invalid UTF-8 delivery: %d %s %v", st, body, err)
			}
			var ev struct {
				Event struct {
					Status string `json:"status"`
				} `json:"event"`
				BodyBase64 string `json:"body_base64"`
			}
			s.waitFor("the invalid UTF-8 event to settle", func() bool {
				s.do("GET", "/api/v1/events/"+ack.EventID, adminSecret, nil, &ev)
				return ev.Event.Status != "" && ev.Event.Status != "pending"
			})
			if want := base64.StdEncoding.EncodeToString(invalidUTF8); ev.BodyBase64 != want {
				t.Errorf("stored body %q, want the exact bytes %q", ev.BodyBase64, want)
			}
		})
	}
}

// TestOversizedBodyMemoryBounded streams a 64 MiB chunked body (no
// Content-Length to refuse up front): the answer is 413 and the server
// reads no more than its limit into memory.
func TestOversizedBodyMemoryBounded(t *testing.T) {
	s := boot(t, "sqlite", hostileConfig)
	ci, _ := s.token(core.RoleCI)
	for _, path := range []string{"/webhooks/itsm", "/api/v1/gate/check"} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		body := io.LimitReader(zeroReader{}, 64<<20) // LimitReader hides the size: chunked
		st, out, err := s.raw("POST", path, body, map[string]string{"Authorization": "Bearer " + ci})
		runtime.ReadMemStats(&after)
		// The server may answer and close before the client has sent it
		// all; a reset while sending is a refusal too.
		if err == nil && (st != http.StatusRequestEntityTooLarge || !strings.Contains(out, "too_large")) {
			t.Errorf("%s: %d %.200s, want 413 too_large", path, st, out)
		}
		if grown := after.TotalAlloc - before.TotalAlloc; grown > 24<<20 {
			t.Errorf("%s: %d MiB allocated for a 64 MiB body over a 1 MiB limit", path, grown>>20)
		}
	}
	if st := s.do("GET", "/healthz", "", nil, nil); st != 200 {
		t.Fatalf("unhealthy after oversized bodies: %d", st)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// TestHugeHeadersRefused: a header block over http.max_header_bytes is
// answered 431 before any handler runs.
func TestHugeHeadersRefused(t *testing.T) {
	s := boot(t, "sqlite", hostileConfig)
	hdr := map[string]string{}
	for i := range 200 {
		hdr[fmt.Sprintf("X-Junk-%d", i)] = strings.Repeat("x", 500)
	}
	st, _, err := s.raw("GET", "/healthz", nil, hdr)
	if err != nil {
		t.Fatal(err)
	}
	if st != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KB of headers: status %d, want 431", st)
	}
}

// TestSlowlorisClosed: a client trickling its headers is cut off after
// http.read_header_timeout, and many of them at once do not stop others
// from being served.
func TestSlowlorisClosed(t *testing.T) {
	s := boot(t, "sqlite", hostileConfig)
	addr := strings.TrimPrefix(s.url, "http://")
	var wg sync.WaitGroup
	closed := make(chan time.Duration, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			start := time.Now()
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
				t.Error(err)
				return
			}
			// One header byte every 50 ms: never a complete request.
			go func() {
				for i := 0; ; i++ {
					if _, err := fmt.Fprintf(c, "X-%d: y\r\n", i); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			rd := bufio.NewReader(c)
			line, err := rd.ReadString('\n')
			for err == nil { // a 408 answer is fine too: read to the close
				line, err = rd.ReadString('\n')
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("connection still open after 5 s (last line %q)", line)
				return
			}
			closed <- time.Since(start)
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if st := s.do("GET", "/healthz", "", nil, nil); st != 200 {
		t.Errorf("healthz during slowloris: %d", st)
	}
	wg.Wait()
	close(closed)
	for d := range closed {
		if d > 2*time.Second {
			t.Errorf("slow client held its connection %v (read_header_timeout 300ms)", d)
		}
	}
}
