package groupcommit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
)

// Interactive groups: a group with writer functions or rows that may
// conflict (or any group on SQLite) runs in a transaction driven from
// here. Its conflict-free rows are written before the chain lock is taken
// (so that group transactions of other processes overlap), everything
// else — rows that may conflict, writer functions, the chain rows —
// under it, so two group transactions never wait on each other's rows
// (no deadlock).
//
// The common case, every writer succeeding, costs one statement per
// writer: the writers run back to back without savepoints. Only when one
// fails (or the one statement was refused) is the group rerun with a
// savepoint around each writer, so the failure stays its caller's.

// errRetryWithSavepoints ends an optimistic attempt in which a writer failed.
var errRetryWithSavepoints = errors.New("a writer failed: retry the group with savepoints")

// interactive is the optimistic attempt and, when a writer failed, the
// isolated rerun.
func (c *Committer) interactive(gctx context.Context, group []*request, results []error) error {
	if !hasWriter(group) {
		return c.attempt(gctx, group, results, true)
	}
	if err := c.attempt(gctx, group, results, false); !errors.Is(err, errRetryWithSavepoints) {
		return err
	}
	clear(results)
	return c.attempt(gctx, group, results, true)
}

func hasWriter(group []*request) bool {
	for _, r := range group {
		if r.Write != nil || len(r.Rows) > 0 {
			return true
		}
	}
	return false
}

// attempt runs the group once in a transaction of its own, each writer
// under a savepoint when isolate is set. Without isolate a failing writer
// ends the attempt with errRetryWithSavepoints (or, alone in its group,
// with its result).
func (c *Committer) attempt(gctx context.Context, group []*request, results []error, isolate bool) error {
	tx, err := c.cfg.DB.BeginTxx(gctx, nil)
	if err != nil {
		return fmt.Errorf("append audit: begin: %w", c.cfg.Translate(err))
	}
	committed := false
	if c.cfg.TxEnded != nil {
		defer func() { c.cfg.TxEnded(tx, committed) }()
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	// failed ends the optimistic attempt on a writer's error: alone in its
	// group the error is its caller's, else the group is rerun isolated.
	failed := func(i int, err error) error {
		if len(group) == 1 {
			results[i] = c.cfg.Translate(err)
			return nil // rolled back by the deferred Rollback
		}
		return errRetryWithSavepoints
	}
	var head Head
	if !isolate {
		free, locked := splitRows(group)
		if len(free) > 0 {
			if err := c.execRows(gctx, tx, free); err != nil {
				return failed(0, err)
			}
		}
		if head, err = c.LockChain(gctx, tx); err != nil {
			return err
		}
		if len(locked) > 0 {
			if err := c.execRows(gctx, tx, locked); err != nil {
				return failed(0, err)
			}
		}
	} else if head, err = c.LockChain(gctx, tx); err != nil {
		return err
	}
	var entries []core.AuditEntry
	for i, r := range group {
		switch {
		case isolate && (r.Write != nil || len(r.Rows) > 0):
			if err := c.runSavepoint(gctx, tx, r); err != nil {
				var fatal groupFatal
				if errors.As(err, &fatal) {
					return fatal.err
				}
				results[i] = err
				continue
			}
		case r.Write != nil:
			err := callWrite(callerCtx{Context: gctx, values: r.ctx}, tx, r.Write)
			if err == nil {
				err = validateEntries(r.Entries) // Write may have filled them in
			}
			if err != nil {
				return failed(i, err)
			}
		}
		entries = append(entries, r.Entries...)
	}
	if err := c.AppendLocked(gctx, tx, head, entries); err != nil {
		if !isolate {
			// A writer may have swallowed a failed statement, leaving the
			// transaction aborted: find it with savepoints.
			return errRetryWithSavepoints
		}
		return fmt.Errorf("append audit: %w", c.cfg.Translate(err))
	}
	committed = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("append audit: commit: %w", c.cfg.Translate(err))
	}
	return nil
}

// splitRows returns the rows of group's callers that are conflict-free
// (written before the chain lock) and the others (written under it).
func splitRows(group []*request) (free, locked []Row) {
	for _, r := range group {
		for _, row := range r.Rows {
			if row.Insert.conflictFree {
				free = append(free, row)
			} else {
				locked = append(locked, row)
			}
		}
	}
	return free, locked
}

// Head is the chain's last row (seq 0 and the genesis hash when the chain
// is empty).
type Head struct {
	Seq  int64  `db:"seq"`
	Hash string `db:"hash"`
}

