package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/jsonenc"
	"github.com/tollgate-dev/tollgate/store/groupcommit"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// The inserts of the hot path, merged across a group by the group commit.
var (
	// Both are conflict-free (written before the chain lock is taken, and
	// a group of them is one statement): decision ids are new UUIDv7s and
	// the table has no other unique key; releases are created here and by
	// plain transactions (deployments), never by a writer under the chain
	// lock, and are inserted in id order.
	decisionInsert = groupcommit.NewInsert("gate_decisions",
		[]string{"id", "release_id", "decision", "emergency", "policy_version", "evaluated_at", "actor", "doc"},
		[]string{"text", "text", "text", "boolean", "integer", "timestamptz", "text", "text"}, "").ConflictFree(-1)
	releaseInsert = groupcommit.NewInsert("releases", strings.Split(releaseCols, ", "),
		[]string{"text", "text", "text", "text", "text", "text", "jsonb", "jsonb", "timestamptz", "timestamptz"},
		" ON CONFLICT DO NOTHING").ConflictFree(0)
)

// SaveDecision records a gate decision and its "gate.decision" audit entry
// in one commit: when it returns nil the decision is durable and in the
// chain. With the decision's request it also creates the release
// (dec.ReleaseID; see core.ReleaseID) when it is not stored yet. An empty
// ID gets a new one; a zero EvaluatedAt becomes now.
func (d *DB) SaveDecision(ctx context.Context, dec core.GateDecision, actor string) error {
	switch dec.Decision {
	case core.Allow, core.Wait, core.Deny:
	default:
		return core.Invalid("decision", "must be allow, wait or deny, not %q", dec.Decision)
	}
	if dec.PolicyVersion < 0 {
		return core.Invalid("policy_version", "must not be negative")
	}
	if dec.ID == "" {
		dec.ID = newID()
	}
	if dec.EvaluatedAt.IsZero() {
		dec.EvaluatedAt = d.now()
	}
	dec.EvaluatedAt = ts(dec.EvaluatedAt)
	codes := make([]string, 0, len(dec.Reasons))
	for _, r := range dec.Reasons {
		codes = append(codes, r.Code)
	}
	// The document and its hash are computed here, in the caller, so the
	// group commit's serial path only carries them. The document stays in
	// its pooled buffer (no copy, the largest thing a check allocated):
	// the group commit reads it until this check's group has committed,
	// so the buffer is reused only once Submit has returned nil — after
	// an error the committer may still hold it, and it is left to the
	// collector.
	buf := docBufs.Get().(*[]byte)
	doc, docHash := encodeDecision(buf, dec)
	subject := "release:" + dec.ReleaseID // also the release row's Once key
	entry := core.AuditEntry{
		Actor: actor, Action: core.ActionGateDecision, Subject: subject, At: dec.EvaluatedAt,
		Data: json.RawMessage(mustJSONBytes(core.DecisionAuditData{DecisionID: dec.ID, Decision: dec.Decision, Reasons: codes,
			PolicyVersion: dec.PolicyVersion, DocSHA256: docHash})),
	}
	rows := []groupcommit.Row{{Insert: decisionInsert, Args: []any{dec.ID, dec.ReleaseID, string(dec.Decision), dec.Emergency,
		dec.PolicyVersion, dec.EvaluatedAt, actor, doc}}}
	if req := dec.Request; req.Service != "" && req.Version != "" && req.Environment != "" &&
		dec.ReleaseID != "" && !d.base.Commits().Committed(subject) {
		// The release the decision is about, created if it is new (an
		// existing one keeps its links; deployment reports update them).
		// Once this process saw it committed, later decisions leave it out.
		now := d.now()
		rows = append([]groupcommit.Row{{Insert: releaseInsert, Once: subject, Args: []any{dec.ReleaseID, req.Service, req.Version, req.Environment,
			strings.TrimSpace(req.Team), strings.TrimSpace(req.Commit), strList(req.Changes), strList(req.Incidents), now, now}}}, rows...)
	}
	if err := d.base.Commits().Submit(ctx, groupcommit.Request{Entries: []core.AuditEntry{entry}, Rows: rows}); err != nil {
		return fmt.Errorf("save gate decision %s: %w", dec.ID, err)
	}
	if cap(*buf) <= maxDocBuf {
		docBufs.Put(buf)
	}
	return nil
}

