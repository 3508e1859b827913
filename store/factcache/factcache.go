// Package factcache is the gate's fact cache: the current facts (changes
// by key, the active incidents, the pending PIRs) kept in memory so that a
// gate check costs no read round trip. It is coherent through the same
// notifications that wake waiting checks:
//
//   - every write of a change, incident or PIR announces its topic; from
//     that moment until the writing transaction ends in this process
//     (Begin, End) the topic is read from the database on every check and
//     not kept, so a check that follows the commit in this process sees it
//     (read-your-writes, also in the instant between commit and End); the
//     store invalidates what the topic names again when the transaction
//     ends and when the NOTIFY arrives from any replica (PostgreSQL) —
//     before waiting checks are woken;
//   - a fill (a read after a miss) is kept only if no invalidation of its
//     kind happened while it read, so a fill racing a write can never
//     leave the older record behind;
//   - on PostgreSQL the cache is used only while the notification
//     listener is connected and answers its pings (SetLive); otherwise,
//     and for AsOf queries, the store reads the database;
//   - every entry is also refreshed after its TTL, a bound on staleness
//     even if a notification were lost without the listener noticing;
//     expired entries are dropped at most a TTL later.
//
// Changes are kept encoded, in a table the garbage collector does not
// scan (changeTable), so the cache adds almost nothing to what each
// collection marks.
//
// A check on one replica can thus see a write committed on another only
// once its NOTIFY, sent right after the commit, has arrived (normally a
// millisecond or two later),
// which is no different from the check having arrived that much earlier.
package factcache

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	segjson "github.com/segmentio/encoding/json"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/jsonenc"
)

// Defaults.
const (
	DefaultTTL        = 30 * time.Second
	DefaultMaxChanges = 100_000
)

// Source reads the current facts from the database on a miss.
type Source interface {
	// ChangesByKey returns the current changes with the given keys (absent
	// keys are left out).
	ChangesByKey(ctx context.Context, keys []string) (map[string]core.Change, error)
	// ActiveIncidents returns every active incident, sorted by key.
	ActiveIncidents(ctx context.Context) ([]Incident, error)
	// PendingPIRs returns every pending PIR, by required time then release.
	PendingPIRs(ctx context.Context) ([]core.PIR, error)
}

// Incident is an active incident with the services it affects in the
// form queries compare them in (empty: global).
type Incident struct {
	Incident core.Incident
	Services []string
}

// Cache is the gate's in-memory facts. A nil *Cache is a disabled cache:
// its methods do nothing and Facts never answers.
type Cache struct {
	src        Source
	clock      core.Clock
	ttl        time.Duration
	maxChanges int

	mu   sync.Mutex
	live bool // notifications are known to arrive: the cache may answer
	// changeGen counts invalidations of changes (any key) and flushes: a
	// fill that saw another value is dropped.
	changeGen uint64
	changes   *changeTable // by key exactly as asked; absent keys too
	// changeWriters counts, by key, this process's transactions that
	// write the change and have not ended (Begin, End): while one is under
	// way the key is read from the database and not kept.
	changeWriters map[string]int
	// swept is when changes past their TTL were last dropped (sweepLocked).
	swept     time.Time
	incidents cachedSet[Incident]
	pirs      cachedSet[core.PIR]
	holds     cachedSet[core.Hold]
	// afterRead, in tests, runs between a fill's read and its store.
	afterRead func()

	// The changes' fills: misses of concurrent checks share reads.
	fillMu   sync.Mutex
	next     *fill // collecting keys; starts when a read slot frees
	inFlight int   // reads under way (at most maxFills)
}

// Fills of missed changes. A check whose keys miss joins the fill that is
// collecting keys, and the fill reads when fewer than maxFills are under
// way, else as soon as one ends: under load, concurrent misses become one
// read of many keys instead of a round trip each, and when the database
// is idle a miss is read at once. A fill is joined only before its read
// starts, so a check always reads after its own arrival (an invalidation
// it follows is never missed).
const (
	maxFills    = 1
	maxFillKeys = 256
	// fillTimeout bounds a shared read, which no single check's context
	// may cancel.
	fillTimeout = 30 * time.Second
)

// fill is one read of missed changes on behalf of the checks that joined it.
type fill struct {
	keys  []string
	seen  map[string]struct{}
	done  chan struct{} // closed when found and err are set
	found map[string]core.Change
	err   error
}

func (f *fill) add(keys []string) {
	for _, k := range keys {
		if _, dup := f.seen[k]; !dup {
			f.seen[k] = struct{}{}
			f.keys = append(f.keys, k)
		}
	}
}

