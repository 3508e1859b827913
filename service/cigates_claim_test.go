package service

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
)

// switchDecider allows until deny is set, then denies (the change was
// canceled meanwhile); slow, when set, runs inside each evaluation.
type switchDecider struct {
	deny  atomic.Bool
	calls atomic.Int32
	slow  func()
}

func (d *switchDecider) Decide(context.Context, core.GateRequest, string, time.Time) (core.GateDecision, time.Time, bool, error) {
	d.calls.Add(1)
	deny := d.deny.Load() // the facts as read when the evaluation began
	if d.slow != nil {
		d.slow()
	}
	if deny {
		return core.GateDecision{ID: "deny", Decision: core.Deny, Reasons: []core.Reason{{Code: "CHANGE_CANCELED", Result: core.Deny}}}, time.Time{}, true, nil
	}
	return core.GateDecision{ID: "allow", Decision: core.Allow}, time.Time{}, true, nil
}

// sentAnswers records the answers that reached the fake CI.
type sentAnswers struct {
	mu       sync.Mutex
	approved []bool
}

func (s *sentAnswers) add(approved bool) {
	s.mu.Lock()
	s.approved = append(s.approved, approved)
	s.mu.Unlock()
}

func (s *sentAnswers) get() []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.approved...)
}

// slowAnswerer sends its answer only after block (a CI that stalls, an
// installation token fetched with retries), unless its context ends
// first; started is told when a call begins, cut when its context ended
// it.
type slowAnswerer struct {
	connectors.Webhook
	block   time.Duration
	sent    *sentAnswers
	started chan struct{}
	cut     atomic.Int32
	prepare func()
}

func (a *slowAnswerer) Answer(ctx context.Context, _ core.PendingGate, approved bool, _ string) error {
	if a.started != nil {
		select {
		case a.started <- struct{}{}:
		default:
		}
	}
	select {
	case <-ctx.Done():
		a.cut.Add(1)
		return ctx.Err()
	case <-time.After(a.block):
		a.sent.add(approved)
		return nil
	}
}

// preparingAnswerer is a slowAnswerer with work before the answer.
type preparingAnswerer struct{ *slowAnswerer }

func (a preparingAnswerer) PrepareAnswer(context.Context, core.PendingGate) error {
	a.prepare()
	return nil
}

// TestCIGateAnswerBoundedByClaim: replica A decides an approval and its
// delivery stalls past the claim's lease; meanwhile the change is
// canceled. A's delivery is cut off before its claim ends; replica B,
// claiming the request after it, evaluates it again and sends the
// rejection: the CI gets exactly one answer, and not A's stale approval.
func TestCIGateAnswerBoundedByClaim(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, _ := openInboxStore(t, "sqlite:"+filepath.Join(t.TempDir(), "t.db"), core.ClockFunc(time.Now), log)
	ctx := context.Background()
	now := time.Now()
	p, _, err := db.InsertPendingGate(ctx, core.PendingGate{Connector: "gh", Provider: "github", ExternalID: "run:1",
		Request: core.GateRequest{Service: "api", Environment: "production"}, State: core.PendingWaiting,
		CreatedAt: now, Deadline: now.Add(time.Hour), NextCheckAt: now})
	if err != nil {
		t.Fatal(err)
	}
	const lease = 400 * time.Millisecond
	decider := &switchDecider{}
	sent := &sentAnswers{}
	slowA := &slowAnswerer{block: 3 * lease, sent: sent, started: make(chan struct{}, 1)}
	fastB := &slowAnswerer{sent: sent}
	replica := func(a connectors.Webhook) *CIGates {
		return NewCIGates(db, decider, nil, []Connector{{Config: connectors.Config{Name: "gh", CIGate: &connectors.CIGate{Deadline: time.Hour}}, Webhook: a}},
			core.ClockFunc(time.Now), log, CIGatesConfig{Lease: lease, RetryMin: 10 * time.Millisecond, PollInterval: time.Hour})
	}
	a, b := replica(slowA), replica(fastB)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.pass(ctx, true) }()
	<-slowA.started // A decided allow and is sending
	decider.deny.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for len(sent.get()) == 0 && time.Now().Before(deadline) {
		b.pass(ctx, false)
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	time.Sleep(3 * lease) // a stale answer of A's would be out by now
	got := sent.get()
	if len(got) != 1 || got[0] {
		t.Fatalf("answers sent %v, want exactly one, the rejection", got)
	}
	if slowA.cut.Load() != 1 {
		t.Errorf("A's stalled delivery cut off %d times, want once (its context ended before its claim)", slowA.cut.Load())
	}
	g, err := db.GetPendingGate(ctx, p.ID)
	if err != nil || g.State != core.PendingAnswered || g.Decision != core.Deny {
		t.Fatalf("request %s %s (%v), want answered deny", g.State, g.Decision, err)
	}
}

