// Package apiclient is the outbound HTTP client every connector's API
// calls go through: go-retryablehttp for retries (connection errors, 5xx
// and 429, honouring Retry-After; never other 4xx) with jittered
// exponential backoff, a per-attempt timeout, and a circuit breaker per
// instance (sony/gobreaker) that stops calling a dead instance for a
// while. Retries are method-aware (see Idempotent): a POST or PATCH is
// repeated only when the instance certainly did not act on it. It knows
// nothing about any vendor: connectors build their requests and read
// their answers; Client.HTTPClient is a plain *http.Client (go-jira takes
// it as is).
package apiclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/sony/gobreaker/v2"

	"github.com/tollgate-dev/tollgate/connectors"
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
	rc.HTTPClient.CheckRedirect = sameOrigin
	if o.Transport != nil {
		rc.HTTPClient.Transport = o.Transport
	}
	rc.RetryMax = o.RetryMax
	rc.RetryWaitMin, rc.RetryWaitMax = o.RetryWaitMin, o.RetryWaitMax
	rc.CheckRetry = checkRetry
	rc.Backoff = c.backoff
	// Hand back the last answer (a 503, a 429) rather than a generic
	// "giving up" error, so the caller can name the status; no answer at
	// all becomes a *NoAnswerError that says why and after how many
	// attempts.
	rc.ErrorHandler = func(resp *http.Response, err error, attempts int) (*http.Response, error) {
		if err == nil || resp != nil {
			return resp, err
		}
		na := &NoAnswerError{Attempts: attempts, Timeout: o.Timeout, Err: err}
		var nr *notRepeated
		if errors.As(err, &nr) {
			na.Err, na.Unknown = nr.err, true
		}
		return nil, na
	}
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
	c.hc = &http.Client{Transport: (*transport)(c), CheckRedirect: sameOrigin}
	return c
}

// sameOrigin follows a redirect only within the origin of the first
// request (scheme and host): the credentials a request carries — GitLab's
// PRIVATE-TOKEN, a custom header Go keeps across hosts, or any of them on
// a downgrade to http — must reach the configured instance only. Another
// redirect is not followed: the caller gets the 3xx answer and names it.
func sameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if first := via[0].URL; req.URL.Scheme != first.Scheme || !strings.EqualFold(req.URL.Host, first.Host) {
		return http.ErrUseLastResponse
	}
	return nil
}

// HTTPClient is the client to send requests with: every request goes
// through the circuit and the retries.
func (c *Client) HTTPClient() *http.Client { return c.hc }

// CloseIdleConnections closes the connections kept for the next call
// (their goroutines end with them): for a server that stops.
func (c *Client) CloseIdleConnections() { c.rc.HTTPClient.CloseIdleConnections() }

// CloseIdleConnections lets HTTPClient().CloseIdleConnections reach the
// pooled transport under the retries.
func (t *transport) CloseIdleConnections() { (*Client)(t).CloseIdleConnections() }

// Instance is the instance name the client was built for.
func (c *Client) Instance() string { return c.opts.Instance }

// State is the circuit's state: closed, half-open or open.
func (c *Client) State() string { return stateName(c.cb.State()) }

// ErrCircuitOpen is returned (wrapped) for calls refused by an open circuit.
var ErrCircuitOpen = connectors.ErrCircuitOpen

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
	if !replayable(req) {
		req = req.WithContext(context.WithValue(req.Context(), unsafeKey{}, true))
	}
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
	var (
		fs failedStatus
		na *NoAnswerError
	)
	if errors.As(err, &na) {
		na.Host = req.URL.Host
	}
	if resp != nil {
		resp.Body = &limitedBody{rc: resp.Body, left: MaxBody}
	}
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

type idempotentKey struct{}

// unsafeKey marks, for checkRetry, a request that must not be repeated
// once it may have reached the instance.
type unsafeKey struct{}

// Idempotent marks the requests sent with the returned context as safe to
// repeat whatever their method: the instance acts on them at most once,
// or acting twice does no harm (an approval that is an upsert, a token
// grant). Without it a POST or PATCH is repeated only when the instance
// certainly did not act on it (see checkRetry).
func Idempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

