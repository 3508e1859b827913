package faultfake

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// Call is one client call under test; the client is built for one
// server URL.
type Call func(ctx context.Context) error

// Limits are the client's configured timeouts, retries and backoff (its
// apiclient.Options), from which RunTable derives its bounds, and what
// its errors must and must not say.
type Limits struct {
	Timeout       time.Duration // per attempt
	RetryMax      int           // retries after the first attempt
	RetryWaitMin  time.Duration
	RetryWaitMax  time.Duration
	MaxRetryAfter time.Duration // at least 1s, so "Retry-After: 1" is honoured uncapped
	// Names must all appear in every error (the instance, e.g.
	// "ServiceNow acme").
	Names []string
	// Secrets must appear in no error (passwords, tokens, keys).
	Secrets []string
	// Match limits the faults to the requests whose path contains it
	// (one call of several a client call makes).
	Match string
	// BodyIgnored: the faulted request is a write whose 2xx status is the
	// whole answer (a review, an approval): garbage, truncated and
	// trickled bodies of a 2xx are a success, not a reason to write again.
	BodyIgnored bool
	// Unsafe: the faulted request is a write not safe to repeat (a POST or
	// PATCH the client does not mark apiclient.Idempotent). It is repeated
	// only when the server certainly did not act on it (429, 503 with
	// Retry-After); after a hang, a reset or another 5xx it is sent once,
	// and no answer must say the outcome is unknown.
	Unsafe bool
}

// Slack is what a bound allows beyond the configured waits, for a
// machine shared with other tests.
const Slack = 750 * time.Millisecond

// Case is one row of the table: a mode and what the caller must see.
type Case struct {
	Name string
	Mode Mode
	// OK: the call succeeds (a fault that heals within the retries).
	OK bool
	// Want matches the error text (case-insensitive) when !OK.
	Want string
	// Attempts is how many requests the call makes (0: not checked; -1:
	// at least Mode.Failures+1).
	Attempts int
	// MinGap and MaxGap bound the wait between consecutive failed
	// attempts (0: not checked).
	MinGap, MaxGap time.Duration
	// Bound is the longest the call may take.
	Bound time.Duration
}

// Table is the standard table of faults for a client with limits l.
func Table(l Limits) []Case {
	tries := l.RetryMax + 1
	waits := time.Duration(l.RetryMax) * l.RetryWaitMax
	status := func(code int) Case {
		return Case{Name: "status " + http.StatusText(code), Mode: Mode{Fault: Status, Status: code},
			Want: `HTTP ` + strconv.Itoa(code), Attempts: tries, MinGap: l.RetryWaitMin, MaxGap: l.RetryWaitMax + Slack, Bound: waits + Slack}
	}
	permanent := func(code int) Case {
		return Case{Name: "permanent " + http.StatusText(code), Mode: Mode{Fault: Status, Status: code},
			Want: `HTTP ` + strconv.Itoa(code), Attempts: 1, Bound: Slack}
	}
	cases := []Case{
		{Name: "hang", Mode: Mode{Fault: Hang}, Want: `timeout`, Attempts: tries,
			Bound: time.Duration(tries)*l.Timeout + waits + Slack},
		{Name: "reset", Mode: Mode{Fault: Reset}, Want: `connection (reset|closed)`, Attempts: tries,
			MinGap: l.RetryWaitMin, MaxGap: l.RetryWaitMax + Slack, Bound: waits + Slack},
		status(http.StatusInternalServerError),
		status(http.StatusBadGateway),
		status(http.StatusServiceUnavailable),
		status(http.StatusTooManyRequests),
		{Name: "429 Retry-After 0 keeps the floor", Mode: Mode{Fault: Status, Status: http.StatusTooManyRequests, RetryAfter: "0"},
			Want: `HTTP 429`, Attempts: tries, MinGap: l.RetryWaitMin, MaxGap: l.RetryWaitMin + Slack, Bound: waits + Slack},
		permanent(http.StatusBadRequest),
		permanent(http.StatusForbidden),
		{Name: "garbage", Mode: Mode{Fault: Garbage}, Want: `JSON`, Attempts: 1, Bound: Slack},
		{Name: "truncated", Mode: Mode{Fault: Truncated}, Want: `JSON`, Attempts: 1, Bound: Slack},
		{Name: "trickle", Mode: Mode{Fault: Trickle}, Want: `timeout`, Attempts: 1, Bound: l.Timeout + Slack},
		{Name: "503 twice then ok", Mode: Mode{Fault: Status, Status: http.StatusServiceUnavailable, Failures: min(2, l.RetryMax)},
			OK: true, Attempts: -1, MinGap: l.RetryWaitMin, MaxGap: l.RetryWaitMax + Slack, Bound: waits + Slack},
		{Name: "hang once then ok", Mode: Mode{Fault: Hang, Failures: 1}, OK: true, Attempts: -1,
			Bound: l.Timeout + l.RetryWaitMax + Slack},
		{Name: "reset once then ok", Mode: Mode{Fault: Reset, Failures: 1}, OK: true, Attempts: -1,
			Bound: l.RetryWaitMax + Slack},
		{Name: "429 Retry-After 1 is honoured", Mode: Mode{Fault: Status, Status: http.StatusTooManyRequests, RetryAfter: "1", Failures: 1},
			OK: true, Attempts: -1, MinGap: time.Second, MaxGap: time.Second + Slack, Bound: time.Second + Slack},
		{Name: "503 Retry-After 3600 is capped", Mode: Mode{Fault: Status, Status: http.StatusServiceUnavailable, RetryAfter: "3600", Failures: 1},
			OK: true, Attempts: -1, MinGap: l.MaxRetryAfter, MaxGap: l.MaxRetryAfter + Slack, Bound: l.MaxRetryAfter + Slack},
	}
	for i := range cases {
		c := &cases[i]
		c.Mode.Match = l.Match
		if l.Unsafe {
			c.unsafe(l)
		}
		if l.BodyIgnored && (c.Mode.Fault == Garbage || c.Mode.Fault == Truncated || c.Mode.Fault == Trickle) {
			c.OK, c.Name = true, c.Name+" (body ignored)"
		}
	}
	return cases
}

