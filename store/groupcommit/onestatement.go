package groupcommit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/pgconn"
)

// One-statement groups (PostgreSQL).
//
// A group whose callers only insert conflict-free rows and append entries
// — every gate check — is one prepared statement, executed outside a
// transaction block on the committer's own connection, so it is its own
// transaction and commits when it ends:
//
//	WITH i0 AS (INSERT INTO releases … FROM unnest(<column 0>, …) … RETURNING 1),
//	     i1 AS (INSERT INTO gate_decisions … RETURNING 1)
//	SELECT tollgate_append_audit(key, <column 18>, …)  -- chain lock, head, link, insert
//	FROM (SELECT count(*) FROM i0) c0, (SELECT count(*) FROM i1) c1
//
// Counting the inserts' rows in FROM makes them finish before the function
// takes the chain lock. PostgreSQL runs the statement and its commit
// without waiting for tollgate, so the lock is held only for the linking,
// the insert and the commit's WAL flush, and a group costs one round trip
// (Bind, Execute, Sync) instead of five (begin, rows, lock and head, chain
// rows, commit). The entries are linked inside the database (migration
// 00006) from core.AuditContentTail, which tollgate computes; a test holds
// the function's hash to core.HashAuditEntry, and `tollgate audit verify`
// rechecks every hash in Go. The columns travel as slices of one text[]
// parameter in PostgreSQL's binary format (binaryArgs, on the own
// connection's pool, openBinaryPool): each element is its length and its
// bytes, so neither side escapes or parses the kilobytes of decision
// documents a group carries, and no SQL is built from data.
//
// The statement is prepared once per connection and shape. A group with a
// writer function or with rows that may conflict, or a database not in
// UTF8, goes the interactive way. When PostgreSQL refuses the statement,
// its transaction is rolled back and the group is rerun interactively,
// each caller under a savepoint, so a failing row fails only its caller.
// When the connection fails instead, the outcome is unknown (the commit
// may have happened): the callers get an error and nothing is rerun. A
// connection idle for IdlePing is pinged first, so one that died while
// idle (a restarted server) is replaced before a group is sent on it.

// idlePing is the default Config.IdlePing.
const idlePing = 500 * time.Millisecond

// queryCanceled is PostgreSQL's SQLSTATE for a statement cancelled, here
// by the session's statement_timeout.
const queryCanceled = "57014"

// connAppName is the own connection's application_name (in
// pg_stat_activity).
const connAppName = "tollgate group commit"

// groupConn is the committer's own connection, from its own pool
// (openBinaryPool), outside the store's pool.
type groupConn struct {
	c        *sql.Conn
	prepared map[string]*sql.Stmt // by statement text, on c
	scratch  []byte               // the last group's arguments (binaryArgs)
	lastUsed time.Time
	// off is set when the server cannot take one-statement groups (its
	// encoding is not UTF8): every group is committed interactively.
	off bool
}

// errNotOneStatement is a group that cannot go as one statement.
var errNotOneStatement = errors.New("group cannot be sent as one statement")

func isNotOneStatement(err error) bool { return errors.Is(err, errNotOneStatement) }

// refusedError is PostgreSQL refusing the group's statement; its
// transaction was rolled back and nothing of the group is committed.
type refusedError struct{ err error }

func (e refusedError) Error() string { return e.err.Error() }
func (e refusedError) Unwrap() error { return e.err }

func isRefused(err error) bool {
	var r refusedError
	return errors.As(err, &r)
}

// fitsOneStatement reports whether group can go as one statement: no
// writer functions (they need the transaction interactively) and no rows
// that may conflict (they must wait for the chain lock).
func fitsOneStatement(group []*request) bool {
	for _, r := range group {
		if r.Write != nil {
			return false
		}
		for _, row := range r.Rows {
			if !row.Insert.conflictFree {
				return false
			}
		}
	}
	return true
}

