package apiclient

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < MaxBody>>20+1; i++ {
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
	if _, err := ReadBody(resp, 1<<30); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadBody of a %d MiB answer: %v, want ErrTooLarge", MaxBody>>20+1, err)
	}
	resp, err = c.HTTPClient().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if !errors.Is(err, ErrTooLarge) || n != MaxBody {
		t.Errorf("read %d bytes, %v; want %d bytes then ErrTooLarge", n, err, MaxBody)
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