// unsafe turns a case into what a write not safe to repeat must see: sent
// once after a hang, a reset or a 5xx other than a 503 with Retry-After
// (which the server sends before any work, as a 429).
func (c *Case) unsafe(l Limits) {
	m := c.Mode
	switch {
	case m.Fault == Hang || m.Fault == Reset:
		c.Name += " (not repeated)"
		c.OK, c.Attempts, c.MinGap, c.MaxGap = false, 1, 0, 0
		c.Want = map[Fault]string{Hang: `timeout`, Reset: `connection (reset|closed)`}[m.Fault] + `.*outcome unknown`
		c.Bound = m.timeout(l) + Slack
	case m.Fault == Status && m.Status >= 500 && m.RetryAfter == "":
		if c.OK { // a 503 that heals: the server says when to come back
			c.Name += " (with Retry-After)"
			c.Mode.RetryAfter = "0"
			return
		}
		c.Name += " (not repeated)"
		c.Attempts, c.MinGap, c.MaxGap, c.Bound = 1, 0, 0, Slack
	}
}

// RunTable runs every case of Table(l) against newCall (a new client on
// a new server per case, in parallel) and checks the caller's view: the
// time taken, success or an error that says what happened, names
// l.Names and holds none of l.Secrets, and the number and spacing of
// attempts. healthy answers the call when the server is healthy.
func RunTable(t *testing.T, healthy http.Handler, l Limits, newCall func(t *testing.T, url string) Call) {
	t.Helper()
	for _, tc := range Table(l) {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			srv := New(healthy)
			defer srv.Close()
			srv.Set(tc.Mode)
			call := newCall(t, srv.URL)
			start := time.Now()
			err := call(context.Background())
			took := time.Since(start)
			t.Logf("%s: %v, %d request(s), %v", tc.Name, took.Round(time.Millisecond), srv.Requests(), err)
			if took > tc.Bound {
				t.Errorf("took %v, bound %v", took, tc.Bound)
			}
			if tc.OK {
				if err != nil {
					t.Fatalf("want success after the fault healed, got %v", err)
				}
			} else {
				CheckError(t, err, tc.Want, l)
			}
			times := srv.Times()
			switch {
			case tc.Attempts > 0 && len(times) != tc.Attempts:
				t.Errorf("%d request(s), want %d", len(times), tc.Attempts)
			case tc.Attempts < 0 && len(times) < tc.Mode.Failures+1:
				t.Errorf("%d request(s), want at least %d", len(times), tc.Mode.Failures+1)
			}
			failed := len(times)
			if tc.Mode.Failures > 0 {
				failed = min(failed, tc.Mode.Failures+1) // the gap before the first healthy request counts too
			}
			if tc.MinGap > 0 {
				for i := 1; i < failed; i++ {
					gap := times[i].Sub(times[i-1])
					if gap < tc.MinGap*9/10 || gap > tc.MaxGap+tc.Mode.timeout(l) {
						t.Errorf("attempt %d came %v after the previous, want within [%v, %v]", i+1, gap.Round(time.Millisecond), tc.MinGap, tc.MaxGap)
					}
				}
			}
		})
	}
}

// timeout is how long an attempt in this mode takes before it fails.
func (m Mode) timeout(l Limits) time.Duration {
	if m.Fault == Hang {
		return l.Timeout
	}
	return 0
}

