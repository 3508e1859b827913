package inbox

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/pgconn"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Webhook deliveries are stored in groups: the deliveries waiting at the
// moment are inserted by one statement, so a burst costs one commit (one
// WAL flush) per group instead of one per delivery. Each caller is
// answered once its group's statement has committed, so a 202 still means
// durable. There is no timer: a writer takes whatever is queued when it is
// free, so a lone delivery is written at once, and under load the group
// grows while the previous one commits.
//
// On PostgreSQL the writers use a pool of their own (eventWriters
// connections, binary parameters: each column is one array, sent without
// escaping), so deliveries never queue behind the store's pool. On SQLite
// the one writer uses the store's single connection.
const (
	// eventWriters is how many groups are written at once on PostgreSQL
	// (and the size of the writers' pool). One: while its group commits,
	// the next one gathers in the queue. A second writer lets two groups
	// overlap, but each is half the size, and a group's statement, commit
	// and wake-up cost the database about as much as its rows: on two
	// cores the pair stored fewer deliveries per second than one writer
	// (docs/benchmarks.md).
	eventWriters = 1
	// maxEventGroup caps a group, so one statement stays short.
	maxEventGroup = 256
	// maxEventGroupBytes caps a group's bodies (the last one taken may pass
	// it): on PostgreSQL they travel as one bind parameter, and a message
	// is limited to 1 GB — which 256 deliveries at the largest body limit
	// (http.max_body_bytes, up to 64 MiB) would pass, failing every one.
	maxEventGroupBytes = 32 << 20
	// eventQueueLen is how many deliveries may wait for a writer before
	// InsertEvent blocks.
	eventQueueLen = 1024
	// eventGroupTimeout bounds one group's statements: by its context on
	// SQLite, by the writer's session (statement_timeout) on PostgreSQL.
	eventGroupTimeout = 30 * time.Second
)

// eventBatcher is the group commit of webhook deliveries (InsertEvent).
type eventBatcher struct {
	// wake is told the newest id of each group that stored new deliveries.
	wake     func(id string)
	postgres bool
	// pool is the writers' pool: their own on PostgreSQL, the store's on
	// SQLite.
	pool    *sql.DB
	ownPool bool
	// prepMu guards insert and lookup, prepared at the first delivery (the
	// store is opened before it is migrated).
	prepMu sync.Mutex
	insert *sql.Stmt // PostgreSQL: the group's statement (pgInsertEvents)
	lookup *sql.Stmt // PostgreSQL: ids of keys stored meanwhile (pgLookupEvents)
	reqs   chan *eventReq
	mu     sync.RWMutex // guards closed against sends on a closed reqs
	closed bool
	exited sync.WaitGroup
	// groups and rows count what the writers did (tests, tuning).
	groups, rows atomic.Int64
}

// pendingEvent is a validated delivery as it is stored.
type pendingEvent struct {
	id, connector, typ, dedupeKey, headers string
	body                                   []byte
	receivedAt                             time.Time
}

// eventResult is a delivery's outcome: the stored event's id, and whether
// it was there already.
type eventResult struct {
	id  string
	dup bool
	err error
}

// Delivery states: queued until a writer takes it into a group, or until
// its caller gives up waiting (ctx ended) first.
const (
	eventQueued int32 = iota
	eventTaken
	eventAbandoned
)

type eventReq struct {
	ev    pendingEvent
	ctx   context.Context
	state atomic.Int32
	done  chan eventResult // buffered: a writer never blocks on a caller
}

