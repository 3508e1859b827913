package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
)

// This file is the gate's fact cache: the current facts (changes by key,
// the active incidents, the pending PIRs) kept in memory so that a gate
// check costs no read round trip. It is coherent through the same
// notifications that wake waiting checks:
//
//   - every write of a change, incident or PIR announces its topic
//     (notifyTx); the cache drops what the topic names when the writing
//     transaction ends in this process (read-your-writes) and when the
//     NOTIFY arrives from any replica (PostgreSQL) — before waiting checks
//     are woken;
//   - a fill (a read after a miss) is kept only if no invalidation of its
//     kind happened while it read, so a fill racing a write can never
//     leave the older record behind;
//   - on PostgreSQL the cache is used only while the notification
//     listener is connected and answers its pings (DB.Listen); otherwise,
//     and with AsOf queries, GateFacts reads the database as before;
//   - every entry is also refreshed after FactsCacheTTL, a bound on
//     staleness even if a notification were lost without the listener
//     noticing.
//
// A check on one replica can thus see a write committed on another only
// once its NOTIFY has arrived (normally well under a millisecond later),
// which is no different from the check having arrived that much earlier.

// Fact cache defaults.
const (
	defaultFactsCacheTTL        = 30 * time.Second
	defaultFactsCacheMaxChanges = 100_000
	// maxPreparedKeys: misses of up to this many keys use a prepared
	// statement (one per count).
	maxPreparedKeys = 8
)

// factCache is the gate's in-memory facts; the zero value is unusable, see
// newFactCache. A nil *factCache is a disabled cache.
type factCache struct {
	ttl        time.Duration
	maxChanges int

	mu   sync.Mutex
	live bool // notifications are known to arrive: the cache may answer
	// changeGen counts invalidations of changes (any key) and flushes: a
	// fill that saw another value is dropped.
	changeGen uint64
	changes   map[string]cachedChange // by key exactly as asked; absent keys too
	incidents cachedSet[cachedIncident]
	pirs      cachedSet[core.PIR]
	// afterRead, in tests, runs between a fill's read and its store.
	afterRead func()
}

type cachedChange struct {
	change core.Change
	found  bool
	at     time.Time
}