// cachedSet is a whole set loaded at once (the active incidents, the
// pending PIRs): small, and reloaded after any invalidation of its kind.
type cachedSet[T any] struct {
	gen   uint64 // invalidations and flushes
	valid bool
	// writers counts this process's transactions writing a member that
	// have not ended (Begin, End): while one is under way the set is
	// read from the database and not kept.
	writers int
	at      time.Time
	items   []T
	load    sync.Mutex // one loader at a time
}

// New returns a cache reading misses from src, its entries' ages by clock
// (the store's). A negative ttl disables it (nil); zero means DefaultTTL,
// and maxChanges <= 0 DefaultMaxChanges. It does not answer until SetLive.
func New(src Source, clock core.Clock, ttl time.Duration, maxChanges int) *Cache {
	if ttl < 0 {
		return nil
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if maxChanges <= 0 {
		maxChanges = DefaultMaxChanges
	}
	return &Cache{src: src, clock: clock, ttl: ttl, maxChanges: maxChanges, changes: newChangeTable(), changeWriters: map[string]int{}}
}

// SetLive empties the cache and says whether it may answer from now on.
func (c *Cache) SetLive(live bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked()
	c.live = live
}

// Live reports whether the cache may answer.
func (c *Cache) Live() bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// Resume makes a cache that is not live live again (emptied); a live one
// is left as it is.
func (c *Cache) Resume() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		c.flushLocked()
		c.live = true
	}
}

func (c *Cache) flushLocked() {
	c.changeGen++
	c.changes.reset()
	c.incidents.gen++
	c.incidents.valid, c.incidents.items = false, nil
	c.pirs.gen++
	c.pirs.valid, c.pirs.items = false, nil
	c.holds.gen++
	c.holds.valid, c.holds.items = false, nil
}

// Begin tells the cache that a transaction of this process writes what
// topic names and has not committed; End, which must follow once for each
// Begin, that it has ended. In between, what the topic names is read from
// the database on every check and not kept: a check that comes after the
// commit — even in the moment between the commit and End — reads what
// was committed, never the cache's older answer. Both drop what topic
// names, as Invalidate does.
func (c *Cache) Begin(topic string) { c.writing(topic, 1) }

// End: see Begin.
func (c *Cache) End(topic string) { c.writing(topic, -1) }

func (c *Cache) writing(topic string, delta int) {
	if c == nil {
		return
	}
	kind, key, _ := strings.Cut(topic, ":")
	c.mu.Lock()
	defer c.mu.Unlock()
	switch kind {
	case "change":
		if n := c.changeWriters[key] + delta; n > 0 {
			c.changeWriters[key] = n
		} else {
			delete(c.changeWriters, key)
		}
	case "incident":
		c.incidents.writers = max(c.incidents.writers+delta, 0)
	case "pir":
		c.pirs.writers = max(c.pirs.writers+delta, 0)
	case "hold":
		c.holds.writers = max(c.holds.writers+delta, 0)
	}
	c.invalidateLocked(kind, key)
}

// Invalidate drops what a notification topic names ("change:KEY",
// "incident:KEY", "pir:RELEASE", "hold"); "policy" and "evidence:RELEASE"
// concern nothing cached, anything else flushes everything.
func (c *Cache) Invalidate(topic string) {
	if c == nil {
		return
	}
	kind, key, _ := strings.Cut(topic, ":")
	c.mu.Lock()
	defer c.mu.Unlock()
	c.invalidateLocked(kind, key)
}

func (c *Cache) invalidateLocked(kind, key string) {
	c.sweepLocked(c.clock.Now())
	switch kind {
	case "change":
		c.changeGen++
		c.changes.remove(key)
	case "incident":
		c.incidents.gen++
		c.incidents.valid = false
	case "pir":
		c.pirs.gen++
		c.pirs.valid = false
	case "hold":
		c.holds.gen++
		c.holds.valid = false
	case "policy", "evidence": // not cached
	default:
		c.flushLocked()
	}
}

