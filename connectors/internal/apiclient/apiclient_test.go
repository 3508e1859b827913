package apiclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tollgate-dev/tollgate/internal/faultfake"
)

type outcomes struct {
	mu  sync.Mutex
	got []string
}

func (o *outcomes) add(s string) { o.mu.Lock(); o.got = append(o.got, s); o.mu.Unlock() }
func (o *outcomes) last() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.got) == 0 {
		return ""
	}
	return o.got[len(o.got)-1]
}

func fastOpts(o *outcomes) Options {
	return Options{Instance: "acme", Timeout: 300 * time.Millisecond, RetryMax: 2,
		RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond, Observe: o.add}
}

// TestRetries: which answers are retried and which are not.
func TestRetries(t *testing.T) {
	tests := []struct {
		name         string
		answers      []int // status per attempt; 0 = hang past the timeout
		wantStatus   int   // 0: an error
		wantAttempts int32
		wantOutcome  string
	}{
		{"ok", []int{200}, 200, 1, OutcomeOK},
		{"500 then ok", []int{500, 502, 200}, 200, 3, OutcomeOK},
		{"500 always", []int{500, 500, 500}, 500, 3, OutcomeServerError},
		{"404 not retried", []int{404}, 404, 1, OutcomeClientError},
		{"401 not retried", []int{401}, 401, 1, OutcomeClientError},
		{"400 not retried", []int{400}, 400, 1, OutcomeClientError},
		{"slow then ok", []int{0, 200}, 200, 2, OutcomeOK},
		{"slow always", []int{0, 0, 0}, 0, 3, OutcomeError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				st := tc.answers[min(i, len(tc.answers)-1)]
				if st == 0 {
					select {
					case <-time.After(2 * time.Second):
					case <-r.Context().Done():
					}
					return
				}
				w.WriteHeader(st)
			}))
			defer srv.Close()
			var o outcomes
			c := New(fastOpts(&o))
			resp, err := c.HTTPClient().Get(srv.URL + "/x")
			if tc.wantStatus == 0 {
				if err == nil {
					t.Fatalf("want an error, got %d", resp.StatusCode)
				}
			} else {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus {
					t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
				}
			}
			if got := n.Load(); got != tc.wantAttempts {
				t.Errorf("attempts %d, want %d", got, tc.wantAttempts)
			}
			if o.last() != tc.wantOutcome {
				t.Errorf("outcome %q, want %q", o.last(), tc.wantOutcome)
			}
		})
	}
}

// TestRetryAfterHonoured: a 429 with Retry-After: 1 is retried no sooner
// than a second later.
func TestRetryAfterHonoured(t *testing.T) {
	var (
		mu    sync.Mutex
		times []time.Time
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		first := len(times) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(200)
	}))
	defer srv.Close()
	var o outcomes
	c := New(fastOpts(&o))
	resp, err := c.HTTPClient().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(times) != 2 {
		t.Fatalf("status %d after %d attempts", resp.StatusCode, len(times))
	}
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Errorf("retried after %v, before the server's Retry-After of 1s", gap)
	}
}