func newEventBatcher(db *sqldb.DB, wake func(id string)) (*eventBatcher, error) {
	b := &eventBatcher{wake: wake, postgres: db.Dialect() == sqldb.Postgres, pool: db.SQLX().DB, reqs: make(chan *eventReq, eventQueueLen)}
	writers := 1
	if b.postgres {
		cfg, err := pgconn.Config(db.DSN(), "tollgate inbox writer")
		if err != nil {
			return nil, err
		}
		cfg.BinaryParameters = true
		// The writers' statements are prepared once, and PostgreSQL keeps
		// the generic plan it makes after a few executions — on a fresh
		// store, when inbox_events holds a handful of rows, a hash join
		// over a sequential scan of it to find the duplicates, which then
		// reads the whole inbox for every group as it grows. These
		// connections run nothing else: plan them with the dedupe index
		// at every size.
		for k, v := range map[string]string{"enable_seqscan": "off", "enable_hashjoin": "off", "enable_mergejoin": "off"} {
			if _, set := cfg.Runtime[k]; !set {
				cfg.Runtime[k] = v
			}
		}
		pgconn.Bounded(&cfg, eventGroupTimeout)
		pool, err := pgconn.Open(cfg)
		if err != nil {
			return nil, err
		}
		b.pool, b.ownPool = pool, true
		b.pool.SetMaxOpenConns(eventWriters)
		b.pool.SetMaxIdleConns(eventWriters)
		b.pool.SetConnMaxIdleTime(5 * time.Minute)
		writers = eventWriters
	}
	for range writers {
		b.exited.Add(1)
		go b.run()
	}
	return b, nil
}

// submit stores ev in the next group and returns its outcome once the
// group has committed. A caller whose ctx ends before its group starts
// gets ctx.Err() and nothing is written; once its group has started, it
// waits for the outcome. After close it fails with KindUnavailable.
func (b *eventBatcher) submit(ctx context.Context, ev pendingEvent) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	r := &eventReq{ev: ev, ctx: ctx, done: make(chan eventResult, 1)}
	if err := b.enqueue(r); err != nil {
		return "", false, err
	}
	var res eventResult
	select {
	case res = <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(eventQueued, eventAbandoned) {
			return "", false, ctx.Err()
		}
		res = <-r.done // its group has started: its outcome is the caller's
	}
	return res.id, res.dup, res.err
}

func (b *eventBatcher) enqueue(r *eventReq) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return core.Errorf(core.KindUnavailable, "store is closed")
	}
	select {
	case b.reqs <- r:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// close stops accepting deliveries, writes the queued ones and waits for
// the writers; then it closes their own pool.
func (b *eventBatcher) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.reqs)
	}
	b.mu.Unlock()
	b.exited.Wait()
	if b.ownPool {
		if b.insert != nil {
			b.insert.Close()
		}
		if b.lookup != nil {
			b.lookup.Close()
		}
		b.pool.Close()
	}
}

// run is one writer: it takes the deliveries waiting and writes them as
// one group, until the queue is closed and drained.
func (b *eventBatcher) run() {
	defer b.exited.Done()
	group := make([]*eventReq, 0, maxEventGroup)
	for {
		first, ok := <-b.reqs
		if !ok {
			return
		}
		group = gather(group, first, b.reqs)
		b.commit(group)
		clear(group) // let the requests (and their bodies) be collected
	}
}

// gather makes a group of first and the requests already queued after
// it, up to maxEventGroup of them and until their bodies reach
// maxEventGroupBytes; the rest wait for the next group.
func gather(group []*eventReq, first *eventReq, reqs <-chan *eventReq) []*eventReq {
	group = append(group[:0], first)
	size := len(first.ev.body)
	for len(group) < maxEventGroup && size < maxEventGroupBytes {
		select {
		case r, ok := <-reqs:
			if !ok {
				return group
			}
			group = append(group, r)
			size += len(r.ev.body)
		default:
			return group
		}
	}
	return group
}

// commit writes one group and answers each of its live callers once.
func (b *eventBatcher) commit(group []*eventReq) {
	live := group[:0:0]
	evs := make([]pendingEvent, 0, len(group))
	for _, r := range group {
		if !r.state.CompareAndSwap(eventQueued, eventTaken) {
			continue // the caller gave up waiting and already returned
		}
		if err := r.ctx.Err(); err != nil {
			r.done <- eventResult{err: err}
			continue
		}
		live = append(live, r)
		evs = append(evs, r.ev)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), eventGroupTimeout)
	defer cancel()
	results := b.write(ctx, evs)
	for i, r := range live {
		r.done <- results[i]
	}
}

