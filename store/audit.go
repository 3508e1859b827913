package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
)

// auditLockKey is the advisory lock that serializes chain appends across
// replicas on PostgreSQL (transaction-scoped).
const auditLockKey = 0x746f6c6c // "toll"

// appendWith commits entries to the audit chain together with the writes
// fn makes, in one transaction: the record and its audit row are durable
// together or not at all. fn may be nil.
//
// TODO(group commit): batch concurrent callers into one transaction.
func (d *DB) appendWith(ctx context.Context, entries []core.AuditEntry, fn func(ctx context.Context, tx *sqlx.Tx) error) error {
	return d.tx(ctx, func(tx *sqlx.Tx) error {
		if fn != nil {
			if err := fn(ctx, tx); err != nil {
				return err
			}
		}
		return d.appendTx(ctx, tx, entries)
	})
}

// appendTx links entries to the chain head inside tx and inserts them.
func (d *DB) appendTx(ctx context.Context, tx *sqlx.Tx, entries []core.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	if d.dialect == Postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", auditLockKey); err != nil {
			return fmt.Errorf("lock audit chain: %w", err)
		}
	}
	var head struct {
		Seq  int64  `db:"seq"`
		Hash string `db:"hash"`
	}
	err := tx.GetContext(ctx, &head, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
	switch {
	case errors.Is(err, sql.ErrNoRows):
		head.Seq, head.Hash = 0, core.GenesisHash
	case err != nil:
		return fmt.Errorf("read audit head: %w", err)
	}
	now := d.now()
	for _, e := range entries {
		e.Seq = head.Seq + 1
		if e.At.IsZero() {
			e.At = now
		}
		e.At = ts(e.At)
		e.PrevHash = head.Hash
		e.Hash = core.HashAuditEntry(e.PrevHash, e)
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO audit_log (seq, at, actor, action, subject, data, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), e.Seq, e.At, e.Actor, e.Action, e.Subject, string(e.Data), e.PrevHash, e.Hash); err != nil {
			return fmt.Errorf("append audit row %d: %w", e.Seq, err)
		}
		head.Seq, head.Hash = e.Seq, e.Hash
	}
	return nil
}