func TestRetryAfterParse(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1", time.Second, true},
		{" 30 ", 30 * time.Second, true},
		{"", 0, false},
		{"-1", 0, false},
		{"soon", 0, false},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second, true},
		{now.Add(-5 * time.Second).Format(http.TimeFormat), 0, true},
	}
	for _, tc := range tests {
		got, ok := RetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("RetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestBackoffJitter: waits stay within [min, max] and vary.
func TestBackoffJitter(t *testing.T) {
	c := New(Options{Instance: "x"})
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		d := c.backoff(10*time.Millisecond, 80*time.Millisecond, 3, nil)
		if d < 10*time.Millisecond || d > 80*time.Millisecond {
			t.Fatalf("backoff %v outside [10ms, 80ms]", d)
		}
		seen[d] = true
	}
	if len(seen) < 5 {
		t.Errorf("backoff barely varies: %v", seen)
	}
}

// TestCircuit: consecutive failures open the circuit (calls then fail at
// once without reaching the server, and State says so); after OpenFor a
// trial call that succeeds closes it.
func TestCircuit(t *testing.T) {
	var (
		hits    atomic.Int32
		healthy atomic.Bool
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if healthy.Load() {
			w.WriteHeader(200)
			return
		}
		w.WriteHeader(503)
	}))
	defer srv.Close()
	var (
		o      outcomes
		states []string
		smu    sync.Mutex
	)
	opts := fastOpts(&o)
	opts.RetryMax = -1
	opts.FailuresToOpen = 2
	opts.OpenFor = 200 * time.Millisecond
	opts.OnState = func(s string) { smu.Lock(); states = append(states, s); smu.Unlock() }
	c := New(opts)
	get := func() (*http.Response, error) {
		resp, err := c.HTTPClient().Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	for i := 0; i < 2; i++ {
		if resp, err := get(); err != nil || resp.StatusCode != 503 {
			t.Fatalf("call %d: %v %v", i, resp, err)
		}
	}
	if c.State() != CircuitOpen {
		t.Fatalf("state %s after 2 failures, want open", c.State())
	}
	before := hits.Load()
	_, err := get()
	if !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("want ErrCircuitOpen, got %v", err)
	}
	if hits.Load() != before || o.last() != OutcomeCircuitOpen {
		t.Errorf("an open circuit still called the server (outcome %s)", o.last())
	}
	healthy.Store(true)
	time.Sleep(250 * time.Millisecond)
	if resp, err := get(); err != nil || resp.StatusCode != 200 {
		t.Fatalf("trial call: %v %v", resp, err)
	}
	if c.State() != CircuitClosed {
		t.Errorf("state %s after a good trial, want closed", c.State())
	}
	smu.Lock()
	defer smu.Unlock()
	if len(states) != 3 || states[0] != CircuitOpen || states[1] != CircuitHalfOpen || states[2] != CircuitClosed {
		t.Errorf("state changes %v", states)
	}
}

// TestClientErrorsKeepCircuitClosed: 404s are answers, not failures.
func TestClientErrorsKeepCircuitClosed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) }))
	defer srv.Close()
	var o outcomes
	opts := fastOpts(&o)
	opts.FailuresToOpen = 2
	c := New(opts)
	for i := 0; i < 5; i++ {
		resp, err := c.HTTPClient().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if c.State() != CircuitClosed {
		t.Errorf("404s opened the circuit")
	}
}

// TestRedirectsStayOnTheInstance: a redirect within the instance is
// followed; one to another host is not, so the credentials (a custom
// header such as GitLab's PRIVATE-TOKEN survives Go's own redirect rules)
// never reach it, and the caller gets the 3xx answer.
func TestRedirectsStayOnTheInstance(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.WriteHeader(200)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/here", http.StatusFound)
		case "/here":
			if r.Header.Get("PRIVATE-TOKEN") != "secret" {
				w.WriteHeader(401)
				return
			}
			w.WriteHeader(200)
		default:
			http.Redirect(w, r, other.URL+"/login", http.StatusFound)
		}
	}))
	defer srv.Close()
	var o outcomes
	c := New(fastOpts(&o))
	get := func(path string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("PRIVATE-TOKEN", "secret")
		resp, err := c.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get("/moved"); st != 200 {
		t.Errorf("a redirect within the instance: %d, want followed to 200", st)
	}
	if st := get("/away"); st != http.StatusFound || elsewhere.Load() != 0 {
		t.Errorf("a redirect to another host: %d, %d requests there; want the 302 and none", st, elsewhere.Load())
	}
}

// TestRetryAfterFloorAndCap: Retry-After waits at least RetryWaitMin and
// at most MaxRetryAfter.
func TestRetryAfterFloorAndCap(t *testing.T) {
	c := New(Options{Instance: "x", RetryWaitMin: 20 * time.Millisecond, MaxRetryAfter: 2 * time.Second})
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{{"0", 20 * time.Millisecond}, {"1", time.Second}, {"3600", 2 * time.Second}} {
		resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {tc.header}}}
		if got := c.backoff(20*time.Millisecond, time.Second, 0, resp); got != tc.want {
			t.Errorf("Retry-After %s: wait %v, want %v", tc.header, got, tc.want)
		}
	}
}