// write stores evs and returns each one's outcome, in order. Deliveries of
// one key within evs are stored once: the first is new, the others are
// its duplicates. When the database refuses the group's statement (a row
// it will not take), each delivery is retried alone, so one bad row fails
// only its own caller. After the commit, the normalizers are woken once
// for the whole group.
func (b *eventBatcher) write(ctx context.Context, evs []pendingEvent) []eventResult {
	b.groups.Add(1)
	b.rows.Add(int64(len(evs)))
	// at[i] is the index in uniq of the first delivery with evs[i]'s key.
	at := make([]int, len(evs))
	firstOfKey := make([]bool, len(evs))
	seen := make(map[eventKey]int, len(evs))
	var uniq []pendingEvent
	ids := make(map[string]bool, len(evs))
	sameID := false // two keys given one explicit id: store answers by id
	for i, e := range evs {
		k := eventKey{e.connector, e.dedupeKey}
		if u, ok := seen[k]; ok {
			at[i] = u
			continue
		}
		seen[k], at[i], firstOfKey[i] = len(uniq), len(uniq), true
		uniq = append(uniq, e)
		sameID = sameID || ids[e.id]
		ids[e.id] = true
	}
	stored := make([]eventResult, len(uniq))
	var err error
	if !sameID {
		var byID map[string]eventResult
		if byID, err = b.store(ctx, uniq); err == nil {
			for u, e := range uniq {
				stored[u] = byID[e.id]
			}
		}
	}
	if sameID || err != nil && len(uniq) > 1 && b.refused(err) {
		err = nil
		for u, e := range uniq {
			one, err := b.store(ctx, []pendingEvent{e})
			if err != nil {
				one = map[string]eventResult{e.id: {err: err}}
			}
			stored[u] = one[e.id]
		}
	}
	results := make([]eventResult, len(evs))
	newest := ""
	for i, e := range evs {
		switch u := at[i]; {
		case err != nil:
			results[i] = eventResult{err: fmt.Errorf("insert %s event %s: %w", e.connector, e.dedupeKey, sqldb.Translate(err))}
		case stored[u].err != nil:
			results[i] = eventResult{err: fmt.Errorf("insert %s event %s: %w", e.connector, e.dedupeKey, sqldb.Translate(stored[u].err))}
		case !firstOfKey[i]:
			results[i] = eventResult{id: stored[u].id, dup: true}
		default:
			results[i] = stored[u]
			if !results[i].dup {
				newest = max(newest, e.id)
			}
		}
	}
	if newest != "" {
		// Committed: wake the normalizers, once per group (store/notify:
		// a pg_notify in the insert would serialize the inserts' commits).
		b.wake(newest)
	}
	return results
}

type eventKey struct{ connector, dedupeKey string }

// refused reports whether err is the database refusing a statement (its
// effects rolled back), so its rows may be tried one by one: not an ended
// context, nor a failure of the store itself (a lost connection, whose
// outcome is unknown; a full or read-only disk, which no row would pass),
// as translate classifies them.
func (b *eventBatcher) refused(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	return !core.IsStoreDown(sqldb.Translate(err))
}

// store inserts evs (distinct keys) in one statement and returns, by each
// one's proposed id, the stored event's id and whether it was there
// already.
func (b *eventBatcher) store(ctx context.Context, evs []pendingEvent) (map[string]eventResult, error) {
	if b.postgres {
		return b.storePG(ctx, evs)
	}
	return b.storeSQLite(ctx, evs)
}