// Facts answers q (for the deduplicated change keys, the service in the
// form incidents' services are compared in) from the cache, reading only
// what it misses. ok is false when the cache may not answer (disabled, not
// live, or an AsOf query): the caller reads the database.
func (c *Cache) Facts(ctx context.Context, q core.FactsQuery, keys []string, service string) (facts core.Facts, ok bool, err error) {
	if c == nil || !q.AsOf.IsZero() {
		return core.Facts{}, false, nil
	}
	now := c.clock.Now()
	facts = core.Facts{Changes: make(map[string]core.Change, len(keys))}
	var misses []string
	var hits [][]byte

	c.mu.Lock()
	if !c.live {
		c.mu.Unlock()
		return core.Facts{}, false, nil
	}
	for _, k := range keys {
		// A change is kept as its JSON and decoded on each answer: a
		// decoded core.Change is a dozen small objects that every
		// collection would mark, tens of thousands of them for a busy
		// gateway; a decode costs microseconds per check.
		doc, found, at, hit := c.changes.get(k)
		switch {
		case !hit || expired(now, at, c.ttl) || c.changeWriters[k] > 0:
			misses = append(misses, k)
		case found:
			hits = append(hits, doc)
		}
	}
	incidents, incOK := c.incidents.fresh(now, c.ttl)
	pirs, pirOK := c.pirs.fresh(now, c.ttl)
	c.mu.Unlock()

	for _, doc := range hits {
		var ch core.Change
		if err := segjson.Unmarshal(doc, &ch); err != nil {
			return core.Facts{}, false, fmt.Errorf("facts cache: decode a change: %w", err)
		}
		facts.Changes[ch.Key] = ch
	}
	if len(misses) > 0 {
		found, err := c.fillChanges(ctx, misses)
		if err != nil {
			return core.Facts{}, false, err
		}
		for _, k := range misses {
			if ch, hit := found[k]; hit {
				facts.Changes[ch.Key] = ch
			}
		}
	}
	if !incOK {
		if incidents, err = loadSet(ctx, c, &c.incidents, c.src.ActiveIncidents); err != nil {
			return core.Facts{}, false, err
		}
	}
	if !pirOK {
		if pirs, err = loadSet(ctx, c, &c.pirs, c.src.PendingPIRs); err != nil {
			return core.Facts{}, false, err
		}
	}

	inScope := func(i Incident) bool {
		return q.AllIncidents || len(i.Services) == 0 || slices.Contains(i.Services, service)
	}
	n := 0
	for _, i := range incidents {
		if inScope(i) {
			n++
		}
	}
	facts.Incidents = make([]core.Incident, 0, n) // counted first: an incident is hundreds of bytes, and every check copies those in scope
	for _, i := range incidents {
		if inScope(i) {
			facts.Incidents = append(facts.Incidents, i.Incident)
		}
	}
	facts.PendingPIRs = []core.PIR{}
	if strings.TrimSpace(q.Team) != "" || strings.TrimSpace(q.Service) != "" {
		pending := func(p core.PIR) bool {
			return p.HoldsBack(q.Team, q.ExcludeReleaseID, q.Service, q.Version, q.Environment, q.Commit)
		}
		n := 0
		for _, p := range pirs {
			if pending(p) {
				n++
			}
		}
		if n > 0 { // counted first, as the incidents
			facts.PendingPIRs = make([]core.PIR, 0, n)
			for _, p := range pirs {
				if pending(p) {
					facts.PendingPIRs = append(facts.PendingPIRs, p)
				}
			}
		}
	}
	return facts, true, nil
}

// fillChanges returns the missed changes (absent keys left out), read by
// the fill it joins (see maxFills).
func (c *Cache) fillChanges(ctx context.Context, misses []string) (map[string]core.Change, error) {
	c.fillMu.Lock()
	f := c.next
	if f == nil || len(f.keys) >= maxFillKeys {
		f = &fill{seen: make(map[string]struct{}, len(misses)), done: make(chan struct{})}
		if c.next == nil {
			c.next = f
		}
	}
	f.add(misses)
	start := c.inFlight < maxFills || f != c.next // a full fill's overflow reads at once
	if start {
		if f == c.next {
			c.next = nil
		}
		c.inFlight++
	}
	c.fillMu.Unlock()
	if start {
		c.read(ctx, f)
	}
	select {
	case <-f.done:
		return f.found, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// read runs fill f, then the fill that collected keys meanwhile, if any,
// on its own goroutine so that f's checks are answered now.
func (c *Cache) read(ctx context.Context, f *fill) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fillTimeout)
	defer cancel()
	c.mu.Lock()
	gen, now := c.changeGen, c.clock.Now()
	c.mu.Unlock()
	found, err := c.src.ChangesByKey(rctx, f.keys)
	if err == nil {
		if c.afterRead != nil {
			c.afterRead()
		}
		c.keep(f.keys, found, gen, now)
	}
	f.found, f.err = found, err
	close(f.done)

	c.fillMu.Lock()
	c.inFlight--
	next := c.next
	if next != nil {
		c.next = nil
		c.inFlight++
	}
	c.fillMu.Unlock()
	if next != nil {
		go c.read(ctx, next)
	}
}

