package servicenow

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
var outboundLimits = faultfake.Limits{
	Timeout: 200 * time.Millisecond, RetryMax: 2, RetryWaitMin: 20 * time.Millisecond, RetryWaitMax: 60 * time.Millisecond,
	MaxRetryAfter: 1500 * time.Millisecond, Names: []string{"ServiceNow acme"}, Secrets: []string{testPW},
}

func faultClient(t *testing.T, url string, failuresToOpen uint32, openFor time.Duration) *Client {
	t.Helper()
	l := outboundLimits
	hc := apiclient.New(apiclient.Options{Instance: "acme", Timeout: l.Timeout, RetryMax: l.RetryMax,
		RetryWaitMin: l.RetryWaitMin, RetryWaitMax: l.RetryWaitMax, MaxRetryAfter: l.MaxRetryAfter,
		FailuresToOpen: failuresToOpen, OpenFor: openFor})
	c, err := NewClient(connectors.Config{Name: "acme", Type: Type,
		API: &connectors.API{URL: url, Username: testUser, Password: testPW, Timeout: l.Timeout}}, hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func healthyInstance() *itsmfake.Server {
	fake := itsmfake.New(testUser, testPW)
	fake.PutSN("change_request", change("CHG0000101", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)))
	return fake
}

// TestOutboundFaults: reading a change and writing a work note against an
// instance that hangs, resets, answers 5xx/429/4xx or garbage, trickles,
// or heals within the retries (faultfake.Table says what each must do).
func TestOutboundFaults(t *testing.T) {
	fake := healthyInstance()
	defer fake.Close()
	calls := map[string]func(*Client) faultfake.Call{
		"read change": func(c *Client) faultfake.Call {
			return func(ctx context.Context) error { _, err := c.ReadChange(ctx, "CHG0000101"); return err }
		},
		"work note": func(c *Client) faultfake.Call {
			return func(ctx context.Context) error { return c.AddWorkNote(ctx, "CHG0000101", "deployed") }
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			faultfake.RunTable(t, fake.Handler(), outboundLimits, func(t *testing.T, url string) faultfake.Call {
				return call(faultClient(t, url, 100, time.Minute))
			})
		})
	}
}

// TestOutboundCircuit: failing calls open the instance's circuit, which
// then refuses calls without reaching it, and closes again once a trial
// call after OpenFor finds it healthy.
func TestOutboundCircuit(t *testing.T) {
	fake := healthyInstance()
	defer fake.Close()
	c := faultfake.Circuit{FailuresToOpen: 3, OpenFor: 200 * time.Millisecond, ErrOpen: apiclient.ErrCircuitOpen}
	faultfake.RunCircuit(t, fake.Handler(), c, outboundLimits, func(t *testing.T, url string) faultfake.Call {
		sn := faultClient(t, url, uint32(c.FailuresToOpen), c.OpenFor)
		return func(ctx context.Context) error { _, err := sn.ReadChange(ctx, "CHG0000101"); return err }
	})
}
