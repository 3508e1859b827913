package factcache

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// fakeSource is a database of changes in memory that counts its reads.
type fakeSource struct {
	mu      sync.Mutex
	changes map[string]core.Change
	reads   int
}

func (f *fakeSource) set(c core.Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changes[c.Key] = c
}

func (f *fakeSource) ChangesByKey(_ context.Context, keys []string) (map[string]core.Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	out := map[string]core.Change{}
	for _, k := range keys {
		if c, ok := f.changes[k]; ok {
			out[k] = c
		}
	}
	return out, nil
}

func (f *fakeSource) ActiveIncidents(context.Context) ([]Incident, error) { return nil, nil }
func (f *fakeSource) PendingPIRs(context.Context) ([]core.PIR, error)     { return nil, nil }

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

func newTestCache(maxChanges int) (*Cache, *fakeSource, *clock) {
	src := &fakeSource{changes: map[string]core.Change{}}
	clk := &clock{t: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	c := New(src, clk, time.Minute, maxChanges)
	c.SetLive(true)
	return c, src, clk
}

func approval(t *testing.T, c *Cache, key string) core.ApprovalState {
	t.Helper()
	f, ok, err := c.Facts(context.Background(), core.FactsQuery{ChangeKeys: []string{key}}, []string{key}, "")
	if err != nil || !ok {
		t.Fatalf("cache answered %v, %v", ok, err)
	}
	ch, found := f.Changes[key]
	if !found {
		return "absent"
	}
	return ch.Approval
}

// TestFillRacingAWrite: a fill whose read raced a write of the same kind
// is not kept, so the older record cannot stay behind.
func TestFillRacingAWrite(t *testing.T) {
	c, src, _ := newTestCache(0)
	src.set(core.Change{Key: "CHG1", Approval: core.ApprovalRequested})
	raced := false
	c.afterRead = func() {
		if raced {
			return
		}
		raced = true // the fill has read "requested"; now the approval lands
		src.set(core.Change{Key: "CHG1", Approval: core.ApprovalApproved})
		c.Invalidate("change:CHG1")
	}
	if got := approval(t, c, "CHG1"); got != core.ApprovalRequested {
		t.Fatalf("the racing check saw %q", got) // it read before the write
	}
	if got := approval(t, c, "CHG1"); got != core.ApprovalApproved {
		t.Fatalf("the next check saw %q: the raced fill was kept", got)
	}
}

// TestTTLOnTheGivenClock: an entry is answered from memory until its TTL
// has passed on the cache's clock (the store's), then read again.
func TestTTLOnTheGivenClock(t *testing.T) {
	c, src, clk := newTestCache(0)
	src.set(core.Change{Key: "CHG1", Approval: core.ApprovalRequested})
	approval(t, c, "CHG1")
	src.set(core.Change{Key: "CHG1", Approval: core.ApprovalApproved}) // no notification
	clk.t = clk.t.Add(time.Minute)
	if got := approval(t, c, "CHG1"); got != core.ApprovalRequested || src.reads != 1 {
		t.Fatalf("within the TTL: %q after %d reads", got, src.reads)
	}
	clk.t = clk.t.Add(time.Second)
	if got := approval(t, c, "CHG1"); got != core.ApprovalApproved || src.reads != 2 {
		t.Fatalf("past the TTL: %q after %d reads", got, src.reads)
	}
}

// TestEviction: the cache holds at most its maximum of changes and answers
// right past it.
func TestEviction(t *testing.T) {
	c, src, _ := newTestCache(8)
	for n := range 30 {
		key := fmt.Sprintf("CHG%d", n)
		src.set(core.Change{Key: key, Approval: core.ApprovalApproved})
		for range 2 {
			if got := approval(t, c, key); got != core.ApprovalApproved {
				t.Fatalf("%s: %q", key, got)
			}
		}
		c.mu.Lock()
		size := len(c.changes)
		c.mu.Unlock()
		if size > 8 {
			t.Fatalf("cache holds %d changes", size)
		}
	}
}

// TestNotLiveOrOff: a cache that is not live, or nil (off), never answers.
func TestNotLiveOrOff(t *testing.T) {
	c, _, _ := newTestCache(0)
	c.SetLive(false)
	if _, ok, _ := c.Facts(context.Background(), core.FactsQuery{}, nil, ""); ok {
		t.Fatal("answered while not live")
	}
	var off *Cache
	if _, ok, _ := off.Facts(context.Background(), core.FactsQuery{}, nil, ""); ok || off.Live() {
		t.Fatal("a nil cache answered")
	}
	off.Invalidate("change:X")
	off.SetLive(true)
}
