// Package audit reads and verifies the audit chain: the hash-linked log
// every audited write appends to through the group commit
// (store/groupcommit, sqldb.DB.AppendWith). It lists the chain, gives its
// head (the anchor to keep outside the database) and walks it to find the
// first break, holding every gate decision to its chain entry.
package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/groupcommit"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Trail is the audit chain of one database.
type Trail struct {
	base *sqldb.DB
	db   *sqlx.DB
}

// New returns the audit chain of db.
func New(db *sqldb.DB) *Trail { return &Trail{base: db, db: db.SQLX()} }

// VerifyPage is how many chain rows (and gate decisions) a verification
// reads at a time.
const VerifyPage = 1000

// Audit listing page sizes.
const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

// AppenderStats is what the audit chain's group commit did since the store
// opened (groupcommit.Stats).
type AppenderStats = groupcommit.Stats

// AppenderStats reports the group commit's counters.
func (t *Trail) AppenderStats() AppenderStats { return t.base.Commits().Stats() }

// Append adds entries to the chain and returns once they are committed.
func (t *Trail) Append(ctx context.Context, entries ...core.AuditEntry) error {
	return t.base.Commits().Submit(ctx, groupcommit.Request{Entries: entries})
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
func (t *Trail) ListAudit(ctx context.Context, f core.AuditFilter) ([]core.AuditEntry, error) {
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
	if err := t.db.SelectContext(ctx, &rows, t.base.Q(query), args...); err != nil {
		return nil, fmt.Errorf("list audit: %w", sqldb.Translate(err))
	}
	out := make([]core.AuditEntry, len(rows))
	for i, r := range rows {
		out[i] = r.entry()
	}
	return out, nil
}

// AuditHead returns the chain's newest row (seq 0 and core.GenesisHash when
// the chain is empty): the anchor to keep outside the database.
func (t *Trail) AuditHead(ctx context.Context) (core.AuditHead, error) {
	var row auditRow
	err := t.db.GetContext(ctx, &row, "SELECT "+auditColumns+" FROM audit_log ORDER BY seq DESC LIMIT 1")
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return core.AuditHead{Hash: core.GenesisHash}, nil
	case err != nil:
		return core.AuditHead{}, fmt.Errorf("read the audit chain's head: %w", sqldb.Translate(err))
	}
	return core.AuditHead{Seq: row.Seq, Hash: row.Hash, At: row.At.UTC()}, nil
}

// VerifyAudit checks the whole audit trail and returns the first break (nil
// when it is intact) and how many chain rows it verified before that break
// (all of them when intact). It needs only the database, so `tollgate
// audit verify` can run it offline. Besides the chain itself (every row's
// sequence, link and hash), every gate decision is held to its chain
// entry (core.CheckDecisionEntry), and a decision row without an entry is
// a break too.
func (t *Trail) VerifyAudit(ctx context.Context) (*core.AuditBreak, int64, error) {
	return t.VerifyAuditTo(ctx, core.AuditHead{})
}

