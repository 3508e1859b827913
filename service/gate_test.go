package service

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// fakeGateStore answers facts from a mutable change and records decisions.
type fakeGateStore struct {
	mu        sync.Mutex
	change    core.Change
	decisions []core.GateDecision
}

func (f *fakeGateStore) GateFacts(_ context.Context, q core.FactsQuery) (core.Facts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	facts := core.Facts{Changes: map[string]core.Change{}}
	for _, k := range q.ChangeKeys {
		if k == f.change.Key {
			facts.Changes[k] = f.change
		}
	}
	return facts, nil
}

func (f *fakeGateStore) SaveDecision(_ context.Context, d core.GateDecision, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decisions = append(f.decisions, d)
	return nil
}

func (f *fakeGateStore) approve() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.change.Approval = core.ApprovalApproved
	f.change.Approvals = []core.Approval{{Approver: "ana", Decision: core.ApprovalApproved}, {Approver: "bo", Decision: core.ApprovalApproved}}
}

// fakeSubs delivers topics sent on its channel to every subscriber.
type fakeSubs struct{ ch chan string }

func (s fakeSubs) Subscribe() (<-chan string, func()) { return s.ch, func() {} }

func newTestGate(t *testing.T, store GateStore, subs Subscriber) *Gate {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pols := NewPolicies(&seedOnce{}, log)
	if err := pols.Load(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return NewGate(store, pols, subs, core.SystemClock, log, GateConfig{MaxWait: time.Minute, MaxListItems: 5})
}

// seedOnce is a policy store holding what was put.
type seedOnce struct {
	mu  sync.Mutex
	src string
}

func (s *seedOnce) PutPolicy(_ context.Context, src, _ string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.src = src
	return 1, nil
}

func (s *seedOnce) CurrentPolicy(context.Context) (core.PolicyVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.src == "" {
		return core.PolicyVersion{}, core.NotFound("policy", "current")
	}
	return core.PolicyVersion{Version: 1, Source: s.src}, nil
}

func pendingChange() core.Change {
	now := time.Now().UTC()
	start, end := now.Add(-time.Hour), now.Add(time.Hour)
	return core.Change{Key: "CHG1", Type: core.ChangeNormal, State: core.ChangeStateScheduled, Approval: core.ApprovalRequested,
		PlannedStart: &start, PlannedEnd: &end, Services: []string{"api"}, RequestedBy: "carla",
		HasRiskAssessment: true, HasBackoutPlan: true}
}

var checkReq = core.GateRequest{Service: "api", Environment: "prod", Version: "1.0.0", Changes: []string{"CHG1"}}

func TestCheckLongPoll(t *testing.T) {
	ctx := context.Background()
	t.Run("answers when a relevant update lands", func(t *testing.T) {
		store := &fakeGateStore{change: pendingChange()}
		subs := fakeSubs{ch: make(chan string, 4)}
		g := newTestGate(t, store, subs)
		go func() {
			time.Sleep(50 * time.Millisecond)
			subs.ch <- "change:OTHER" // not this release's: no re-evaluation needed
			store.approve()
			subs.ch <- "change:CHG1"
		}()
		start := time.Now()
		d, err := g.Check(ctx, checkReq, "ci", 30*time.Second)
		if err != nil || d.Decision != core.Allow {
			t.Fatalf("got %+v, %v", d, err)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("took %v", time.Since(start))
		}
		if len(store.decisions) != 1 || store.decisions[0].ID == "" || d.Request.Environment != "production" {
			t.Fatalf("recorded %+v (only the answer is recorded, environment resolved)", store.decisions)
		}
	})
	t.Run("deadline answers the last wait", func(t *testing.T) {
		store := &fakeGateStore{change: pendingChange()}
		g := newTestGate(t, store, fakeSubs{ch: make(chan string)})
		d, err := g.Check(ctx, checkReq, "ci", 100*time.Millisecond)
		if err != nil || d.Decision != core.Wait || len(store.decisions) != 1 {
			t.Fatalf("got %+v, %v", d, err)
		}
	})
	t.Run("shutdown answers at once", func(t *testing.T) {
		store := &fakeGateStore{change: pendingChange()}
		g := newTestGate(t, store, fakeSubs{ch: make(chan string)})
		g.Shutdown()
		d, err := g.Check(ctx, checkReq, "ci", time.Hour)
		if err != nil || d.Decision != core.Wait {
			t.Fatalf("got %+v, %v", d, err)
		}
	})
	t.Run("unfit to judge: refused, nothing recorded, a wait included", func(t *testing.T) {
		store := &fakeGateStore{change: pendingChange()}
		subs := fakeSubs{ch: make(chan string, 1)}
		g := newTestGate(t, store, subs)
		var unfit atomic.Bool
		g.Unfit = func() error {
			if unfit.Load() {
				return core.Errorf(core.KindUnavailable, "clock off")
			}
			return nil
		}
		unfit.Store(true)
		if _, err := g.Check(ctx, checkReq, "ci", 0); !core.IsKind(err, core.KindUnavailable) {
			t.Errorf("Check: %v, want refused", err)
		}
		if _, _, _, err := g.Decide(ctx, checkReq, "ci", time.Now().Add(time.Minute)); !core.IsKind(err, core.KindUnavailable) {
			t.Errorf("Decide: %v, want refused", err)
		}
		unfit.Store(false)
		go func() {
			time.Sleep(50 * time.Millisecond)
			unfit.Store(true) // the clock drifts while the check waits
			subs.ch <- "change:CHG1"
		}()
		if _, err := g.Check(ctx, checkReq, "ci", 30*time.Second); !core.IsKind(err, core.KindUnavailable) || len(store.decisions) != 0 {
			t.Errorf("a waiting check turned unfit: %v, %d decisions; want refused, none recorded", err, len(store.decisions))
		}
	})
	t.Run("a client that goes away records nothing", func(t *testing.T) {
		store := &fakeGateStore{change: pendingChange()}
		g := newTestGate(t, store, fakeSubs{ch: make(chan string)})
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if _, err := g.Check(cctx, checkReq, "ci", time.Hour); !core.IsKind(err, core.KindUnavailable) || len(store.decisions) != 0 {
			t.Fatalf("err %v, decisions %d", err, len(store.decisions))
		}
	})
}

func TestCheckValidation(t *testing.T) {
	g := newTestGate(t, &fakeGateStore{change: pendingChange()}, nil)
	for _, tt := range []struct {
		name  string
		req   core.GateRequest
		field string
	}{
		{"no service", core.GateRequest{Environment: "production", Version: "1"}, "service"},
		{"bad service", core.GateRequest{Service: "a b", Environment: "production", Version: "1"}, "service"},
		{"unknown environment", core.GateRequest{Service: "a", Environment: "mars", Version: "1"}, "environment"},
		{"no version", core.GateRequest{Service: "a", Environment: "production"}, "version"},
		{"bad key", core.GateRequest{Service: "a", Environment: "production", Version: "1", Changes: []string{"ok", "no spaces"}}, "changes[1]"},
		{"too many keys", core.GateRequest{Service: "a", Environment: "production", Version: "1", Changes: []string{"a", "b", "c", "d", "e", "f"}}, "changes"},
		{"bad incident", core.GateRequest{Service: "a", Environment: "production", Version: "1", Incidents: []string{""}}, "incidents[0]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := g.Check(context.Background(), tt.req, "ci", 0)
			var ce *core.Error
			if !core.IsKind(err, core.KindInvalid) || !asError(err, &ce) || ce.Field != tt.field {
				t.Fatalf("err %v, want invalid %s", err, tt.field)
			}
		})
	}
}

func asError(err error, target **core.Error) bool {
	e, ok := err.(*core.Error)
	if ok {
		*target = e
	}
	return ok
}

func TestRelevant(t *testing.T) {
	req := core.GateRequest{Service: "pay", Version: "1", Environment: "production", Changes: []string{"CHG1", "chg2"}}
	for topic, want := range map[string]bool{
		"change:CHG1": true, "change:CHG2": true, "change:CHG3": false,
		"incident:INC1": true, "pir:r1": true, "policy": true, "*": true, "hold": true,
		"evidence:" + core.ReleaseID("pay", "1", "production"): true, "evidence:" + core.ReleaseID("pay", "2", "production"): false,
	} {
		if got := relevant(topic, req); got != want {
			t.Errorf("relevant(%q) = %v, want %v", topic, got, want)
		}
	}
}
