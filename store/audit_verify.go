package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
)

// AuditHead returns the chain's newest row (seq 0 and core.GenesisHash when
// the chain is empty): the anchor to keep outside the database.
func (d *DB) AuditHead(ctx context.Context) (core.AuditHead, error) {
	var row struct {
		Seq  int64     `db:"seq"`
		Hash string    `db:"hash"`
		At   time.Time `db:"at"`
	}
	err := d.db.GetContext(ctx, &row, "SELECT seq, hash, at FROM audit_log ORDER BY seq DESC LIMIT 1")
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return core.AuditHead{Hash: core.GenesisHash}, nil
	case err != nil:
		return core.AuditHead{}, fmt.Errorf("read the audit chain's head: %w", translate(err))
	}
	return core.AuditHead{Seq: row.Seq, Hash: row.Hash, At: row.At.UTC()}, nil
}

// VerifyAudit checks the whole audit trail and returns the first break (nil
// when it is intact) and how many chain rows it verified before that break
// (all of them when intact). It needs only the database, so `tollgate
// audit verify` can run it offline. Besides the chain itself (every row's
// sequence, link and hash), every gate decision is held to its chain
// entry: the row must exist, its decision and release must be the ones
// recorded, and its document must have the SHA-256 recorded; a decision
// row without an entry is a break too.
func (d *DB) VerifyAudit(ctx context.Context) (*core.AuditBreak, int64, error) {
	return d.VerifyAuditTo(ctx, core.AuditHead{})
}

// VerifyAuditTo is VerifyAudit that also holds the chain to an anchor kept
// outside the database (a head read earlier, AuditHead): the chain must
// reach it, with row expect.Seq having hash expect.Hash (when expect.Seq is
// 0, some row must have that hash). Rows deleted from the chain's end, or a
// chain recomputed after an edit, fail here. An empty expect.Hash is no
// anchor.
func (d *DB) VerifyAuditTo(ctx context.Context, expect core.AuditHead) (*core.AuditBreak, int64, error) {
	q, done, err := d.verifySnapshot(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer done()
	v := verification{d: d, q: q, expect: expect, prev: core.GenesisHash, next: 1}
	brk, err := v.run(ctx)
	return brk, v.checked, err
}

// verifySnapshot returns what VerifyAudit reads through: on PostgreSQL a
// read-only repeatable-read transaction, so the chain and the decisions
// are one snapshot (a decision committed during the walk is not taken
// for one without an entry); on SQLite the pool (a transaction there
// would take the only connection, and the write lock, for the whole walk).
func (d *DB) verifySnapshot(ctx context.Context) (sqlx.QueryerContext, func(), error) {
	if d.dialect != Postgres {
		return d.db, func() {}, nil
	}
	tx, err := d.db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, nil, fmt.Errorf("verify audit: begin: %w", translate(err))
	}
	return tx, func() { _ = tx.Rollback() }, nil
}

// verification is one VerifyAudit walk.
type verification struct {
	d      *DB
	q      sqlx.QueryerContext
	expect core.AuditHead
	// anchored is set once the walk passed the expected head.
	anchored bool
	// prev and next are the hash and seq the next row must have.
	prev string
	next int64
	// checked counts the chain rows verified; decisions the decision
	// entries whose rows matched.
	checked, decisions int64
}

func (v *verification) run(ctx context.Context) (*core.AuditBreak, error) {
	after := int64(-1) << 62 // from the very first row, whatever its seq
	for {
		var rows []auditRow
		if err := sqlx.SelectContext(ctx, v.q, &rows, v.d.q("SELECT "+auditColumns+" FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"), after, verifyPage); err != nil {
			return nil, fmt.Errorf("verify audit: read rows after %d: %w", after, translate(err))
		}
		if len(rows) == 0 {
			break
		}
		page := make([]core.AuditEntry, len(rows))
		for i, r := range rows {
			page[i] = r.entry()
		}
		if brk, err := v.page(ctx, page); brk != nil || err != nil {
			return brk, err
		}
		after = rows[len(rows)-1].Seq
	}
	if brk := v.anchorReached(); brk != nil {
		return brk, nil
	}
	return v.unrecordedDecision(ctx)
}

// page verifies one page of rows, in order: the first row that breaks the
// chain, misses the anchor or whose decision disagrees is the break.
func (v *verification) page(ctx context.Context, page []core.AuditEntry) (*core.AuditBreak, error) {
	chainBrk, last, next := core.VerifyAuditChain(page, v.prev, v.next)
	intact := page
	if chainBrk != nil {
		for i, e := range page {
			if e.Seq == chainBrk.Seq {
				intact = page[:i]
				break
			}
		}
	}
	decisions, err := v.decisionRows(ctx, intact)
	if err != nil {
		return nil, err
	}
	for _, e := range intact {
		if brk := v.anchor(e); brk != nil {
			return brk, nil
		}
		if e.Action == decisionAction {
			if brk := checkDecision(e, decisions); brk != nil {
				return brk, nil
			}
			v.decisions++
		}
		v.checked++
	}
	if chainBrk != nil {
		return chainBrk, nil
	}
	v.prev, v.next = last, next
	return nil, nil
}

// anchor checks e against the expected head.
func (v *verification) anchor(e core.AuditEntry) *core.AuditBreak {
	switch {
	case v.expect.Hash == "" || v.anchored:
	case v.expect.Seq == e.Seq && e.Hash != v.expect.Hash:
		return &core.AuditBreak{Seq: e.Seq, Reason: fmt.Sprintf("row %d has hash %s, not the expected head %s (the chain was rewritten from here or before)", e.Seq, e.Hash, v.expect.Hash)}
	case e.Hash == v.expect.Hash && (v.expect.Seq == 0 || v.expect.Seq == e.Seq):
		v.anchored = true
	}
	return nil
}

