package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
)

// auditLockKey is the advisory lock that serializes chain appends across
// replicas on PostgreSQL (transaction-scoped).
const auditLockKey = 0x746f6c6c // "toll"

// Group commit limits.
const (
	// maxGroup caps how many callers share one transaction, so one group's
	// transaction (and the advisory lock) stays short.
	maxGroup = 256
	// groupTimeout bounds one group's transaction.
	groupTimeout = 30 * time.Second
	// verifyPage is how many rows VerifyAudit reads at a time.
	verifyPage = 1000
	// Audit listing page sizes.
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

// errStoreClosed is what appends get after Close.
var errStoreClosed = core.Errorf(core.KindUnavailable, "store is closed")

// Request states: a request is queued until the appender takes it into a
// group, or until its caller gives up waiting (ctx ended) first.
const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

// appendReq is one caller's append waiting for a group.
type appendReq struct {
	ctx     context.Context
	entries []core.AuditEntry
	fn      func(ctx context.Context, tx *sqlx.Tx) error
	// rows are inserted before fn runs; across a group they are merged
	// into multi-row statements.
	rows  []batchRow
	state atomic.Int32
	done  chan error // buffered: the appender never blocks on a caller
}

// appender commits audit appends in groups (group commit): a worker takes
// every request waiting at the moment, runs the callers' writes, links
// their entries to the chain head and commits them all in one
// transaction.
//
// A group of conflict-free rows and entries only — the gate's — is one
// statement on the worker's own connection on PostgreSQL (wire.go), so
// the chain's advisory lock is held without a round trip to tollgate.
// Other groups run interactively: their conflict-free rows are written
// before the lock is taken (so that group transactions of other replicas
// overlap), everything else — rows that may conflict, callers' writer
// functions, the chain rows — under it, so two group transactions never
// wait on each other's rows (no deadlock). The appender can run several
// workers (appendWorkers); it runs one.
type appender struct {
	d    *DB
	reqs chan *appendReq
	mu   sync.RWMutex // guards closed against sends on a closed reqs
	// closed is set by close; later appends get errStoreClosed.
	closed bool
	exited chan struct{}
	stats  appenderStats
	// wires are the workers' connections for one-statement groups
	// (PostgreSQL), one per worker; a worker alone uses its own.
	wires []*wireConn
}

// appenderStats count the appender's work (AppenderStats).
type appenderStats struct {
	groups, requests, busyNanos, oneStatement atomic.Int64
}

// AppenderStats is what the group-commit appender did since the store
// opened: groups committed (or failed), those committed as one statement
// (wire.go), the requests they carried, and the time workers spent in
// group transactions (busy / wall time near the number of workers means
// appends queue behind commits).
type AppenderStats struct {
	Groups, OneStatement, Requests int64
	Busy                           time.Duration
}

// AppenderStats reports the group-commit appender's counters.
func (d *DB) AppenderStats() AppenderStats {
	return AppenderStats{Groups: d.audit.stats.groups.Load(), OneStatement: d.audit.stats.oneStatement.Load(), Requests: d.audit.stats.requests.Load(),
		Busy: time.Duration(d.audit.stats.busyNanos.Load())}
}

// appendWorkers is the number of group transactions in flight on
// PostgreSQL. Measured with one-statement groups (docs/benchmarks.md):
// one worker makes bigger groups, so fewer commits, each of which has a
// fixed cost (~220 µs of PostgreSQL CPU for the WAL flush on the
// benchmark VM); at a steady 1,000 checks/s it took 18% less PostgreSQL
// CPU per check than two and was faster at saturation in most runs.
// Two workers paid off only while a group cost several round trips.
const appendWorkers = 1

func newAppender(d *DB) *appender {
	workers := 1
	if d.dialect == Postgres {
		workers = appendWorkers
	}
	return startAppender(d, workers)
}

func startAppender(d *DB, workers int) *appender {
	a := &appender{d: d, reqs: make(chan *appendReq, 1024), exited: make(chan struct{})}
	var wg sync.WaitGroup
	for range workers {
		var w *wireConn
		if d.dialect == Postgres {
			w = &wireConn{}
			a.wires = append(a.wires, w)
		}
		wg.Add(1)
		go func() { defer wg.Done(); a.run(w) }()
	}
	go func() { wg.Wait(); close(a.exited) }()
	return a
}

// submit queues r; it fails when the store is closed or ctx ends first.
func (a *appender) submit(r *appendReq) error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return errStoreClosed
	}
	select {
	case a.reqs <- r:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// close stops accepting appends, commits every queued one and waits for
// the appender to exit.
func (a *appender) close() {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.reqs)
	}
	a.mu.Unlock()
	<-a.exited
}