// CheckError checks that err is an error whose text matches want
// (case-insensitive regexp), names l.Names and holds no l.Secrets.
func CheckError(t *testing.T, err error, want string, l Limits) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error matching %q, got success", want)
	}
	msg := err.Error()
	if !regexp.MustCompile(`(?i)` + want).MatchString(msg) {
		t.Errorf("error %q does not say %q", msg, want)
	}
	for _, n := range l.Names {
		if !strings.Contains(msg, n) {
			t.Errorf("error %q does not name %q", msg, n)
		}
	}
	for _, s := range l.Secrets {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("error %q holds a credential", msg)
		}
	}
}

// Circuit is what RunCircuit needs to know of the client's breaker.
type Circuit struct {
	FailuresToOpen int
	OpenFor        time.Duration
	// ErrOpen is the error (apiclient.ErrCircuitOpen) a refused call wraps.
	ErrOpen error
}

// RunCircuit checks the client's circuit: FailuresToOpen failing calls
// (503) open it; then calls fail at once with c.ErrOpen without reaching
// the server; after OpenFor a trial call reaches a healthy server and
// closes the circuit, and the next calls go through.
func RunCircuit(t *testing.T, healthy http.Handler, c Circuit, l Limits, newCall func(t *testing.T, url string) Call) {
	t.Helper()
	srv := New(healthy)
	defer srv.Close()
	call := newCall(t, srv.URL)
	ctx := context.Background()
	srv.Set(Mode{Fault: Status, Status: http.StatusServiceUnavailable, Match: l.Match})
	for i := 0; i < c.FailuresToOpen; i++ {
		if err := call(ctx); err == nil {
			t.Fatalf("call %d succeeded against a 503", i+1)
		}
	}
	reached := srv.Requests()
	start := time.Now()
	err := call(ctx)
	took := time.Since(start)
	if !errors.Is(err, c.ErrOpen) {
		t.Fatalf("after %d failures: want the circuit open, got %v", c.FailuresToOpen, err)
	}
	CheckError(t, err, `circuit open`, l)
	if srv.Requests() != reached {
		t.Errorf("an open circuit still reached the server")
	}
	if took > 50*time.Millisecond {
		t.Errorf("an open circuit took %v to refuse a call", took)
	}
	srv.Set(Mode{Fault: Healthy})
	time.Sleep(c.OpenFor + c.OpenFor/4)
	for i := 0; i < 3; i++ {
		if err := call(ctx); err != nil {
			t.Fatalf("call %d after OpenFor against a healthy server: %v", i+1, err)
		}
	}
	if srv.Requests() == 0 {
		t.Errorf("the trial call did not reach the server")
	}
}

// NamedCall is one call of a client C that RunCalls puts through the fault
// table, with the limits its client was built with.
type NamedCall[C any] struct {
	Name   string
	Limits Limits
	Call   func(C) Call
}

// RunCalls runs each call through RunTable in a parallel subtest of its
// own, on a client newClient builds for each fault server.
func RunCalls[C any](t *testing.T, healthy http.Handler, newClient func(t *testing.T, url string) C, calls []NamedCall[C]) {
	t.Helper()
	for _, tc := range calls {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			RunTable(t, healthy, tc.Limits, func(t *testing.T, url string) Call { return tc.Call(newClient(t, url)) })
		})
	}
}

// KindCase is a fault and the kind of error its caller must get for it
// (what a retrying caller decides on: transient or final).
type KindCase struct {
	Mode Mode
	Kind core.ErrorKind
}

// RunKinds makes the call once against each fault and checks the error's
// kind.
func RunKinds(t *testing.T, healthy http.Handler, cases []KindCase, newCall func(t *testing.T, url string) Call) {
	t.Helper()
	for _, tc := range cases {
		srv := New(healthy)
		srv.Set(tc.Mode)
		err := newCall(t, srv.URL)(context.Background())
		srv.Close()
		if !core.IsKind(err, tc.Kind) {
			t.Errorf("%v %d: %v, want %s", tc.Mode.Fault, tc.Mode.Status, err, tc.Kind)
		}
	}
}

// FastLimits are small timeouts and waits (200 ms an attempt, two retries
// 20–60 ms apart, Retry-After honoured up to 1.5 s), so a client's whole
// fault table runs in a couple of seconds. name is what every error must
// say (e.g. "ServiceNow acme"); no error may say any of secrets.
func FastLimits(name string, secrets ...string) Limits {
	return Limits{
		Timeout: 200 * time.Millisecond, RetryMax: 2, RetryWaitMin: 20 * time.Millisecond, RetryWaitMax: 60 * time.Millisecond,
		MaxRetryAfter: 1500 * time.Millisecond, Names: []string{name}, Secrets: secrets,
	}
}
