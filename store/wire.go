package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/tollgate-dev/tollgate/core"
)

// Group commit in one round trip (PostgreSQL).
//
// A group whose callers only insert rows and append entries — every gate
// check — is sent as one simple-query message on the worker's own
// connection:
//
//	BEGIN;
//	EXECUTE tg_w1('{…}', …);                   -- conflict-free rows (decisions, releases)
//	SELECT tollgate_append_audit(key, '{…}', …); -- chain lock, head, link, insert
//	COMMIT
//
// PostgreSQL runs it to the end without waiting for tollgate, so the chain
// lock is held only for the linking, the insert and the commit's WAL
// flush, and a group costs one round trip instead of four (begin, rows,
// lock and head, chain rows, commit). The entries are linked inside the
// database (migration 00006) from core.AuditContentTail, which tollgate
// computes; `tollgate audit verify` rechecks every hash in Go.
//
// The rows' statement is prepared once per connection (PREPARE, on first
// use) and executed with each column's values as one dollar-quoted string
// that PostgreSQL splits into the column's text[] (appendColumn). A group with a
// writer function, a value PostgreSQL's text cannot hold (NUL), or a
// database not in UTF8 goes the interactive way (groupAttempts). When the
// message fails with an error of PostgreSQL's, its transaction is rolled
// back and the group is rerun interactively, each caller under a
// savepoint, so a failing row fails only its caller. When the connection
// fails instead, the outcome is unknown (the COMMIT may have run): the
// callers get an error and nothing is rerun. A connection idle for
// wireIdlePing is pinged first, so one that died while idle (a restarted
// server) is replaced before a group is sent on it.

// wireIdlePing is how long the worker's connection may sit idle before
// it is pinged ahead of the next group.
const wireIdlePing = 500 * time.Millisecond

// maxWireBuf caps the message buffer a worker keeps between groups.
const maxWireBuf = 4 << 20

// wireAppName is the workers' connections' application_name (in
// pg_stat_activity).
const wireAppName = "tollgate group commit"

// wireConn is a group-commit worker's own connection, outside the pool's
// rotation (Open adds the workers' connections to the pool's size).
type wireConn struct {
	c        *sql.Conn
	prepared map[string]string // statement text → prepared name
	lastUsed time.Time
	// buf is the last group's message, kept for the next one's.
	buf []byte
	// off is set when the server cannot take the one-message path (its
	// encoding is not UTF8): the worker commits interactively.
	off bool
}

// errNotWire is a group that cannot go as one message.
var errNotWire = errors.New("group cannot be sent as one message")

// wireStatementError is PostgreSQL refusing a statement of the message;
// its transaction was rolled back and nothing of the group is committed.
type wireStatementError struct{ err error }

func (e wireStatementError) Error() string { return e.err.Error() }
func (e wireStatementError) Unwrap() error { return e.err }

// wireEligible reports whether group can go as one message: no writer
// functions (they need the transaction interactively).
func wireEligible(group []*appendReq) bool {
	for _, r := range group {
		if r.fn != nil {
			return false
		}
	}
	return true
}

// wireGroup commits group as one message on w. It returns errNotWire
// (nothing was sent), a wireStatementError (rolled back), or another
// error: the connection failed and the outcome is unknown.
func (d *DB) wireGroup(ctx context.Context, w *wireConn, group []*appendReq) error {
	if err := d.wireConnect(ctx, w); err != nil {
		return err
	}
	free, locked := splitRows(group)
	var entries []core.AuditEntry
	for _, r := range group {
		entries = append(entries, r.entries...)
	}
	msg := append(w.buf[:0], "BEGIN;"...)
	var err error
	if msg, err = d.wireRows(ctx, w, msg, free); err != nil {
		return err
	}
	if len(locked) > 0 {
		// Rows that may conflict are written under the chain lock (see
		// appender); tollgate_append_audit takes it again (it stacks).
		msg = append(msg, "SELECT pg_advisory_xact_lock("+strconv.Itoa(auditLockKey)+");"...)
		if msg, err = d.wireRows(ctx, w, msg, locked); err != nil {
			return err
		}
	}
	if msg, err = d.wireEntries(msg, entries); err != nil {
		return err
	}
	msg = append(msg, "COMMIT"...)
	_, err = w.c.ExecContext(ctx, string(msg))
	w.lastUsed = time.Now()
	if cap(msg) <= maxWireBuf {
		w.buf = msg // reused by the next group (ExecContext took a copy)
	}
	if err == nil {
		return nil
	}
	var pe *pq.Error
	if errors.As(err, &pe) && !pe.Fatal() && ctx.Err() == nil {
		// The statement that failed aborted the transaction block (or
		// the message failed before BEGIN ran): end it. A prepared
		// statement gone from the session (DEALLOCATE, a pooler
		// switching server connections) is prepared again on a new
		// connection next time.
		if _, rerr := w.c.ExecContext(ctx, "ROLLBACK"); rerr != nil || pe.Code == "26000" { // invalid_sql_statement_name
			w.discard()
		}
		return wireStatementError{err}
	}
	w.discard()
	return fmt.Errorf("append audit: the connection failed while the group was committing (it may or may not have committed): %w", translate(err))
}

