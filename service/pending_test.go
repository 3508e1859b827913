package service

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// listedGates is an in-memory PendingReader: it selects by state, kind and
// position as the store does, in the listing's order.
type listedGates []core.PendingGate

func (l listedGates) selected(f core.PendingFilter, p core.PendingGate) bool {
	return (len(f.States) == 0 || slices.Contains(f.States, p.State)) && (f.Kind == "" || f.Kind == p.Kind()) &&
		(f.Provider == "" || strings.EqualFold(f.Provider, p.Provider)) &&
		(len(f.Environments) == 0 || slices.Contains(f.Environments, strings.ToLower(p.Request.Environment)))
}

func (l listedGates) PendingGatesPage(_ context.Context, f core.PendingFilter) ([]core.PendingGate, error) {
	var out []core.PendingGate
	for _, p := range l {
		at := p.CreatedAt.Compare(f.After.Since)
		after := f.After.IsZero() || at > 0 || at == 0 && !f.After.Check && p.ID > f.After.ID
		if after && l.selected(f, p) && len(out) < f.Limit {
			out = append(out, p)
		}
	}
	return out, nil
}

func (l listedGates) CountPendingGates(_ context.Context, f core.PendingFilter) (map[string]int, error) {
	f.States = nil
	by := map[string]int{}
	for _, s := range core.ListedPendingStates() {
		by[s] = 0
	}
	for _, p := range l {
		if l.selected(f, p) {
			by[p.State]++
		}
	}
	return by, nil
}

// pendingFixture: stored requests at t0, t1, t2 and long-polled checks at
// t1 (two, begun in that order) and t3, under the default policy
// (production is also called prod).
func pendingFixture(t *testing.T) (*WaitingGates, []string) {
	t.Helper()
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	gate := func(id, provider, state, env string, i int) core.PendingGate {
		return core.PendingGate{ID: id, Provider: provider, State: state, CreatedAt: at(i),
			Request: core.GateRequest{Service: "pay", Environment: env, Version: id}}
	}
	stored := listedGates{gate("s0", "github", core.PendingWaiting, "Production", 0), gate("s1", "gitlab", core.PendingFailed, "prod", 1),
		gate("s2", "github", core.PendingUnknown, "staging", 2)}
	check := func(seq uint64, i int, provider string) *WaitingCheck {
		c := &WaitingCheck{Request: core.GateRequest{Service: "pay", Environment: "production", Version: "c"}, Since: at(i).Add(300 * time.Nanosecond), Seq: seq}
		if provider != "" {
			c.Request.Pipeline = &core.Pipeline{Provider: provider, RunID: "1"}
		}
		return c
	}
	checks := []*WaitingCheck{check(9, 3, "jenkins"), check(2, 1, ""), check(1, 1, "")} // as a sync.Map ranges: any order
	cp, err := core.Compile(core.DefaultPolicy(), 1)
	if err != nil {
		t.Fatal(err)
	}
	pols := &Policies{}
	pols.swap(cp)
	return &WaitingGates{store: stored, checks: func() []*WaitingCheck { return checks }, policies: pols},
		[]string{"s0", "s1", "check 1", "check 2", "s2", "check 9"}
}

func itemNames(items []PendingItem) []string {
	var out []string
	for _, it := range items {
		if it.Gate != nil {
			out = append(out, it.Gate.ID)
		} else {
			out = append(out, "check "+strconv.FormatUint(it.Check.Seq, 10))
		}
	}
	return out
}

// TestWaitingGatesPages: the stored requests and the long-polled checks
// come in one order (since; at the same instant stored first, then checks
// in the order they began), every page size giving each gate once; the
// counts cover every page.
func TestWaitingGatesPages(t *testing.T) {
	w, want := pendingFixture(t)
	for _, size := range []int{1, 2, 4, 6, 1000} {
		var got []string
		after, pages := "", 0
		for {
			l, err := w.List(context.Background(), PendingQuery{Limit: size, After: after})
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			pages++
			got = append(got, itemNames(l.Items)...)
			wantCounts := map[string]int{core.PendingWaiting: 4, core.PendingAnswering: 0, core.PendingFailed: 1, core.PendingUnknown: 1}
			if !maps.Equal(l.Counts, wantCounts) {
				t.Fatalf("size %d: counts %v, want %v", size, l.Counts, wantCounts)
			}
			if l.Next == "" {
				break
			}
			after = l.Next
		}
		if !slices.Equal(got, want) || pages != (len(want)+size-1)/size {
			t.Errorf("size %d: %v in %d pages, want %v", size, got, pages, want)
		}
	}
}