// encodeDecision encodes dec's stored document (mustJSON's bytes) into
// buf and returns it, as a string sharing buf's bytes, with its hex
// SHA-256. The string is valid until buf is reused.
func encodeDecision(buf *[]byte, dec core.GateDecision) (doc, sum string) {
	b, err := jsonenc.Append((*buf)[:0], dec, jsonenc.MarshalFlags)
	if err != nil {
		panic(fmt.Sprintf("store: encode %T: %v", dec, err))
	}
	*buf = b
	return unsafe.String(unsafe.SliceData(b), len(b)), core.DecisionDocSHA256(b)
}

// docBufs are encodeDecision's buffers, up to maxDocBuf each.
var docBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// maxDocBuf caps the buffers docBufs keeps: a rare huge decision's is
// dropped after use.
const maxDocBuf = 256 << 10

// GetDecision returns the recorded decision with id.
func (d *DB) GetDecision(ctx context.Context, id string) (core.GateDecision, error) {
	var doc string
	err := d.db.GetContext(ctx, &doc, d.q("SELECT doc FROM gate_decisions WHERE id = ?"), id)
	if err != nil {
		return core.GateDecision{}, sqldb.NotFound(err, "gate decision", id)
	}
	var dec core.GateDecision
	if err := json.Unmarshal([]byte(doc), &dec); err != nil {
		return core.GateDecision{}, fmt.Errorf("decode gate decision %s: %w", id, err)
	}
	dec.EvaluatedAt = dec.EvaluatedAt.UTC()
	return dec, nil
}

// ListDecisionsBetween returns the gate decisions evaluated in [from, to),
// of one environment's releases when env (canonical) is set, oldest first,
// at most limit, without facts.
func (d *DB) ListDecisionsBetween(ctx context.Context, from, to time.Time, env string, limit int) ([]core.GateDecision, error) {
	query, args := "SELECT doc FROM gate_decisions WHERE evaluated_at >= ? AND evaluated_at < ?", []any{ts(from), ts(to)}
	if env != "" {
		// Every decision created its release (SaveDecision), whose row
		// names the environment the decision's request did.
		query += " AND release_id IN (SELECT id FROM releases WHERE environment = ?)"
		args = append(args, env)
	}
	var docs []string
	err := d.db.SelectContext(ctx, &docs, d.q(query+" ORDER BY evaluated_at, id LIMIT ?"), append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("list gate decisions: %w", translate(err))
	}
	out := make([]core.GateDecision, 0, len(docs))
	for _, doc := range docs {
		var dec core.GateDecision
		if err := json.Unmarshal([]byte(doc), &dec); err != nil {
			return nil, fmt.Errorf("decode gate decision: %w", err)
		}
		dec.Facts = nil
		out = append(out, dec)
	}
	return out, nil
}

// DecisionsForRelease returns a release's recorded gate decisions, newest
// first, at most limit.
func (d *DB) DecisionsForRelease(ctx context.Context, releaseID string, limit int) ([]core.GateDecision, error) {
	var docs []string
	if err := d.db.SelectContext(ctx, &docs, d.q(`SELECT doc FROM gate_decisions WHERE release_id = ?
		ORDER BY evaluated_at DESC, id DESC LIMIT ?`), releaseID, limit); err != nil {
		return nil, fmt.Errorf("list decisions of release %s: %w", releaseID, translate(err))
	}
	out := make([]core.GateDecision, 0, len(docs))
	for _, doc := range docs {
		var dec core.GateDecision
		if err := json.Unmarshal([]byte(doc), &dec); err != nil {
			return nil, fmt.Errorf("decode gate decision of release %s: %w", releaseID, err)
		}
		dec.EvaluatedAt = dec.EvaluatedAt.UTC()
		dec.Facts = nil
		out = append(out, dec)
	}
	return out, nil
}

// RecentDecisions returns the latest recorded gate decisions, newest
// first (ids are UUIDv7: the primary key is time-ordered), without facts.
func (d *DB) RecentDecisions(ctx context.Context, limit int) ([]core.GateDecision, error) {
	var docs []string
	if err := d.db.SelectContext(ctx, &docs, d.q("SELECT doc FROM gate_decisions ORDER BY id DESC LIMIT ?"), limit); err != nil {
		return nil, fmt.Errorf("list recent decisions: %w", translate(err))
	}
	out := make([]core.GateDecision, 0, len(docs))
	for _, doc := range docs {
		var dec core.GateDecision
		if err := json.Unmarshal([]byte(doc), &dec); err != nil {
			return nil, fmt.Errorf("decode gate decision: %w", err)
		}
		dec.EvaluatedAt = dec.EvaluatedAt.UTC()
		dec.Facts = nil
		out = append(out, dec)
	}
	return out, nil
}