// TestAnswerSizeCapped: an answer over MaxBody fails its read, through
// ReadBody and through the body a vendor library reads itself.
func TestAnswerSizeCapped(t *testing.T) {
	chunk := make([]byte, 1<<20)
	for _, tc := range []struct {
		name     string
		size     int // MiB
		tooLarge bool
	}{
		{"exactly the limit", MaxBody >> 20, false},
		{"over the limit", MaxBody>>20 + 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for range tc.size {
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			}))
			defer srv.Close()
			c := New(Options{Instance: "x", Timeout: 10 * time.Second})
			resp, err := c.HTTPClient().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ReadBody(resp, 1<<30); errors.Is(err, ErrTooLarge) != tc.tooLarge {
				t.Errorf("ReadBody of a %d MiB answer: %v, want ErrTooLarge %v", tc.size, err, tc.tooLarge)
			}
			resp, err = c.HTTPClient().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			if errors.Is(err, ErrTooLarge) != tc.tooLarge || n != int64(min(tc.size<<20, MaxBody)) || !tc.tooLarge && err != nil {
				t.Errorf("read %d bytes, %v; want %d bytes, ErrTooLarge %v", n, err, min(tc.size<<20, MaxBody), tc.tooLarge)
			}
		})
	}
}

// TestNoAnswerSaysWhy: a call that got no answer names the host, the
// attempts and the cause in plain words, and still unwraps to it.
func TestNoAnswerSaysWhy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	host := srv.Listener.Addr().String()
	srv.Close() // nothing listens there any more
	var o outcomes
	c := New(fastOpts(&o))
	_, err := c.HTTPClient().Get("http://" + host + "/x?token=secret")
	var na *NoAnswerError
	if !errors.As(err, &na) || na.Attempts != 3 {
		t.Fatalf("want a NoAnswerError after 3 attempts, got %v", err)
	}
	want := "no answer from " + host + " after 3 attempt(s): connection refused"
	if na.Error() != want {
		t.Errorf("error %q, want %q", na.Error(), want)
	}
	if o.last() != OutcomeError {
		t.Errorf("outcome %s", o.last())
	}
}

