// Package apiclient is the outbound HTTP client every connector's API
// calls go through: go-retryablehttp for retries (connection errors, 5xx
// and 429, honouring Retry-After; never other 4xx) with jittered
// exponential backoff, a per-attempt timeout, and a circuit breaker per
// instance (sony/gobreaker) that stops calling a dead instance for a
// while. It knows nothing about any vendor: connectors build their
// requests and read their answers; Client.HTTPClient is a plain
// *http.Client (go-jira takes it as is).
package apiclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/sony/gobreaker/v2"
)

// Outcomes of one logical call, for tollgate_api_requests_total.
const (
	OutcomeOK          = "ok"           // 2xx or 3xx
	OutcomeClientError = "client_error" // 4xx other than 429 (not retried)
	OutcomeServerError = "server_error" // 5xx or 429 after the retries
	OutcomeError       = "error"        // no answer: connection error, timeout
	OutcomeCircuitOpen = "circuit_open" // not attempted: the circuit is open
)

// Circuit states, as State reports them.
const (
	CircuitClosed   = "closed"
	CircuitHalfOpen = "half-open"
	CircuitOpen     = "open"
)

// Options configure a Client. Zero values take the defaults.
type Options struct {
	// Instance names the connector in errors, logs and metrics.
	Instance string
	// Timeout bounds one attempt (connect, headers and body; default 10s).
	Timeout time.Duration
	// RetryMax is how many times a failed attempt is retried (default 3;
	// negative: none).
	RetryMax int
	// RetryWaitMin and RetryWaitMax bound the jittered backoff (defaults
	// 250ms and 5s).
	RetryWaitMin, RetryWaitMax time.Duration
	// MaxRetryAfter caps a Retry-After the server asks for (default 60s).
	MaxRetryAfter time.Duration
	// FailuresToOpen consecutive failed calls open the circuit (default 5).
	FailuresToOpen uint32
	// OpenFor is how long an open circuit refuses calls before one trial
	// call (default 30s).
	OpenFor time.Duration
	// Observe, when set, is told each call's outcome (Outcome*).
	Observe func(outcome string)
	// OnState, when set, is told each circuit state change.
	OnState func(state string)
	// Logger gets circuit state changes and retries (at debug).
	Logger *slog.Logger
	// Transport is the underlying transport (tests); nil: a pooled one.
	Transport http.RoundTripper
}

// Client is one instance's outbound client. It is safe for concurrent use.
type Client struct {
	opts Options
	rc   *retryablehttp.Client
	cb   *gobreaker.CircuitBreaker[*http.Response]
	hc   *http.Client
}

// New builds a client.
func New(o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	switch {
	case o.RetryMax == 0:
		o.RetryMax = 3
	case o.RetryMax < 0:
		o.RetryMax = 0
	}
	if o.RetryWaitMin <= 0 {
		o.RetryWaitMin = 250 * time.Millisecond
	}
	if o.RetryWaitMax <= 0 {
		o.RetryWaitMax = 5 * time.Second
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = time.Minute
	}
	if o.FailuresToOpen == 0 {
		o.FailuresToOpen = 5
	}
	if o.OpenFor <= 0 {
		o.OpenFor = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{opts: o}
	rc := retryablehttp.NewClient()
	rc.Logger = nil // retryablehttp's own log lines are replaced by RequestLogHook
	rc.HTTPClient.Timeout = o.Timeout
	if o.Transport != nil {
		rc.HTTPClient.Transport = o.Transport
	}
	rc.RetryMax = o.RetryMax
	rc.RetryWaitMin, rc.RetryWaitMax = o.RetryWaitMin, o.RetryWaitMax
	rc.CheckRetry = retryablehttp.DefaultRetryPolicy
	rc.Backoff = c.backoff
	// Hand back the last answer (a 503, a 429) rather than a generic
	// "giving up" error, so the caller can name the status.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.RequestLogHook = func(_ retryablehttp.Logger, r *http.Request, attempt int) {
		if attempt > 0 {
			o.Logger.Debug("api call retried", "connector", o.Instance, "method", r.Method, "path", r.URL.Path, "attempt", attempt)
		}
	}
	c.rc = rc
	c.cb = gobreaker.NewCircuitBreaker[*http.Response](gobreaker.Settings{
		Name:        o.Instance,
		MaxRequests: 1,
		Timeout:     o.OpenFor,
		ReadyToTrip: func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= o.FailuresToOpen },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			o.Logger.Warn("api circuit "+stateName(to), "connector", o.Instance, "from", stateName(from))
			if o.OnState != nil {
				o.OnState(stateName(to))
			}
		},
		// A caller that gave up (its own context canceled) says nothing
		// about the instance.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
	})
	c.hc = &http.Client{Transport: (*transport)(c)}
	return c
}