// TestCIGateStaleApprovalEvaluatedAgain: an approval whose evaluation, or
// the work before its delivery (a token fetch), took longer than
// MaxDecisionAge is evaluated again before it is sent: the change was
// canceled meanwhile, so the rejection goes, not the stale approval.
func TestCIGateStaleApprovalEvaluatedAgain(t *testing.T) {
	for _, tc := range []struct {
		name           string
		slowEvaluation bool
	}{
		{name: "slow evaluation", slowEvaluation: true},
		{name: "slow token fetch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			now := time.Now()
			clock := core.ClockFunc(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
			elapse := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
			decider := &switchDecider{}
			stall := func() {
				if decider.calls.Load() == 1 {
					elapse(10 * time.Second)
					decider.deny.Store(true)
				}
			}
			sent := &sentAnswers{}
			var answerer connectors.Webhook = &slowAnswerer{sent: sent}
			if tc.slowEvaluation {
				decider.slow = stall
			} else {
				answerer = preparingAnswerer{&slowAnswerer{sent: sent, prepare: func() { decider.calls.Store(1); stall() }}}
			}
			store := &memPending{items: map[string]core.PendingGate{}}
			gates := NewCIGates(store, decider, nil, []Connector{{Config: connectors.Config{Name: "gh", CIGate: &connectors.CIGate{Deadline: time.Hour}}, Webhook: answerer}},
				clock, slog.New(slog.DiscardHandler), CIGatesConfig{})
			p, _, err := gates.Submit(context.Background(), connectors.Config{Name: "gh"}, core.PendingGate{Provider: "github", ExternalID: "run:1"})
			if err != nil {
				t.Fatal(err)
			}
			gates.pass(context.Background(), true)
			if got := sent.get(); len(got) != 1 || got[0] {
				t.Fatalf("answers sent %v, want the rejection only", got)
			}
			if g, _ := store.GateRequestFor(context.Background(), "gh", p.ExternalID); g.State != core.PendingAnswered || g.DecisionID != "deny" {
				t.Fatalf("request %s, decision %q; want answered with the new deny", g.State, g.DecisionID)
			}
		})
	}
}

// waitDecider keeps every request waiting (its change not yet approved).
type waitDecider struct{}

func (waitDecider) Decide(context.Context, core.GateRequest, string, time.Time) (core.GateDecision, time.Time, bool, error) {
	return core.GateDecision{Decision: core.Wait, Reasons: []core.Reason{{Code: core.CodeChangeNotApproved, Result: core.Wait}}},
		time.Now().Add(time.Hour), false, nil
}

