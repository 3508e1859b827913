package service

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// WaitingCheck is a long-polled gate check that this process is holding
// now, with the reasons of its latest "wait" answer.
type WaitingCheck struct {
	Request   core.GateRequest
	ReleaseID string
	Reasons   []core.Reason
	Since     time.Time // when the check started waiting
	Deadline  time.Time // when it answers at the latest
	// Answer and AnsweredAt are set once a check that waited is answered
	// (Gate.Answered).
	Answer     core.Decision
	AnsweredAt time.Time
}

// answeredKept is how many answered long-polls Gate.Answered remembers.
const answeredKept = 20

// waitingSet holds the checks waiting in Check; its zero value is ready.
type waitingSet struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]WaitingCheck
	done []WaitingCheck // answered, newest last, at most answeredKept
}

// put stores (slot 0: adds) a waiting check and returns its slot.
func (w *waitingSet) put(slot uint64, c WaitingCheck) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[uint64]WaitingCheck{}
	}
	if slot == 0 {
		w.next++
		slot = w.next
	} else if old, ok := w.m[slot]; ok {
		c.Since = old.Since
	}
	w.m[slot] = c
	return slot
}

// answered moves a waiting check to the answered list with d's answer.
func (w *waitingSet) answered(slot uint64, d core.GateDecision) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.m[slot]
	if !ok {
		return
	}
	delete(w.m, slot)
	c.Answer, c.AnsweredAt, c.Reasons = d.Decision, d.EvaluatedAt, d.Reasons
	if len(w.done) >= answeredKept {
		w.done = slices.Delete(w.done, 0, len(w.done)-answeredKept+1)
	}
	w.done = append(w.done, c)
}

// Answered lists the latest long-polled checks this process answered after
// they had waited, newest first.
func (g *Gate) Answered() []WaitingCheck {
	g.waiting.mu.Lock()
	out := slices.Clone(g.waiting.done)
	g.waiting.mu.Unlock()
	slices.Reverse(out)
	return out
}

func (w *waitingSet) remove(slot uint64) {
	if slot == 0 {
		return
	}
	w.mu.Lock()
	delete(w.m, slot)
	w.mu.Unlock()
}

// Waiting lists the checks waiting on this process, longest waiting
// first. A check answered (or given up by its client) leaves the list.
func (g *Gate) Waiting() []WaitingCheck {
	g.waiting.mu.Lock()
	out := make([]WaitingCheck, 0, len(g.waiting.m))
	for _, c := range g.waiting.m {
		out = append(out, c)
	}
	g.waiting.mu.Unlock()
	slices.SortFunc(out, func(a, b WaitingCheck) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.ReleaseID, b.ReleaseID)
	})
	return out
}