// keep stores a fill's result unless a change was invalidated since gen
// was read (before the fill's read began).
func (c *Cache) keep(keys []string, found map[string]core.Change, gen uint64, now time.Time) {
	// Encoded before the lock is taken: checks answered from memory do
	// not wait for a fill's encoding.
	docs := make(map[string][]byte, len(found))
	for k, ch := range found {
		if doc, err := jsonenc.Marshal(ch); err == nil {
			docs[k] = doc
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || c.changeGen != gen {
		return
	}
	c.sweepLocked(now)
	if c.changes.len()+len(keys) > c.maxChanges {
		c.evictLocked(len(keys))
	}
	for _, k := range keys {
		doc, hit := docs[k]
		if _, read := found[k]; read && !hit {
			continue // could not be encoded: read again next time
		}
		if c.changeWriters[k] > 0 {
			continue // a write is under way: read it again next time
		}
		c.changes.put(k, doc, hit, now)
	}
}

// sweepLocked drops the changes past their TTL, at most once a TTL (from
// keep and Invalidate: a store's writes notify, so a gateway whose checks
// have stopped still sheds them). An expired entry is read again before
// it is answered, so it is only memory the collector keeps scanning.
func (c *Cache) sweepLocked(now time.Time) {
	if now.Sub(c.swept) < c.ttl {
		return
	}
	c.swept = now
	c.changes.removeIf(-1, func(at time.Time) bool { return expired(now, at, c.ttl) })
}

// expired reports whether an entry kept at at is past ttl at now. One
// kept "after" now is expired too: the clock stepped back (a host clock
// run ahead, then corrected), and its age can no longer be told — kept,
// it would outlive the TTL by the step, an unbounded time should a
// notification have been lost meanwhile.
func expired(now, at time.Time, ttl time.Duration) bool {
	return now.Sub(at) > ttl || now.Before(at)
}

// evictLocked makes room for n more changes by dropping about an eighth of
// the cache.
func (c *Cache) evictLocked(n int) {
	c.changes.removeIf(max(n, c.maxChanges/8), func(time.Time) bool { return true })
}

// Holds returns the cached holds (the set read loads: those not lifted
// nor expired), loading it with read on a miss. ok is false when the cache
// may not answer: the caller reads the database.
func (c *Cache) Holds(ctx context.Context, read func(context.Context) ([]core.Hold, error)) (holds []core.Hold, ok bool, err error) {
	if c == nil {
		return nil, false, nil
	}
	c.mu.Lock()
	live := c.live
	holds, fresh := c.holds.fresh(c.clock.Now(), c.ttl)
	c.mu.Unlock()
	if !live {
		return nil, false, nil
	}
	if !fresh {
		if holds, err = loadSet(ctx, c, &c.holds, read); err != nil {
			return nil, false, err
		}
	}
	return holds, true, nil
}

// setWritten reports whether a write of s is under way (Begin).
func setWritten[T any](c *Cache, s *cachedSet[T]) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return s.writers > 0
}

// fresh returns the set when it is loaded and younger than ttl.
func (s *cachedSet[T]) fresh(now time.Time, ttl time.Duration) ([]T, bool) {
	if s.valid && s.writers == 0 && !expired(now, s.at, ttl) {
		return s.items, true
	}
	return nil, false
}

// loadSet reloads one set (one loader at a time: the others wait and take
// its result) and keeps it unless an invalidation happened while it read.
// While a write of the set is under way (Begin) each caller reads the
// database itself and nothing is kept: its own read is the one that began
// after it arrived, and callers do not queue behind each other's reads.
func loadSet[T any](ctx context.Context, c *Cache, s *cachedSet[T], read func(context.Context) ([]T, error)) ([]T, error) {
	if setWritten(c, s) {
		return read(ctx)
	}
	s.load.Lock()
	now := c.clock.Now()
	c.mu.Lock()
	if items, ok := s.fresh(now, c.ttl); ok {
		c.mu.Unlock()
		s.load.Unlock()
		return items, nil // loaded while this caller waited
	}
	if s.writers > 0 { // a write began while this caller waited
		c.mu.Unlock()
		s.load.Unlock()
		return read(ctx)
	}
	gen := s.gen
	c.mu.Unlock()
	defer s.load.Unlock()
	items, err := read(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.live && s.gen == gen && s.writers == 0 {
		s.valid, s.at, s.items = true, now, items
	}
	c.mu.Unlock()
	return items, nil
}
