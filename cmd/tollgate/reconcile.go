package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/core"
)

// Exit codes of `tollgate reconcile` (public: cron jobs and pipelines
// branch on them).
const (
	exitReconcileOK       = 0
	exitReconcileFindings = 1 // --fail-on-findings and unacknowledged findings
	exitReconcileError    = 2 // the request was refused (bad period, token …)
	exitReconcileDown     = 3 // the gateway could not be reached
)

type reconcileOptions struct {
	gatewayFlags
	from, to, environment, service, team, control, format string
	failOnFindings                                        bool
	timeout                                               time.Duration
	retries                                               int
}

func newReconcileCmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	var o reconcileOptions
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Run a reconciliation report on the gateway and print it (exit 1 with --fail-on-findings when any finding is unacknowledged)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.fromEnv(getenv)
			code, err := runReconcile(cmd.Context(), o, stdout, stderr)
			if code == exitReconcileOK && err == nil {
				return nil
			}
			return &exitError{code: code, err: err}
		},
	}
	f := cmd.Flags()
	o.bind(f, "change_manager or admin")
	f.StringVar(&o.from, "from", "", "start of the period: RFC 3339 time, a date YYYY-MM-DD (00:00 UTC), or a duration before now like 7d or 36h (required)")
	f.StringVar(&o.to, "to", "", "end of the period (exclusive), same forms; default now")
	f.StringVar(&o.environment, "environment", "", "only deployments to this environment")
	f.StringVar(&o.service, "service", "", "only deployments of this service")
	f.StringVar(&o.team, "team", "", "only deployments of this team")
	f.StringVar(&o.control, "control", "", "only the evidence requirements carrying this compliance control id (findings, and the proof of compliant deployments)")
	f.StringVar(&o.format, "format", "json", "output: json, csv or html")
	f.BoolVar(&o.failOnFindings, "fail-on-findings", false, "exit 1 when the report has unacknowledged findings")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "timeout of each request (a long period takes a while)")
	f.IntVar(&o.retries, "retries", 3, "retries when the gateway is briefly unreachable")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

// parsePeriodBound reads a --from/--to value: RFC 3339, a date, or a
// duration before now ("7d", "36h").
func parsePeriodBound(name, v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(v, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err == nil && n >= 0 && fmt.Sprint(n) == d {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--%s %q: want an RFC 3339 time, a date YYYY-MM-DD, or a duration before now like 7d", name, v)
}

type reconcileSummary struct {
	ID      string                `json:"id"`
	Summary core.ReconcileSummary `json:"summary"`
}

func runReconcile(ctx context.Context, o reconcileOptions, stdout, stderr io.Writer) (int, error) {
	switch {
	case o.url == "":
		return exitReconcileError, fmt.Errorf("--url (or TOLLGATE_URL) is required")
	case o.token == "":
		return exitReconcileError, fmt.Errorf("--token (or TOLLGATE_TOKEN) is required")
	case o.format != "json" && o.format != "csv" && o.format != "html":
		return exitReconcileError, fmt.Errorf("--format %q: want json, csv or html", o.format)
	}
	now := time.Now().UTC()
	from, err := parsePeriodBound("from", o.from, now)
	if err != nil {
		return exitReconcileError, err
	}
	to := now
	if o.to != "" {
		if to, err = parsePeriodBound("to", o.to, now); err != nil {
			return exitReconcileError, err
		}
	}
	body, _ := json.Marshal(map[string]any{"from": from, "to": to, "environment": o.environment, "service": o.service, "team": o.team, "control": o.control})
	rc := newReportClient(ctx, o)
	raw, code, err := rc.do(http.MethodPost, rc.base, body, http.StatusCreated)
	if err != nil {
		return code, err
	}
	var rep reconcileSummary
	if err := json.Unmarshal(raw, &rep); err != nil || rep.ID == "" {
		return exitReconcileDown, fmt.Errorf("unreadable gateway answer: %q", raw)
	}
	out, code, err := rc.do(http.MethodGet, rc.base+"/"+url.PathEscape(rep.ID)+"?format="+o.format, nil, http.StatusOK)
	if err != nil {
		return code, err
	}
	// The report streams after its 200; one cut short (the database
	// failing mid-way) must not pass for the whole report.
	if o.format == "json" && !json.Valid(out) {
		return exitReconcileDown, fmt.Errorf("the report %s arrived incomplete (%d bytes, not whole JSON); run it again", rep.ID, len(out))
	}
	if _, err := stdout.Write(out); err != nil {
		return exitReconcileError, err
	}
	s := rep.Summary
	open := s.Findings - s.Acknowledged
	fmt.Fprintf(stderr, "report %s: %d deployments checked, %d compliant, %d findings (%d unacknowledged)\n",
		rep.ID, s.DeploymentsChecked, s.Compliant, s.Findings, open)
	if o.failOnFindings && open > 0 {
		return exitReconcileFindings, fmt.Errorf("%d unacknowledged findings", open)
	}
	return exitReconcileOK, nil
}

// reportClient talks to the gateway's report routes.
type reportClient struct {
	ctx    context.Context
	client *retryablehttp.Client
	base   string // …/api/v1/reports/reconciliation
	url    string
	token  string
}

func newReportClient(ctx context.Context, o reconcileOptions) *reportClient {
	client := gatewayClient(o.retries)
	client.HTTPClient.Timeout = o.timeout
	// Creating a report is not idempotent: a request is repeated only when
	// it got no answer at all (the gateway down or restarting), never after
	// an error status.
	client.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return err != nil && resp == nil, nil
	}
	return &reportClient{ctx: ctx, client: client, base: strings.TrimRight(o.url, "/") + "/api/v1/reports/reconciliation", url: o.url, token: o.token}
}

// do sends one request and returns the body of a want answer, or the exit
// code and error for anything else.
func (rc *reportClient) do(method, u string, body []byte, want int) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	r, err := retryablehttp.NewRequestWithContext(rc.ctx, method, u, rd)
	if err != nil {
		return nil, exitReconcileError, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Authorization", "Bearer "+rc.token)
	resp, err := rc.client.Do(r)
	if err != nil {
		return nil, exitReconcileDown, fmt.Errorf("gateway unreachable at %s: %w", rc.url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, exitReconcileDown, fmt.Errorf("read gateway answer: %w", err)
	}
	if resp.StatusCode >= 500 {
		return nil, exitReconcileDown, fmt.Errorf("gateway error %d: %s", resp.StatusCode, errorText(raw))
	}
	if resp.StatusCode != want {
		return nil, exitReconcileError, fmt.Errorf("gateway refused the report (%d): %s", resp.StatusCode, errorText(raw))
	}
	return raw, 0, nil
}