// TestWaitingGatesFilters: each filter selects stored requests and checks
// alike; an environment matches its policy names in any case; the failed
// and unknown answers can be asked for alone.
func TestWaitingGatesFilters(t *testing.T) {
	w, _ := pendingFixture(t)
	for _, tc := range []struct {
		name string
		q    PendingQuery
		want []string
	}{
		{"undelivered", PendingQuery{States: []string{"failed,unknown"}}, []string{"s1", "s2"}},
		{"failed, repeated", PendingQuery{States: []string{"failed", " failed"}}, []string{"s1"}},
		{"waiting is pending", PendingQuery{States: []string{"waiting"}}, []string{"s0", "check 1", "check 2", "check 9"}},
		{"checks", PendingQuery{Kind: "check"}, []string{"check 1", "check 2", "check 9"}},
		{"approvals", PendingQuery{Kind: "approval"}, []string{"s1"}},
		{"a pipeline's provider", PendingQuery{Provider: "JENKINS"}, []string{"check 9"}},
		{"api checks", PendingQuery{Provider: "api"}, []string{"check 1", "check 2"}},
		{"an alias", PendingQuery{Environment: "PROD"}, []string{"s0", "s1", "check 1", "check 2", "check 9"}},
		{"a name the policy lacks", PendingQuery{Environment: "Staging"}, []string{"s2"}},
		{"a connector: no check", PendingQuery{Connector: "github", Kind: "check"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.q.Limit = 100
			l, err := w.List(context.Background(), tc.q)
			if err != nil || !slices.Equal(itemNames(l.Items), tc.want) || l.Next != "" {
				t.Fatalf("%v next %q %v, want %v", itemNames(l.Items), l.Next, err, tc.want)
			}
		})
	}
}

// TestWaitingGatesRefuses: a parameter the listing cannot read is refused
// naming it, never read as no filter.
func TestWaitingGatesRefuses(t *testing.T) {
	w, _ := pendingFixture(t)
	for _, tc := range []struct {
		q     PendingQuery
		field string
		msg   string
	}{
		{PendingQuery{States: []string{"answered"}}, "state", "answered requests are not listed"},
		{PendingQuery{States: []string{"failed,"}}, "state", `"" is not one of`},
		{PendingQuery{Kind: "rule"}, "kind", "protection_rule, approval, check"},
		{PendingQuery{Service: "pay\x07"}, "service", "control characters"},
		{PendingQuery{Provider: strings.Repeat("p", 257)}, "provider", "at most 256"},
		{PendingQuery{Limit: -1}, "limit", "from 1 to 1000"},
		{PendingQuery{Limit: 1001}, "limit", "from 1 to 1000"},
		{PendingQuery{After: "s0"}, "after", "not a cursor of this listing"},
		{PendingQuery{After: pendingCursor(core.PendingPosition{Since: time.Now(), Check: true, ID: "x"})}, "after", "not a cursor"},
		{PendingQuery{After: "cy4xLg"}, "after", "not a cursor"}, // "s.1." : no id
	} {
		if tc.q.Limit == 0 {
			tc.q.Limit = 10
		}
		_, err := w.List(context.Background(), tc.q)
		ce, ok := err.(*core.Error)
		if !ok || ce.Kind != core.KindInvalid || ce.Field != tc.field || !strings.Contains(ce.Message, tc.msg) {
			t.Errorf("%+v: %v, want invalid %s saying %q", tc.q, err, tc.field, tc.msg)
		}
	}
}
