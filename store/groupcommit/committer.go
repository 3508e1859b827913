// Package groupcommit commits the audit chain's appends in groups. A caller
// submits its audit entries with the writes that go with them (rows to
// insert, or a function writing in the transaction) and waits for its
// group's commit; the entries are linked to the chain head inside that
// transaction, so a write and its audit rows are durable together or not
// at all.
//
// One committer per process collects the requests waiting at the moment,
// links them and commits them in one transaction, so the chain is never a
// lock taken once per append: a group costs one commit (one WAL flush) for
// everyone in it. Across processes sharing a PostgreSQL database, the
// group takes a transaction-scoped advisory lock and reads the head under
// it.
//
// On PostgreSQL a group of rows and entries only — every gate decision —
// is one statement on the committer's own connection (onestatement.go):
// one round trip, the chain lock held only inside the database. Other
// groups run interactively (interactive.go).
package groupcommit

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
)

// LockKey is the advisory lock that serializes chain appends across
// processes on PostgreSQL (transaction-scoped).
const LockKey = 0x746f6c6c // "toll"

const (
	// maxGroup caps how many callers share one transaction, so one group's
	// transaction (and the chain lock) stays short.
	maxGroup = 256
	// groupTimeout bounds one group's transaction.
	groupTimeout = 30 * time.Second
	// queueLen is how many requests may wait for the committer before
	// Submit blocks.
	queueLen = 1024
)

// errClosed is what submissions get after Close.
var errClosed = core.Errorf(core.KindUnavailable, "store is closed")

// Config wires a Committer to its store.
type Config struct {
	// DB is the store's pool; interactive groups run their transactions on
	// it.
	DB *sqlx.DB
	// URL is the PostgreSQL database's URL, for the committer's own
	// connection (one-statement groups); empty on SQLite.
	URL string
	// Now is the store's clock, for entries without a time.
	Now func() time.Time
	Log *slog.Logger
	// Translate turns driver errors into core errors (by SQLSTATE).
	Translate func(error) error
	// TxEnded is called after each interactive group transaction ends,
	// committed or not (the store's fact cache drops what it announced);
	// committed tells whether a commit was attempted (its outcome may be
	// unknown), so the store announces only what may have committed.
	TxEnded func(tx *sqlx.Tx, committed bool)
	// Prepared returns query's prepared statement bound to tx, or nil
	// when it is not prepared yet (the text is then executed as is). It
	// must never wait for a pool connection: the transaction may hold the
	// chain lock.
	Prepared func(ctx context.Context, tx *sqlx.Tx, query string) *sqlx.Stmt
	// IdlePing is how long the own connection may sit idle before it is
	// pinged ahead of the next group (default idlePing).
	IdlePing time.Duration
}

// Committer is the group commit of one store.
type Committer struct {
	cfg      Config
	postgres bool
	reqs     chan *request
	mu       sync.RWMutex // guards closed against sends on a closed reqs
	closed   bool
	exited   chan struct{}
	stats    stats
	// conn is the own connection of one-statement groups (PostgreSQL);
	// nil on SQLite.
	conn *groupConn
	// pool is conn's pool, with binary parameters (openBinaryPool).
	pool *sql.DB
	// texts caches one-statement texts by shape (oneStatementText).
	texts sync.Map
	// once remembers rows inserted once and committed (Row.Once).
	once onceMemo
}

// New starts a committer. On PostgreSQL (cfg.URL set) it opens the pool of
// its own connection.
func New(cfg Config) (*Committer, error) {
	if cfg.IdlePing == 0 {
		cfg.IdlePing = idlePing
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := &Committer{cfg: cfg, postgres: cfg.URL != "", reqs: make(chan *request, queueLen), exited: make(chan struct{})}
	if c.postgres {
		pool, err := openBinaryPool(cfg.URL)
		if err != nil {
			return nil, err
		}
		c.pool, c.conn = pool, &groupConn{}
	}
	go c.run()
	return c, nil
}

// Request is one caller's append: entries to link to the chain, with rows
// inserted and/or a function writing in the same transaction.
type Request struct {
	Entries []core.AuditEntry
	// Rows are inserted before Write runs; across a group they are merged
	// into multi-row statements. A row that fails (a conflict) fails its
	// caller only.
	Rows []Row
	// Write, when set, writes in the group's transaction. It must only
	// use tx (on SQLite the one connection is the group's), must not
	// commit or roll it back, and must not start another transaction of
	// the store. The entries are linked after it returns nil, so it may
	// fill in fields it learns inside the transaction (a version number)
	// through the slice it was given. It may run more than once (when
	// another writer of its group fails, the group is rerun with
	// savepoints), so it must set what it captures by assignment, not
	// accumulate.
	Write func(ctx context.Context, tx *sqlx.Tx) error
}

// Request states: a request is queued until the committer takes it into a
// group, or until its caller gives up waiting (ctx ended) first.
const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

// request is a submitted Request waiting for its group.
type request struct {
	Request
	ctx   context.Context
	state atomic.Int32
	done  chan error // buffered: the committer never blocks on a caller
}

// Submit commits r in the next group and returns its outcome once the
// group has committed. A caller whose ctx ends before its group starts
// gets ctx.Err() and nothing is written; once its group has started, it
// waits for the commit. After Close it fails with KindUnavailable.
func (c *Committer) Submit(ctx context.Context, r Request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.Rows = c.once.skipKnown(r.Rows)
	if len(r.Entries) == 0 && r.Write == nil && len(r.Rows) == 0 {
		return nil
	}
	if err := validateEntries(r.Entries); err != nil {
		return err
	}
	req := &request{Request: r, ctx: ctx, done: make(chan error, 1)}
	if err := c.enqueue(req); err != nil {
		return err
	}
	var err error
	select {
	case err = <-req.done:
	case <-ctx.Done():
		if req.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return ctx.Err()
		}
		// The group has started: its outcome is this caller's outcome.
		err = <-req.done
	}
	if err == nil {
		c.once.remember(r.Rows)
	}
	return err
}

