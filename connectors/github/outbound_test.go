package github

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/faultfake"
)

// outboundLimits are small timeouts and waits, so the fault table runs
// in a couple of seconds.
var outboundLimits = faultfake.FastLimits("GitHub acme", "ghs_installation_token", "PRIVATE KEY")

// healthyGitHub answers the App's calls: an installation token, a
// commit, a protection rule review.
var healthyGitHub = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/app/installations/99/access_tokens":
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"token": "ghs_installation_token", "expires_at": time.Now().Add(time.Hour)})
	case "/repos/Codertocat/Hello-World/commits/0123456789abcdef":
		_ = json.NewEncoder(w).Encode(map[string]any{"commit": map[string]any{"message": "release CHG0000101"}})
	case "/repos/Codertocat/Hello-World/actions/runs/77/deployment_protection_rule":
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
})

var testKey = func() []byte {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}()

func faultWebhook(t *testing.T, url string, failuresToOpen uint32, openFor time.Duration) *Webhook {
	t.Helper()
	l := outboundLimits
	w, err := newWebhook(connectors.Config{Name: "acme", Type: Type, WebhookSecret: "0123456789abcdef",
		API: &connectors.API{URL: url, AppID: "42", PrivateKey: testKey}, CIGate: testGate()},
		apiclient.Options{Timeout: l.Timeout, RetryMax: l.RetryMax, RetryWaitMin: l.RetryWaitMin, RetryWaitMax: l.RetryWaitMax,
			MaxRetryAfter: l.MaxRetryAfter, FailuresToOpen: failuresToOpen, OpenFor: openFor})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

var pendingReview = core.PendingGate{Target: map[string]string{
	"repository": "Codertocat/Hello-World", "run_id": "77", "environment_name": "production", "installation_id": "99",
}}

// TestOutboundFaults: the protection rule review (an installation token,
// then the review) and a commit read against a GitHub that hangs,
// resets, answers 5xx/429/4xx or garbage, trickles, or heals within the
// retries.
func TestOutboundFaults(t *testing.T) {
	review := func(w *Webhook) faultfake.Call {
		return func(ctx context.Context) error { return w.Answer(ctx, pendingReview, true, "tollgate: allow") }
	}
	commit := func(w *Webhook) faultfake.Call {
		return func(ctx context.Context) error {
			_, err := w.app.commitMessage(ctx, "99", "Codertocat/Hello-World", "0123456789abcdef")
			return err
		}
	}
	onReview := outboundLimits
	// The review is not repeated once GitHub may have taken it: a second
	// review is refused, which would hide that the first was taken.
	onReview.Match, onReview.BodyIgnored, onReview.Unsafe = "/deployment_protection_rule", true, true
	onCommit := outboundLimits
	onCommit.Match = "/commits/"
	faultfake.RunCalls(t, healthyGitHub, func(t *testing.T, url string) *Webhook { return faultWebhook(t, url, 100, time.Minute) },
		[]faultfake.NamedCall[*Webhook]{
			{Name: "installation token", Limits: outboundLimits, Call: review},
			{Name: "protection rule review", Limits: onReview, Call: review},
			{Name: "commit", Limits: onCommit, Call: commit},
		})
}

// TestOutboundKinds: what the CI gate worker does with each failure
// depends on its kind: transient ones are retried, a 4xx is final.
func TestOutboundKinds(t *testing.T) {
	faultfake.RunKinds(t, healthyGitHub, []faultfake.KindCase{
		{Mode: faultfake.Mode{Fault: faultfake.Hang}, Kind: core.KindUnavailable},
		{Mode: faultfake.Mode{Fault: faultfake.Reset}, Kind: core.KindUnavailable},
		{Mode: faultfake.Mode{Fault: faultfake.Status, Status: 503}, Kind: core.KindUnavailable},
		{Mode: faultfake.Mode{Fault: faultfake.Status, Status: 429}, Kind: core.KindUnavailable},
		{Mode: faultfake.Mode{Fault: faultfake.Garbage}, Kind: core.KindUnavailable},
		{Mode: faultfake.Mode{Fault: faultfake.Status, Status: 422}, Kind: core.KindInvalid},
	}, func(t *testing.T, url string) faultfake.Call {
		w := faultWebhook(t, url, 100, time.Minute)
		return func(ctx context.Context) error { return w.Answer(ctx, pendingReview, true, "x") }
	})
}

// TestOutboundCircuit: failing calls open the circuit; a trial call
// after OpenFor that finds GitHub healthy closes it.
func TestOutboundCircuit(t *testing.T) {
	c := faultfake.Circuit{FailuresToOpen: 3, OpenFor: 200 * time.Millisecond, ErrOpen: apiclient.ErrCircuitOpen}
	onReview := outboundLimits
	onReview.Match = "/deployment_protection_rule"
	faultfake.RunCircuit(t, healthyGitHub, c, onReview, func(t *testing.T, url string) faultfake.Call {
		w := faultWebhook(t, url, uint32(c.FailuresToOpen), c.OpenFor)
		return func(ctx context.Context) error { return w.Answer(ctx, pendingReview, true, "tollgate: allow") }
	})
}

// TestRateLimited403IsTransient: GitHub answers its rate limits with 403
// as often as 429; such a 403 is a "come back later" (retried, the
// request kept), while a 403 refusing what was asked stays final.
func TestRateLimited403IsTransient(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header map[string]string
		body   string
		kind   core.ErrorKind
		status int
	}{
		{"primary rate limit", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1893456000"}, `{"message":"API rate limit exceeded for installation ID 99."}`, core.KindUnavailable, http.StatusTooManyRequests},
		{"secondary rate limit", map[string]string{"Retry-After": "30"}, `{"message":"You have exceeded a secondary rate limit."}`, core.KindUnavailable, http.StatusTooManyRequests},
		{"a refusal", nil, `{"message":"Resource not accessible by integration"}`, core.KindInvalid, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/repos/Codertocat/Hello-World/actions/runs/77/deployment_protection_rule" {
					for k, v := range tc.header {
						w.Header().Set(k, v)
					}
					w.WriteHeader(http.StatusForbidden)
					_, _ = w.Write([]byte(tc.body))
					return
				}
				healthyGitHub.ServeHTTP(w, r)
			}))
			defer srv.Close()
			w := faultWebhook(t, srv.URL, 100, time.Minute)
			err := w.Answer(context.Background(), pendingReview, true, "tollgate: allow")
			if !core.IsKind(err, tc.kind) || apiclient.Status(err) != tc.status {
				t.Fatalf("Answer = %v (status %d), want %s with %d", err, apiclient.Status(err), tc.kind, tc.status)
			}
		})
	}
}
