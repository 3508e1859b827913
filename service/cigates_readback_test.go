package service

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/github"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/faultfake"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/store"
)

// fakeRun is a GitHub workflow run held at tollgate's deployment
// protection rule: it takes one review (204) and refuses any later one
// with 422, as GitHub does once the run no longer waits for the rule,
// and lists its deployment's statuses as statuses says for the review
// taken ("" before any).
type fakeRun struct {
	statuses func(taken string) (int, []string)
	// refuseReads: the first status reads are refused 401 (a stale
	// installation token: transient).
	refuseReads int

	mu      sync.Mutex
	taken   string   // the state of the review taken
	reviews []string // every review posted, taken or not
	reads   int      // status reads
}

func (f *fakeRun) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case "/app/installations/99/access_tokens":
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"token": "ghs_x", "expires_at": time.Now().Add(time.Hour)})
	case "/repos/Codertocat/Hello-World/actions/runs/77/deployment_protection_rule":
		var body struct {
			State string `json:"state"`
		}
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &body)
		f.reviews = append(f.reviews, body.State)
		if f.taken != "" {
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write([]byte(`{"message":"No pending deployment requests to approve or reject"}`))
			return
		}
		f.taken = body.State
		w.WriteHeader(http.StatusNoContent)
	case "/repos/Codertocat/Hello-World/deployments/4242/statuses":
		f.reads++
		code, states := f.statuses(f.taken)
		if f.reads <= f.refuseReads {
			code = http.StatusUnauthorized
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if code != http.StatusOK {
			_, _ = w.Write([]byte(`{"message":"Resource not accessible by integration"}`))
			return
		}
		list := []map[string]any{}
		for i, s := range states {
			list = append(list, map[string]any{"id": len(states) - i, "state": s, "created_at": time.Now()})
		}
		_ = json.NewEncoder(w).Encode(list)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// TestCIGateLostAnswerReadBack: the first review of a protection rule
// reaches GitHub, which takes it, but its reply is lost (the connection
// reset after GitHub acted). The review is not repeated within the call;
// the worker's next attempt is refused (422: the run no longer waits), so
// it reads the deployment back: one that ran took the approval, one that
// never ran took the rejection, and anything else is recorded as unknown
// with what GitHub shows — never as answered by guess. A review refused
// on its first attempt (nothing lost) stays failed, read back never. The
// old code repeated the review at once and recorded the 422 as failed.
func TestCIGateLostAnswerReadBack(t *testing.T) {
	ran := func(taken string) (int, []string) {
		if taken == "approved" {
			return http.StatusOK, []string{"in_progress", "queued", "waiting"}
		}
		return http.StatusOK, []string{"failure", "waiting"}
	}
	tests := []struct {
		name     string
		approved bool
		lost     bool // the first review's reply is lost
		statuses func(taken string) (int, []string)
		want     string // state
		outcome  string // tollgate_gate_callbacks_total outcome
		lastErr  []string
		reviews  int
		reads    bool
		// refuseReads: status reads refused 401 first, each a retried
		// outcome and one more review refused before the next read.
		refuseReads int
	}{
		{name: "approval taken, deployment ran", approved: true, lost: true, statuses: ran,
			want: core.PendingAnswered, outcome: "approved", reviews: 2, reads: true},
		{name: "rejection taken, deployment never ran", approved: false, lost: true, statuses: ran,
			want: core.PendingAnswered, outcome: "rejected", reviews: 2, reads: true},
		{name: "approval taken, deployment still waiting on another rule", approved: true, lost: true,
			statuses: func(string) (int, []string) { return http.StatusOK, []string{"waiting"} },
			want:     core.PendingUnknown, outcome: "unknown", reviews: 2, reads: true,
			lastErr: []string{"outcome unknown", "HTTP 422", "statuses waiting", "has not run yet"}},
		{name: "approval sent, deployment stopped", approved: true, lost: true,
			statuses: func(string) (int, []string) { return http.StatusOK, []string{"error", "waiting"} },
			want:     core.PendingUnknown, outcome: "unknown", reviews: 2, reads: true,
			lastErr: []string{"outcome unknown", "never ran, so the approval was not taken"}},
		{name: "statuses cannot be read", approved: true, lost: true,
			statuses: func(string) (int, []string) { return http.StatusForbidden, nil },
			want:     core.PendingUnknown, outcome: "unknown", reviews: 2, reads: true,
			lastErr: []string{"outcome unknown", "could not be read", "HTTP 403"}},
		{name: "approval taken, first read-back refused: read again on the next attempt", approved: true, lost: true, statuses: ran,
			refuseReads: 1, want: core.PendingAnswered, outcome: "approved", reviews: 3, reads: true},
		{name: "refused at once, nothing lost", approved: true, statuses: ran,
			want: core.PendingFailed, outcome: "failed", reviews: 1, lastErr: []string{"HTTP 422"}},
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	for _, dialect := range []string{"sqlite", "postgres"} {
		for _, tt := range tests {
			t.Run(dialect+"/"+tt.name, func(t *testing.T) {
				ctx := context.Background()
				url := "sqlite:" + filepath.Join(t.TempDir(), "t.db")
				if dialect == "postgres" {
					url = testpg.NewMigratedDatabase(t)
				}
				db, err := store.Open(ctx, url, store.Options{Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				if _, err := db.Migrate(ctx); err != nil {
					t.Fatal(err)
				}
				run := &fakeRun{statuses: tt.statuses, refuseReads: tt.refuseReads}
				if !tt.lost { // a run that already took a review elsewhere
					run.taken = "rejected"
				}
				srv := faultfake.New(run)
				defer srv.Close()
				if tt.lost {
					srv.Set(faultfake.Mode{Fault: faultfake.ActReset, Failures: 1, Match: "/deployment_protection_rule"})
				}
				gh, err := github.New(connectors.Config{Name: "gh", Type: github.Type, WebhookSecret: "0123456789abcdef",
					API:    &connectors.API{URL: srv.URL, AppID: "42", PrivateKey: pemKey, Timeout: time.Second},
					CIGate: &connectors.CIGate{Deadline: time.Hour}})
				if err != nil {
					t.Fatal(err)
				}
				now := time.Now()
				p, _, err := db.InsertPendingGate(ctx, core.PendingGate{Connector: "gh", Provider: "github", ExternalID: "deployment:4242",
					Request: core.GateRequest{Service: "hello", Environment: "production"},
					Target: map[string]string{"repository": "Codertocat/Hello-World", "run_id": "77", "environment_name": "production",
						"installation_id": "99", "deployment_id": "4242"},
					CreatedAt: now, Deadline: now.Add(time.Hour), NextCheckAt: now})
				if err != nil {
					t.Fatal(err)
				}
				p.State, p.Decision, p.Comment = core.PendingAnswering, core.Deny, "tollgate: deny"
				if tt.approved {
					p.Decision, p.Comment = core.Allow, "tollgate: allow"
				}
				if err := db.SavePendingGate(ctx, p); err != nil {
					t.Fatal(err)
				}
				var mu sync.Mutex
				outcomes := map[string]int{}
				gates := NewCIGates(db, allowDecider{}, nil, []Connector{{Config: connectors.Config{Name: "gh", CIGate: &connectors.CIGate{Deadline: time.Hour}}, Webhook: gh}},
					core.ClockFunc(time.Now), slog.New(slog.DiscardHandler), CIGatesConfig{PollInterval: 20 * time.Millisecond, RetryMin: 50 * time.Millisecond, RetryMax: time.Second})
				gates.OnAnswer = func(_, outcome string) { mu.Lock(); outcomes[outcome]++; mu.Unlock() }
				cctx, cancel := context.WithCancel(ctx)
				var wg sync.WaitGroup
				wg.Add(1)
				go func() { defer wg.Done(); gates.Run(cctx) }()
				var g core.PendingGate
				waitFor(t, 10*time.Second, "the answer settled", func() bool {
					g, _ = db.GetPendingGate(ctx, p.ID)
					return g.State != core.PendingAnswering
				})
				time.Sleep(100 * time.Millisecond) // later passes must not touch it again
				cancel()
				wg.Wait()
				g, _ = db.GetPendingGate(ctx, p.ID)
				t.Logf("%s after %d attempt(s): %s", g.State, g.Attempts, g.LastError)
				if g.State != tt.want {
					t.Errorf("state %s (%s), want %s", g.State, g.LastError, tt.want)
				}
				for _, w := range tt.lastErr {
					if !strings.Contains(g.LastError, w) {
						t.Errorf("last error %q does not say %q", g.LastError, w)
					}
				}
				if tt.want == core.PendingAnswered && (g.LastError != "" || g.AnsweredAt == nil) {
					t.Errorf("answered with last error %q, answered_at %v", g.LastError, g.AnsweredAt)
				}
				if tt.want != core.PendingAnswered && g.AnsweredAt != nil {
					t.Errorf("%s but answered_at is set", g.State)
				}
				run.mu.Lock()
				reviews, reads := len(run.reviews), run.reads
				run.mu.Unlock()
				if reviews != tt.reviews {
					t.Errorf("%d reviews posted, want %d", reviews, tt.reviews)
				}
				if (reads > 0) != tt.reads {
					t.Errorf("%d status reads, want reads %t", reads, tt.reads)
				}
				mu.Lock()
				defer mu.Unlock()
				if outcomes[tt.outcome] != 1 {
					t.Errorf("outcomes %v, want one %s", outcomes, tt.outcome)
				}
				if tt.lost && outcomes["retried"] != 1+tt.refuseReads {
					t.Errorf("outcomes %v, want %d retried (the lost reply, the refused reads)", outcomes, 1+tt.refuseReads)
				}
			})
		}
	}
}