// run is one worker: until the queue is closed and drained, it takes the
// requests waiting and commits them as one group. On PostgreSQL w is its
// connection for groups sent as one statement (wire.go); nil on SQLite.
func (a *appender) run(w *wireConn) {
	group := make([]*appendReq, 0, maxGroup)
	if w != nil {
		defer w.discard()
	}
	for {
		first, ok := <-a.reqs
		if !ok {
			return
		}
		group = append(group[:0], first)
	collect:
		for len(group) < maxGroup {
			select {
			case r, ok := <-a.reqs:
				if !ok {
					break collect
				}
				group = append(group, r)
			default:
				break collect
			}
		}
		a.commit(group, w)
		clear(group) // let the requests be collected
	}
}

// commit runs one group, on w when it can go as one statement (w is nil on
// SQLite). Each caller gets exactly one value on done.
func (a *appender) commit(group []*appendReq, w *wireConn) {
	live := group[:0:0]
	for _, r := range group {
		if !r.state.CompareAndSwap(reqQueued, reqTaken) {
			continue // the caller gave up waiting; it already returned ctx.Err()
		}
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	results := make([]error, len(live))
	start := time.Now()
	err := a.d.groupTx(live, results, w)
	a.stats.busyNanos.Add(int64(time.Since(start)))
	a.stats.groups.Add(1)
	a.stats.requests.Add(int64(len(live)))
	for i, r := range live {
		if err != nil {
			r.done <- err
		} else {
			r.done <- results[i]
		}
	}
}

// groupTx writes one group in one transaction. A caller whose fn or rows
// fail gets its error in results and its writes (and entries) are rolled
// back; the rest still commit. A non-nil return fails the whole group.
//
// On PostgreSQL a group without writer functions, whose rows are
// conflict-free, goes as one statement on w (wire.go). Otherwise the
// common case, every writer succeeding, costs one statement per writer:
// the writers run back to back without savepoints. Only when one fails
// (or the one statement was refused) is the group rerun with a savepoint
// around each writer, so the failure stays its caller's.
func (d *DB) groupTx(group []*appendReq, results []error, w *wireConn) error {
	gctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	if w != nil && wireEligible(group) {
		err := d.wireGroup(gctx, w, group)
		var se wireStatementError
		switch {
		case err == nil:
			d.audit.stats.oneStatement.Add(1)
			return nil
		case errors.As(err, &se):
			return d.groupAttempt(gctx, group, results, true)
		case !errors.Is(err, errNotWire):
			return err
		}
	}
	return d.groupAttempts(gctx, group, results)
}

// groupAttempts is groupTx's optimistic attempt and, when a writer
// failed, the isolated rerun.
func (d *DB) groupAttempts(gctx context.Context, group []*appendReq, results []error) error {
	if !hasWriter(group) {
		return d.groupAttempt(gctx, group, results, true)
	}
	if err := d.groupAttempt(gctx, group, results, false); !errors.Is(err, errRetryWithSavepoints) {
		return err
	}
	clear(results)
	return d.groupAttempt(gctx, group, results, true)
}

func hasWriter(group []*appendReq) bool {
	for _, r := range group {
		if r.fn != nil || len(r.rows) > 0 {
			return true
		}
	}
	return false
}

// errRetryWithSavepoints ends an optimistic attempt in which a writer failed.
var errRetryWithSavepoints = errors.New("a writer failed: retry the group with savepoints")

// groupAttempt runs the group once in a transaction of its own, each
// writer under a savepoint when isolate is set. Without isolate a failing
// writer ends the attempt with errRetryWithSavepoints (or, alone in its
// group, with its result).
func (d *DB) groupAttempt(gctx context.Context, group []*appendReq, results []error, isolate bool) error {
	tx, err := d.db.BeginTxx(gctx, nil)
	if err != nil {
		return fmt.Errorf("append audit: begin: %w", translate(err))
	}
	defer d.txEnded(tx)
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	// failed ends the optimistic attempt on a writer's error: alone in its
	// group the error is its caller's, else the group is rerun isolated.
	failed := func(i int, err error) error {
		if len(group) == 1 {
			results[i] = translate(err)
			return nil // rolled back by the deferred Rollback
		}
		return errRetryWithSavepoints
	}
	var (
		entries []core.AuditEntry
		head    auditHead
	)
	if !isolate {
		// Conflict-free rows first, before the chain lock (see appender).
		free, locked := splitRows(group)
		if len(free) > 0 {
			if err := d.execRows(gctx, tx, free); err != nil {
				return failed(0, err)
			}
		}
		if head, err = d.lockChain(gctx, tx); err != nil {
			return err
		}
		if len(locked) > 0 {
			if err := d.execRows(gctx, tx, locked); err != nil {
				return failed(0, err)
			}
		}
	} else if head, err = d.lockChain(gctx, tx); err != nil {
		return err
	}
	for i, r := range group {
		if r.fn != nil || (isolate && len(r.rows) > 0) {
			if isolate {
				if err := d.runSavepoint(gctx, tx, r); err != nil {
					var fatal groupFatal
					if errors.As(err, &fatal) {
						return fatal.err
					}
					results[i] = err
					continue
				}
			} else if r.fn != nil {
				err := callFn(callerCtx{Context: gctx, values: r.ctx}, tx, r.fn)
				if err == nil {
					err = validateEntries(r.entries) // fn may have filled them in
				}
				if err != nil {
					return failed(i, err)
				}
			}
		}
		entries = append(entries, r.entries...)
	}
	if err := d.appendTx(gctx, tx, head, entries); err != nil {
		if !isolate {
			// A writer may have swallowed a failed statement, leaving the
			// transaction aborted: find it with savepoints.
			return errRetryWithSavepoints
		}
		return fmt.Errorf("append audit: %w", translate(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("append audit: commit: %w", translate(err))
	}
	return nil
}

// splitRows returns the rows of group's callers that are conflict-free
// (written before the chain lock) and the others (written under it).
func splitRows(group []*appendReq) (free, locked []batchRow) {
	for _, r := range group {
		for _, row := range r.rows {
			if row.ins.conflictFree {
				free = append(free, row)
			} else {
				locked = append(locked, row)
			}
		}
	}
	return free, locked
}

// auditHead is the chain's last row (seq 0 and the genesis hash when the
// chain is empty).
type auditHead struct {
	Seq  int64  `db:"seq"`
	Hash string `db:"hash"`
}

// lockChain takes the chain's transaction-scoped advisory lock on
// PostgreSQL and returns the head, which stays the head until tx ends
// (SQLite transactions are serialized already). One round trip: see
// migration 00005.
func (d *DB) lockChain(ctx context.Context, tx *sqlx.Tx) (auditHead, error) {
	query := "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
	if d.dialect == Postgres {
		query = auditLockSQL
	}
	var head auditHead
	err := tx.GetContext(ctx, &head, query)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return auditHead{Seq: 0, Hash: core.GenesisHash}, nil
	case err != nil:
		return auditHead{}, fmt.Errorf("append audit: lock the chain and read its head: %w", translate(err))
	}
	return head, nil
}

// groupFatal marks an error that leaves the group's transaction unusable.
type groupFatal struct{ err error }

func (g groupFatal) Error() string { return g.err.Error() }

// runSavepoint runs r.fn under its own savepoint and returns fn's error
// (translated) after rolling back to the savepoint, or a groupFatal when
// the savepoint machinery itself fails.
func (d *DB) runSavepoint(gctx context.Context, tx *sqlx.Tx, r *appendReq) error {
	if _, err := tx.ExecContext(gctx, "SAVEPOINT tg_append"); err != nil {
		return groupFatal{fmt.Errorf("append audit: savepoint: %w", translate(err))}
	}
	// fn sees its caller's values but the group's deadline: cancelling one
	// caller must not cancel a statement of the shared transaction.
	err := d.execRows(gctx, tx, r.rows)
	if err == nil && r.fn != nil {
		err = callFn(callerCtx{Context: gctx, values: r.ctx}, tx, r.fn)
	}
	if err == nil {
		err = validateEntries(r.entries) // fn may have filled them in
	}
	if err == nil {
		if _, err = tx.ExecContext(gctx, "RELEASE SAVEPOINT tg_append"); err == nil {
			return nil
		}
		// fn returned nil but left the transaction aborted (it swallowed
		// a failed statement): its writes cannot be kept.
		err = fmt.Errorf("writes left the transaction unusable: %w", err)
	}
	if _, rerr := tx.ExecContext(gctx, "ROLLBACK TO SAVEPOINT tg_append"); rerr != nil {
		return groupFatal{fmt.Errorf("append audit: roll back to savepoint: %w", translate(rerr))}
	}
	if _, rerr := tx.ExecContext(gctx, "RELEASE SAVEPOINT tg_append"); rerr != nil {
		return groupFatal{fmt.Errorf("append audit: release savepoint: %w", translate(rerr))}
	}
	return translate(err)
}

// callFn runs fn, turning a panic into an error so one caller's bug cannot
// stop the appender (and hang every other caller).
func callFn(ctx context.Context, tx *sqlx.Tx, fn func(context.Context, *sqlx.Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = core.Errorf(core.KindInternal, "audit append: writer panicked: %v", p)
		}
	}()
	return fn(ctx, tx)
}

// callerCtx carries a caller's context values under the group's deadline
// and cancellation.
type callerCtx struct {
	context.Context
	values context.Context
}

func (c callerCtx) Value(key any) any { return c.values.Value(key) }

// appendWith commits entries to the audit chain together with the writes
// fn makes, in one transaction: the record and its audit rows are durable
// together or not at all. fn may be nil. Concurrent callers share a
// transaction (group commit); each gets its own result. fn must only use
// tx (on SQLite the one connection is the group's), must not commit or
// roll it back, and must not be called from inside another transaction of
// this DB. The entries are linked after fn returns nil, so fn may fill in
// fields it learns inside the transaction (a version number) through the
// slice it was given. fn may run more than once (when another writer of its
// group fails, the group is rerun with savepoints), so it must set what it
// captures by assignment, not accumulate. A caller whose ctx ends before
// its group starts gets ctx.Err() and nothing is written; once its group
// has started, it waits for the commit.
func (d *DB) appendWith(ctx context.Context, entries []core.AuditEntry, fn func(ctx context.Context, tx *sqlx.Tx) error) error {
	return d.appendReq(ctx, &appendReq{entries: entries, fn: fn})
}

// appendRows is appendWith for writes that are plain inserts: the rows of
// every caller in a group go into shared multi-row statements (on the
// hot path, a gate decision and its release). A row that fails (a
// conflict) fails its caller only.
func (d *DB) appendRows(ctx context.Context, entries []core.AuditEntry, rows ...batchRow) error {
	return d.appendReq(ctx, &appendReq{entries: entries, rows: rows})
}

func (d *DB) appendReq(ctx context.Context, r *appendReq) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(r.entries) == 0 && r.fn == nil && len(r.rows) == 0 {
		return nil
	}
	if err := validateEntries(r.entries); err != nil {
		return err
	}
	r.ctx, r.done = ctx, make(chan error, 1)
	if err := d.audit.submit(r); err != nil {
		return err
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return ctx.Err()
		}
		// The group has started: its outcome is this caller's outcome.
		return <-r.done
	}
}

