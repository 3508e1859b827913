package factcache

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// fakeSource is a database of changes in memory that counts its reads.
type fakeSource struct {
	mu        sync.Mutex
	changes   map[string]core.Change
	incidents []Incident
	reads     int
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

func (f *fakeSource) ActiveIncidents(context.Context) ([]Incident, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.incidents), nil
}
func (f *fakeSource) PendingPIRs(context.Context) ([]core.PIR, error) { return nil, nil }

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

// TestWriteUnderWayIsReadFromTheSource: between a transaction's Begin and
// End the topic is read from the source on every check and not kept, so
// a check in the moment between the commit and End sees the commit; after
// End the cache answers again.
func TestWriteUnderWayIsReadFromTheSource(t *testing.T) {
	c, src, _ := newTestCache(0)
	src.set(core.Change{Key: "CHG1", Approval: core.ApprovalRequested})
	incidents := func() int {
		t.Helper()
		f, ok, err := c.Facts(context.Background(), core.FactsQuery{AllIncidents: true}, nil, "")
		if err != nil || !ok {
			t.Fatalf("cache answered %v, %v", ok, err)
		}
		return len(f.Incidents)
	}
	if approval(t, c, "CHG1") != core.ApprovalRequested || incidents() != 0 {
		t.Fatal("first answers")
	}
	c.Begin("change:CHG1")
	c.Begin("incident:INC1")
	// Read before the commit: the old records, which must not be kept.
	if approval(t, c, "CHG1") != core.ApprovalRequested || incidents() != 0 {
		t.Fatal("answers before the commit")
	}
	// Committed; End has not run yet.
	src.set(core.Change{Key: "CHG1", Approval: core.ApprovalApproved})
	src.mu.Lock()
	src.incidents = []Incident{{Incident: core.Incident{Key: "INC1", Priority: 1, State: core.IncidentOpen}}}
	src.mu.Unlock()
	if got := approval(t, c, "CHG1"); got != core.ApprovalApproved {
		t.Errorf("a check after the commit, before End, saw %q", got)
	}
	if n := incidents(); n != 1 {
		t.Errorf("a check after the commit, before End, saw %d incidents", n)
	}
	c.End("change:CHG1")
	c.End("incident:INC1")
	reads := src.reads
	for range 3 {
		if approval(t, c, "CHG1") != core.ApprovalApproved || incidents() != 1 {
			t.Fatal("answers after End")
		}
	}
	if src.reads != reads+1 {
		t.Errorf("%d change reads after End, want 1 (then answered from memory)", src.reads-reads)
	}
	if len(c.changeWriters) != 0 || c.incidents.writers != 0 {
		t.Errorf("writers left: %v, %d", c.changeWriters, c.incidents.writers)
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

// TestClockSteppedBack: an entry kept while the clock ran ahead is not
// kept past its TTL once the clock is corrected back: its age cannot be
// told, so it is read again.
func TestClockSteppedBack(t *testing.T) {
	c, src, clk := newTestCache(0)
	src.set(core.Change{Key: "CHG1", Approval: core.ApprovalRequested})
	approval(t, c, "CHG1")
	src.set(core.Change{Key: "CHG1", Approval: core.ApprovalCanceled}) // its notification lost
	clk.t = clk.t.Add(-time.Hour)                                      // NTP steps the clock back
	if got := approval(t, c, "CHG1"); got != core.ApprovalCanceled || src.reads != 2 {
		t.Fatalf("after the clock stepped back: %q after %d reads, want the source read again", got, src.reads)
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
		size := c.changes.len()
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

// blockingSource is a fakeSource whose reads take their snapshot, announce
// their keys on started and wait for release before answering.
type blockingSource struct {
	*fakeSource
	started chan []string
	release chan struct{}
}

func (b *blockingSource) ChangesByKey(ctx context.Context, keys []string) (map[string]core.Change, error) {
	found, err := b.fakeSource.ChangesByKey(ctx, keys)
	b.started <- append([]string(nil), keys...)
	<-b.release
	return found, err
}

func newBlockingCache() (*Cache, *blockingSource) {
	src := &blockingSource{fakeSource: &fakeSource{changes: map[string]core.Change{}}, started: make(chan []string, 64), release: make(chan struct{})}
	c := New(src, &clock{t: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}, time.Minute, 0)
	c.SetLive(true)
	return c, src
}

// queued waits until the fill collecting keys holds n of them.
func queued(t *testing.T, c *Cache, n int) {
	t.Helper()
	for range 5000 { // ~5 s
		c.fillMu.Lock()
		got := 0
		if c.next != nil {
			got = len(c.next.keys)
		}
		c.fillMu.Unlock()
		if got == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("the next fill never held %d keys", n)
}

type answer struct {
	key  string
	got  core.ApprovalState
	err  error
	seen bool
}

func check(ctx context.Context, c *Cache, key string, out chan<- answer) {
	f, ok, err := c.Facts(ctx, core.FactsQuery{ChangeKeys: []string{key}}, []string{key}, "")
	if err == nil && !ok {
		err = fmt.Errorf("not answered")
	}
	ch, seen := f.Changes[key]
	out <- answer{key: key, got: ch.Approval, err: err, seen: seen}
}

// TestConcurrentMissesShareAFill: while the reads under way take every
// slot, the misses of further checks collect in one fill, read once, and
// every check gets its own change.
func TestConcurrentMissesShareAFill(t *testing.T) {
	c, src := newBlockingCache()
	for n := range 12 {
		src.set(core.Change{Key: fmt.Sprintf("CHG%d", n), Approval: core.ApprovalApproved})
	}
	out := make(chan answer, 12)
	ctx := context.Background()
	for n := range maxFills { // these take the read slots
		go check(ctx, c, fmt.Sprintf("CHG%d", n), out)
		<-src.started
	}
	for n := maxFills; n < 12; n++ {
		go check(ctx, c, fmt.Sprintf("CHG%d", n), out)
	}
	queued(t, c, 12-maxFills)
	close(src.release)
	for range 12 {
		a := <-out
		if a.err != nil || !a.seen || a.got != core.ApprovalApproved {
			t.Fatalf("%s: %+v", a.key, a)
		}
	}
	if src.reads != maxFills+1 {
		t.Fatalf("%d reads for 12 misses, want %d", src.reads, maxFills+1)
	}
	if shared := <-src.started; len(shared) != 12-maxFills {
		t.Fatalf("the shared fill read %v", shared)
	}
}

// TestFillStartedBeforeAWriteIsNotJoined: a check that arrives after a
// write (and its invalidation) never takes the answer of a read that began
// before it; the read that began before is not kept.
func TestFillStartedBeforeAWriteIsNotJoined(t *testing.T) {
	c, src := newBlockingCache()
	src.set(core.Change{Key: "CHG1", Approval: core.ApprovalRequested})
	out := make(chan answer, maxFills+2)
	ctx := context.Background()
	go check(ctx, c, "CHG1", out) // reads "requested"…
	<-src.started
	for n := 1; n < maxFills; n++ { // …and every slot is taken
		go check(ctx, c, fmt.Sprintf("CHG%d", 100+n), out)
		<-src.started
	}
	src.set(core.Change{Key: "CHG1", Approval: core.ApprovalApproved}) // the approval lands
	c.Invalidate("change:CHG1")
	go check(ctx, c, "CHG1", out)
	queued(t, c, 1)
	close(src.release)
	got := map[core.ApprovalState]int{}
	for range maxFills + 1 {
		a := <-out
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.key == "CHG1" {
			got[a.got]++
		}
	}
	if got[core.ApprovalRequested] != 1 || got[core.ApprovalApproved] != 1 {
		t.Fatalf("CHG1 answers %v: the check after the write must see it", got)
	}
	if a := approval(t, c, "CHG1"); a != core.ApprovalApproved {
		t.Fatalf("cached %q: the read that raced the write was kept", a)
	}
}

// TestWaiterLeavesWithItsContext: a check whose context ends while its
// fill waits returns at once; the fill still answers the others.
func TestWaiterLeavesWithItsContext(t *testing.T) {
	c, src := newBlockingCache()
	src.set(core.Change{Key: "CHG3", Approval: core.ApprovalApproved})
	out := make(chan answer, 4)
	for n := range maxFills {
		go check(context.Background(), c, fmt.Sprintf("CHG%d", n), out)
		<-src.started
	}
	ctx, cancel := context.WithCancel(context.Background())
	go check(ctx, c, "CHG3", out)
	go check(context.Background(), c, "CHG3", out)
	queued(t, c, 1)
	cancel()
	if a := <-out; a.err == nil {
		t.Fatalf("the cancelled check answered %+v", a)
	}
	close(src.release)
	for range maxFills + 1 {
		if a := <-out; a.err != nil {
			t.Fatalf("%s: %v", a.key, a.err)
		}
	}
}

// TestExpiredChangesAreSwept: changes past their TTL leave the cache at
// the next notification (or fill) once a TTL has passed since the last
// sweep; fresh ones stay.
func TestExpiredChangesAreSwept(t *testing.T) {
	c, src, clk := newTestCache(0)
	size := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.changes.len()
	}
	for n := range 10 {
		src.set(core.Change{Key: fmt.Sprintf("CHG%d", n), Approval: core.ApprovalApproved})
		approval(t, c, fmt.Sprintf("CHG%d", n)) // the first fill sweeps (nothing) and starts the interval
	}
	clk.t = clk.t.Add(30 * time.Second)
	approval(t, c, "CHG0") // fresh: from memory
	c.Invalidate("incident:INC1")
	if got := size(); got != 10 {
		t.Fatalf("within the TTL the cache holds %d changes, want 10", got)
	}
	clk.t = clk.t.Add(31 * time.Second)
	c.Invalidate("incident:INC1")
	if got := size(); got != 0 {
		t.Fatalf("past the TTL the cache holds %d changes, want 0", got)
	}
	if got := approval(t, c, "CHG1"); got != core.ApprovalApproved || src.reads != 11 {
		t.Fatalf("CHG1 %q after %d reads, want it read again (11)", got, src.reads)
	}
}