// replayable reports whether req may be sent again after it may have
// reached the instance: its method is idempotent (RFC 9110 9.2.2), or the
// caller says so with Idempotent or an Idempotency-Key header, the rule
// net/http's own transport follows (http.Request.isReplayable) before it
// replays a request on a new connection.
func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	if v, _ := req.Context().Value(idempotentKey{}).(bool); v {
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// checkRetry is go-retryablehttp's DefaultRetryPolicy for requests safe
// to repeat. A request that is not (a POST or PATCH not marked
// Idempotent) is retried only when the instance certainly did not act on
// it: the connection was never made (notSent), or it answered 429, or 503
// with a Retry-After (a deliberate "come back later", as a rate limiter or
// maintenance page answers before any work). A reset, a timeout, a 500 or
// a bare 503 (a proxy whose backend died mid-request answers that too)
// may follow the instance's work, so the request is not repeated: no
// answer becomes a NoAnswerError that says the outcome is unknown
// (ErrOutcomeUnknown); a status goes back to the caller as is.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	retry, cerr := retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	if unsafe, _ := ctx.Value(unsafeKey{}).(bool); !unsafe {
		return retry, cerr
	}
	if err != nil {
		switch {
		case notSent(err):
			return retry, cerr
		case !retry && cerr == nil:
			return false, nil // a bad certificate, scheme or redirect: DefaultRetryPolicy's permanent errors
		}
		// Sent, perhaps acted on: a reset, a timeout, or the caller gave
		// up (its context) while waiting for the answer.
		return false, &notRepeated{err: err}
	}
	if !retry || cerr != nil {
		return retry, cerr
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return true, nil
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		return true, nil
	}
	return false, nil
}

// notSent reports whether a request certainly never reached the instance:
// the connection could not be made (refused, no route, no such host), or
// the TLS handshake before the request failed.
func notSent(err error) bool {
	var (
		oe *net.OpError
		re *tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &oe) && oe.Op == "dial":
		return true
	case errors.As(err, &re):
		return true // the server does not speak TLS: nothing was written
	}
	// net/http's handshake timeout has no exported type.
	return strings.Contains(err.Error(), "TLS handshake timeout")
}

// notRepeated carries, from checkRetry to the ErrorHandler, the failure
// of a request that was not repeated because it may have been acted on.
type notRepeated struct{ err error }

func (e *notRepeated) Error() string { return e.err.Error() }
func (e *notRepeated) Unwrap() error { return e.err }

// ErrOutcomeUnknown is matched (errors.Is) by the error of a request that
// may or may not have been acted on and was not repeated: look before
// sending it again.
var ErrOutcomeUnknown = errors.New("outcome unknown: the instance may have acted on the request")

// Uncertain reports whether a write that failed with err may still have
// been acted on, so that sending it again could do it twice: true for no
// answer after it was sent (ErrOutcomeUnknown), a 5xx, or an answer that
// could not be read; false when the instance refused it (a 4xx), the
// circuit kept it back, or it never reached the instance.
func Uncertain(err error) bool {
	var (
		se *StatusError
		na *NoAnswerError
	)
	switch {
	case err == nil:
		return false
	case errors.As(err, &se):
		return se.Status >= 500
	case errors.Is(err, ErrCircuitOpen):
		return false
	case errors.As(err, &na):
		return na.Unknown
	}
	return true
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
func (c *Client) backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := RetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			// Capped, and never sooner than the backoff's floor: a
			// "Retry-After: 0" must not turn into a tight loop.
			return min(max(d, c.opts.RetryWaitMin), c.opts.MaxRetryAfter)
		}
	}
	d := lo << attempt
	if d <= 0 || d > hi {
		d = hi
	}
	// Full jitter over [lo, d].
	if d <= lo {
		return lo
	}
	return lo + rand.N(d-lo+1)
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