// VerifyAuditTo is VerifyAudit that also holds the chain to an anchor kept
// outside the database, a head read earlier (AuditHead; see
// core.AuditAnchor): rows deleted from the chain's end, or a chain
// recomputed after an edit, fail here.
func (t *Trail) VerifyAuditTo(ctx context.Context, expect core.AuditHead) (*core.AuditBreak, int64, error) {
	q, done, err := t.verifySnapshot(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer done()
	v := verification{t: t, q: q, anchor: &core.AuditAnchor{Expect: expect}, prev: core.GenesisHash, next: 1}
	brk, err := v.run(ctx)
	return brk, v.checked, err
}

// VerifyAuditAnchors is VerifyAudit that also holds the chain to every
// head of an anchors file (audit.anchor, core.AuditAnchors): each must be
// in the chain with the hash anchored, so a chain cut short or rewritten
// since any of them fails. Anchors that disagree among themselves are a
// break before the walk.
func (t *Trail) VerifyAuditAnchors(ctx context.Context, heads []core.AuditHead) (*core.AuditBreak, int64, error) {
	anchors, brk := core.NewAuditAnchors(heads)
	if brk != nil {
		return brk, 0, nil
	}
	q, done, err := t.verifySnapshot(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer done()
	v := verification{t: t, q: q, anchor: anchors, prev: core.GenesisHash, next: 1}
	brk, err = v.run(ctx)
	return brk, v.checked, err
}

// anchorCheck is what a walk holds the chain to besides itself: one head
// (core.AuditAnchor) or an anchors file's (core.AuditAnchors).
type anchorCheck interface {
	Check(e core.AuditEntry) *core.AuditBreak
	End(last int64) *core.AuditBreak
}

// verifySnapshot returns what VerifyAudit reads through: on PostgreSQL a
// read-only repeatable-read transaction, so the chain and the decisions
// are one snapshot (a decision committed during the walk is not taken for
// one without an entry); on SQLite the pool (a transaction there would
// take the only connection, and the write lock, for the whole walk).
func (t *Trail) verifySnapshot(ctx context.Context) (sqlx.QueryerContext, func(), error) {
	if t.base.Dialect() != sqldb.Postgres {
		return t.db, func() {}, nil
	}
	tx, err := t.db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, nil, fmt.Errorf("verify audit: begin: %w", sqldb.Translate(err))
	}
	return tx, func() { _ = tx.Rollback() }, nil
}

// verification is one VerifyAudit walk.
type verification struct {
	t      *Trail
	q      sqlx.QueryerContext
	anchor anchorCheck
	// prev and next are the hash and seq the next row must have.
	prev string
	next int64
	// checked counts the chain rows verified; decisions the decision
	// entries whose rows matched.
	checked, decisions int64
}

// readPage is one page of the chain with the gate decisions its entries
// record, read ahead of its verification.
type readPage struct {
	entries   []core.AuditEntry
	decisions map[string]*core.StoredDecision
	err       error
}

// run walks the chain page by page. One goroutine reads the pages and
// their decisions ahead while this one hashes and checks the page before:
// the walk is a database read and a CPU-bound check per page, and
// overlapping the two keeps both busy. The reader is done with q before
// run returns, so q (a transaction) is never used by two at once.
func (v *verification) run(ctx context.Context) (*core.AuditBreak, error) {
	readCtx, cancel := context.WithCancel(ctx)
	pages := make(chan readPage, 1)
	go v.readPages(readCtx, pages)
	stop := func() {
		cancel()
		for range pages { // until the reader has returned
		}
	}
	for p := range pages {
		if p.err != nil {
			stop()
			return nil, p.err
		}
		if brk := v.page(p.entries, p.decisions); brk != nil {
			stop()
			return brk, nil
		}
	}
	cancel()
	if err := ctx.Err(); err != nil { // the reader stopped for ctx, not at the chain's end
		return nil, fmt.Errorf("verify audit: %w", err)
	}
	if brk := v.anchor.End(v.next - 1); brk != nil {
		return brk, nil
	}
	return v.unrecordedDecision(ctx)
}

// readPages reads the chain in seq order, a page at a time with the
// decisions its entries record, and closes out when it has read the last
// page, failed (the error is its last page) or ctx ended.
func (v *verification) readPages(ctx context.Context, out chan<- readPage) {
	defer close(out)
	after := int64(-1) << 62 // from the very first row, whatever its seq
	for {
		var rows []auditRow
		var p readPage
		if err := sqlx.SelectContext(ctx, v.q, &rows, v.t.base.Q("SELECT "+auditColumns+" FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"), after, VerifyPage); err != nil {
			p.err = fmt.Errorf("verify audit: read rows after %d: %w", after, sqldb.Translate(err))
		} else if len(rows) == 0 {
			return
		} else {
			p.entries = make([]core.AuditEntry, len(rows))
			for i, r := range rows {
				p.entries[i] = r.entry()
			}
			p.decisions, p.err = v.decisionRows(ctx, p.entries)
			after = rows[len(rows)-1].Seq
		}
		select {
		case out <- p:
		case <-ctx.Done():
			return
		}
		if p.err != nil {
			return
		}
	}
}

// page verifies one page of rows in order: the first row that breaks the
// chain, misses the anchor or whose decision disagrees is the break.
// decisions holds the page's gate decisions by id.
func (v *verification) page(page []core.AuditEntry, decisions map[string]*core.StoredDecision) *core.AuditBreak {
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
	for _, e := range intact {
		if brk := v.anchor.Check(e); brk != nil {
			return brk
		}
		if e.Action == core.ActionGateDecision {
			if brk := core.CheckDecisionEntry(e, decisions[core.DecisionIDOf(e)]); brk != nil {
				return brk
			}
			v.decisions++
		}
		v.checked++
	}
	if chainBrk != nil {
		return chainBrk
	}
	v.prev, v.next = last, next
	return nil
}

// decisionRow is a gate_decisions row as verification reads it.
type decisionRow struct {
	ID            string    `db:"id"`
	ReleaseID     string    `db:"release_id"`
	Decision      string    `db:"decision"`
	Doc           string    `db:"doc"`
	EvaluatedAt   time.Time `db:"evaluated_at"`
	Actor         string    `db:"actor"`
	PolicyVersion int       `db:"policy_version"`
}

// decisionRows reads, by id, the gate decisions that page's decision
// entries record.
func (v *verification) decisionRows(ctx context.Context, page []core.AuditEntry) (map[string]*core.StoredDecision, error) {
	var ids []string
	for _, e := range page {
		if id := core.DecisionIDOf(e); id != "" {
			ids = append(ids, id)
		}
	}
	out := make(map[string]*core.StoredDecision, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	query, args, err := sqlx.In("SELECT id, release_id, decision, doc, evaluated_at, actor, policy_version FROM gate_decisions WHERE id IN (?)", ids)
	if err != nil {
		return nil, fmt.Errorf("verify audit: %w", err)
	}
	var rows []decisionRow
	if err := sqlx.SelectContext(ctx, v.q, &rows, v.t.base.Q(query), args...); err != nil {
		return nil, fmt.Errorf("verify audit: read gate decisions: %w", sqldb.Translate(err))
	}
	for _, r := range rows {
		out[r.ID] = &core.StoredDecision{ID: r.ID, ReleaseID: r.ReleaseID, Decision: r.Decision, Doc: r.Doc,
			EvaluatedAt: r.EvaluatedAt, Actor: r.Actor, PolicyVersion: r.PolicyVersion}
	}
	return out, nil
}

// unrecordedDecision finds a gate decision that no chain entry records (a
// row inserted outside tollgate). Counting first keeps the usual case to
// one query; only a difference reads the decisions page by page and looks
// their entries up by release (the audit_log_subject index).
func (v *verification) unrecordedDecision(ctx context.Context) (*core.AuditBreak, error) {
	var n int64
	if err := sqlx.GetContext(ctx, v.q, &n, "SELECT count(*) FROM gate_decisions"); err != nil {
		return nil, fmt.Errorf("verify audit: count gate decisions: %w", sqldb.Translate(err))
	}
	for after := ""; n > v.decisions; {
		var rows []decisionRow
		if err := sqlx.SelectContext(ctx, v.q, &rows, v.t.base.Q("SELECT id, release_id FROM gate_decisions WHERE id > ? ORDER BY id LIMIT ?"), after, VerifyPage); err != nil {
			return nil, fmt.Errorf("verify audit: read gate decisions: %w", sqldb.Translate(err))
		}
		if len(rows) == 0 {
			break
		}
		subjects := make([]string, 0, len(rows))
		for _, r := range rows {
			subjects = append(subjects, "release:"+r.ReleaseID)
		}
		query, args, err := sqlx.In("SELECT "+auditColumns+" FROM audit_log WHERE subject IN (?) AND action = ?", subjects, core.ActionGateDecision)
		if err != nil {
			return nil, fmt.Errorf("verify audit: %w", err)
		}
		var entries []auditRow
		if err := sqlx.SelectContext(ctx, v.q, &entries, v.t.base.Q(query), args...); err != nil {
			return nil, fmt.Errorf("verify audit: read decision entries: %w", sqldb.Translate(err))
		}
		recorded := make(map[string]bool, len(entries))
		for _, e := range entries {
			recorded[core.DecisionIDOf(e.entry())] = true
		}
		for _, r := range rows {
			if !recorded[r.ID] {
				return &core.AuditBreak{DecisionID: r.ID, Reason: fmt.Sprintf("gate decision %s has no audit entry (it was written outside tollgate)", r.ID)}, nil
			}
		}
		after = rows[len(rows)-1].ID
	}
	return nil, nil
}