// commitOneStatement commits group as one statement on the own
// connection. It returns errNotOneStatement (nothing was sent), a
// refusedError (rolled back), or another error: the connection failed and
// the outcome is unknown.
func (c *Committer) commitOneStatement(ctx context.Context, group []*request) error {
	w := c.conn
	if err := c.connect(ctx); err != nil {
		return err
	}
	var (
		rows    []Row
		entries []core.AuditEntry
	)
	for _, r := range group {
		rows = append(rows, r.Rows...)
		entries = append(entries, r.Entries...)
	}
	text, arrays, err := c.oneStatement(rows, entries)
	if err != nil {
		return err
	}
	args, err := w.binaryArgs(arrays)
	if err != nil {
		return err
	}
	// The statement runs under a context that never ends: the session
	// bounds it (statement_timeout, openBinaryPool) and the dialer a dead
	// peer (pgconn), where a context that can end would make lib/pq start
	// a goroutine to watch it for every group.
	run := context.WithoutCancel(ctx)
	st, ok := w.prepared[text]
	if !ok {
		if st, err = w.c.PrepareContext(run, text); err != nil {
			// Nothing of the group was sent: it runs interactively, where
			// a real problem (a missing table) reaches its callers.
			c.cfg.Log.Warn("audit group commit: cannot prepare the group's statement; committing the group interactively", "err", err)
			w.discard()
			return errNotOneStatement
		}
		w.prepared[text] = st
	}
	_, err = st.ExecContext(run, args...)
	w.lastUsed = time.Now()
	if err == nil {
		return nil
	}
	var pe *pq.Error
	if errors.As(err, &pe) && pe.Code == queryCanceled {
		// statement_timeout: rolled back, and the connection is sound; the
		// database is too slow to take the group, not refusing a row.
		return fmt.Errorf("append audit: the group's statement timed out (nothing of it committed): %w", c.cfg.Translate(err))
	}
	if errors.As(err, &pe) && !pe.Fatal() {
		// The statement's transaction was rolled back. A prepared
		// statement gone from the session (DEALLOCATE, a pooler switching
		// server connections) is prepared again on a new connection next
		// time.
		if pe.Code == "26000" { // invalid_sql_statement_name
			w.discard()
		}
		return refusedError{err}
	}
	w.discard()
	return fmt.Errorf("append audit: the connection failed while the group was committing (it may or may not have committed): %w", c.cfg.Translate(err))
}

// oneStatement is the one statement inserting rows and linking entries,
// and its arguments: a text[] per column.
func (c *Committer) oneStatement(rows []Row, entries []core.AuditEntry) (string, []textArray, error) {
	var (
		order []*Insert
		args  []textArray
	)
	if len(rows) > 0 {
		var (
			byIns map[*Insert][]Row
			err   error
		)
		if order, byIns, err = groupRows(rows); err != nil {
			return "", nil, err
		}
		for _, ins := range order {
			cols, err := ins.columns(byIns[ins])
			if err != nil {
				return "", nil, err
			}
			args = append(args, cols...)
		}
	}
	// A group without rows is a call of the function, even with no entries.
	withEntries := len(entries) > 0 || len(order) == 0
	text := c.oneStatementText(order, withEntries)
	if !withEntries {
		return text, args, nil
	}
	now := c.now()
	cols := make([]textArray, 6) // at, actor, action, subject, data, tail
	for i := range cols {
		cols[i] = make(textArray, len(entries))
	}
	for i, e := range entries {
		e.At = entryTime(e.At, now)
		cols[0][i] = e.At.Format(core.AuditTimeFormat)
		cols[1][i], cols[2][i], cols[3][i], cols[4][i] = e.Actor, e.Action, e.Subject, string(e.Data)
		cols[5][i] = core.AuditContentTail(e)
	}
	return text, append(args, cols...), nil
}

// oneStatementText is the statement's text for a group inserting into
// order's tables (in that order) and linking entries when withEntries;
// built once per shape (c.texts), as the committer would otherwise
// rebuild the same text for every group.
//
// The group's columns travel as two parameters (binaryArgs): $2 every
// column's elements one after another in one text[], $1 the int4[] of
// each column's first and last subscript in it; column k is the slice
// $2[$1[2k+1]:$1[2k+2]]. One large parameter rather than one per column,
// because lib/pq grows its Bind message by appending parameter after
// parameter: with a dozen columns it reallocated and copied the group's
// kilobytes of documents several times per group; with one it allocates
// the message once.
func (c *Committer) oneStatementText(order []*Insert, withEntries bool) string {
	var key strings.Builder
	for _, ins := range order {
		key.WriteString(ins.shape)
		key.WriteByte(';')
	}
	if withEntries {
		key.WriteString("audit")
	}
	if t, ok := c.texts.Load(key.String()); ok {
		return t.(string)
	}
	var text string
	if len(order) > 0 {
		var with, from []string
		k := 0
		for i, ins := range order {
			first := k
			with = append(with, fmt.Sprintf("i%d AS (%s RETURNING 1)", i, ins.pgSQLWith(func(j int) string { return columnRef(first + j) })))
			from = append(from, fmt.Sprintf("(SELECT count(*) FROM i%d) c%d", i, i))
			k += len(ins.cols)
		}
		text = "WITH " + strings.Join(with, ", ") + " SELECT "
		if withEntries {
			text += appendAuditCall(k) + " FROM " + strings.Join(from, ", ")
		} else {
			text += "1 FROM " + strings.Join(from, ", ")
		}
	} else {
		text = "SELECT " + appendAuditCall(0)
	}
	c.texts.Store(key.String(), text)
	return text
}

// columnRef is column k's array in a one-statement group (see
// oneStatementText).
func columnRef(k int) string {
	return fmt.Sprintf("($2::text[])[($1::int4[])[%d]:($1::int4[])[%d]]", 2*k+1, 2*k+2)
}