// pgInsertEvents inserts a group from one array per column, in the
// arrays' order, and returns each row's proposed id with the id stored
// under its key: the same when it is new; an earlier event's when its key
// was taken before this statement began. A key taken by a transaction
// that committed while this statement ran is in neither part: it is
// looked up afterwards (pgLookupEvents). The duplicates' part unnests
// only the key columns again: materializing the rows once for both parts
// would copy every body into a tuplestore.
const pgInsertEvents = `WITH ins AS (
	INSERT INTO inbox_events (id, connector, type, dedupe_key, headers, body, received_at, status)
	SELECT id, connector, type, dedupe_key, headers::jsonb, body, received_at, 'pending'
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::timestamptz[])
		AS u(id, connector, type, dedupe_key, headers, body, received_at)
	ON CONFLICT (connector, dedupe_key) DO NOTHING
	RETURNING id
)
SELECT id, id FROM ins
UNION ALL
SELECT k.id, e.id FROM unnest($1::text[], $2::text[], $4::text[]) AS k(id, connector, dedupe_key)
JOIN inbox_events e ON e.connector = k.connector AND e.dedupe_key = k.dedupe_key
WHERE k.id NOT IN (SELECT id FROM ins)`

// pgLookupEvents returns the stored ids of keys given as two arrays.
const pgLookupEvents = `SELECT e.connector, e.dedupe_key, e.id FROM inbox_events e
	JOIN unnest($1::text[], $2::text[]) AS k(connector, dedupe_key) ON e.connector = k.connector AND e.dedupe_key = k.dedupe_key`

// prepared returns the PostgreSQL statements, prepared on first use
// (database/sql then prepares each on every connection of the pool once).
func (b *eventBatcher) prepared(ctx context.Context) (insert, lookup *sql.Stmt, err error) {
	b.prepMu.Lock()
	defer b.prepMu.Unlock()
	if b.insert == nil {
		if b.insert, err = b.pool.PrepareContext(ctx, pgInsertEvents); err != nil {
			return nil, nil, err
		}
	}
	if b.lookup == nil {
		if b.lookup, err = b.pool.PrepareContext(ctx, pgLookupEvents); err != nil {
			return nil, nil, err
		}
	}
	return b.insert, b.lookup, nil
}

func (b *eventBatcher) storePG(ctx context.Context, evs []pendingEvent) (map[string]eventResult, error) {
	insert, lookup, err := b.prepared(ctx)
	if err != nil {
		return nil, err
	}
	// Rows are inserted in key order, so two groups inserting the same
	// keys wait for each other in the same order (never a deadlock).
	sorted := sortedByKey(evs)
	cols := [7]pgArray{{oid: oidText}, {oid: oidText}, {oid: oidText}, {oid: oidText}, {oid: oidText}, {oid: oidBytea}, {oid: oidTimestamptz}}
	bufs := colBufs.Get().(*[7][]byte)
	for i := range cols {
		cols[i].data = bufs[i][:0]
	}
	var sizes [7]int
	for _, e := range sorted {
		sizes[0] += len(e.id)
		sizes[1] += len(e.connector)
		sizes[2] += len(e.typ)
		sizes[3] += len(e.dedupeKey)
		sizes[4] += len(e.headers)
		sizes[5] += len(e.body)
	}
	sizes[6] = 8 * len(sorted)
	for i := range cols {
		cols[i].reserve(len(sorted), sizes[i])
	}
	for _, e := range sorted {
		cols[0].addString(e.id)
		cols[1].addString(e.connector)
		cols[2].addString(e.typ)
		cols[3].addString(e.dedupeKey)
		cols[4].addString(e.headers)
		cols[5].add(e.body)
		cols[6].addTime(e.receivedAt)
	}
	// The writer's statements run under a context that never ends: the
	// session bounds them (statement_timeout) and the dialer a dead peer
	// (pgconn), where a context that can end would make lib/pq and
	// database/sql each start a goroutine to watch it for every group.
	run := context.WithoutCancel(ctx)
	rows, err := insert.QueryContext(run, &cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5], &cols[6])
	keepColBufs(bufs, &cols) // the driver has copied them into its message
	if err != nil {
		return nil, err
	}
	out := make(map[string]eventResult, len(evs))
	for rows.Next() {
		var proposed, id string
		if err := rows.Scan(&proposed, &id); err != nil {
			rows.Close()
			return nil, err
		}
		out[proposed] = eventResult{id: id, dup: id != proposed}
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == len(evs) {
		return out, nil
	}
	var conns, keys pgArray
	conns.oid, keys.oid = oidText, oidText
	for _, e := range evs {
		if _, ok := out[e.id]; !ok {
			conns.addString(e.connector)
			keys.addString(e.dedupeKey)
		}
	}
	rows, err = lookup.QueryContext(run, &conns, &keys)
	if err != nil {
		return nil, fmt.Errorf("find duplicates: %w", err)
	}
	return b.matchDuplicates(rows, evs, out)
}

