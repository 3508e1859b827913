package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
)

// topicEvidence prefixes the notification of evidence attached to a
// release ("evidence:<release id>"): waiting checks re-evaluate.
const topicEvidence = "evidence:"

// AddEvidence appends e (ID, ReleaseID and RecordedBy set by the caller; a
// zero RecordedAt becomes now) to its release, with an "evidence.add"
// audit entry. KindNotFound when the release does not exist.
func (d *DB) AddEvidence(ctx context.Context, e core.Evidence) (core.Evidence, error) {
	if e.RecordedAt.IsZero() {
		e.RecordedAt = d.now()
	}
	e.RecordedAt = ts(e.RecordedAt)
	doc := mustJSON(e)
	entry := core.AuditEntry{Actor: e.RecordedBy, Action: "evidence.add", Subject: "release:" + e.ReleaseID, At: e.RecordedAt,
		Data: json.RawMessage(doc)}
	err := d.appendWith(ctx, []core.AuditEntry{entry}, func(ctx context.Context, tx *sqlx.Tx) error {
		var n int
		if err := tx.GetContext(ctx, &n, d.q("SELECT count(*) FROM releases WHERE id = ?"), e.ReleaseID); err != nil {
			return err
		}
		if n == 0 {
			return core.NotFound("release", e.ReleaseID)
		}
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO evidence (id, release_id, kind, name, status, digest, doc, recorded_by, recorded_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			e.ID, e.ReleaseID, e.Kind, e.Name, e.Status, e.Digest, doc, e.RecordedBy, e.RecordedAt); err != nil {
			return err
		}
		d.notifyTx(tx, topicEvidence+e.ReleaseID)
		return nil
	})
	if err != nil {
		return core.Evidence{}, fmt.Errorf("add evidence to release %s: %w", e.ReleaseID, err)
	}
	return e, nil
}

// ListEvidence returns a release's evidence recorded by asOf (all of it
// when asOf is zero), oldest first.
func (d *DB) ListEvidence(ctx context.Context, releaseID string, asOf time.Time) ([]core.Evidence, error) {
	query, args := "SELECT doc FROM evidence WHERE release_id = ? ORDER BY recorded_at, id", []any{releaseID}
	if !asOf.IsZero() {
		query = "SELECT doc FROM evidence WHERE release_id = ? AND recorded_at <= ? ORDER BY recorded_at, id"
		args = append(args, ts(asOf))
	}
	var docs []string
	if err := d.db.SelectContext(ctx, &docs, d.q(query), args...); err != nil {
		return nil, fmt.Errorf("list evidence of release %s: %w", releaseID, translate(err))
	}
	out := make([]core.Evidence, 0, len(docs))
	for _, doc := range docs {
		var e core.Evidence
		if err := json.Unmarshal([]byte(doc), &e); err != nil {
			return nil, fmt.Errorf("decode evidence of release %s: %w", releaseID, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// governanceFacts adds to facts the holds in force at the facts' moment
// (q.AsOf, else now: from the fact cache when it may answer) and, when
// q.Evidence, the release's evidence recorded by then (read from the
// database: it is per release, and only environments requiring evidence
// ask for it).
func (d *DB) governanceFacts(ctx context.Context, q core.FactsQuery, facts *core.Facts) error {
	var (
		holds []core.Hold
		err   error
	)
	if q.AsOf.IsZero() {
		holds, err = d.currentHolds(ctx)
	} else {
		holds, err = d.holdsAt(ctx, q.AsOf)
	}
	if err != nil {
		return fmt.Errorf("gather facts: %w", err)
	}
	facts.Holds = holds
	if q.Evidence {
		id := core.ReleaseID(q.Service, q.Version, q.Environment)
		ev, err := d.ListEvidence(ctx, id, q.AsOf)
		if err != nil {
			return fmt.Errorf("gather facts: %w", err)
		}
		facts.Evidence = ev
	}
	return nil
}
