package service

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// pirStore answers facts like the real store: an approved change and the
// pending PIRs of the team the query names.
type pirStore struct {
	mu      sync.Mutex
	change  core.Change
	pirs    []core.PIR
	queries []core.FactsQuery
}

func (s *pirStore) GateFacts(_ context.Context, q core.FactsQuery) (core.Facts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries = append(s.queries, q)
	f := core.Facts{Changes: map[string]core.Change{}}
	for _, k := range q.ChangeKeys {
		if k == s.change.Key {
			f.Changes[k] = s.change
		}
	}
	for _, p := range s.pirs {
		if p.HoldsBack(q.Team, q.ExcludeReleaseID, q.Service, q.Version, q.Environment, q.Commit) {
			f.PendingPIRs = append(f.PendingPIRs, p)
		}
	}
	return f, nil
}

func (s *pirStore) SaveDecision(context.Context, core.GateDecision, string) error { return nil }

// gateWithPolicy wires a gate whose policy in force is pol.
func gateWithPolicy(t *testing.T, store GateStore, pol core.Policy, clock core.Clock) *Gate {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pols := NewPolicies(&seedOnce{}, log)
	if err := pols.Load(context.Background(), &pol); err != nil {
		t.Fatal(err)
	}
	return NewGate(store, pols, nil, clock, log, GateConfig{MaxWait: time.Minute, MaxListItems: 5})
}

// catalogPolicy is the default policy with payments-api owned by payments
// and a PIR required after normal changes in production.
func catalogPolicy() core.Policy {
	p := core.DefaultPolicy()
	p.Services = map[string]core.ServiceInfo{"payments-api": {Team: "payments"}}
	prod := p.Environments["production"]
	prod.PIRRequired = []core.ChangeType{core.ChangeNormal}
	p.Environments["production"] = prod
	return p
}

// TestCheckTeamFromCatalog: the catalog decides the team whose pending
// reviews hold a release back; a caller naming another team (or spelling
// the service or environment otherwise) still waits, and is told its team
// was ignored.
func TestCheckTeamFromCatalog(t *testing.T) {
	approved := pendingChange()
	approved.Approval = core.ApprovalApproved
	approved.Services = []string{"payments-api"}
	approved.Approvals = []core.Approval{{Approver: "ana", Decision: core.ApprovalApproved}, {Approver: "bo", Decision: core.ApprovalApproved}}
	store := &pirStore{change: approved, pirs: []core.PIR{{
		ReleaseID: core.ReleaseID("payments-api", "1.0.0", "production"), Service: "payments-api", Version: "1.0.0",
		Environment: "production", Team: "payments", Status: core.PIRPending,
	}}}
	g := gateWithPolicy(t, store, catalogPolicy(), core.SystemClock)
	wantRelease := core.ReleaseID("payments-api", "1.0.1", "production")
	for _, tt := range []struct {
		name, service, env, team string
		note                     bool
	}{
		{"no team", "payments-api", "production", "", false},
		{"the catalog's team", "payments-api", "production", "payments", false},
		{"another team", "payments-api", "production", "nobody", true},
		{"another team, alias", "payments-api", "prod", "nobody", true},
		{"another team, capitals", "Payments-API", "PRODUCTION", "nobody", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := core.GateRequest{Service: tt.service, Environment: tt.env, Version: "1.0.1", Team: tt.team, Changes: []string{"CHG1"}}
			d, err := g.Check(context.Background(), req, "ci", 0)
			if err != nil {
				t.Fatal(err)
			}
			codes := []string{}
			for _, r := range d.Reasons {
				codes = append(codes, r.Code)
			}
			want := []string{core.CodePIRPending}
			if tt.note {
				want = append(want, core.CodeTeamIgnored)
			}
			if d.Decision != core.Wait || !equal(codes, want) {
				t.Fatalf("got %s %v, want wait %v", d.Decision, codes, want)
			}
			store.mu.Lock()
			q := store.queries[len(store.queries)-1]
			store.mu.Unlock()
			if q.Team != "payments" || q.Service != "payments-api" || q.Environment != "production" || d.ReleaseID != wantRelease ||
				d.Request.Team != "payments" {
				t.Fatalf("facts asked for %+v, release %s, request %+v", q, d.ReleaseID, d.Request)
			}
		})
	}
}

// TestDeploymentTeamFromCatalog: a deployment report cannot file its
// release (and the review it requires) under another team.
func TestDeploymentTeamFromCatalog(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pols := NewPolicies(&seedOnce{}, log)
	pol := catalogPolicy()
	if err := pols.Load(context.Background(), &pol); err != nil {
		t.Fatal(err)
	}
	deps := NewDeployments(nil, pols, core.SystemClock, log, 5)
	for _, team := range []string{"", "nobody", "payments"} {
		d, err := deps.Validate(core.Deployment{Service: " PAYMENTS-API", Environment: "Prod", Version: "1.0.0", Team: team,
			Status: core.DeploySucceeded, StartedAt: time.Now(), Provider: "github", RunID: "1"})
		if err != nil || d.Team != "payments" || d.Service != "payments-api" || d.Environment != "production" {
			t.Fatalf("team %q: got %+v, %v", team, d, err)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