// validateEntries rejects entries that would fail inside the group's
// INSERT (and so fail every caller of the group), naming the field.
func validateEntries(entries []core.AuditEntry) error {
	for i, e := range entries {
		field := func(name string) string { return fmt.Sprintf("audit[%d].%s", i, name) }
		if strings.TrimSpace(e.Action) == "" {
			return core.Invalid(field("action"), "is required")
		}
		for name, v := range map[string]string{"actor": e.Actor, "action": e.Action, "subject": e.Subject} {
			if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
				return core.Invalid(field(name), "must be UTF-8 text without NUL bytes")
			}
		}
		if len(e.Data) > 0 && !json.Valid(e.Data) {
			return core.Invalid(field("data"), "is not valid JSON")
		}
		if strings.ContainsRune(string(e.Data), 0) {
			return core.Invalid(field("data"), "must not contain NUL bytes")
		}
	}
	return nil
}

// appendTx links entries to head inside tx and inserts them; tx must hold
// the chain lock and head be what lockChain returned. Prefer appendWith:
// the chain lock is held for the rest of tx.
func (d *DB) appendTx(ctx context.Context, tx *sqlx.Tx, head auditHead, entries []core.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	now := d.now()
	rows := make([]batchRow, len(entries))
	for i, e := range entries {
		e.Seq = head.Seq + 1
		e.At = entryTime(e.At, now)
		e.PrevHash = head.Hash
		e.Hash = core.HashAuditEntry(e.PrevHash, e)
		rows[i] = batchRow{ins: auditInsert, args: []any{e.Seq, e.At, e.Actor, e.Action, e.Subject, string(e.Data), e.PrevHash, e.Hash}}
		head.Seq, head.Hash = e.Seq, e.Hash
	}
	if err := d.insertBatch(ctx, tx, auditInsert, rows); err != nil {
		return fmt.Errorf("append audit rows up to %d: %w", head.Seq, err)
	}
	return nil
}