// wireConnect gives w a live connection: a new one, or its own after a
// ping when it sat idle. It returns errNotWire when the server cannot take
// the one-message path.
func (d *DB) wireConnect(ctx context.Context, w *wireConn) error {
	if w.off {
		return errNotWire
	}
	if w.c != nil && time.Since(w.lastUsed) >= d.wireIdle {
		if err := w.c.PingContext(ctx); err != nil {
			w.discard()
		}
	}
	if w.c != nil {
		return nil
	}
	c, err := d.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("append audit: connect: %w", translate(err))
	}
	w.c, w.prepared, w.lastUsed = c, map[string]string{}, time.Now()
	var enc string
	// Literals below rely on standard_conforming_strings (backslashes are
	// not escapes); hash lengths on UTF8 (see migration 00006).
	if _, err = c.ExecContext(ctx, "SET standard_conforming_strings = on; SET application_name = '"+wireAppName+"'"); err == nil {
		err = c.QueryRowContext(ctx, "SHOW server_encoding").Scan(&enc)
	}
	switch {
	case err != nil:
		w.discard()
		return fmt.Errorf("append audit: set up the group-commit connection: %w", translate(err))
	case enc != "UTF8":
		d.log.Info("audit group commit: the database's encoding is not UTF8; committing groups interactively", "encoding", enc)
		w.off = true
		w.discard()
		return errNotWire
	}
	return nil
}

// discard closes w's connection for good and forgets what was prepared
// on it. It is never returned to the pool: it holds the worker's prepared
// statements, and after a failure may be in any state.
func (w *wireConn) discard() {
	if w.c == nil {
		return
	}
	_ = w.c.Raw(func(any) error { return driver.ErrBadConn })
	_ = w.c.Close()
	w.c, w.prepared = nil, nil
}

// wireRows appends the EXECUTE of rows' statement to msg, preparing the
// statement on w first when it is new there.
func (d *DB) wireRows(ctx context.Context, w *wireConn, msg []byte, rows []batchRow) ([]byte, error) {
	if len(rows) == 0 {
		return msg, nil
	}
	order, byIns, err := groupRows(rows)
	if err != nil {
		return nil, err
	}
	text, args, err := pgInsert(order, byIns)
	if err != nil {
		return nil, err
	}
	name, ok := w.prepared[text]
	if !ok {
		name = "tg_w" + strconv.Itoa(len(w.prepared)+1)
		if _, err := w.c.ExecContext(ctx, "PREPARE "+name+" AS "+text); err != nil {
			// Nothing of the group was sent: it runs interactively, where
			// a real problem (a missing table) reaches its callers.
			d.log.Warn("audit group commit: cannot prepare the group's inserts; committing the group interactively", "err", err)
			w.discard()
			return nil, errNotWire
		}
		w.prepared[text] = name
	}
	msg = append(msg, "EXECUTE "+name+"("...)
	for i, a := range args {
		if i > 0 {
			msg = append(msg, ',')
		}
		if msg, err = appendColumn(msg, a); err != nil {
			return nil, err
		}
	}
	return append(msg, ");"...), nil
}

// wireEntries appends the call linking entries to the chain.
func (d *DB) wireEntries(msg []byte, entries []core.AuditEntry) ([]byte, error) {
	if len(entries) == 0 {
		return msg, nil
	}
	now := d.now()
	cols := make([][]string, 6) // at, actor, action, subject, data, tail
	for i := range cols {
		cols[i] = make([]string, len(entries))
	}
	for i, e := range entries {
		if e.At.IsZero() {
			e.At = now
		}
		e.At = ts(e.At)
		cols[0][i] = e.At.Format(core.AuditTimeFormat)
		cols[1][i], cols[2][i], cols[3][i], cols[4][i] = e.Actor, e.Action, e.Subject, string(e.Data)
		cols[5][i] = core.AuditContentTail(e)
	}
	msg = append(msg, "SELECT tollgate_append_audit("+strconv.Itoa(auditLockKey)...)
	var err error
	for _, c := range cols {
		msg = append(msg, ',')
		if msg, err = appendColumn(msg, c); err != nil {
			return nil, err
		}
	}
	return append(msg, ");"...), nil
}

// wireQuote is the tag of the dollar-quoted strings appendColumn writes.
const wireQuote = "$tollgate$"

// appendColumn appends a text[] expression for a: the elements, each
// preceded by chr(1), in one dollar-quoted string that PostgreSQL splits
// again — no escaping on either side, which for a group's decision
// documents (kilobytes of JSON, a quote every few bytes) halves the
// server's cost of reading them compared with an array literal. JSON from
// encoding/json never holds chr(1). A column with an element holding
// chr(1) or the quote's tag is written as an array literal instead; a NUL
// byte returns errNotWire.
func appendColumn(b []byte, a []string) ([]byte, error) {
	n := len(a) + 2*len(wireQuote) + 40
	for _, s := range a {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, errNotWire
		}
		if strings.IndexByte(s, 1) >= 0 || strings.Contains(s, wireQuote) {
			return appendArrayLiteral(b, a)
		}
		n += len(s)
	}
	b = slices.Grow(b, n)
	b = append(b, "(string_to_array("+wireQuote...)
	for _, s := range a {
		b = append(b, 1)
		b = append(b, s...)
	}
	// The leading chr(1) makes a first, empty element, dropped by [2:]:
	// without it a single empty element would split into no elements.
	return append(b, wireQuote+", chr(1)))[2:]"...), nil
}

// appendArrayLiteral appends a as a quoted SQL literal of a text array:
// '{"a","b"}', with " and \ escaped for the array and ' doubled for the
// string (standard_conforming_strings is on). A NUL byte, which
// PostgreSQL's text cannot hold and which would end the query string,
// returns errNotWire.
func appendArrayLiteral(b []byte, a []string) ([]byte, error) {
	for _, s := range a {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, errNotWire
		}
	}
	b = append(b, '\'')
	b = appendArrayText(b, a, true)
	return append(b, '\''), nil
}
