package gitlab

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/faultfake"
)

const testToken = "glpat-outbound-secret"

// outboundLimits are small timeouts and waits, so the fault table runs
// in a couple of seconds. The approval's 2xx is the whole answer.
var outboundLimits = func() faultfake.Limits {
	l := faultfake.FastLimits("GitLab acme", testToken)
	l.BodyIgnored = true
	return l
}()

var healthyGitLab = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v4/projects/30/deployments/15/approval" || r.Header.Get("PRIVATE-TOKEN") != testToken {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(`{"status":"approved"}`))
})

var pendingApproval = core.PendingGate{Target: map[string]string{"project_id": "30", "deployment_id": "15"}}

func faultWebhook(t *testing.T, url string, failuresToOpen uint32, openFor time.Duration) *Webhook {
	t.Helper()
	l := outboundLimits
	w, err := newWebhook(connectors.Config{Name: "acme", Type: Type, WebhookSecret: "0123456789abcdef",
		API: &connectors.API{URL: url, Token: testToken}, CIGate: &connectors.CIGate{Deadline: time.Hour}},
		apiclient.Options{Timeout: l.Timeout, RetryMax: l.RetryMax, RetryWaitMin: l.RetryWaitMin, RetryWaitMax: l.RetryWaitMax,
			MaxRetryAfter: l.MaxRetryAfter, FailuresToOpen: failuresToOpen, OpenFor: openFor})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestOutboundFaults: the deployment approval against a GitLab that
// hangs, resets, answers 5xx/429/4xx or garbage, trickles, or heals
// within the retries.
func TestOutboundFaults(t *testing.T) {
	faultfake.RunTable(t, healthyGitLab, outboundLimits, func(t *testing.T, url string) faultfake.Call {
		w := faultWebhook(t, url, 100, time.Minute)
		return func(ctx context.Context) error { return w.Answer(ctx, pendingApproval, true, "tollgate: allow") }
	})
}

// TestOutboundKinds: transient failures are KindUnavailable (the CI gate
// worker retries them), a refusal is final.
func TestOutboundKinds(t *testing.T) {
	faultfake.RunKinds(t, healthyGitLab, []faultfake.KindCase{
		{Mode: faultfake.Mode{Fault: faultfake.Hang}, Kind: core.KindUnavailable},
		{Mode: faultfake.Mode{Fault: faultfake.Reset}, Kind: core.KindUnavailable},
		{Mode: faultfake.Mode{Fault: faultfake.Status, Status: 502}, Kind: core.KindUnavailable},
		{Mode: faultfake.Mode{Fault: faultfake.Status, Status: 429}, Kind: core.KindUnavailable},
		{Mode: faultfake.Mode{Fault: faultfake.Status, Status: 400}, Kind: core.KindInvalid},
	}, func(t *testing.T, url string) faultfake.Call {
		w := faultWebhook(t, url, 100, time.Minute)
		return func(ctx context.Context) error { return w.Answer(ctx, pendingApproval, true, "x") }
	})
}

// TestOutboundCircuit: failing approvals open the circuit; a trial call
// after OpenFor that finds GitLab healthy closes it.
func TestOutboundCircuit(t *testing.T) {
	c := faultfake.Circuit{FailuresToOpen: 3, OpenFor: 200 * time.Millisecond, ErrOpen: apiclient.ErrCircuitOpen}
	faultfake.RunCircuit(t, healthyGitLab, c, outboundLimits, func(t *testing.T, url string) faultfake.Call {
		w := faultWebhook(t, url, uint32(c.FailuresToOpen), c.OpenFor)
		return func(ctx context.Context) error { return w.Answer(ctx, pendingApproval, true, "tollgate: allow") }
	})
}
