package governance

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// topicEvidence prefixes the notification of evidence attached to a
// release ("evidence:<release id>"): waiting checks re-evaluate.
const topicEvidence = "evidence:"

// Evidence is the evidence attached to releases in one database.
type Evidence struct {
	base *sqldb.DB
	db   *sqlx.DB
}

// NewEvidence returns the evidence in db.
func NewEvidence(db *sqldb.DB) *Evidence { return &Evidence{base: db, db: db.SQLX()} }

// AddEvidence appends e (ID, ReleaseID and RecordedBy set by the caller; a
// zero RecordedAt becomes now) to its release, with an "evidence.add"
// audit entry. KindNotFound when the release does not exist.
func (ev *Evidence) AddEvidence(ctx context.Context, e core.Evidence) (core.Evidence, error) {
	if e.RecordedAt.IsZero() {
		e.RecordedAt = ev.base.Now()
	}
	e.RecordedAt = sqldb.TS(e.RecordedAt)
	doc := sqldb.MustJSON(e)
	entry := core.AuditEntry{Actor: e.RecordedBy, Action: "evidence.add", Subject: "release:" + e.ReleaseID, At: e.RecordedAt,
		Data: json.RawMessage(doc)}
	err := ev.base.AppendWith(ctx, []core.AuditEntry{entry}, func(ctx context.Context, tx *sqlx.Tx) error {
		var n int
		if err := tx.GetContext(ctx, &n, ev.base.Q("SELECT count(*) FROM releases WHERE id = ?"), e.ReleaseID); err != nil {
			return err
		}
		if n == 0 {
			return core.NotFound("release", e.ReleaseID)
		}
		if _, err := tx.ExecContext(ctx, ev.base.Q(`INSERT INTO evidence (id, release_id, kind, name, status, digest, doc, recorded_by, recorded_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			e.ID, e.ReleaseID, e.Kind, e.Name, e.Status, e.Digest, doc, e.RecordedBy, e.RecordedAt); err != nil {
			return err
		}
		ev.base.NotifyTx(tx, topicEvidence+e.ReleaseID)
		return nil
	})
	if err != nil {
		return core.Evidence{}, fmt.Errorf("add evidence to release %s: %w", e.ReleaseID, err)
	}
	return e, nil
}

// ListEvidence returns a release's evidence recorded by asOf (all of it
// when asOf is zero), oldest first.
func (ev *Evidence) ListEvidence(ctx context.Context, releaseID string, asOf time.Time) ([]core.Evidence, error) {
	query, args := "SELECT doc FROM evidence WHERE release_id = ? ORDER BY recorded_at, id", []any{releaseID}
	if !asOf.IsZero() {
		query = "SELECT doc FROM evidence WHERE release_id = ? AND recorded_at <= ? ORDER BY recorded_at, id"
		args = append(args, sqldb.TS(asOf))
	}
	var docs []string
	if err := ev.db.SelectContext(ctx, &docs, ev.base.Q(query), args...); err != nil {
		return nil, fmt.Errorf("list evidence of release %s: %w", releaseID, sqldb.Translate(err))
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