func (b *eventBatcher) storeSQLite(ctx context.Context, evs []pendingEvent) (map[string]eventResult, error) {
	sorted := sortedByKey(evs)
	args := make([]any, 0, 8*len(sorted))
	for _, e := range sorted {
		args = append(args, e.id, e.connector, e.typ, e.dedupeKey, e.headers, e.body, e.receivedAt, core.EventPending)
	}
	rowText := "(?, ?, ?, ?, ?, ?, ?, ?)"
	q := `INSERT INTO inbox_events (id, connector, type, dedupe_key, headers, body, received_at, status) VALUES ` +
		strings.TrimSuffix(strings.Repeat(rowText+", ", len(sorted)), ", ") +
		` ON CONFLICT (connector, dedupe_key) DO NOTHING RETURNING id`
	rows, err := b.pool.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]eventResult, len(evs))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		out[id] = eventResult{id: id}
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == len(evs) {
		return out, nil
	}
	args = args[:0]
	for _, e := range evs {
		if _, ok := out[e.id]; !ok {
			args = append(args, e.connector, e.dedupeKey)
		}
	}
	q = `SELECT connector, dedupe_key, id FROM inbox_events WHERE (connector, dedupe_key) IN (VALUES ` +
		strings.TrimSuffix(strings.Repeat("(?, ?), ", len(args)/2), ", ") + `)`
	rows, err = b.pool.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("find duplicates: %w", err)
	}
	return b.matchDuplicates(rows, evs, out)
}

// matchDuplicates reads (connector, dedupe_key, id) rows into out for the
// deliveries of evs not in it yet, as duplicates.
func (b *eventBatcher) matchDuplicates(rows *sql.Rows, evs []pendingEvent, out map[string]eventResult) (map[string]eventResult, error) {
	existing := map[eventKey]string{}
	for rows.Next() {
		var k eventKey
		var id string
		if err := rows.Scan(&k.connector, &k.dedupeKey, &id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("find duplicates: %w", err)
		}
		existing[k] = id
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("find duplicates: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find duplicates: %w", err)
	}
	for _, e := range evs {
		if _, ok := out[e.id]; ok {
			continue
		}
		id, ok := existing[eventKey{e.connector, e.dedupeKey}]
		if !ok {
			// Neither inserted nor found: the conflicting row is gone
			// again (deleted meanwhile). The sender retries.
			out[e.id] = eventResult{err: core.Errorf(core.KindUnavailable, "event %s of %s changed meanwhile, retry", e.dedupeKey, e.connector)}
			continue
		}
		out[e.id] = eventResult{id: id, dup: true}
	}
	return out, nil
}

// sortedByKey returns evs ordered by (connector, dedupe key).
func sortedByKey(evs []pendingEvent) []pendingEvent {
	if len(evs) < 2 {
		return evs
	}
	s := make([]pendingEvent, len(evs))
	copy(s, evs)
	sortEvents(s)
	return s
}

// PostgreSQL type oids of the arrays' elements.
const (
	oidBytea       = 17
	oidText        = 25
	oidTimestamptz = 1184
)

