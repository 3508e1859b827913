package servicenow

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/internal/faultfake"
	"github.com/tollgate-dev/tollgate/internal/itsmfake"
)

// outboundLimits are small timeouts and waits, so the fault table runs
// in a couple of seconds.
var outboundLimits = faultfake.FastLimits("ServiceNow acme", testPW)

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
	// The work note's PATCH and the change creation's POST are not safe to
	// repeat: sent once after a hang, a reset or a 5xx.
	onNote := outboundLimits
	onNote.Match, onNote.Unsafe = "/change_request/", true
	onCreate := outboundLimits
	onCreate.Match, onCreate.Unsafe = "/sn_chg_rest/", true
	faultfake.RunCalls(t, fake.Handler(), func(t *testing.T, url string) *Client { return faultClient(t, url, 100, time.Minute) },
		[]faultfake.NamedCall[*Client]{
			{Name: "read change", Limits: outboundLimits, Call: func(c *Client) faultfake.Call {
				return func(ctx context.Context) error { _, err := c.ReadChange(ctx, "CHG0000101"); return err }
			}},
			{Name: "work note lookup", Limits: outboundLimits, Call: func(c *Client) faultfake.Call {
				return func(ctx context.Context) error { return c.AddWorkNote(ctx, "CHG0000101", "deployed") }
			}},
			{Name: "work note", Limits: onNote, Call: func(c *Client) faultfake.Call {
				return func(ctx context.Context) error { return c.AddWorkNote(ctx, "CHG0000101", "deployed") }
			}},
			{Name: "change creation", Limits: onCreate, Call: func(c *Client) faultfake.Call {
				return func(ctx context.Context) error {
					// One release per case: a lookup must not find another case's change.
					id := "rel-fault-" + strconv.Itoa(int(releases.Add(1)))
					_, err := c.CreateChange(ctx, connectors.NewChange{ReleaseID: id, Service: "payments-api", Version: "2.0.0"})
					return err
				}
			}},
		})
}

var releases atomic.Int32

// TestCreationNotDuplicated: the instance opens the change and the
// connection is reset before its answer. The creation is not sent again:
// the change is found by its correlation_id. When the lookup finds none
// (a 500 before the instance acted), the error says the outcome is
// unknown, and nothing was opened twice.
func TestCreationNotDuplicated(t *testing.T) {
	fake := healthyInstance()
	defer fake.Close()
	srv := faultfake.New(fake.Handler())
	defer srv.Close()
	srv.Set(faultfake.Mode{Fault: faultfake.ActReset, Match: "/sn_chg_rest/"})
	c := faultClient(t, srv.URL, 100, time.Minute)
	n := connectors.NewChange{ReleaseID: "rel-reset", Service: "payments-api", Environment: "production", Version: "2.0.0"}
	key, err := c.CreateChange(context.Background(), n)
	if err != nil {
		t.Fatalf("want the change found after the reset, got %v", err)
	}
	if posts := fake.Calls("/api/sn_chg_rest/change/normal"); len(posts) != 1 {
		t.Errorf("%d creation request(s), want 1", len(posts))
	}
	if created := fake.SNCreated(); len(created) != 1 || created[0] != key {
		t.Errorf("created %v, want just %s", created, key)
	}

	ff := faultfake.New(fake.Handler())
	defer ff.Close()
	ff.Set(faultfake.Mode{Fault: faultfake.Status, Status: http.StatusInternalServerError, Match: "/sn_chg_rest/"})
	_, err = faultClient(t, ff.URL, 100, time.Minute).CreateChange(context.Background(), connectors.NewChange{ReleaseID: "rel-500", Service: "payments-api"})
	var cu *CreationUnknown
	if !errors.As(err, &cu) || !errors.Is(err, apiclient.ErrOutcomeUnknown) {
		t.Fatalf("want a CreationUnknown, got %v", err)
	}
	faultfake.CheckError(t, err, `HTTP 500.*outcome unknown.*no change with correlation_id rel-500 found`, outboundLimits)
	if ff.Requests() != 1 {
		t.Errorf("%d creation request(s) after a 500, want 1", ff.Requests())
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