// appendAuditCall is the call linking a group's entries, its arrays the
// columns first… .
func appendAuditCall(first int) string {
	p := make([]string, 6)
	for i := range p {
		p[i] = columnRef(first + i)
	}
	return "tollgate_append_audit(" + strconv.Itoa(LockKey) + ", " + strings.Join(p, ", ") + ")"
}

// scratchMax is the largest buffer the own connection keeps between
// groups for its arguments (binaryArgs); a bigger group's is dropped
// after use.
const scratchMax = 1 << 20

// int4OID is the type oid of int4, the element type of the bounds.
const int4OID = 23

// binaryArgs returns the group's two parameters (oneStatementText) in
// PostgreSQL's binary format, in one buffer reused from group to group:
// the int4[] of each column's first and last subscript, and the text[]
// of every column's elements in turn. lib/pq copies the arguments into
// its message before ExecContext returns, so the next group may
// overwrite them. Saves allocating (and zeroing) each group's documents
// anew.
func (w *groupConn) binaryArgs(arrays []textArray) ([]any, error) {
	elems, size := 0, 0
	for _, a := range arrays {
		n, err := a.elementsSize()
		if err != nil {
			return nil, err
		}
		elems, size = elems+len(a), size+n
	}
	boundsLen := arrayHeaderSize(2*len(arrays)) + 2*8*len(arrays)
	textLen := arrayHeaderSize(elems) + size
	if int64(textLen) > math.MaxInt32 {
		return nil, fmt.Errorf("group of %d bytes is too large for one statement", textLen)
	}
	buf := w.scratch[:0]
	if cap(buf) < boundsLen+textLen {
		buf = make([]byte, 0, boundsLen+textLen)
	}
	buf = appendArrayHeader(buf, int4OID, 2*len(arrays))
	next := 1
	for _, a := range arrays {
		for _, v := range []int{next, next + len(a) - 1} { // [next:next-1] is empty
			buf = binary.BigEndian.AppendUint32(buf, 4)
			buf = binary.BigEndian.AppendUint32(buf, uint32(int32(v)))
		}
		next += len(a)
	}
	bounds := buf[:len(buf):len(buf)]
	buf = appendArrayHeader(buf, textOID, elems)
	for _, a := range arrays {
		buf = a.appendElements(buf)
	}
	text := buf[len(bounds):len(buf):len(buf)]
	if cap(buf) <= scratchMax {
		w.scratch = buf
	}
	return []any{bounds, text}, nil
}

// connect gives the own connection a live connection: a new one, or its
// own after a ping when it sat idle. It returns errNotOneStatement when
// the server cannot take one-statement groups.
func (c *Committer) connect(ctx context.Context) error {
	w := c.conn
	if w.off {
		return errNotOneStatement
	}
	if w.c != nil && time.Since(w.lastUsed) >= c.cfg.IdlePing {
		if err := w.c.PingContext(ctx); err != nil {
			w.discard()
		}
	}
	if w.c != nil {
		return nil
	}
	conn, err := c.pool.Conn(ctx)
	if err != nil {
		return fmt.Errorf("append audit: connect: %w", c.cfg.Translate(err))
	}
	w.c, w.prepared, w.lastUsed = conn, map[string]*sql.Stmt{}, time.Now()
	var enc string
	// Hash lengths rely on UTF8 (see migration 00006).
	if _, err = conn.ExecContext(ctx, "SET application_name = '"+connAppName+"'"); err == nil {
		err = conn.QueryRowContext(ctx, "SHOW server_encoding").Scan(&enc)
	}
	switch {
	case err != nil:
		w.discard()
		return fmt.Errorf("append audit: set up the group-commit connection: %w", c.cfg.Translate(err))
	case enc != "UTF8":
		c.cfg.Log.Info("audit group commit: the database's encoding is not UTF8; committing groups interactively", "encoding", enc)
		w.off = true
		w.discard()
		return errNotOneStatement
	}
	return nil
}

// openBinaryPool is the pool of the committer's own connection on url,
// with lib/pq's binary_parameters on, so that a textArray goes in binary
// (BinaryValue). The store's pool keeps text parameters: in binary mode
// lib/pq would send any []byte argument in binary, which a jsonb
// parameter, say, does not take.
func openBinaryPool(url string) (*sql.DB, error) {
	cfg, err := pgconn.Config(url, "tollgate audit committer")
	if err != nil {
		return nil, err
	}
	cfg.BinaryParameters = true
	pgconn.Bounded(&cfg, groupTimeout)
	db, err := pgconn.Open(cfg)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return db, nil
}

// discard closes w's connection for good and forgets what was prepared
// on it. It is never returned to the pool: it holds the prepared
// statements, and after a failure may be in any state.
func (w *groupConn) discard() {
	if w.c == nil {
		return
	}
	for _, st := range w.prepared {
		_ = st.Close()
	}
	_ = w.c.Raw(func(any) error { return driver.ErrBadConn })
	_ = w.c.Close()
	w.c, w.prepared = nil, nil
}