func (c *Committer) enqueue(r *request) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return errClosed
	}
	select {
	case c.reqs <- r:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// Committed reports whether a row with this Once key was committed by this
// process: a caller may then leave the row out without building it.
func (c *Committer) Committed(once string) bool { return c.once.known(once) }

// Queued is the number of requests waiting for a group.
func (c *Committer) Queued() int { return len(c.reqs) }

// Close stops accepting submissions, commits every queued one and waits
// for the committer to stop; then it closes its own connection's pool.
func (c *Committer) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.reqs)
	}
	c.mu.Unlock()
	<-c.exited
	if c.pool != nil {
		_ = c.pool.Close()
	}
}

// run takes the requests waiting and commits them as one group, until the
// queue is closed and drained.
func (c *Committer) run() {
	defer close(c.exited)
	if c.conn != nil {
		defer c.conn.discard()
	}
	group := make([]*request, 0, maxGroup)
	for {
		first, ok := <-c.reqs
		if !ok {
			return
		}
		group = append(group[:0], first)
	collect:
		for len(group) < maxGroup {
			select {
			case r, ok := <-c.reqs:
				if !ok {
					break collect
				}
				group = append(group, r)
			default:
				break collect
			}
		}
		c.commit(group)
		clear(group) // let the requests be collected
	}
}

// commit runs one group. Each caller gets exactly one value on done.
func (c *Committer) commit(group []*request) {
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
	err := c.commitGroup(live, results)
	c.stats.busyNanos.Add(int64(time.Since(start)))
	c.stats.groups.Add(1)
	c.stats.requests.Add(int64(len(live)))
	for i, r := range live {
		if err != nil {
			r.done <- err
		} else {
			r.done <- results[i]
		}
	}
}

// commitGroup writes one group in one transaction: as one statement when
// it can (onestatement.go), else interactively. A caller whose writes
// fail gets its error in results and its writes (and entries) are rolled
// back; the rest still commit. A non-nil return fails the whole group.
func (c *Committer) commitGroup(group []*request, results []error) error {
	gctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	if c.conn != nil && fitsOneStatement(group) {
		err := c.commitOneStatement(gctx, group)
		switch {
		case err == nil:
			c.stats.oneStatement.Add(1)
			return nil
		case isRefused(err):
			// Rolled back: rerun each caller under a savepoint, so a
			// failing row fails only its caller.
			return c.attempt(gctx, group, results, true)
		case !isNotOneStatement(err):
			return err
		}
	}
	return c.interactive(gctx, group, results)
}

// stats count the committer's work.
type stats struct {
	groups, requests, busyNanos, oneStatement atomic.Int64
}

// Stats is what the committer did since it started: groups committed (or
// failed), those committed as one statement, the requests they carried,
// and the time spent in group transactions (busy / wall time near 1 means
// appends queue behind commits).
type Stats struct {
	Groups, OneStatement, Requests int64
	Busy                           time.Duration
}

// Stats reports the committer's counters.
func (c *Committer) Stats() Stats {
	return Stats{Groups: c.stats.groups.Load(), OneStatement: c.stats.oneStatement.Load(), Requests: c.stats.requests.Load(),
		Busy: time.Duration(c.stats.busyNanos.Load())}
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

// now is the store's time in UTC to the microsecond (what both databases
// keep).
func (c *Committer) now() time.Time { return c.cfg.Now().UTC().Truncate(time.Microsecond) }

// entryTime is an entry's time as stored: now when unset, in UTC to the
// microsecond.
func entryTime(at, now time.Time) time.Time {
	if at.IsZero() {
		return now
	}
	return at.UTC().Truncate(time.Microsecond)
}