// TestCIGateMaxOpenPerRepository: a repository may have MaxOpen requests
// waiting; one more is stored rejected with TOO_MANY_WAITING (counted)
// and the rejection, saying why, is sent to its CI; another repository's
// requests still wait, and room is made again once fewer wait.
func TestCIGateMaxOpenPerRepository(t *testing.T) {
	ctx := context.Background()
	st := &memPending{items: map[string]core.PendingGate{}}
	ans := &flakyAnswerer{}
	conn := connectors.Config{Name: "gh", CIGate: &connectors.CIGate{Deadline: time.Hour, MaxOpen: 3}}
	g := NewCIGates(st, waitDecider{}, nil, []Connector{{Config: conn, Webhook: ans}}, core.SystemClock, slog.New(slog.DiscardHandler), CIGatesConfig{})
	over := map[string]int{}
	g.OnOverLimit = func(c string) { over[c]++ }
	submit := func(repo string, n int) core.PendingGate {
		t.Helper()
		p, created, err := g.Submit(ctx, conn, core.PendingGate{Provider: "github", Repository: repo, ExternalID: fmt.Sprintf("deployment:%s-%d", repo, n),
			Request: core.GateRequest{Service: "api", Environment: "production"}})
		if err != nil || !created {
			t.Fatalf("submit %s %d: %v %v", repo, n, created, err)
		}
		return p
	}
	for i := range 3 {
		if p := submit("acme/matrix", i); p.State != core.PendingWaiting {
			t.Fatalf("request %d: %s, want waiting", i, p.State)
		}
	}
	extra := submit("acme/matrix", 3)
	if extra.State != core.PendingAnswering || extra.Decision != core.Deny || len(extra.Reasons) != 1 || extra.Reasons[0].Code != core.CodeTooManyWaiting ||
		!strings.Contains(extra.Comment, core.CodeTooManyWaiting) || !strings.Contains(extra.Comment, "3 requests of acme/matrix already wait") {
		t.Fatalf("the request over the limit: %s %s %+v %q; want rejected with TOO_MANY_WAITING", extra.State, extra.Decision, extra.Reasons, extra.Comment)
	}
	if over["gh"] != 1 {
		t.Errorf("over-limit count %v, want 1 for gh", over)
	}
	if p := submit("acme/ledger", 0); p.State != core.PendingWaiting {
		t.Fatalf("another repository's request: %s, want waiting", p.State)
	}
	g.pass(ctx, true)
	if ans.calls != 1 || ans.approved[0] || !strings.Contains(ans.comments[0], "TOO_MANY_WAITING") {
		t.Fatalf("answers %d %v %q; want the one rejection, saying why", ans.calls, ans.approved, ans.comments)
	}
	if got, _ := st.GateRequestFor(ctx, "gh", extra.ExternalID); got.State != core.PendingAnswered {
		t.Errorf("the rejected request: %s, want answered", got.State)
	}
	// One of the repository's requests is answered: there is room again.
	first, _ := st.GateRequestFor(ctx, "gh", "deployment:acme/matrix-0")
	first.State = core.PendingAnswered
	_ = st.SavePendingGate(ctx, first)
	if p := submit("acme/matrix", 4); p.State != core.PendingWaiting {
		t.Fatalf("after one was answered: %s, want waiting", p.State)
	}
}

// TestCIGateMarkDueEveryPage: a change notification is matched against
// every waiting request, however many wait, a page at a time.
func TestCIGateMarkDueEveryPage(t *testing.T) {
	later := time.Now().Add(time.Hour)
	st := &memPending{items: map[string]core.PendingGate{}}
	for i := range 1203 {
		id := fmt.Sprintf("%05d", i)
		changes := []string{"CHG2"}
		if i%600 == 0 {
			changes = []string{"CHG1"}
		}
		st.items[id] = core.PendingGate{ID: id, State: core.PendingWaiting, NextCheckAt: later, Request: core.GateRequest{Changes: changes}}
	}
	g := NewCIGates(st, nil, nil, nil, core.SystemClock, slog.New(slog.DiscardHandler), CIGatesConfig{})
	g.markDue(context.Background(), []string{"change:CHG1"})
	var due []string
	for id, p := range st.items {
		if p.NextCheckAt.Before(later) {
			due = append(due, id)
		}
	}
	slices.Sort(due)
	if strings.Join(due, ",") != "00000,00600,01200" {
		t.Fatalf("due %v, want the three linking CHG1, on every page", due)
	}
}
