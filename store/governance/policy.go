package governance

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// maxSourceBytes caps a stored policy or mapping document.
const maxSourceBytes = 1 << 20

// sourceDigest is the hex SHA-256 of a stored document, for audit entries
// (the audit log records which text became current, not the text).
func sourceDigest(source string) string {
	sum := sha256.Sum256([]byte(source))
	return hex.EncodeToString(sum[:])
}

func checkSource(source string) error {
	switch {
	case strings.TrimSpace(source) == "":
		return core.Invalid("source", "is empty")
	case len(source) > maxSourceBytes:
		return core.Errorf(core.KindTooLarge, "source is %d bytes, over the limit of %d", len(source), maxSourceBytes)
	case strings.ContainsRune(source, 0):
		return core.Invalid("source", "must not contain NUL bytes")
	}
	return nil
}

// Advisory lock keys (transaction-scoped) that serialize version numbering
// across replicas on PostgreSQL. They are taken inside a group's writer,
// before the audit chain lock, which a group takes last: no cycle.
const (
	policyLockKey  = 0x746f6c70 // "tolp"
	mappingLockKey = 0x746f6c6d // "tolm"
)

// xactLock takes a transaction-scoped advisory lock on PostgreSQL; SQLite
// has one writer anyway.
func xactLock(ctx context.Context, db *sqldb.DB, tx *sqlx.Tx, key int64) error {
	if db.Dialect() != sqldb.Postgres {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", key); err != nil {
		return fmt.Errorf("advisory lock %x: %w", key, err)
	}
	return nil
}

// versionedPut runs put, which inserts the next version computed inside its
// transaction, and retries once when a concurrent writer (another replica)
// took the same version number first: the primary key catches the clash.
// (The advisory locks make that a safety net: with them a clash needs a
// writer that does not take the lock, such as an older release.)
func versionedPut(put func() error) error {
	err := put()
	if core.IsKind(err, core.KindConflict) {
		err = put()
	}
	return err
}

// Policies are the policy's versions in one database.
type Policies struct {
	base *sqldb.DB
	db   *sqlx.DB
}

// NewPolicies returns the policy versions in db.
func NewPolicies(db *sqldb.DB) *Policies { return &Policies{base: db, db: db.SQLX()} }

// PutPolicy stores source as the next policy version with a "policy.put"
// audit entry (actor, version, SHA-256 of the source), notifies waiting
// gate checks, and returns the version.
func (po *Policies) PutPolicy(ctx context.Context, source, actor string) (int, error) {
	if err := checkSource(source); err != nil {
		return 0, err
	}
	var version int
	err := versionedPut(func() error {
		entries := []core.AuditEntry{{Actor: actor, Action: "policy.put", Subject: "policy"}}
		return po.base.AppendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) (err error) {
			version, err = insertPolicy(ctx, po.base, tx, source, actor, -1, &entries[0])
			return err
		})
	})
	if err != nil {
		return 0, fmt.Errorf("put policy: %w", err)
	}
	return version, nil
}

// insertPolicy stores source as the next policy version in tx, under the
// policy lock, names it in entry (its "policy.put") and notifies every
// replica at commit. With base >= 0 the newest version must still be base
// (a proposal's confirmation): KindConflict otherwise.
func insertPolicy(ctx context.Context, db *sqldb.DB, tx *sqlx.Tx, source, actor string, base int, entry *core.AuditEntry) (int, error) {
	if err := xactLock(ctx, db, tx, policyLockKey); err != nil {
		return 0, err
	}
	var version int
	if err := tx.GetContext(ctx, &version, "SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions"); err != nil {
		return 0, fmt.Errorf("next policy version: %w", err)
	}
	if base >= 0 && version-1 != base {
		return 0, core.Errorf(core.KindConflict, "the policy changed since the proposal was made: it was made against version %d, version %d is in force now; propose the change again against it", base, version-1)
	}
	if _, err := tx.ExecContext(ctx, db.Q("INSERT INTO policy_versions (version, source, created_at, created_by) VALUES (?, ?, ?, ?)"),
		version, source, db.Now(), actor); err != nil {
		return 0, err
	}
	entry.Subject = fmt.Sprintf("policy:%d", version)
	entry.Data = json.RawMessage(sqldb.MustJSON(map[string]any{"version": version, "sha256": sourceDigest(source)}))
	db.NotifyTx(tx, "policy")
	return version, nil
}

type policyRow struct {
	Version   int       `db:"version"`
	Source    string    `db:"source"`
	CreatedAt time.Time `db:"created_at"`
	CreatedBy string    `db:"created_by"`
}

// CurrentPolicy returns the newest policy version; KindNotFound when none
// was stored yet.
func (po *Policies) CurrentPolicy(ctx context.Context) (core.PolicyVersion, error) {
	var r policyRow
	err := po.db.GetContext(ctx, &r, "SELECT version, source, created_at, created_by FROM policy_versions ORDER BY version DESC LIMIT 1")
	if errors.Is(err, sql.ErrNoRows) {
		return core.PolicyVersion{}, core.Errorf(core.KindNotFound, "no policy stored yet")
	}
	if err != nil {
		return core.PolicyVersion{}, fmt.Errorf("current policy: %w", sqldb.Translate(err))
	}
	return core.PolicyVersion{Version: r.Version, Source: r.Source, CreatedAt: r.CreatedAt.UTC(), CreatedBy: r.CreatedBy}, nil
}