// entryTime is an entry's time as stored: now when unset, in UTC to the
// microsecond.
func entryTime(at, now time.Time) time.Time {
	if at.IsZero() {
		return now
	}
	return ts(at)
}

// auditInsert writes chain rows, merged per group.
var auditInsert = newBatchInsert("audit_log",
	strings.Split(auditColumns, ", "),
	[]string{"bigint", "timestamptz", "text", "text", "text", "text", "text", "text"}, "")

// auditLockSQL takes the chain's transaction-scoped advisory lock and reads
// the head (a literal key: the simple query protocol, one round trip).
var auditLockSQL = fmt.Sprintf("SELECT seq, hash FROM tollgate_lock_audit_chain(%d)", auditLockKey)

// Append adds entries to the chain and returns once they are committed.
func (d *DB) Append(ctx context.Context, entries ...core.AuditEntry) error {
	return d.appendWith(ctx, entries, nil)
}

// auditRow is an audit_log row as scanned.
type auditRow struct {
	Seq      int64     `db:"seq"`
	At       time.Time `db:"at"`
	Actor    string    `db:"actor"`
	Action   string    `db:"action"`
	Subject  string    `db:"subject"`
	Data     string    `db:"data"`
	PrevHash string    `db:"prev_hash"`
	Hash     string    `db:"hash"`
}

