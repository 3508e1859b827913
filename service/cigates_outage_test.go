package service

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/github"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/faultfake"
)

// TestCIGateAnswerThroughOutage: a decided protection rule whose review
// GitHub answers 502 is kept answering (its last error shown) and
// retried with the worker's backoff; once GitHub heals the review is
// delivered, once.
func TestCIGateAnswerThroughOutage(t *testing.T) {
	f := newProtectionRule(t)
	srv, db, gh, p, reviews := f.srv, f.db, f.gh, f.p, &f.reviews
	ctx := context.Background()
	srv.Set(faultfake.Mode{Fault: faultfake.Status, Status: http.StatusBadGateway, Match: "/deployment_protection_rule"})
	var outcomes sync.Map
	gates := NewCIGates(db, allowDecider{}, nil, []Connector{{Config: connectors.Config{Name: "gh", CIGate: &connectors.CIGate{Deadline: time.Hour}}, Webhook: gh}},
		core.ClockFunc(time.Now), slog.New(slog.DiscardHandler), CIGatesConfig{PollInterval: 50 * time.Millisecond, RetryMin: 100 * time.Millisecond, RetryMax: time.Second})
	gates.OnAnswer = func(_, outcome string) {
		n, _ := outcomes.LoadOrStore(outcome, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
	}
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); gates.Run(cctx) }()
	defer func() { cancel(); wg.Wait() }()

	waitFor(t, 10*time.Second, "a failed delivery", func() bool {
		g, _ := db.GetPendingGate(ctx, p.ID)
		return g.Attempts >= 1 && g.LastError != ""
	})
	g, _ := db.GetPendingGate(ctx, p.ID)
	if g.State != core.PendingAnswering {
		t.Fatalf("after a 502: state %s (%s), want answering", g.State, g.LastError)
	}
	t.Logf("during the outage: %s", g.LastError)
	srv.Set(faultfake.Mode{Fault: faultfake.Healthy})
	took := waitFor(t, 10*time.Second, "the answer delivered after the heal", func() bool {
		g, _ := db.GetPendingGate(ctx, p.ID)
		return g.State == core.PendingAnswered
	})
	t.Logf("answered %v after the heal", took.Round(10*time.Millisecond))
	time.Sleep(200 * time.Millisecond) // later passes must not answer again
	g, _ = db.GetPendingGate(ctx, p.ID)
	if reviews.Load() != 1 || g.LastError != "" {
		t.Errorf("%d reviews delivered (want 1), last error %q", reviews.Load(), g.LastError)
	}
	if n, ok := outcomes.Load("approved"); !ok || n.(*atomic.Int32).Load() != 1 {
		t.Errorf("approved outcomes: %v", n)
	}
}

// TestCIGateOutcomeSavedAfterOutage: the database goes away between a
// protection rule's review reaching GitHub and its outcome being saved.
// The request is not left claimed and "answering" until its lease ends,
// to be reviewed a second time then: the next pass after the database
// answers saves it answered, and GitHub got one review.
func TestCIGateOutcomeSavedAfterOutage(t *testing.T) {
	f := newProtectionRule(t)
	db, gh, reviews := f.db, f.gh, &f.reviews
	ctx := context.Background()
	gates := NewCIGates(db, allowDecider{}, nil, []Connector{{Config: connectors.Config{Name: "gh", CIGate: &connectors.CIGate{Deadline: time.Hour}}, Webhook: gh}},
		core.ClockFunc(time.Now), slog.New(slog.DiscardHandler), CIGatesConfig{PollInterval: time.Hour, Lease: time.Minute})
	state := func() core.PendingGate {
		t.Helper()
		all, err := db.ListPendingGates(ctx, nil, 10)
		if err != nil || len(all) != 1 {
			t.Fatalf("pending gates: %v %v", all, err)
		}
		return all[0]
	}

	db.saveDown = true
	gates.pass(ctx, true) // claims, reviews, cannot save
	if n := reviews.Load(); n != 1 {
		t.Fatalf("%d reviews sent, want 1", n)
	}
	if st := state(); st.State != core.PendingAnswering {
		t.Fatalf("during the outage: %s, want still answering in the store", st.State)
	}
	gates.pass(ctx, false) // still down: nothing claimed (the claim holds), nothing lost
	db.saveDown = false
	gates.pass(ctx, false)
	if st := state(); st.State != core.PendingAnswered || st.Decision != core.Allow {
		t.Fatalf("after the outage: %s %s, want answered allow at the next pass (not a lease later)", st.State, st.Decision)
	}
	gates.pass(ctx, true)
	if n := reviews.Load(); n != 1 {
		t.Errorf("%d reviews sent, want the one before the outage only", n)
	}
}

// protectionRule is a GitHub App connector against a fake GitHub (f.srv)
// that takes protection rule reviews (counted), and a store holding one
// request decided allow, answering.
type protectionRule struct {
	srv     *faultfake.Server
	gh      *github.Webhook
	db      *faultyStore
	p       core.PendingGate
	reviews atomic.Int32
}

func newProtectionRule(t *testing.T) *protectionRule {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	f := &protectionRule{}
	f.srv = faultfake.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/app/installations/99/access_tokens":
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(map[string]any{"token": "ghs_x", "expires_at": time.Now().Add(time.Hour)})
		case "/repos/Codertocat/Hello-World/actions/runs/77/deployment_protection_rule":
			f.reviews.Add(1)
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(f.srv.Close)
	if f.gh, err = github.New(connectors.Config{Name: "gh", Type: github.Type, WebhookSecret: "0123456789abcdef",
		API:    &connectors.API{URL: f.srv.URL, AppID: "42", PrivateKey: pemKey, Timeout: time.Second},
		CIGate: &connectors.CIGate{Deadline: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	_, f.db = newTestInbox(t, core.ClockFunc(time.Now), InboxConfig{})
	ctx := context.Background()
	now := time.Now()
	if f.p, _, err = f.db.InsertPendingGate(ctx, core.PendingGate{Connector: "gh", Provider: "github", ExternalID: "deployment:1",
		Request:   core.GateRequest{Service: "hello", Environment: "production"},
		Target:    map[string]string{"repository": "Codertocat/Hello-World", "run_id": "77", "environment_name": "production", "installation_id": "99"},
		CreatedAt: now, Deadline: now.Add(time.Hour), NextCheckAt: now}); err != nil {
		t.Fatal(err)
	}
	f.p.State, f.p.Decision, f.p.Comment = core.PendingAnswering, core.Allow, "tollgate: allow"
	if err := f.db.SavePendingGate(ctx, f.p); err != nil {
		t.Fatal(err)
	}
	return f
}