// HTTPClient is the client to send requests with: every request goes
// through the circuit and the retries.
func (c *Client) HTTPClient() *http.Client { return c.hc }

// Instance is the instance name the client was built for.
func (c *Client) Instance() string { return c.opts.Instance }

// State is the circuit's state: closed, half-open or open.
func (c *Client) State() string { return stateName(c.cb.State()) }

// ErrCircuitOpen is returned (wrapped) for calls refused by an open circuit.
var ErrCircuitOpen = errors.New("circuit open: the instance failed repeatedly; calls resume after a pause")

func stateName(s gobreaker.State) string {
	switch s {
	case gobreaker.StateOpen:
		return CircuitOpen
	case gobreaker.StateHalfOpen:
		return CircuitHalfOpen
	}
	return CircuitClosed
}

// transport is the RoundTripper of HTTPClient: circuit around retries.
type transport Client

// failedStatus marks an answer the circuit counts as a failure (5xx, 429
// after the retries) while the answer itself goes back to the caller.
type failedStatus struct{ status int }

func (f failedStatus) Error() string { return "HTTP " + strconv.Itoa(f.status) }

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := (*Client)(t)
	resp, err := c.cb.Execute(func() (*http.Response, error) {
		resp, err := (&retryablehttp.RoundTripper{Client: c.rc}).RoundTrip(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return resp, failedStatus{resp.StatusCode}
		}
		return resp, nil
	})
	var fs failedStatus
	switch {
	case errors.As(err, &fs):
		c.observe(OutcomeServerError)
		return resp, nil
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		c.observe(OutcomeCircuitOpen)
		return nil, ErrCircuitOpen
	case err != nil:
		c.observe(OutcomeError)
		return nil, cleanError(err)
	case resp.StatusCode >= 400:
		c.observe(OutcomeClientError)
	default:
		c.observe(OutcomeOK)
	}
	return resp, nil
}

func (c *Client) observe(outcome string) {
	if c.opts.Observe != nil {
		c.opts.Observe(outcome)
	}
}

// cleanError drops retryablehttp's "METHOD URL " prefix (the caller's
// error names what was asked, once), keeping "giving up after N
// attempt(s): cause".
func cleanError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "giving up after "); i > 0 {
		return &attemptsError{msg: msg[i:], err: errors.Unwrap(err)}
	}
	return err
}

type attemptsError struct {
	msg string
	err error
}

func (e *attemptsError) Error() string { return e.msg }
func (e *attemptsError) Unwrap() error { return e.err }

// backoff is the wait before retry attempt+1: the server's Retry-After on
// 429 and 503 (capped), else a full-jitter exponential backoff between
// min and max, so many replicas do not retry in step.
func (c *Client) backoff(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := RetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			if d > c.opts.MaxRetryAfter {
				d = c.opts.MaxRetryAfter
			}
			return d
		}
	}
	d := min << attempt
	if d <= 0 || d > max {
		d = max
	}
	// Full jitter over [min, d].
	if d <= min {
		return min
	}
	return min + rand.N(d-min+1)
}

// RetryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// StatusError is a call answered with a status the caller did not want.
// Its message names the instance, what was asked and the status, with
// the instance's own error text when it sent one; never a credential.
type StatusError struct {
	Instance string // the connector name
	What     string // the table or resource asked for ("change_request", "issue OPS-1")
	Status   int
	Message  string // the instance's error text, trimmed
}

// Permanent reports whether asking again cannot help: a 4xx other than
// 408 and 429.
func (e *StatusError) Permanent() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != 408 && e.Status != 429
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s: %s: HTTP %d", e.Instance, e.What, e.Status)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// ReadBody reads at most limit bytes of an answer and closes it.
func ReadBody(resp *http.Response, limit int64) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("answer larger than %d bytes", limit)
	}
	return b, nil
}

// Trim shortens an instance's error text for messages.
func Trim(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