func (r auditRow) entry() core.AuditEntry {
	e := core.AuditEntry{Seq: r.Seq, At: r.At.UTC(), Actor: r.Actor, Action: r.Action, Subject: r.Subject, PrevHash: r.PrevHash, Hash: r.Hash}
	if r.Data != "" {
		e.Data = json.RawMessage(r.Data)
	}
	return e
}

const auditColumns = "seq, at, actor, action, subject, data, prev_hash, hash"

// ListAudit returns up to f.Limit rows (default 100, at most 1000) with Seq
// greater than f.AfterSeq, oldest first, optionally only those of one
// subject and/or action.
func (d *DB) ListAudit(ctx context.Context, f core.AuditFilter) ([]core.AuditEntry, error) {
	switch {
	case f.Limit < 0:
		return nil, core.Invalid("limit", "must not be negative")
	case f.AfterSeq < 0:
		return nil, core.Invalid("after_seq", "must not be negative")
	case f.Limit == 0:
		f.Limit = defaultAuditLimit
	case f.Limit > maxAuditLimit:
		f.Limit = maxAuditLimit
	}
	query := "SELECT " + auditColumns + " FROM audit_log WHERE seq > ?"
	args := []any{f.AfterSeq}
	if f.Subject != "" {
		query += " AND subject = ?"
		args = append(args, f.Subject)
	}
	if f.Action != "" {
		query += " AND action = ?"
		args = append(args, f.Action)
	}
	query += " ORDER BY seq LIMIT ?"
	args = append(args, f.Limit)
	var rows []auditRow
	if err := d.db.SelectContext(ctx, &rows, d.q(query), args...); err != nil {
		return nil, fmt.Errorf("list audit: %w", translate(err))
	}
	out := make([]core.AuditEntry, len(rows))
	for i, r := range rows {
		out[i] = r.entry()
	}
	return out, nil
}

// VerifyAudit walks the whole chain in pages and returns the first break
// (nil when the chain is intact) and how many rows it checked. It needs
// only the database, so `tollgate audit verify` can run it offline.
func (d *DB) VerifyAudit(ctx context.Context) (*core.AuditBreak, int64, error) {
	prev, next := core.GenesisHash, int64(1)
	var checked int64
	after := int64(-1) << 62 // from the very first row, whatever its seq
	for {
		var rows []auditRow
		if err := d.db.SelectContext(ctx, &rows, d.q("SELECT "+auditColumns+" FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"), after, verifyPage); err != nil {
			return nil, checked, fmt.Errorf("verify audit: read rows after %d: %w", after, translate(err))
		}
		if len(rows) == 0 {
			return nil, checked, nil
		}
		page := make([]core.AuditEntry, len(rows))
		for i, r := range rows {
			page[i] = r.entry()
		}
		brk, last, n := core.VerifyAuditChain(page, prev, next)
		if brk != nil {
			for _, e := range page {
				checked++
				if e.Seq == brk.Seq {
					break
				}
			}
			return brk, checked, nil
		}
		checked += int64(len(page))
		prev, next = last, n
		after = rows[len(rows)-1].Seq
	}
}