// lockSQL takes the chain's transaction-scoped advisory lock and reads the
// head in one round trip (migration 00005; a literal key: the simple
// query protocol).
var lockSQL = fmt.Sprintf("SELECT seq, hash FROM tollgate_lock_audit_chain(%d)", LockKey)

// LockChain takes the chain's lock in tx on PostgreSQL and returns the
// head, which stays the head until tx ends (SQLite transactions are
// serialized already).
func (c *Committer) LockChain(ctx context.Context, tx *sqlx.Tx) (Head, error) {
	query := "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
	if c.postgres {
		query = lockSQL
	}
	var head Head
	err := tx.GetContext(ctx, &head, query)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Head{Seq: 0, Hash: core.GenesisHash}, nil
	case err != nil:
		return Head{}, fmt.Errorf("append audit: lock the chain and read its head: %w", c.cfg.Translate(err))
	}
	return head, nil
}

// AppendLocked links entries to head inside tx and inserts them; tx must
// hold the chain lock and head be what LockChain returned. Prefer Submit:
// the chain lock is held for the rest of tx.
func (c *Committer) AppendLocked(ctx context.Context, tx *sqlx.Tx, head Head, entries []core.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	now := c.now()
	rows := make([]Row, len(entries))
	for i, e := range entries {
		e.Seq = head.Seq + 1
		e.At = entryTime(e.At, now)
		e.PrevHash = head.Hash
		e.Hash = core.HashAuditEntry(e.PrevHash, e)
		rows[i] = Row{Insert: auditInsert, Args: []any{e.Seq, e.At, e.Actor, e.Action, e.Subject, string(e.Data), e.PrevHash, e.Hash}}
		head.Seq, head.Hash = e.Seq, e.Hash
	}
	if err := c.execRows(ctx, tx, rows); err != nil {
		return fmt.Errorf("append audit rows up to %d: %w", head.Seq, err)
	}
	return nil
}

// auditInsert writes chain rows, merged per group.
var auditInsert = NewInsert("audit_log",
	[]string{"seq", "at", "actor", "action", "subject", "data", "prev_hash", "hash"},
	[]string{"bigint", "timestamptz", "text", "text", "text", "text", "text", "text"}, "")

// groupFatal marks an error that leaves the group's transaction unusable.
type groupFatal struct{ err error }

func (g groupFatal) Error() string { return g.err.Error() }

// runSavepoint runs r's writes under their own savepoint and returns their
// error (translated) after rolling back to the savepoint, or a groupFatal
// when the savepoint machinery itself fails.
func (c *Committer) runSavepoint(gctx context.Context, tx *sqlx.Tx, r *request) error {
	if _, err := tx.ExecContext(gctx, "SAVEPOINT tg_append"); err != nil {
		return groupFatal{fmt.Errorf("append audit: savepoint: %w", c.cfg.Translate(err))}
	}
	// Write sees its caller's values but the group's deadline: cancelling
	// one caller must not cancel a statement of the shared transaction.
	err := c.execRows(gctx, tx, r.Rows)
	if err == nil && r.Write != nil {
		err = callWrite(callerCtx{Context: gctx, values: r.ctx}, tx, r.Write)
	}
	if err == nil {
		err = validateEntries(r.Entries) // Write may have filled them in
	}
	if err == nil {
		if _, err = tx.ExecContext(gctx, "RELEASE SAVEPOINT tg_append"); err == nil {
			return nil
		}
		// Write returned nil but left the transaction aborted (it
		// swallowed a failed statement): its writes cannot be kept.
		err = fmt.Errorf("writes left the transaction unusable: %w", err)
	}
	if _, rerr := tx.ExecContext(gctx, "ROLLBACK TO SAVEPOINT tg_append"); rerr != nil {
		return groupFatal{fmt.Errorf("append audit: roll back to savepoint: %w", c.cfg.Translate(rerr))}
	}
	if _, rerr := tx.ExecContext(gctx, "RELEASE SAVEPOINT tg_append"); rerr != nil {
		return groupFatal{fmt.Errorf("append audit: release savepoint: %w", c.cfg.Translate(rerr))}
	}
	return c.cfg.Translate(err)
}

// callWrite runs fn, turning a panic into an error so one caller's bug
// cannot stop the committer (and hang every other caller).
func callWrite(ctx context.Context, tx *sqlx.Tx, fn func(context.Context, *sqlx.Tx) error) (err error) {
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