// TestRetriesByMethod: a request safe to repeat (GET, PUT, DELETE, or a
// POST marked Idempotent or carrying an Idempotency-Key) is retried on
// any transient failure; a POST or PATCH only when the instance
// certainly did not act on it (429, 503 with Retry-After), never after a
// reset once the body was read or a 500, and then its error says the
// outcome is unknown.
func TestRetriesByMethod(t *testing.T) {
	reset := faultfake.Mode{Fault: faultfake.Reset}
	status := func(code int, retryAfter string) faultfake.Mode {
		return faultfake.Mode{Fault: faultfake.Status, Status: code, RetryAfter: retryAfter}
	}
	tests := []struct {
		name         string
		method       string
		idempotent   bool   // apiclient.Idempotent(ctx)
		header       string // an idempotency header set on the request
		mode         faultfake.Mode
		wantAttempts int
		wantUnknown  bool // the error matches ErrOutcomeUnknown
	}{
		{"GET reset", http.MethodGet, false, "", reset, 3, false},
		{"GET 500", http.MethodGet, false, "", status(500, ""), 3, false},
		{"PUT reset", http.MethodPut, false, "", reset, 3, false},
		{"DELETE 502", http.MethodDelete, false, "", status(502, ""), 3, false},
		{"POST reset after the body was read", http.MethodPost, false, "", reset, 1, true},
		{"PATCH reset after the body was read", http.MethodPatch, false, "", reset, 1, true},
		{"POST 500", http.MethodPost, false, "", status(500, ""), 1, false},
		{"POST 502", http.MethodPost, false, "", status(502, ""), 1, false},
		{"POST bare 503", http.MethodPost, false, "", status(503, ""), 1, false},
		{"POST 503 Retry-After", http.MethodPost, false, "", status(503, "0"), 3, false},
		{"POST 429", http.MethodPost, false, "", status(429, ""), 3, false},
		{"POST 400", http.MethodPost, false, "", status(400, ""), 1, false},
		{"POST idempotent reset", http.MethodPost, true, "", reset, 3, false},
		{"POST idempotent 500", http.MethodPost, true, "", status(500, ""), 3, false},
		{"PATCH idempotent 500", http.MethodPatch, true, "", status(500, ""), 3, false},
		{"POST Idempotency-Key 500", http.MethodPost, false, "Idempotency-Key", status(500, ""), 3, false},
		{"POST X-Idempotency-Key reset", http.MethodPost, false, "X-Idempotency-Key", reset, 3, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := faultfake.New(nil)
			defer srv.Close()
			srv.Set(tc.mode)
			var o outcomes
			c := New(fastOpts(&o))
			ctx := context.Background()
			if tc.idempotent {
				ctx = Idempotent(ctx)
			}
			req, err := http.NewRequestWithContext(ctx, tc.method, srv.URL+"/x", strings.NewReader(`{"work_notes":"deployed"}`))
			if err != nil {
				t.Fatal(err)
			}
			if tc.header != "" {
				req.Header.Set(tc.header, "release-1")
			}
			resp, err := c.HTTPClient().Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			if got := srv.Requests(); got != tc.wantAttempts {
				t.Errorf("%d request(s), want %d", got, tc.wantAttempts)
			}
			if errors.Is(err, ErrOutcomeUnknown) != tc.wantUnknown {
				t.Errorf("error %v: outcome unknown %v, want %v", err, !tc.wantUnknown, tc.wantUnknown)
			}
			if tc.wantUnknown && !strings.Contains(fmt.Sprint(err), "outcome unknown") {
				t.Errorf("error %q does not say the outcome is unknown", err)
			}
			if tc.mode.Fault == faultfake.Reset && err == nil {
				t.Errorf("want an error after a reset")
			}
		})
	}
}

// TestPostRetriedWhenNeverSent: a POST whose connection is refused never
// reached the instance, so it is retried like a GET, and its error does
// not claim an unknown outcome.
func TestPostRetriedWhenNeverSent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	host := srv.Listener.Addr().String()
	srv.Close()
	var o outcomes
	c := New(fastOpts(&o))
	resp, err := c.HTTPClient().Post("http://"+host+"/x", "application/json", strings.NewReader(`{}`))
	if resp != nil {
		resp.Body.Close()
	}
	var na *NoAnswerError
	if !errors.As(err, &na) || na.Attempts != 3 {
		t.Fatalf("want a NoAnswerError after 3 attempts, got %v", err)
	}
	if errors.Is(err, ErrOutcomeUnknown) || strings.Contains(err.Error(), "unknown") {
		t.Errorf("a refused connection is not an unknown outcome: %v", err)
	}
}

// TestNotSent: the failures that prove a request was never written.
func TestNotSent(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{&url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "x"}}}, true},
		{&url.Error{Op: "Post", URL: "https://x", Err: &tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}}, true},
		{errors.New("net/http: TLS handshake timeout"), true},
		{&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, false},
		{io.EOF, false},
		{context.DeadlineExceeded, false},
	} {
		if got := notSent(tc.err); got != tc.want {
			t.Errorf("notSent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestClip: a cut lands on a character boundary, so no stored text ends
// in half a character (then U+FFFD).
func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc…"},
		{"aé", 2, "a…"},  // é is two bytes: not cut in half
		{"日本語", 4, "日…"}, // three bytes a character
		{"line one\nline two", 100, "line one\nline two"},
	} {
		got := Clip(tc.in, tc.n)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
	if got := Trim("a  b\n\tc"); got != "a b c" {
		t.Errorf("Trim = %q", got)
	}
}
