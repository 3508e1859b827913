// Package factcache is the gate's fact cache: the current facts (changes
// by key, the active incidents, the pending PIRs) kept in memory so that a
// gate check costs no read round trip. It is coherent through the same
// notifications that wake waiting checks:
//
//   - every write of a change, incident or PIR announces its topic; the
//     store invalidates what the topic names when the writing transaction
//     ends in this process (read-your-writes) and when the NOTIFY arrives
//     from any replica (PostgreSQL) — before waiting checks are woken;
//   - a fill (a read after a miss) is kept only if no invalidation of its
//     kind happened while it read, so a fill racing a write can never
//     leave the older record behind;
//   - on PostgreSQL the cache is used only while the notification
//     listener is connected and answers its pings (SetLive); otherwise,
//     and for AsOf queries, the store reads the database;
//   - every entry is also refreshed after its TTL, a bound on staleness
//     even if a notification were lost without the listener noticing.
//
// A check on one replica can thus see a write committed on another only
// once its NOTIFY, sent right after the commit, has arrived (normally a
// millisecond or two later),
// which is no different from the check having arrived that much earlier.
package factcache

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/core"
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
	changes   map[string]cachedChange // by key exactly as asked; absent keys too
	incidents cachedSet[Incident]
	pirs      cachedSet[core.PIR]
	holds     cachedSet[core.Hold]
	// afterRead, in tests, runs between a fill's read and its store.
	afterRead func()
}

type cachedChange struct {
	change core.Change
	found  bool
	at     time.Time
}

// cachedSet is a whole set loaded at once (the active incidents, the
// pending PIRs): small, and reloaded after any invalidation of its kind.
type cachedSet[T any] struct {
	gen   uint64 // invalidations and flushes
	valid bool
	at    time.Time
	items []T
	load  sync.Mutex // one loader at a time
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
	return &Cache{src: src, clock: clock, ttl: ttl, maxChanges: maxChanges, changes: map[string]cachedChange{}}
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
	clear(c.changes)
	c.incidents.gen++
	c.incidents.valid, c.incidents.items = false, nil
	c.pirs.gen++
	c.pirs.valid, c.pirs.items = false, nil
	c.holds.gen++
	c.holds.valid, c.holds.items = false, nil
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
	switch kind {
	case "change":
		c.changeGen++
		delete(c.changes, key)
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

	c.mu.Lock()
	if !c.live {
		c.mu.Unlock()
		return core.Facts{}, false, nil
	}
	for _, k := range keys {
		e, hit := c.changes[k]
		switch {
		case !hit || now.Sub(e.at) > c.ttl:
			misses = append(misses, k)
		case e.found:
			facts.Changes[e.change.Key] = e.change
		}
	}
	gen := c.changeGen
	incidents, incOK := c.incidents.fresh(now, c.ttl)
	pirs, pirOK := c.pirs.fresh(now, c.ttl)
	c.mu.Unlock()

	if len(misses) > 0 {
		if err := c.fillChanges(ctx, facts.Changes, misses, gen, now); err != nil {
			return core.Facts{}, false, err
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

	facts.Incidents = make([]core.Incident, 0, 4)
	for _, i := range incidents {
		if q.AllIncidents || len(i.Services) == 0 || slices.Contains(i.Services, service) {
			facts.Incidents = append(facts.Incidents, i.Incident)
		}
	}
	facts.PendingPIRs = []core.PIR{}
	if team := strings.TrimSpace(q.Team); team != "" {
		svc, version, env := strings.TrimSpace(q.Service), strings.TrimSpace(q.Version), strings.TrimSpace(q.Environment)
		for _, p := range pirs {
			if p.Team == team && p.ReleaseID != q.ExcludeReleaseID && (p.Service != svc || p.Version != version || p.Environment != env) {
				facts.PendingPIRs = append(facts.PendingPIRs, p)
			}
		}
	}
	return facts, true, nil
}

// fillChanges reads the missed keys into changes and keeps them unless a
// change was invalidated since gen was read.
func (c *Cache) fillChanges(ctx context.Context, changes map[string]core.Change, misses []string, gen uint64, now time.Time) error {
	found, err := c.src.ChangesByKey(ctx, misses)
	if err != nil {
		return err
	}
	if c.afterRead != nil {
		c.afterRead()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := c.live && c.changeGen == gen
	if keep && len(c.changes)+len(misses) > c.maxChanges {
		c.evictLocked(len(misses))
	}
	for _, k := range misses {
		ch, hit := found[k]
		if hit {
			changes[ch.Key] = ch
		}
		if keep {
			c.changes[k] = cachedChange{change: ch, found: hit, at: now}
		}
	}
	return nil
}

// evictLocked makes room for n more changes by dropping about an eighth of
// the cache (map order is random).
func (c *Cache) evictLocked(n int) {
	drop := max(n, c.maxChanges/8)
	for k := range c.changes {
		if drop == 0 {
			return
		}
		delete(c.changes, k)
		drop--
	}
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

// fresh returns the set when it is loaded and younger than ttl.
func (s *cachedSet[T]) fresh(now time.Time, ttl time.Duration) ([]T, bool) {
	if s.valid && now.Sub(s.at) <= ttl {
		return s.items, true
	}
	return nil, false
}

// loadSet reloads one set (one loader at a time: the others wait and take
// its result) and keeps it unless an invalidation happened while it read.
func loadSet[T any](ctx context.Context, c *Cache, s *cachedSet[T], read func(context.Context) ([]T, error)) ([]T, error) {
	s.load.Lock()
	defer s.load.Unlock()
	now := c.clock.Now()
	c.mu.Lock()
	if items, ok := s.fresh(now, c.ttl); ok {
		c.mu.Unlock()
		return items, nil // loaded while this caller waited
	}
	gen := s.gen
	c.mu.Unlock()
	items, err := read(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.live && s.gen == gen {
		s.valid, s.at, s.items = true, now, items
	}
	c.mu.Unlock()
	return items, nil
}
