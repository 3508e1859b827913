// Package records stores the ITSM records tollgate gates on, changes and
// incidents, as versions: each write from a record's source becomes its
// newest version unless it is older or the same, the history keeps every
// version (for the gate's facts as of a moment and the reconciler), and a
// record belongs to the source that created it.
package records

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
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Changes are the change records of one database.
type Changes struct {
	base *sqldb.DB
	db   *sqlx.DB
}

// NewChanges returns the changes in db.
func NewChanges(db *sqldb.DB) *Changes { return &Changes{base: db, db: db.SQLX()} }

// normChange returns c ready to store: times in UTC at microseconds (what
// the databases keep, so a re-delivery compares equal), slices copied,
// text made valid (sqldb.CleanStrings), and SourceUpdatedAt set (now when zero).
func normChange(c core.Change, now time.Time) core.Change {
	c.PlannedStart = sqldb.TSP(c.PlannedStart)
	c.PlannedEnd = sqldb.TSP(c.PlannedEnd)
	c.ReviewedAt = sqldb.TSP(c.ReviewedAt)
	if c.Approvals != nil {
		a := make([]core.Approval, len(c.Approvals))
		for i, ap := range c.Approvals {
			ap.At = sqldb.TSP(ap.At)
			a[i] = ap
		}
		c.Approvals = a
	}
	if c.Services != nil {
		c.Services = append([]string(nil), c.Services...)
	}
	if c.SourceUpdatedAt.IsZero() {
		c.SourceUpdatedAt = now
	}
	c.SourceUpdatedAt = sqldb.TS(c.SourceUpdatedAt)
	sqldb.CleanStrings(&c)
	return c
}

// changeCanon is a change's content apart from its source stamp: two
// deliveries with equal canon are the same version.
func changeCanon(c core.Change) string {
	c.SourceUpdatedAt = time.Time{}
	return sqldb.MustJSON(c)
}

// UpsertChange stores c as a new version unless it is older than the newest
// stored version (UpsertStale) or has the same content (UpsertUnchanged).
// A change belongs to the source that created it: a write from another
// source is refused with KindForbidden (see upsertVersioned).
func (ch *Changes) UpsertChange(ctx context.Context, c core.Change) (core.UpsertResult, error) {
	if err := checkKey(c.Key); err != nil {
		return "", err
	}
	if strings.TrimSpace(c.Source) == "" || !sqldb.TextOK(c.Source) {
		return "", core.Invalid("source", "is required (valid text)")
	}
	if c.Type != "" && !c.Type.Valid() {
		return "", core.Invalid("type", "unknown change type %q", c.Type)
	}
	c = normChange(c, ch.base.Now())
	doc := sqldb.MustJSON(c)
	res, err := upsertVersioned(ctx, ch.base, versionedUpsert{
		what:     "change",
		table:    "changes",
		versions: "change_versions",
		key:      c.Key,
		source:   c.Source,
		stamp:    c.SourceUpdatedAt,
		doc:      doc,
		canon:    changeCanon(c),
		canonOf: func(stored []byte) (string, error) {
			var old core.Change
			if err := json.Unmarshal(stored, &old); err != nil {
				return "", err
			}
			return changeCanon(old), nil
		},
		insert: func(ctx context.Context, tx *sqlx.Tx, now time.Time) (sql.Result, error) {
			return ch.base.ExecTx(ctx, tx, ch.base.Q(`INSERT INTO changes (key, source, version, type, state, approval, doc, source_updated_at, updated_at)
				VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING`),
				c.Key, c.Source, string(c.Type), c.State, string(c.Approval), doc, c.SourceUpdatedAt, now)
		},
		update: func(ctx context.Context, tx *sqlx.Tx, version int, now time.Time) (sql.Result, error) {
			return ch.base.ExecTx(ctx, tx, ch.base.Q(`UPDATE changes SET version = ?, type = ?, state = ?, approval = ?, doc = ?,
				source_updated_at = ?, updated_at = ? WHERE key = ? AND source = ?`),
				version, string(c.Type), c.State, string(c.Approval), doc, c.SourceUpdatedAt, now, c.Key, c.Source)
		},
	})
	if err != nil {
		return "", fmt.Errorf("upsert change %s: %w", c.Key, err)
	}
	return res, nil
}

// GetChange returns the newest version of the change.
func (ch *Changes) GetChange(ctx context.Context, key string) (core.Change, error) {
	if !lookupKey(key) {
		return core.Change{}, core.NotFound("change", key)
	}
	var doc []byte
	q := ch.base.Q(`SELECT doc FROM changes WHERE key = ?`)
	var err error
	if tx := ch.base.TogetherTx(ctx); tx != nil {
		err = tx.GetContext(ctx, &doc, q, key) // what the shared transaction wrote so far
	} else {
		err = ch.db.GetContext(ctx, &doc, q, key)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return core.Change{}, core.NotFound("change", key)
	}
	if err != nil {
		return core.Change{}, fmt.Errorf("load change %s: %w", key, sqldb.Translate(err))
	}
	var c core.Change
	if err := json.Unmarshal(doc, &c); err != nil {
		return core.Change{}, fmt.Errorf("decode change %s: %w", key, err)
	}
	return c, nil
}

// ChangeHistory returns every version of the change, oldest first.
func (ch *Changes) ChangeHistory(ctx context.Context, key string) ([]core.ChangeVersion, error) {
	if !lookupKey(key) {
		return nil, core.NotFound("change", key)
	}
	rows, err := history(ctx, ch.base, "change_versions", key)
	if err != nil {
		return nil, fmt.Errorf("load change %s history: %w", key, err)
	}
	if len(rows) == 0 {
		return nil, core.NotFound("change", key)
	}
	out := make([]core.ChangeVersion, len(rows))
	for i, r := range rows {
		out[i] = core.ChangeVersion{Version: r.Version, ValidFrom: r.ValidFrom.UTC(), RecordedAt: r.RecordedAt.UTC()}
		if err := json.Unmarshal(r.Doc, &out[i].Change); err != nil {
			return nil, fmt.Errorf("decode change %s version %d: %w", key, r.Version, err)
		}
	}
	return out, nil
}
