package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/inert"
)

// Exit codes of `tollgate check` (public: pipelines branch on them).
const (
	exitAllow       = 0
	exitDeny        = 1
	exitWaiting     = 2
	exitUnreachable = 3
)

// maxPoll is the longest single long-poll request; longer --wait values
// are split into several requests (the server caps ?wait= anyway).
const maxPoll = 10 * time.Minute

type checkOptions struct {
	gatewayFlags
	service, environment, version, commit, team, actor string
	provider, runID, runURL                            string
	changes, incidents                                 []string
	wait, timeout                                      time.Duration
	retries                                            int
	jsonOut                                            bool
}

func newCheckCmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Ask the gate whether a release may deploy now (exit 0 allow, 1 deny, 2 still waiting, 3 no answer: gateway unreachable, redirected, or no recorded decision)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.fromEnv(getenv)
			code, err := runCheck(cmd.Context(), o, stdout, stderr)
			if code == exitAllow && err == nil {
				return nil
			}
			return &exitError{code: code, err: err}
		},
	}
	f := cmd.Flags()
	o.bind(f, "ci")
	f.StringVar(&o.service, "service", "", "service name (required)")
	f.StringVar(&o.environment, "environment", "", "target environment (required)")
	f.StringVar(&o.version, "version", "", "version being deployed (required)")
	f.StringVar(&o.commit, "commit", "", "commit SHA")
	f.StringVar(&o.team, "team", "", "owning team (default: from the service catalog)")
	f.StringVar(&o.actor, "actor", "", "who triggers the deployment")
	f.StringArrayVar(&o.changes, "change", nil, "linked change key (repeatable)")
	f.StringArrayVar(&o.incidents, "incident", nil, "incident key this release fixes (repeatable)")
	f.StringVar(&o.provider, "provider", "", "CI provider (github, gitlab, jenkins …)")
	f.StringVar(&o.runID, "run-id", "", "CI run id")
	f.StringVar(&o.runURL, "run-url", "", "CI run URL")
	f.DurationVar(&o.wait, "wait", 0, "keep waiting while the answer is wait, or the gateway answers 429 (too many checks waiting), up to this long (e.g. 30m)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "timeout of one request, on top of its wait; the check, retries included, ends by --wait plus this")
	f.IntVar(&o.retries, "retries", 5, "retries when the gateway is briefly unreachable")
	f.BoolVar(&o.jsonOut, "json", false, "print the decision as JSON")
	for _, n := range []string{"service", "environment", "version"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

type checkResponse struct {
	Decision    string        `json:"decision"`
	DecisionID  string        `json:"decision_id"`
	ReleaseID   string        `json:"release_id"`
	Reasons     []core.Reason `json:"reasons"`
	EvaluatedAt time.Time     `json:"evaluated_at"`
	Emergency   bool          `json:"emergency"`
	// WouldBe is, in an environment in observe mode, what enforcing
	// would answer (the decision is then allow).
	WouldBe string `json:"would_be,omitempty"`
}

// answered reports whether d is a gate's answer: a decision it knows,
// recorded (every answer of a real gateway names its decision). Anything
// else — an error body with 200, {}, a stub at the URL — is no answer.
func (d checkResponse) answered() bool {
	switch core.Decision(d.Decision) {
	case core.Allow, core.Wait, core.Deny:
		return d.DecisionID != ""
	}
	return false
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

// checkable refuses options a check cannot run with.
func (o checkOptions) checkable() error {
	switch {
	case o.url == "":
		return fmt.Errorf("--url (or TOLLGATE_URL) is required")
	case o.token == "":
		return fmt.Errorf("--token (or TOLLGATE_TOKEN) is required")
	case o.timeout <= 0:
		return fmt.Errorf("--timeout must be positive: a check with none could hang the pipeline until its own timeout")
	}
	return nil
}

// gatewayClient is the CLI's client of the gateway (check, reconcile):
// retries while the gateway is briefly unreachable, no redirects
// followed.
func gatewayClient(retries int) *retryablehttp.Client {
	client := retryablehttp.NewClient()
	client.RetryMax = retries
	client.RetryWaitMin = 500 * time.Millisecond
	client.RetryWaitMax = 10 * time.Second
	client.Logger = nil
	client.ErrorHandler = retryablehttp.PassthroughErrorHandler
	noRedirects(client)
	return client
}

func runCheck(ctx context.Context, o checkOptions, stdout, stderr io.Writer) (int, error) {
	if err := o.checkable(); err != nil {
		return exitDeny, err
	}
	req := core.GateRequest{
		Service: o.service, Environment: o.environment, Version: o.version, Commit: o.commit,
		Team: o.team, Changes: nonEmpty("change", o.changes, stderr), Incidents: nonEmpty("incident", o.incidents, stderr), Actor: o.actor,
	}
	if o.provider != "" || o.runID != "" || o.runURL != "" {
		req.Pipeline = &core.Pipeline{Provider: o.provider, RunID: o.runID, URL: o.runURL}
	}
	body, _ := json.Marshal(req)
	client := gatewayClient(o.retries)
	warnPlainHTTP(o.url, stderr)

	deadline := time.Now().Add(o.wait)
	// Every request and its retries end by the deadline plus one
	// request's timeout: a retried long-poll would otherwise wait its
	// whole poll again, past --wait.
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(o.timeout))
	defer cancel()
	for {
		poll := time.Until(deadline).Round(time.Second)
		if poll < 0 {
			poll = 0
		}
		if poll > maxPoll {
			poll = maxPoll
		}
		resp, raw, code, err := askGate(ctx, client, o, body, poll)
		if err != nil {
			return code, err
		}
		// Too many checks waiting (or rate limited) after the retries:
		// while --wait lasts, ask again after Retry-After, as for a wait.
		if pause := busyPause(resp, poll, deadline); pause > 0 {
			fmt.Fprintf(stderr, "gateway busy (%s left), asking again in %s: %s\n",
				time.Until(deadline).Round(time.Second), pause.Round(time.Second), errorText(raw))
			select {
			case <-ctx.Done():
				return exitUnreachable, ctx.Err()
			case <-time.After(pause):
			}
			continue
		}
		// Rate limited after the retries: no answer either, never a deny
		// the pipeline would read as the policy's.
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return exitUnreachable, fmt.Errorf("gateway error %d: %s", resp.StatusCode, errorText(raw))
		}
		if resp.StatusCode != http.StatusOK {
			return exitDeny, fmt.Errorf("gateway refused the check (%d): %s", resp.StatusCode, errorText(raw))
		}
		var d checkResponse
		if err := json.Unmarshal(raw, &d); err != nil {
			return exitUnreachable, fmt.Errorf("unreadable gateway answer: %w", err)
		}
		if !d.answered() {
			return exitUnreachable, fmt.Errorf("the gateway's answer holds no recorded decision (decision %q, decision_id %q): %s", d.Decision, d.DecisionID, errorText(raw))
		}
		if d.Decision == string(core.Wait) && time.Now().Before(deadline) {
			fmt.Fprintf(stderr, "still waiting (%s left): %s\n", time.Until(deadline).Round(time.Second), summary(d))
			continue
		}
		printDecision(stdout, d, o.jsonOut)
		switch d.Decision {
		case string(core.Allow):
			return exitAllow, nil
		case string(core.Wait):
			return exitWaiting, fmt.Errorf("still waiting at the deadline")
		default:
			return exitDeny, fmt.Errorf("deployment denied")
		}
	}
}

// askGate sends one check, long-polling up to poll, and reads its answer;
// on failure, the exit code to end with.
func askGate(ctx context.Context, client *retryablehttp.Client, o checkOptions, body []byte, poll time.Duration) (*http.Response, []byte, int, error) {
	u := strings.TrimRight(o.url, "/") + "/api/v1/gate/check"
	if poll > 0 {
		u += "?wait=" + url.QueryEscape(poll.String())
	}
	client.HTTPClient.Timeout = poll + o.timeout
	r, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, exitDeny, fmt.Errorf("build request: %w", err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+o.token)
	resp, err := client.Do(r)
	if err != nil {
		return nil, nil, exitUnreachable, fmt.Errorf("gateway unreachable at %s: %w", o.url, err)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	if err != nil {
		return nil, nil, exitUnreachable, fmt.Errorf("read gateway answer: %w", err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, nil, exitUnreachable, fmt.Errorf("the gateway at %s redirected the check to %q: not followed (the token would go with it); point --url at the gateway itself",
			o.url, resp.Header.Get("Location"))
	}
	return resp, raw, 0, nil
}

// noRedirects keeps a client from following redirects: a check's token
// and body would go to wherever a 3xx points (Go keeps Authorization for
// the same host, even from https to http), and that place's "allow" would
// let the deploy run. The 3xx itself is then the answer, and no answer.
func noRedirects(c *retryablehttp.Client) {
	c.HTTPClient.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
}

// busyPause is how long to wait before asking again after a 429 (too
// many checks waiting, or a rate limit) while --wait lasts: the answer's
// Retry-After, at most until the deadline; 0 when not to ask again.
func busyPause(resp *http.Response, poll time.Duration, deadline time.Time) time.Duration {
	if resp.StatusCode != http.StatusTooManyRequests || poll <= 0 {
		return 0
	}
	return max(0, min(retryAfter(resp.Header.Get("Retry-After")), time.Until(deadline)))
}

// nonEmpty drops blank values of a repeatable key flag. A pipeline passes
// --change "$CHANGE_KEY" whether or not the variable is set; an empty key
// means "no change linked", so the gate answers what its policy says of a
// release without one (NO_CHANGE in production) instead of refusing the
// request as malformed. The drop is said on stderr, so the log shows it.
func nonEmpty(flag string, keys []string, stderr io.Writer) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if strings.TrimSpace(k) == "" {
			fmt.Fprintf(stderr, "note: an empty --%s was ignored (is its variable unset?)\n", flag)
			continue
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func errorText(raw []byte) string {
	var e apiError
	if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
		if e.Error.Field != "" {
			return e.Error.Field + ": " + e.Error.Message
		}
		return e.Error.Message
	}
	if len(raw) > 200 {
		raw = raw[:200]
	}
	return strings.TrimSpace(string(raw))
}

func summary(d checkResponse) string {
	codes := make([]string, 0, len(d.Reasons))
	for _, r := range d.Reasons {
		codes = append(codes, r.Code)
	}
	return strings.Join(codes, ", ")
}

func printDecision(w io.Writer, d checkResponse, asJSON bool) {
	if asJSON {
		_ = printJSON(w, d)
		return
	}
	fmt.Fprintf(w, "decision: %s (decision %s, release %s)\n", strings.ToUpper(d.Decision), d.DecisionID, d.ReleaseID)
	if d.WouldBe != "" {
		fmt.Fprintf(w, "observe mode: enforcing would %s; the reasons below say why\n", d.WouldBe)
	}
	if d.Emergency {
		fmt.Fprintln(w, "emergency change: retroactive review required")
	}
	for _, r := range d.Reasons {
		ref := ""
		if r.Ref != "" {
			ref = " [" + r.Ref + "]"
		}
		// One line each: a message quotes record text, and a line of
		// its own starting "::" would be a GitHub Actions command.
		fmt.Fprintf(w, "  - %s%s: %s\n", inert.Line(r.Code), inert.Line(ref), inert.Line(r.Message))
	}
}

// warnPlainHTTP says on stderr when the gateway's URL is plain http to
// another host: the token and the answer cross the network readable and
// forgeable by anything on the way.
func warnPlainHTTP(raw string, stderr io.Writer) {
	u, err := url.Parse(raw)
	if err != nil || !strings.EqualFold(u.Scheme, "http") {
		return
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); (err == nil && ip.IsLoopback()) || strings.EqualFold(host, "localhost") {
		return
	}
	fmt.Fprintf(stderr, "warning: %s is plain http: the token and the gate's answer cross the network unprotected; use https\n", raw)
}

// retryAfter is a Retry-After header's wait in seconds (5 s when absent
// or not a number of seconds; at most a minute).
func retryAfter(h string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || n < 1 {
		return 5 * time.Second
	}
	return min(time.Duration(n)*time.Second, time.Minute)
}
