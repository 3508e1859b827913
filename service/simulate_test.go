package service

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/core"
)

// fakeSimulateStore holds n deployments and n gate checks of production,
// each check answered allow with would_be deny (observe mode).
type fakeSimulateStore struct {
	n    int
	envs []string // the environment filters ListDecisionsBetween was asked for
}

func (f *fakeSimulateStore) ReconcileScan(_ context.Context, q core.ReconcileQuery, _ func(core.Incident) bool, _ int, fn func([]core.DeploymentFacts) error) error {
	page := make([]core.DeploymentFacts, 0, f.n)
	for i := range f.n {
		page = append(page, core.DeploymentFacts{Deployment: core.Deployment{ID: fmt.Sprint("d", i), Service: "pay", Environment: "production",
			Version: fmt.Sprint("1.0.", i), Status: core.DeploySucceeded, StartedAt: q.From.Add(time.Minute)}})
	}
	return fn(page)
}

func (f *fakeSimulateStore) ListDecisionsBetween(_ context.Context, from, _ time.Time, env string, limit int) ([]core.GateDecision, error) {
	f.envs = append(f.envs, env)
	var out []core.GateDecision
	for i := 0; i < f.n && i < limit; i++ {
		req := core.GateRequest{Service: "pay", Environment: "production", Version: fmt.Sprint("2.0.", i)}
		out = append(out, core.GateDecision{ID: fmt.Sprint("g", i), ReleaseID: core.ReleaseID(req.Service, req.Version, req.Environment),
			Request: req, Decision: core.Allow, WouldBe: core.Deny, EvaluatedAt: from.Add(time.Minute)})
	}
	return out, nil
}

func (f *fakeSimulateStore) GateFacts(context.Context, core.FactsQuery) (core.Facts, error) {
	return core.Facts{Changes: map[string]core.Change{}}, nil
}

func newTestSimulator(t *testing.T, store SimulateStore, limit int) *Simulator {
	t.Helper()
	pols := NewPolicies(&seedOnce{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := pols.Load(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	s := NewSimulator(store, pols)
	s.limit = limit
	return s
}

// TestSimulationEnvironment: an environment neither the policy in force
// nor the proposed one knows is a 400 naming the field (it answered an
// empty simulation); an alias resolves, and the filter reaches the store.
func TestSimulationEnvironment(t *testing.T) {
	src, err := config.MarshalPolicy(core.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		env, want string // want: the canonical filter, or "!" for a refusal
	}{
		{"", ""},
		{"prod", "production"},
		{" Production ", "production"},
		{"prodution", "!"},
		{"*", "!"},
	}
	for _, tt := range tests {
		store := &fakeSimulateStore{n: 1}
		s := newTestSimulator(t, store, 0)
		in := SimulateInput{Policy: src, From: from, To: from.Add(time.Hour), Environment: tt.env}
		proposed, err := s.Prepare(context.Background(), in)
		if tt.want == "!" {
			if core.KindOf(err) != core.KindInvalid || err.(*core.Error).Field != "environment" {
				t.Errorf("simulate %q: %v, want invalid environment", tt.env, err)
			}
			if _, err := s.WouldHaveBlocked(context.Background(), in.From, in.To, tt.env); core.KindOf(err) != core.KindInvalid || err.(*core.Error).Field != "environment" {
				t.Errorf("observe %q: %v, want invalid environment", tt.env, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("simulate %q: %v", tt.env, err)
		}
		if _, err := s.Run(context.Background(), proposed, in, func(SimulatedRelease) error { return nil }); err != nil {
			t.Fatalf("simulate %q: %v", tt.env, err)
		}
		if _, err := s.WouldHaveBlocked(context.Background(), in.From, in.To, tt.env); err != nil {
			t.Fatalf("observe %q: %v", tt.env, err)
		}
		if len(store.envs) != 2 || store.envs[0] != tt.want || store.envs[1] != tt.want {
			t.Errorf("%q: the store was asked for %q, want %q", tt.env, store.envs, tt.want)
		}
	}
}

// TestSimulationTruncated: an answer cut short by the bound says so, and
// one that read everything does not.
func TestSimulationTruncated(t *testing.T) {
	src, err := config.MarshalPolicy(core.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		n         int
		truncated bool
	}{{3, false}, {4, true}, {10, true}} {
		s := newTestSimulator(t, &fakeSimulateStore{n: tt.n}, 3)
		in := SimulateInput{Policy: src, From: from, To: from.Add(time.Hour)}
		proposed, err := s.Prepare(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := s.Run(context.Background(), proposed, in, func(SimulatedRelease) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if sum.Truncated != tt.truncated || sum.Releases != min(tt.n, 3)*2 {
			t.Errorf("simulate %d of a bound of 3: truncated %v, %d releases", tt.n, sum.Truncated, sum.Releases)
		}
		rep, err := s.WouldHaveBlocked(context.Background(), in.From, in.To, "")
		if err != nil {
			t.Fatal(err)
		}
		if rep.Truncated != tt.truncated || len(rep.Items) != min(tt.n, 3) {
			t.Errorf("observe %d of a bound of 3: truncated %v, %d items", tt.n, rep.Truncated, len(rep.Items))
		}
	}
}
