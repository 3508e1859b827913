package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/tollgate-dev/tollgate/core"
)

// The inserts of the hot path, merged across a group by group commit.
var (
	// Both are conflict-free (group commit writes them before taking the
	// chain lock): decision ids are new UUIDv7s and the table has no other
	// unique key; releases are created here and by plain transactions
	// (deployments), never by a writer under the chain lock, and are
	// inserted in id order.
	decisionInsert = newBatchInsert("gate_decisions",
		[]string{"id", "release_id", "decision", "emergency", "policy_version", "evaluated_at", "actor", "doc"},
		[]string{"text", "text", "text", "boolean", "integer", "timestamptz", "text", "text"}, "").free(-1)
	releaseInsert = newBatchInsert("releases", strings.Split(releaseCols, ", "),
		[]string{"text", "text", "text", "text", "text", "text", "jsonb", "jsonb", "timestamptz", "timestamptz"},
		" ON CONFLICT DO NOTHING").free(0)
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
	entry := core.AuditEntry{
		Actor: actor, Action: "gate.decision", Subject: "release:" + dec.ReleaseID, At: dec.EvaluatedAt,
		Data: json.RawMessage(mustJSON(struct {
			DecisionID    string        `json:"decision_id"`
			Decision      core.Decision `json:"decision"`
			Reasons       []string      `json:"reasons"`
			PolicyVersion int           `json:"policy_version"`
		}{dec.ID, dec.Decision, codes, dec.PolicyVersion})),
	}
	rows := []batchRow{{ins: decisionInsert, args: []any{dec.ID, dec.ReleaseID, string(dec.Decision), dec.Emergency,
		dec.PolicyVersion, dec.EvaluatedAt, actor, mustJSON(dec)}}}
	if req := dec.Request; req.Service != "" && req.Version != "" && req.Environment != "" && dec.ReleaseID != "" &&
		!d.releases.has(dec.ReleaseID) {
		// The release the decision is about, created if it is new (an
		// existing one keeps its links; deployment reports update them).
		now := d.now()
		rows = append([]batchRow{{ins: releaseInsert, args: []any{dec.ReleaseID, req.Service, req.Version, req.Environment,
			strings.TrimSpace(req.Team), strings.TrimSpace(req.Commit), strList(req.Changes), strList(req.Incidents), now, now}}}, rows...)
	}
	err := d.appendRows(ctx, []core.AuditEntry{entry}, rows...)
	if err != nil {
		return fmt.Errorf("save gate decision %s: %w", dec.ID, err)
	}
	if len(rows) > 1 {
		d.releases.add(dec.ReleaseID)
	}
	return nil
}

// knownReleases remembers ids of releases this process saw committed, so
// that a decision about one of them (a pipeline asking again while it
// waits) does not carry the release's insert, whose conflict check costs
// two index lookups inside the group commit that every check waits for.
// Releases are never deleted, so an id once known stays true; an unknown
// one is inserted with ON CONFLICT DO NOTHING, as before. Two generations
// of at most knownReleasesMax ids each bound its memory.
type knownReleases struct {
	mu        sync.Mutex
	cur, prev map[string]struct{}
}

const knownReleasesMax = 1 << 16

func (k *knownReleases) has(id string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.cur[id]; ok {
		return true
	}
	_, ok := k.prev[id]
	return ok
}

func (k *knownReleases) add(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur == nil || len(k.cur) >= knownReleasesMax {
		k.prev, k.cur = k.cur, make(map[string]struct{}, 1024)
	}
	k.cur[id] = struct{}{}
}

// GetDecision returns the recorded decision with id.
func (d *DB) GetDecision(ctx context.Context, id string) (core.GateDecision, error) {
	var doc string
	err := d.db.GetContext(ctx, &doc, d.q("SELECT doc FROM gate_decisions WHERE id = ?"), id)
	if err != nil {
		return core.GateDecision{}, notFound(err, "gate decision", id)
	}
	var dec core.GateDecision
	if err := json.Unmarshal([]byte(doc), &dec); err != nil {
		return core.GateDecision{}, fmt.Errorf("decode gate decision %s: %w", id, err)
	}
	dec.EvaluatedAt = dec.EvaluatedAt.UTC()
	return dec, nil
}

// notFound maps a missing row to core.NotFound(what, key) and wraps any
// other driver error with context.
func notFound(err error, what, key string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return core.NotFound(what, key)
	}
	terr := translate(err)
	return fmt.Errorf("%s %s: %w", what, key, terr)
}
