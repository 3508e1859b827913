package service

import (
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestWaitingChecks: a waiting check is listed (oldest first) until it is
// answered or leaves; an answered one moves to Answered (newest first,
// at most answeredKept), keeping when it started waiting.
func TestWaitingChecks(t *testing.T) {
	g := &Gate{}
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	a := g.waiting.put(0, WaitingCheck{ReleaseID: "a", Since: t0.Add(time.Minute)})
	b := g.waiting.put(0, WaitingCheck{ReleaseID: "b", Since: t0})
	if w := g.Waiting(); len(w) != 2 || w[0].ReleaseID != "b" || w[1].ReleaseID != "a" {
		t.Fatalf("waiting: %+v", w)
	}
	// A re-evaluation updates the reasons, not the start.
	g.waiting.put(a, WaitingCheck{ReleaseID: "a", Since: t0.Add(time.Hour), Reasons: []core.Reason{{Code: core.CodeFreeze}}})
	if w := g.Waiting(); w[1].Since != t0.Add(time.Minute) || w[1].Reasons[0].Code != core.CodeFreeze {
		t.Errorf("updated: %+v", w[1])
	}
	g.waiting.answered(a, core.GateDecision{Decision: core.Allow, EvaluatedAt: t0.Add(2 * time.Hour)})
	g.waiting.remove(b) // the client gave up
	if w := g.Waiting(); len(w) != 0 {
		t.Errorf("still waiting: %+v", w)
	}
	if got := g.Answered(); len(got) != 1 || got[0].ReleaseID != "a" || got[0].Answer != core.Allow ||
		got[0].Since != t0.Add(time.Minute) || len(got[0].Reasons) != 0 {
		t.Errorf("answered: %+v", got)
	}
	for i := 0; i < answeredKept+5; i++ {
		g.waiting.answered(g.waiting.put(0, WaitingCheck{ReleaseID: string(rune('A' + i))}), core.GateDecision{Decision: core.Deny})
	}
	got := g.Answered()
	if len(got) != answeredKept || got[0].ReleaseID != string(rune('A'+answeredKept+4)) {
		t.Errorf("answered kept %d, newest %q", len(got), got[0].ReleaseID)
	}
}