// Status is the HTTP status of err's StatusError (404 for an
// ITSM client's connectors.ErrNotFound): 0 when err is nil or not an
// answer (no connection, a timeout, a body it could not read).
func Status(err error) int {
	if errors.Is(err, connectors.ErrNotFound) {
		return http.StatusNotFound
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// Permanent reports whether asking again cannot help: a 4xx other than
// 408 and 429.
func (e *StatusError) Permanent() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != 408 && e.Status != 429
}

// Error is "instance: what: HTTP status: message"; without Instance and
// What (a caller that names them in its own wrapping) "HTTP status:
// message".
func (e *StatusError) Error() string {
	s := fmt.Sprintf("HTTP %d", e.Status)
	if e.Instance != "" || e.What != "" {
		s = fmt.Sprintf("%s: %s: %s", e.Instance, e.What, s)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// MaxBody bounds every answer read through a Client (16 MiB): a
// misbehaving instance cannot make the gateway buffer without end, even
// through a vendor library that decodes the body itself (go-jira).
const MaxBody = 16 << 20

// ErrTooLarge is returned (wrapped) when an answer is over its limit.
var ErrTooLarge = errors.New("answer too large")

// limitedBody fails a read past MaxBody rather than truncating silently.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, fmt.Errorf("%w: more than %d MiB", ErrTooLarge, MaxBody>>20)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left+1] // one byte more tells a body of exactly MaxBody from a larger one
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n + int(b.left), fmt.Errorf("%w: more than %d MiB", ErrTooLarge, MaxBody>>20)
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// NoAnswerError is a call that got no answer after its retries: a
// timeout, a reset or closed connection, a refused connection. Its
// message names the host, the attempts and the cause in plain words.
type NoAnswerError struct {
	Host     string
	Attempts int
	Timeout  time.Duration // per attempt
	Err      error
	// Unknown: the request was not repeated because the instance may
	// have acted on it (a write that got no answer after it was sent).
	Unknown bool
}

func (e *NoAnswerError) Error() string {
	host := e.Host
	if host == "" {
		host = "the instance"
	}
	s := fmt.Sprintf("no answer from %s after %d attempt(s): %s", host, e.Attempts, e.cause())
	if e.Unknown {
		s += "; outcome unknown: the request may have been acted on, so it was not repeated"
	}
	return s
}

func (e *NoAnswerError) Unwrap() error { return e.Err }

// Is matches ErrOutcomeUnknown when the request was not repeated.
func (e *NoAnswerError) Is(target error) bool { return e.Unknown && target == ErrOutcomeUnknown }

func (e *NoAnswerError) cause() string {
	var ne net.Error
	switch err := e.Err; {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("timeout (%s per attempt)", e.Timeout)
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before an answer"
	}
	var ue *url.Error
	if errors.As(e.Err, &ue) {
		return ue.Err.Error() // without the method and URL
	}
	return e.Err.Error()
}

// ReadBody reads at most limit bytes (at most MaxBody) of an answer and
// closes it. A read that fails says why in plain words ("timeout",
// "connection reset").
func ReadBody(resp *http.Response, limit int64) ([]byte, error) {
	defer resp.Body.Close()
	if limit <= 0 || limit > MaxBody {
		limit = MaxBody
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, ReadError(err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}

// ReadError names why reading an answer's body failed: "timeout while
// reading the answer", "connection reset while reading the answer",
// "answer too large"; the cause stays wrapped.
func ReadError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, ErrTooLarge):
		return err
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("timeout while reading the answer: %w", err)
	case errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("connection reset while reading the answer: %w", err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("connection closed while reading the answer: %w", err)
	}
	return fmt.Errorf("read the answer: %w", err)
}

// UnwrapURL drops *url.Error's "GET URL:" prefix from a call's error:
// the caller names what was asked, and the URL adds nothing to it.
func UnwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Trim shortens an instance's error text for messages: one line, at
// most 300 bytes.
func Trim(s string) string {
	return Clip(strings.Join(strings.Fields(s), " "), 300)
}

// Clip shortens s to at most n bytes, on a character boundary (a cut
// through a multi-byte character would store U+FFFD), marking the cut
// with "…".
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
