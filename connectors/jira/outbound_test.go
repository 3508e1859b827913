package jira

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/internal/faultfake"
	"github.com/tollgate-dev/tollgate/internal/itsmfake"
)

// outboundLimits are small timeouts and waits, so the fault table runs
// in a couple of seconds.
var outboundLimits = faultfake.FastLimits("Jira ops", testToken)

func faultClient(t *testing.T, url string, failuresToOpen uint32, openFor time.Duration) *Client {
	t.Helper()
	l := outboundLimits
	hc := apiclient.New(apiclient.Options{Instance: "ops", Timeout: l.Timeout, RetryMax: l.RetryMax,
		RetryWaitMin: l.RetryWaitMin, RetryWaitMax: l.RetryWaitMax, MaxRetryAfter: l.MaxRetryAfter,
		FailuresToOpen: failuresToOpen, OpenFor: openFor})
	c, err := NewClient(connectors.Config{Name: "ops", Type: Type, Projects: []string{"OPS"},
		API: &connectors.API{URL: url, Username: testUser, Password: testToken, Timeout: l.Timeout}}, hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func healthySite() *itsmfake.Server {
	fake := itsmfake.New(testUser, testToken)
	fake.PutJiraIssue(issue("OPS-1", "Change", "Awaiting implementation", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)))
	return fake
}

// TestOutboundFaults: reading an issue and commenting on it (the work
// note) against a site that hangs, resets, answers 5xx/429/4xx or
// garbage, trickles, or heals within the retries.
func TestOutboundFaults(t *testing.T) {
	fake := healthySite()
	defer fake.Close()
	// The comment's POST is not safe to repeat: sent once after a hang, a
	// reset or a 5xx.
	onComment := outboundLimits
	onComment.Match, onComment.Unsafe = "/comment", true
	faultfake.RunCalls(t, fake.Handler(), func(t *testing.T, url string) *Client { return faultClient(t, url, 100, time.Minute) },
		[]faultfake.NamedCall[*Client]{
			{Name: "read issue", Limits: outboundLimits, Call: func(c *Client) faultfake.Call {
				return func(ctx context.Context) error { _, err := c.ReadChange(ctx, "OPS-1"); return err }
			}},
			{Name: "comment", Limits: onComment, Call: func(c *Client) faultfake.Call {
				return func(ctx context.Context) error { return c.AddWorkNote(ctx, "OPS-1", "deployed") }
			}},
		})
}

// TestOutboundCircuit: failing calls open the site's circuit; a trial
// call after OpenFor that finds it healthy closes it.
func TestOutboundCircuit(t *testing.T) {
	fake := healthySite()
	defer fake.Close()
	c := faultfake.Circuit{FailuresToOpen: 3, OpenFor: 200 * time.Millisecond, ErrOpen: apiclient.ErrCircuitOpen}
	faultfake.RunCircuit(t, fake.Handler(), c, outboundLimits, func(t *testing.T, url string) faultfake.Call {
		jc := faultClient(t, url, uint32(c.FailuresToOpen), c.OpenFor)
		return func(ctx context.Context) error { return jc.AddWorkNote(ctx, "OPS-1", "deployed") }
	})
}