// anchorReached fails a walk that ended without passing the expected head.
func (v *verification) anchorReached() *core.AuditBreak {
	if v.expect.Hash == "" || v.anchored || (v.expect.Seq == 0 && v.expect.Hash == core.GenesisHash) {
		return nil
	}
	last := v.next - 1
	if v.expect.Seq > 0 {
		return &core.AuditBreak{Seq: last + 1, Reason: fmt.Sprintf("the chain ends at row %d, before the expected head at row %d (rows were deleted from its end)", last, v.expect.Seq)}
	}
	return &core.AuditBreak{Seq: last + 1, Reason: fmt.Sprintf("no row has the expected head hash %s: the chain, ending at row %d, was cut short or rewritten", v.expect.Hash, last)}
}

// decisionRow is what verification compares of a gate_decisions row.
type decisionRow struct {
	ID        string `db:"id"`
	ReleaseID string `db:"release_id"`
	Decision  string `db:"decision"`
	Doc       string `db:"doc"`
}

// decisionRows reads the gate_decisions rows that the decision entries of
// page name, by id.
func (v *verification) decisionRows(ctx context.Context, page []core.AuditEntry) (map[string]decisionRow, error) {
	var ids []string
	for _, e := range page {
		if e.Action != decisionAction {
			continue
		}
		var data decisionEntry
		if json.Unmarshal(e.Data, &data) == nil && data.DecisionID != "" {
			ids = append(ids, data.DecisionID)
		}
	}
	out := make(map[string]decisionRow, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	query, args, err := sqlx.In("SELECT id, release_id, decision, doc FROM gate_decisions WHERE id IN (?)", ids)
	if err != nil {
		return nil, fmt.Errorf("verify audit: %w", err)
	}
	var rows []decisionRow
	if err := sqlx.SelectContext(ctx, v.q, &rows, v.d.q(query), args...); err != nil {
		return nil, fmt.Errorf("verify audit: read gate decisions: %w", translate(err))
	}
	for _, r := range rows {
		out[r.ID] = r
	}
	return out, nil
}

// checkDecision holds a decision entry e to its row in rows.
func checkDecision(e core.AuditEntry, rows map[string]decisionRow) *core.AuditBreak {
	var data decisionEntry
	if err := json.Unmarshal(e.Data, &data); err != nil || data.DecisionID == "" {
		return &core.AuditBreak{Seq: e.Seq, Reason: "a gate decision entry that names no decision"}
	}
	brk := func(format string, args ...any) *core.AuditBreak {
		return &core.AuditBreak{Seq: e.Seq, DecisionID: data.DecisionID, Reason: fmt.Sprintf("gate decision %s: ", data.DecisionID) + fmt.Sprintf(format, args...)}
	}
	row, ok := rows[data.DecisionID]
	switch {
	case !ok:
		return brk("its row is missing from gate_decisions (deleted)")
	case row.Decision != string(data.Decision):
		return brk("gate_decisions says %q, its audit entry recorded %q (the decision was edited)", row.Decision, data.Decision)
	case "release:"+row.ReleaseID != e.Subject:
		return brk("gate_decisions names release %s, its audit entry %s (the decision was edited)", row.ReleaseID, strings.TrimPrefix(e.Subject, "release:"))
	case data.DocSHA256 != "" && docSHA256([]byte(row.Doc)) != data.DocSHA256:
		return brk("its document does not match the SHA-256 recorded in its audit entry (the document was edited)")
	}
	return nil
}

// unrecordedDecision finds a gate decision that no chain entry records (a
// row inserted outside tollgate). Counting first keeps the usual case to
// one query; only a difference reads the decisions page by page and looks
// their entries up by release (the audit_log_subject index).
func (v *verification) unrecordedDecision(ctx context.Context) (*core.AuditBreak, error) {
	var n int64
	if err := sqlx.GetContext(ctx, v.q, &n, "SELECT count(*) FROM gate_decisions"); err != nil {
		return nil, fmt.Errorf("verify audit: count gate decisions: %w", translate(err))
	}
	if n <= v.decisions {
		return nil, nil
	}
	after := ""
	for {
		var rows []decisionRow
		if err := sqlx.SelectContext(ctx, v.q, &rows, v.d.q("SELECT id, release_id, decision, '' AS doc FROM gate_decisions WHERE id > ? ORDER BY id LIMIT ?"), after, verifyPage); err != nil {
			return nil, fmt.Errorf("verify audit: read gate decisions: %w", translate(err))
		}
		if len(rows) == 0 {
			return nil, nil
		}
		subjects := make([]string, 0, len(rows))
		for _, r := range rows {
			subjects = append(subjects, "release:"+r.ReleaseID)
		}
		query, args, err := sqlx.In("SELECT data FROM audit_log WHERE subject IN (?) AND action = ?", subjects, decisionAction)
		if err != nil {
			return nil, fmt.Errorf("verify audit: %w", err)
		}
		var datas []string
		if err := sqlx.SelectContext(ctx, v.q, &datas, v.d.q(query), args...); err != nil {
			return nil, fmt.Errorf("verify audit: read decision entries: %w", translate(err))
		}
		recorded := make(map[string]bool, len(datas))
		for _, s := range datas {
			var data decisionEntry
			if json.Unmarshal([]byte(s), &data) == nil {
				recorded[data.DecisionID] = true
			}
		}
		for _, r := range rows {
			if !recorded[r.ID] {
				return &core.AuditBreak{DecisionID: r.ID, Reason: fmt.Sprintf("gate decision %s has no audit entry (it was written outside tollgate)", r.ID)}, nil
			}
		}
		after = rows[len(rows)-1].ID
	}
}