// pgArray is a one-dimensional array parameter in PostgreSQL's binary
// format (array_recv), built element by element: no escaping on either
// side, and bytea goes as its bytes. Only for a pool with lib/pq's
// binary_parameters on, which sends what BinaryValue returns.
//
// The buffer holds the header's room, then the elements, so BinaryValue
// fills the header in and returns the buffer as it is: a batch's bodies
// are copied once into it (sized by reserve), not again into a rendering.
type pgArray struct {
	oid  uint32
	n    int
	data []byte // pgArrayHeader bytes of room, then each element as its length and bytes
}

// colBufs keeps storePG's column buffers between groups. A buffer made
// for each group was zeroed first, and the bodies' column is as large as
// the group: clearing it was a twentieth of the ingest's CPU, in the
// writer's serial path.
var colBufs = sync.Pool{New: func() any { return new([7][]byte) }}

// maxColBufs caps the buffers colBufs keeps (a group of large bodies is
// left to the collector).
const maxColBufs = 8 << 20

// keepColBufs returns cols' buffers to colBufs through bufs, unless they
// grew past maxColBufs together.
func keepColBufs(bufs *[7][]byte, cols *[7]pgArray) {
	total := 0
	for i := range cols {
		total += cap(cols[i].data)
	}
	if total > maxColBufs {
		return
	}
	for i := range cols {
		bufs[i] = cols[i].data[:0]
		cols[i].data = nil // the array is not to be rendered again
	}
	colBufs.Put(bufs)
}

// pgArrayHeader is the binary header of a one-dimensional array:
// dimensions, has-nulls, element type, length and lower bound.
const pgArrayHeader = 20

// reserve makes room for n more elements of size bytes in all.
func (a *pgArray) reserve(n, size int) {
	if len(a.data) == 0 { // a.data may have room already (colBufs)
		a.data = slices.Grow(a.data[:0], pgArrayHeader+4*n+size)[:pgArrayHeader]
		return
	}
	a.data = slices.Grow(a.data, 4*n+size)
}

func (a *pgArray) add(b []byte) {
	if len(a.data) == 0 {
		a.reserve(1, len(b))
	}
	a.n++
	a.data = binary.BigEndian.AppendUint32(a.data, uint32(len(b)))
	a.data = append(a.data, b...)
}

func (a *pgArray) addString(s string) {
	if len(a.data) == 0 {
		a.reserve(1, len(s))
	}
	a.n++
	a.data = binary.BigEndian.AppendUint32(a.data, uint32(len(s)))
	a.data = append(a.data, s...)
}

// pgEpoch is where PostgreSQL's binary timestamps count from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// addTime adds t as microseconds since 2000 (timestamptz_recv). Stored
// times are within a few centuries of now (validated by InsertEvent), so
// the arithmetic cannot overflow.
func (a *pgArray) addTime(t time.Time) {
	if len(a.data) == 0 {
		a.reserve(1, 8)
	}
	us := (t.Unix()-pgEpoch.Unix())*1_000_000 + int64(t.Nanosecond()/1000)
	a.n++
	a.data = binary.BigEndian.AppendUint32(a.data, 8)
	a.data = binary.BigEndian.AppendUint64(a.data, uint64(us))
}

// BinaryValue is the array's binary form: the header filled in before
// the elements. The driver copies it into its message before the
// statement returns.
func (a *pgArray) BinaryValue() ([]byte, error) {
	if a.n == 0 {
		b := make([]byte, 0, 12)
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint32(b, 0)
		return binary.BigEndian.AppendUint32(b, a.oid), nil
	}
	h := a.data[:0:pgArrayHeader]
	h = binary.BigEndian.AppendUint32(h, 1)
	h = binary.BigEndian.AppendUint32(h, 0)
	h = binary.BigEndian.AppendUint32(h, a.oid)
	h = binary.BigEndian.AppendUint32(h, uint32(a.n))
	binary.BigEndian.AppendUint32(h, 1)
	return a.data, nil
}

func sortEvents(s []pendingEvent) {
	slices.SortFunc(s, func(a, b pendingEvent) int {
		if c := strings.Compare(a.connector, b.connector); c != 0 {
			return c
		}
		return strings.Compare(a.dedupeKey, b.dedupeKey)
	})
}
