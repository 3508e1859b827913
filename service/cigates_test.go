package service

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
)

// memPending is an in-memory PendingStore.
type memPending struct {
	mu    sync.Mutex
	items map[string]core.PendingGate
}

func (m *memPending) InsertPendingGate(_ context.Context, p core.PendingGate) (core.PendingGate, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, q := range m.items {
		if q.Connector == p.Connector && q.ExternalID == p.ExternalID {
			return q, false, nil
		}
	}
	if p.ID == "" {
		p.ID = newID()
	}
	m.items[p.ID] = p
	return p, true, nil
}

func (m *memPending) ClaimPendingGates(_ context.Context, all bool, limit int, _ time.Duration) ([]core.PendingGate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []core.PendingGate
	for _, p := range m.items {
		open := p.State == core.PendingWaiting || p.State == core.PendingAnswering
		if open && (!p.NextCheckAt.After(time.Now()) || (all && p.State == core.PendingWaiting)) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (m *memPending) SavePendingGate(_ context.Context, p core.PendingGate) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.items[p.ID] = p
	return nil
}

// RenewPendingClaim: the in-memory store claims nothing (Claim stays
// zero), so there is nothing to renew.
func (m *memPending) RenewPendingClaim(context.Context, *core.PendingGate, time.Duration) error {
	return nil
}

func (m *memPending) ListPendingGates(_ context.Context, states []string, _ int) ([]core.PendingGate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []core.PendingGate
	for _, p := range m.items {
		for _, s := range states {
			if p.State == s {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

func (m *memPending) GateRequestFor(_ context.Context, connector, ext string) (core.PendingGate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.items {
		if p.Connector == connector && p.ExternalID == ext {
			return p, nil
		}
	}
	return core.PendingGate{}, core.NotFound("gate request", ext)
}

func (m *memPending) MarkPendingDue(_ context.Context, ids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		if p, ok := m.items[id]; ok && p.State == core.PendingWaiting {
			p.NextCheckAt = time.Now()
			m.items[id] = p
		}
	}
	return nil
}

func (m *memPending) MarkAllPendingDue(ctx context.Context) error {
	m.mu.Lock()
	var ids []string
	for id := range m.items {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	return m.MarkPendingDue(ctx, ids)
}

func (m *memPending) WaitingGatesAfter(_ context.Context, after string, limit int) ([]core.PendingGate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []core.PendingGate
	for _, p := range m.items {
		if p.State == core.PendingWaiting && p.ID > after {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b core.PendingGate) int { return strings.Compare(a.ID, b.ID) })
	return out[:min(len(out), limit)], nil
}

func (m *memPending) CountWaitingGates(_ context.Context, connector, repository string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, p := range m.items {
		if p.State == core.PendingWaiting && p.Connector == connector && p.Repository == repository {
			n++
		}
	}
	return n, nil
}

func (m *memPending) CountOpenGates(context.Context) (map[string]int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for _, p := range m.items {
		if p.State == core.PendingWaiting || p.State == core.PendingAnswering {
			out[p.Provider]++
		}
	}
	return out, nil
}

// flakyAnswerer fails its first calls with err, then accepts.
type flakyAnswerer struct {
	connectors.Webhook
	mu       sync.Mutex
	failures int
	err      error
	calls    int
	comments []string
	approved []bool
}

// allowDecider allows every request, recording nothing: for tests of
// delivery, where a decided approval is confirmed before it is sent again.
type allowDecider struct{}

func (allowDecider) Decide(context.Context, core.GateRequest, string, time.Time) (core.GateDecision, time.Time, bool, error) {
	return core.GateDecision{ID: "confirmed", Decision: core.Allow}, time.Time{}, true, nil
}

// approvedAround is CHG1 approved for api, its window an hour either side
// of now.
func approvedAround(now time.Time) core.Change {
	start, end := now.Add(-time.Hour), now.Add(time.Hour)
	return core.Change{Key: "CHG1", Type: core.ChangeNormal, State: core.ChangeStateScheduled, Approval: core.ApprovalApproved,
		Approvals:    []core.Approval{{Approver: "ana", Decision: core.ApprovalApproved}, {Approver: "bo", Decision: core.ApprovalApproved}},
		PlannedStart: &start, PlannedEnd: &end, Services: []string{"api"}, RequestedBy: "carla", HasRiskAssessment: true, HasBackoutPlan: true}
}

func (f *flakyAnswerer) Answer(_ context.Context, _ core.PendingGate, approved bool, comment string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.comments = append(f.comments, comment)
	f.approved = append(f.approved, approved)
	if f.calls <= f.failures {
		return f.err
	}
	return nil
}

// TestCIGateDelivery: a failed answer is retried with backoff until it is
// delivered; one the CI refuses for good, or still failing after
// MaxAttempts, is shown as failed; each outcome is counted.
func TestCIGateDelivery(t *testing.T) {
	tests := []struct {
		name      string
		failures  int
		err       error
		wantState string
		wantCalls int
		outcomes  []string
	}{
		{"delivered at once", 0, nil, core.PendingAnswered, 1, []string{"approved"}},
		{"transient failures retried", 2, core.Errorf(core.KindUnavailable, "502"), core.PendingAnswered, 3, []string{"retried", "retried", "approved"}},
		{"refused for good", 5, core.Errorf(core.KindInvalid, "422 run no longer waiting"), core.PendingFailed, 1, []string{"failed"}},
		{"attempts spent", 9, core.Errorf(core.KindUnavailable, "503"), core.PendingFailed, 3, []string{"retried", "retried", "failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &memPending{items: map[string]core.PendingGate{}}
			ans := &flakyAnswerer{failures: tt.failures, err: tt.err}
			conns := []Connector{{Config: connectors.Config{Name: "github", Type: "github", CIGate: &connectors.CIGate{Deadline: time.Hour}}, Webhook: ans}}
			gate := newTestGate(t, &fakeGateStore{change: approvedAround(time.Now())}, nil)
			g := NewCIGates(st, gate, nil, conns, core.SystemClock, slog.New(slog.NewTextHandler(io.Discard, nil)),
				CIGatesConfig{MaxAttempts: 3, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond})
			var mu sync.Mutex
			var outcomes []string
			g.OnAnswer = func(provider, outcome string) {
				mu.Lock()
				outcomes = append(outcomes, outcome)
				mu.Unlock()
			}
			long := make([]byte, 3000)
			for i := range long {
				long[i] = 'x'
			}
			st.items["p1"] = core.PendingGate{ID: "p1", Connector: "github", Provider: "github", State: core.PendingAnswering, CreatedAt: time.Now(),
				Request: checkReq, Decision: core.Allow, DecisionID: "d1", Comment: connectors.Comment(string(long)), Deadline: time.Now().Add(time.Hour)}
			ctx := context.Background()
			for i := 0; i < 20 && st.items["p1"].State == core.PendingAnswering; i++ {
				time.Sleep(3 * time.Millisecond)
				g.pass(ctx, false)
			}
			p := st.items["p1"]
			if p.State != tt.wantState || ans.calls != tt.wantCalls {
				t.Fatalf("state %s after %d calls (last error %q), want %s after %d", p.State, ans.calls, p.LastError, tt.wantState, tt.wantCalls)
			}
			if tt.wantState == core.PendingFailed && p.LastError == "" {
				t.Error("a failed answer keeps no error")
			}
			if len(ans.comments[0]) > connectors.MaxComment {
				t.Errorf("comment of %d bytes sent, want at most %d", len(ans.comments[0]), connectors.MaxComment)
			}
			if len(outcomes) != len(tt.outcomes) {
				t.Fatalf("outcomes %v, want %v", outcomes, tt.outcomes)
			}
			for i := range outcomes {
				if outcomes[i] != tt.outcomes[i] {
					t.Fatalf("outcomes %v, want %v", outcomes, tt.outcomes)
				}
			}
		})
	}
}

// TestCIGateReconfirm: an approval decided in an earlier pass is evaluated
// again before it is sent again (after a failed delivery, or a crash): it
// goes as decided while it holds; after the window closed a rejection
// goes instead; with the change's approval withdrawn the request waits
// again. The CI never gets an approval that no longer holds.
func TestCIGateReconfirm(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	withdrawn := approvedAround(t0)
	withdrawn.Approval, withdrawn.Approvals = core.ApprovalRequested, nil
	tests := []struct {
		name      string
		change    core.Change
		at        time.Time
		wantState string
		wantSent  []bool
		wantCode  string
	}{
		{"still holds", approvedAround(t0), t0.Add(10 * time.Minute), core.PendingAnswered, []bool{true}, ""},
		{"window closed", approvedAround(t0), t0.Add(2 * time.Hour), core.PendingAnswered, []bool{false}, core.CodeOutsideWindow},
		{"approval withdrawn", withdrawn, t0.Add(10 * time.Minute), core.PendingWaiting, nil, core.CodeChangeNotApproved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &fakeGateStore{change: tt.change}
			clock := newFakeClock(tt.at)
			gate := gateWithPolicy(t, store, core.DefaultPolicy(), clock)
			st := &memPending{items: map[string]core.PendingGate{}}
			ans := &flakyAnswerer{}
			conns := []Connector{{Config: connectors.Config{Name: "github", Type: "github", CIGate: &connectors.CIGate{Deadline: 24 * time.Hour}}, Webhook: ans}}
			g := NewCIGates(st, gate, nil, conns, clock, slog.New(slog.NewTextHandler(io.Discard, nil)), CIGatesConfig{})
			st.items["p1"] = core.PendingGate{ID: "p1", Connector: "github", Provider: "github", State: core.PendingAnswering,
				CreatedAt: t0, Deadline: t0.Add(24 * time.Hour), Request: checkReq, Attempts: 1, LastError: "502",
				Decision: core.Allow, DecisionID: "d1", Comment: "tollgate: allow (decision d1)"}
			g.pass(context.Background(), false)
			p := st.items["p1"]
			if p.State != tt.wantState || !slices.Equal(ans.approved, tt.wantSent) {
				t.Fatalf("state %s, sent %v (last error %q); want %s, sent %v", p.State, ans.approved, p.LastError, tt.wantState, tt.wantSent)
			}
			// A final re-evaluation is recorded; a wait is not (Decide).
			if want := len(tt.wantSent); len(store.decisions) != want {
				t.Fatalf("%d decisions recorded, want %d", len(store.decisions), want)
			}
			if tt.wantCode == "" {
				if p.DecisionID != "d1" || ans.comments[0] != "tollgate: allow (decision d1)" {
					t.Errorf("confirmed approval sent as %q with decision %s; want the first decision's", ans.comments[0], p.DecisionID)
				}
				return
			}
			if !slices.ContainsFunc(p.Reasons, func(r core.Reason) bool { return r.Code == tt.wantCode }) {
				t.Errorf("reasons %+v, want %s", p.Reasons, tt.wantCode)
			}
			if p.State == core.PendingAnswered && (p.Decision != core.Deny || p.DecisionID != store.decisions[0].ID) {
				t.Errorf("sent %s %s, want the new deny %s", p.Decision, p.DecisionID, store.decisions[0].ID)
			}
		})
	}
}

// TestCIGateDecidedOnce: a request decided in a pass is delivered in that
// pass on one evaluation (one decision recorded), not confirmed again.
func TestCIGateDecidedOnce(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	store := &fakeGateStore{change: approvedAround(t0)}
	clock := newFakeClock(t0.Add(time.Minute))
	st := &memPending{items: map[string]core.PendingGate{}}
	ans := &flakyAnswerer{}
	conns := []Connector{{Config: connectors.Config{Name: "github", Type: "github", CIGate: &connectors.CIGate{Deadline: time.Hour}}, Webhook: ans}}
	g := NewCIGates(st, gateWithPolicy(t, store, core.DefaultPolicy(), clock), nil, conns, clock, slog.New(slog.DiscardHandler), CIGatesConfig{})
	st.items["p1"] = core.PendingGate{ID: "p1", Connector: "github", Provider: "github", State: core.PendingWaiting,
		CreatedAt: t0, Deadline: t0.Add(time.Hour), Request: checkReq}
	g.pass(context.Background(), false)
	if p := st.items["p1"]; p.State != core.PendingAnswered || !slices.Equal(ans.approved, []bool{true}) || len(store.decisions) != 1 {
		t.Fatalf("state %s, sent %v, %d decisions recorded; want answered, one approval, one decision", p.State, ans.approved, len(store.decisions))
	}
}

// TestGateDecide: a CI gate request is evaluated at the moment given:
// while it waits nothing is recorded and the next check is the next time
// flip (a window opening) or the deadline; at the window it is allowed;
// at the deadline a wait becomes a deny with DEADLINE (fail closed).
func TestGateDecide(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 30, 0, time.UTC)
	change := func(start time.Time, approval core.ApprovalState) core.Change {
		end := t0.Add(time.Hour)
		return core.Change{Key: "CHG1", Type: core.ChangeNormal, State: core.ChangeStateScheduled, Approval: approval,
			Approvals:    []core.Approval{{Approver: "ana", Decision: approval}, {Approver: "bo", Decision: approval}},
			PlannedStart: &start, PlannedEnd: &end, Services: []string{"api"}, RequestedBy: "carla",
			HasRiskAssessment: true, HasBackoutPlan: true}
	}
	ctx := context.Background()
	t.Run("window opening", func(t *testing.T) {
		opens := t0.Add(24 * time.Second)
		store := &fakeGateStore{change: change(opens, core.ApprovalApproved)}
		clock := newFakeClock(t0)
		g := gateWithPolicy(t, store, core.DefaultPolicy(), clock)
		d, next, final, err := g.Decide(ctx, checkReq, "connector:github", t0.Add(time.Hour))
		if err != nil || final || d.Decision != core.Wait || !next.Equal(opens) || len(store.decisions) != 0 {
			t.Fatalf("before the window: %s final=%v next=%v err=%v recorded=%d; want wait until %v, nothing recorded", d.Decision, final, next, err, len(store.decisions), opens)
		}
		clock.set(opens)
		d, _, final, err = g.Decide(ctx, checkReq, "connector:github", t0.Add(time.Hour))
		if err != nil || !final || d.Decision != core.Allow || !d.EvaluatedAt.Equal(opens) || len(store.decisions) != 1 {
			t.Fatalf("at the window: %s final=%v err=%v; want allow recorded at %v", d.Decision, final, err, opens)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		store := &fakeGateStore{change: change(t0.Add(-time.Hour), core.ApprovalRequested)}
		clock := newFakeClock(t0)
		g := gateWithPolicy(t, store, core.DefaultPolicy(), clock)
		deadline := t0.Add(30 * time.Second)
		_, next, final, _ := g.Decide(ctx, checkReq, "connector:github", deadline)
		if final || !next.Equal(deadline) {
			t.Fatalf("awaiting approval: final=%v next=%v, want the deadline %v", final, next, deadline)
		}
		clock.set(deadline)
		d, _, final, err := g.Decide(ctx, checkReq, "connector:github", deadline)
		if err != nil || !final || d.Decision != core.Deny || len(store.decisions) != 1 {
			t.Fatalf("at the deadline: %s final=%v err=%v", d.Decision, final, err)
		}
		codes := map[string]bool{}
		for _, r := range d.Reasons {
			codes[r.Code] = true
		}
		if !codes[core.CodeDeadline] || !codes[core.CodeChangeNotApproved] {
			t.Fatalf("reasons %+v, want DEADLINE with what it waited for", d.Reasons)
		}
	})
}

// TestCIGateDeliveryGivesUp: a transient failure is not retried past
// GitHub's own limit (30 days after the request): the request is failed.
func TestCIGateDeliveryGivesUp(t *testing.T) {
	st := &memPending{items: map[string]core.PendingGate{}}
	ans := &flakyAnswerer{failures: 1, err: core.Errorf(core.KindUnavailable, "503")}
	conns := []Connector{{Config: connectors.Config{Name: "gitlab", Type: "gitlab", CIGate: &connectors.CIGate{Deadline: time.Hour}}, Webhook: ans}}
	g := NewCIGates(st, nil, nil, conns, core.SystemClock, slog.New(slog.NewTextHandler(io.Discard, nil)), CIGatesConfig{})
	st.items["p1"] = core.PendingGate{ID: "p1", Connector: "gitlab", Provider: "gitlab", State: core.PendingAnswering,
		Decision: core.Deny, CreatedAt: time.Now().Add(-30*24*time.Hour + time.Second)}
	g.pass(context.Background(), false)
	if p := st.items["p1"]; p.State != core.PendingFailed || ans.calls != 1 {
		t.Fatalf("state %s after %d calls, want failed after 1", p.State, ans.calls)
	}
}

// TestCIGateMarkDue: a change notification makes due only the waiting
// requests that link that change; an incident makes every one due.
func TestCIGateMarkDue(t *testing.T) {
	later := time.Now().Add(time.Hour)
	st := &memPending{items: map[string]core.PendingGate{
		"a": {ID: "a", State: core.PendingWaiting, NextCheckAt: later, Request: core.GateRequest{Changes: []string{"CHG1"}}},
		"b": {ID: "b", State: core.PendingWaiting, NextCheckAt: later, Request: core.GateRequest{Changes: []string{"CHG2"}}},
	}}
	g := NewCIGates(st, nil, nil, nil, core.SystemClock, slog.New(slog.NewTextHandler(io.Discard, nil)), CIGatesConfig{})
	due := func() (out []string) {
		for _, id := range []string{"a", "b"} {
			if st.items[id].NextCheckAt.Before(later) {
				out = append(out, id)
			}
		}
		return out
	}
	g.markDue(context.Background(), []string{"change:chg1"})
	if d := due(); len(d) != 1 || d[0] != "a" {
		t.Fatalf("after change:CHG1 due %v, want [a]", d)
	}
	g.markDue(context.Background(), []string{"incident:INC9"})
	if d := due(); len(d) != 2 {
		t.Fatalf("after an incident due %v, want both", d)
	}
}

// failingDecider cannot evaluate anything (an ITSM or the database away).
type failingDecider struct{}

func (failingDecider) Decide(context.Context, core.GateRequest, string, time.Time) (core.GateDecision, time.Time, bool, error) {
	return core.GateDecision{}, time.Time{}, false, core.Errorf(core.KindUnavailable, "ServiceNow acme unreachable")
}

// TestCIGateUnevaluableRejectedAtDeadline: a request that cannot be
// evaluated is retried, but not past its deadline: then it is rejected
// with DEADLINE (fail closed), not retried for good with the CI's run held.
func TestCIGateUnevaluableRejectedAtDeadline(t *testing.T) {
	st := &memPending{items: map[string]core.PendingGate{}}
	ans := &flakyAnswerer{}
	conns := []Connector{{Config: connectors.Config{Name: "github", Type: "github", CIGate: &connectors.CIGate{Deadline: time.Hour}}, Webhook: ans}}
	g := NewCIGates(st, failingDecider{}, nil, conns, core.SystemClock, slog.New(slog.NewTextHandler(io.Discard, nil)),
		CIGatesConfig{MaxAttempts: 3, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond})
	now := time.Now()
	st.items["early"] = core.PendingGate{ID: "early", Connector: "github", Provider: "github", State: core.PendingWaiting, CreatedAt: now,
		Request: checkReq, NextCheckAt: now, Deadline: now.Add(time.Hour)}
	st.items["late"] = core.PendingGate{ID: "late", Connector: "github", Provider: "github", State: core.PendingWaiting, CreatedAt: now.Add(-2 * time.Hour),
		Request: checkReq, NextCheckAt: now, Deadline: now.Add(-time.Second)}
	// An approval decided earlier, whose delivery failed, cannot be
	// confirmed before it is sent again: at the deadline it is rejected
	// too, not retried for good.
	st.items["resend"] = core.PendingGate{ID: "resend", Connector: "github", Provider: "github", State: core.PendingAnswering, CreatedAt: now.Add(-2 * time.Hour),
		Request: checkReq, NextCheckAt: now, Deadline: now.Add(-time.Second), Decision: core.Allow, DecisionID: "d-old", Attempts: 1}
	g.pass(context.Background(), false)
	if p := st.items["early"]; p.State != core.PendingWaiting || !p.NextCheckAt.After(now) {
		t.Errorf("before its deadline: %s next %v, want waiting and retried later", p.State, p.NextCheckAt)
	}
	for _, id := range []string{"late", "resend"} {
		p := st.items[id]
		if p.State != core.PendingAnswered || p.Decision != core.Deny || len(p.Reasons) != 1 || p.Reasons[0].Code != core.CodeDeadline {
			t.Errorf("%s, past its deadline: %s %s %+v; want a rejection with DEADLINE delivered", id, p.State, p.Decision, p.Reasons)
		}
	}
	if len(ans.approved) != 2 || ans.approved[0] || ans.approved[1] {
		t.Fatalf("answers %v, want two rejections", ans.approved)
	}
}
