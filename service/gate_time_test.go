package service

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// fakeClock is a TimerClock whose time moves only when the test sets it;
// every timer it makes is reported on armed with its due time.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[chan time.Time]time.Time
	armed  chan time.Time
}

func newFakeClock(t time.Time) *fakeClock {
	return &fakeClock{now: t, timers: map[chan time.Time]time.Time{}, armed: make(chan time.Time, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	at := c.now.Add(d)
	if d <= 0 {
		ch <- c.now
	} else {
		c.timers[ch] = at
	}
	c.armed <- at
	return ch, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, pending := c.timers[ch]
		delete(c.timers, ch)
		return pending
	}
}

// set moves the clock to t and fires the timers due by then.
func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	for ch, at := range c.timers {
		if !at.After(t) {
			ch <- t
			delete(c.timers, ch)
		}
	}
}

// nextTimer waits for the gate to arm a timer and returns its due time.
func (c *fakeClock) nextTimer(t *testing.T) time.Time {
	t.Helper()
	select {
	case at := <-c.armed:
		return at
	case <-time.After(5 * time.Second):
		t.Fatal("the gate armed no timer on the clock")
		return time.Time{}
	}
}

type checkResult struct {
	d   core.GateDecision
	err error
}

// TestCheckLongPollTime: a waiting check is re-evaluated at the next moment
// its answer can change by time alone, and at its deadline, and answers
// what it evaluated then (recorded with that time).
func TestCheckLongPollTime(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 30, 0, time.UTC) // a Wednesday
	change := func(start, end time.Time, approval core.ApprovalState) core.Change {
		return core.Change{Key: "CHG1", Type: core.ChangeNormal, State: core.ChangeStateScheduled, Approval: approval,
			Approvals:    []core.Approval{{Approver: "ana", Decision: approval}, {Approver: "bo", Decision: approval}},
			PlannedStart: &start, PlannedEnd: &end, Services: []string{"api"}, RequestedBy: "carla",
			HasRiskAssessment: true, HasBackoutPlan: true}
	}
	start := func(t *testing.T, store *fakeGateStore, pol core.Policy, wait time.Duration) (*fakeClock, <-chan checkResult) {
		clock := newFakeClock(t0)
		g := gateWithPolicy(t, store, pol, clock)
		out := make(chan checkResult, 1)
		go func() {
			d, err := g.Check(context.Background(), checkReq, "ci", wait)
			out <- checkResult{d, err}
		}()
		return clock, out
	}
	answer := func(t *testing.T, out <-chan checkResult, want core.Decision, at time.Time, store *fakeGateStore) {
		t.Helper()
		select {
		case r := <-out:
			if r.err != nil || r.d.Decision != want || !r.d.EvaluatedAt.Equal(at) {
				t.Fatalf("got %s evaluated at %v (%v), want %s at %v; reasons %+v", r.d.Decision, r.d.EvaluatedAt, r.err, want, at, r.d.Reasons)
			}
			store.mu.Lock()
			defer store.mu.Unlock()
			if len(store.decisions) != 1 || !store.decisions[0].EvaluatedAt.Equal(at) || store.decisions[0].Decision != want {
				t.Fatalf("recorded %+v", store.decisions)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no answer")
		}
	}

	t.Run("window opening", func(t *testing.T) {
		opens := t0.Add(24 * time.Second)
		store := &fakeGateStore{change: change(opens, t0.Add(time.Hour), core.ApprovalApproved)}
		clock, out := start(t, store, core.DefaultPolicy(), 45*time.Second)
		if at := clock.nextTimer(t); !at.Equal(opens) {
			t.Fatalf("woken at %v, want the window's start %v", at, opens)
		}
		clock.set(opens)
		answer(t, out, core.Allow, opens, store)
	})
	t.Run("freeze ending", func(t *testing.T) {
		pol := core.DefaultPolicy()
		pol.Freezes = []core.Freeze{{Name: "release-train", Dated: []core.DatedWindow{{From: "2026-11-25T09:00", To: "2026-11-25T10:01"}}}}
		ends := time.Date(2026, 11, 25, 10, 1, 0, 0, time.UTC)
		store := &fakeGateStore{change: change(t0.Add(-time.Hour), t0.Add(time.Hour), core.ApprovalApproved)}
		clock, out := start(t, store, pol, 5*time.Minute)
		if at := clock.nextTimer(t); !at.Equal(ends) {
			t.Fatalf("woken at %v, want the freeze's end %v", at, ends)
		}
		clock.set(ends)
		answer(t, out, core.Allow, ends, store)
	})
	t.Run("deadline re-evaluates", func(t *testing.T) {
		// The approval lands unnoticed (no notification): the answer at the
		// deadline is still evaluated then, not the wait from the start.
		store := &fakeGateStore{change: change(t0.Add(-time.Hour), t0.Add(time.Hour), core.ApprovalRequested)}
		deadline := t0.Add(30 * time.Second)
		clock, out := start(t, store, core.DefaultPolicy(), 30*time.Second)
		if at := clock.nextTimer(t); !at.Equal(deadline) {
			t.Fatalf("woken at %v, want the deadline %v", at, deadline)
		}
		store.approve()
		clock.set(deadline)
		answer(t, out, core.Allow, deadline, store)
	})
	t.Run("deadline answers a wait evaluated then", func(t *testing.T) {
		store := &fakeGateStore{change: change(t0.Add(-time.Hour), t0.Add(time.Hour), core.ApprovalRequested)}
		deadline := t0.Add(30 * time.Second)
		clock, out := start(t, store, core.DefaultPolicy(), 30*time.Second)
		clock.nextTimer(t)
		clock.set(deadline)
		answer(t, out, core.Wait, deadline, store)
	})
	t.Run("still waiting after the window opens", func(t *testing.T) {
		// The window opens but approval is still awaited: wait again, until
		// the deadline.
		opens := t0.Add(10 * time.Second)
		store := &fakeGateStore{change: change(opens, t0.Add(time.Hour), core.ApprovalRequested)}
		deadline := t0.Add(20 * time.Second)
		clock, out := start(t, store, core.DefaultPolicy(), 20*time.Second)
		if at := clock.nextTimer(t); !at.Equal(opens) {
			t.Fatalf("woken at %v, want %v", at, opens)
		}
		clock.set(opens)
		if at := clock.nextTimer(t); !at.Equal(deadline) {
			t.Fatalf("then woken at %v, want the deadline %v", at, deadline)
		}
		clock.set(deadline)
		answer(t, out, core.Wait, deadline, store)
	})
}