type cachedIncident struct {
	incident core.Incident
	services []string // serviceSet of its services; empty: global
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

func newFactCache(ttl time.Duration, maxChanges int) *factCache {
	if ttl < 0 {
		return nil
	}
	if ttl == 0 {
		ttl = defaultFactsCacheTTL
	}
	if maxChanges <= 0 {
		maxChanges = defaultFactsCacheMaxChanges
	}
	return &factCache{ttl: ttl, maxChanges: maxChanges, changes: map[string]cachedChange{}}
}

// setLive empties the cache and says whether it may answer from now on.
func (c *factCache) setLive(live bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked()
	c.live = live
}

// resume makes a cache that is not live live again (emptied); a live one
// is left as it is.
func (c *factCache) resume() {
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

func (c *factCache) flushLocked() {
	c.changeGen++
	clear(c.changes)
	c.incidents.gen++
	c.incidents.valid, c.incidents.items = false, nil
	c.pirs.gen++
	c.pirs.valid, c.pirs.items = false, nil
}

// invalidate drops what a notification topic names ("change:KEY",
// "incident:KEY", "pir:RELEASE"); "policy" concerns no fact, anything
// else (TopicAll) flushes everything.
func (c *factCache) invalidate(topic string) {
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
	case "policy":
	default:
		c.flushLocked()
	}
}

// cachedFacts answers q from the cache, reading only what it misses. ok is
// false when the cache may not answer (disabled, not live, or an AsOf
// query): the caller reads the database.
func (d *DB) cachedFacts(ctx context.Context, q core.FactsQuery, keys []string) (facts core.Facts, ok bool, err error) {
	c := d.facts
	if c == nil || !q.AsOf.IsZero() {
		return core.Facts{}, false, nil
	}
	now := time.Now()
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
		found, err := d.changesByKey(ctx, misses)
		if err != nil {
			return core.Facts{}, false, err
		}
		if c.afterRead != nil {
			c.afterRead()
		}
		c.mu.Lock()
		keep := c.live && c.changeGen == gen
		if keep && len(c.changes)+len(misses) > c.maxChanges {
			c.evictLocked(len(misses))
		}
		for _, k := range misses {
			ch, hit := found[k]
			if hit {
				facts.Changes[ch.Key] = ch
			}
			if keep {
				c.changes[k] = cachedChange{change: ch, found: hit, at: now}
			}
		}
		c.mu.Unlock()
	}
	if !incOK {
		if incidents, err = loadSet(ctx, c, &c.incidents, d.activeIncidents); err != nil {
			return core.Facts{}, false, err
		}
	}
	if !pirOK {
		if pirs, err = loadSet(ctx, c, &c.pirs, d.pendingPIRs); err != nil {
			return core.Facts{}, false, err
		}
	}

	service := normService(q.Service)
	facts.Incidents = make([]core.Incident, 0, 4)
	for _, i := range incidents {
		if q.AllIncidents || len(i.services) == 0 || slices.Contains(i.services, service) {
			facts.Incidents = append(facts.Incidents, i.incident)
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

// evictLocked makes room for n more changes by dropping about an eighth of
// the cache (map order is random).
func (c *factCache) evictLocked(n int) {
	drop := max(n, c.maxChanges/8)
	for k := range c.changes {
		if drop == 0 {
			return
		}
		delete(c.changes, k)
		drop--
	}
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
func loadSet[T any](ctx context.Context, c *factCache, s *cachedSet[T], read func(context.Context) ([]T, error)) ([]T, error) {
	s.load.Lock()
	defer s.load.Unlock()
	now := time.Now()
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

// changesByKey reads the current changes with the given keys. The usual
// few keys go through a prepared statement per count: `key IN ($1, $2)`
// keeps PostgreSQL on a generic plan, where `key = ANY($1)` would be
// planned again on every execution.
func (d *DB) changesByKey(ctx context.Context, keys []string) (map[string]core.Change, error) {
	doc := "doc"
	if d.dialect == Postgres {
		doc = "doc::text"
	}
	text := d.q(`SELECT ` + doc + ` FROM changes WHERE key IN (` + strings.TrimSuffix(strings.Repeat("?, ", len(keys)), ", ") + `)`)
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	var (
		rows *sqlx.Rows
		err  error
	)
	if len(keys) <= maxPreparedKeys {
		st, serr := d.stmt(ctx, text)
		if serr != nil {
			return nil, fmt.Errorf("read changes: %w", translate(serr))
		}
		rows, err = st.QueryxContext(ctx, args...)
	} else {
		rows, err = d.db.QueryxContext(ctx, text, args...)
	}
	if err != nil {
		return nil, fmt.Errorf("read changes: %w", translate(err))
	}
	defer rows.Close()
	out := make(map[string]core.Change, len(keys))
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("read changes: %w", translate(err))
		}
		var ch core.Change
		if err := json.Unmarshal(doc, &ch); err != nil {
			return nil, fmt.Errorf("read changes: decode: %w", err)
		}
		out[ch.Key] = ch
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read changes: %w", translate(err))
	}
	return out, nil
}

// activeIncidents reads every active incident, sorted by key.
func (d *DB) activeIncidents(ctx context.Context) ([]cachedIncident, error) {
	doc := "doc"
	if d.dialect == Postgres {
		doc = "doc::text"
	}
	var docs [][]byte
	if err := d.db.SelectContext(ctx, &docs, `SELECT `+doc+` FROM incidents WHERE active ORDER BY key`); err != nil {
		return nil, fmt.Errorf("read active incidents: %w", translate(err))
	}
	out := make([]cachedIncident, 0, len(docs))
	for _, b := range docs {
		var i core.Incident
		if err := json.Unmarshal(b, &i); err != nil {
			return nil, fmt.Errorf("read active incidents: decode: %w", err)
		}
		out = append(out, cachedIncident{incident: i, services: serviceSet(i.Services)})
	}
	return out, nil
}

// pendingPIRs reads every pending PIR, by required time then release id.
func (d *DB) pendingPIRs(ctx context.Context) ([]core.PIR, error) {
	var rows []pirRow
	if err := d.db.SelectContext(ctx, &rows, d.q(`SELECT `+pirCols+` FROM pirs WHERE status = ? ORDER BY required_at, release_id`), core.PIRPending); err != nil {
		return nil, fmt.Errorf("read pending PIRs: %w", translate(err))
	}
	out := make([]core.PIR, len(rows))
	for i, r := range rows {
		out[i] = r.pir()
	}
	return out, nil
}

// txTopics remembers the topics a transaction announced, so the cache can
// drop them when the transaction ends in this process (read-your-writes,
// without waiting for the NOTIFY to come back).
type txTopics struct {
	mu sync.Mutex
	m  map[*sqlx.Tx][]string
}

func (t *txTopics) add(tx *sqlx.Tx, topic string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[*sqlx.Tx][]string{}
	}
	t.m[tx] = append(t.m[tx], topic)
}

func (t *txTopics) take(tx *sqlx.Tx) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	topics := t.m[tx]
	delete(t.m, tx)
	return topics
}

// txEnded drops from the cache what tx announced, whether it committed or
// not (dropping too much only costs a read).
func (d *DB) txEnded(tx *sqlx.Tx) {
	topics := d.txTopics.take(tx)
	for _, topic := range topics {
		d.facts.invalidate(topic)
	}
	d.announceEnded(topics)
}
