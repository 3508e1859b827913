package governance

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Mappings are the mapping profiles' versions in one database.
type Mappings struct {
	base *sqldb.DB
	db   *sqlx.DB
}

// NewMappings returns the mapping profiles in db.
func NewMappings(db *sqldb.DB) *Mappings { return &Mappings{base: db, db: db.SQLX()} }

type mappingRow struct {
	Name      string    `db:"name"`
	Version   int       `db:"version"`
	Source    string    `db:"source"`
	Deleted   bool      `db:"deleted"`
	UpdatedAt time.Time `db:"updated_at"`
	UpdatedBy string    `db:"updated_by"`
}

func (r mappingRow) profile() core.MappingProfile {
	return core.MappingProfile{Name: r.Name, Version: r.Version, Source: r.Source, Deleted: r.Deleted, UpdatedAt: r.UpdatedAt.UTC(), UpdatedBy: r.UpdatedBy}
}

const mappingColumns = "name, version, source, deleted, updated_at, updated_by"

// checkMappingName accepts 1–128 printable characters without spaces.
func checkMappingName(name string) error {
	if name == "" {
		return core.Invalid("name", "is required")
	}
	if len(name) > 128 {
		return core.Invalid("name", "is longer than 128 bytes")
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return core.Invalid("name", "must not contain spaces or control characters")
		}
	}
	return nil
}

// newestMapping reads the newest version of name inside tx (sql.ErrNoRows
// when none).
func newestMapping(ctx context.Context, db *sqldb.DB, q sqlx.QueryerContext, name string) (mappingRow, error) {
	var r mappingRow
	err := sqlx.GetContext(ctx, q, &r, db.Q("SELECT "+mappingColumns+" FROM mapping_profiles WHERE name = ? ORDER BY version DESC LIMIT 1"), name)
	return r, err
}

// putMappingVersion inserts the next version of name with an audit entry.
func (m *Mappings) putMappingVersion(ctx context.Context, name, source, actor, action string, deleted bool) (int, error) {
	var version int
	err := versionedPut(func() error {
		entries := []core.AuditEntry{{Actor: actor, Action: action, Subject: "mapping:" + name}}
		return m.base.AppendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) (err error) {
			version, err = insertMapping(ctx, m.base, tx, name, source, actor, deleted, -1, &entries[0])
			return err
		})
	})
	return version, err
}

// insertMapping stores the next version of the profile name in tx (a
// deleted one with deleted), under the mapping lock, and describes it in
// entry's data. With base >= 0 the profile's newest version must still be
// base, 0 for none (a proposal's confirmation): KindConflict otherwise.
func insertMapping(ctx context.Context, db *sqldb.DB, tx *sqlx.Tx, name, source, actor string, deleted bool, base int, entry *core.AuditEntry) (int, error) {
	if err := xactLock(ctx, db, tx, mappingLockKey); err != nil {
		return 0, err
	}
	prev, err := newestMapping(ctx, db, tx, name)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return 0, fmt.Errorf("newest version: %w", err)
	}
	if base >= 0 && prev.Version != base {
		return 0, core.Errorf(core.KindConflict, "mapping profile %s changed since the proposal was made: it was made against version %d, version %d is the newest now; propose the change again against it", name, base, prev.Version)
	}
	if deleted && (prev.Version == 0 || prev.Deleted) {
		return 0, core.NotFound("mapping profile", name)
	}
	version := prev.Version + 1
	if _, err := tx.ExecContext(ctx, db.Q("INSERT INTO mapping_profiles (name, version, source, deleted, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?)"),
		name, version, source, deleted, db.Now(), actor); err != nil {
		return 0, err
	}
	data := map[string]any{"name": name, "version": version}
	if !deleted {
		data["sha256"] = sourceDigest(source)
	}
	entry.Data = json.RawMessage(sqldb.MustJSON(data))
	return version, nil
}

// PutMapping stores source as the next version of the named profile (older
// versions are kept) with a "mapping.put" audit entry, and returns the
// version.
func (m *Mappings) PutMapping(ctx context.Context, name, source, actor string) (int, error) {
	if err := checkMappingName(name); err != nil {
		return 0, err
	}
	if err := checkSource(source); err != nil {
		return 0, err
	}
	v, err := m.putMappingVersion(ctx, name, source, actor, "mapping.put", false)
	if err != nil {
		return 0, fmt.Errorf("put mapping profile %s: %w", name, err)
	}
	return v, nil
}

// DeleteMapping records a deleted version of the profile with a
// "mapping.delete" audit entry. KindNotFound when it does not exist or is
// already deleted.
func (m *Mappings) DeleteMapping(ctx context.Context, name, actor string) error {
	if err := checkMappingName(name); err != nil {
		return err
	}
	if _, err := m.putMappingVersion(ctx, name, "", actor, "mapping.delete", true); err != nil {
		return fmt.Errorf("delete mapping profile %s: %w", name, err)
	}
	return nil
}

// GetMapping returns the newest version of the profile; KindNotFound when
// there is none or it is deleted.
func (m *Mappings) GetMapping(ctx context.Context, name string) (core.MappingProfile, error) {
	r, err := newestMapping(ctx, m.base, m.db, name)
	if err != nil {
		return core.MappingProfile{}, sqldb.NotFound(err, "mapping profile", name)
	}
	if r.Deleted {
		return core.MappingProfile{}, core.NotFound("mapping profile", name)
	}
	return r.profile(), nil
}

// ListMappings returns the newest version of every profile not deleted,
// by name.
func (m *Mappings) ListMappings(ctx context.Context) ([]core.MappingProfile, error) {
	var rows []mappingRow
	err := m.db.SelectContext(ctx, &rows, `SELECT m.name, m.version, m.source, m.deleted, m.updated_at, m.updated_by
		FROM mapping_profiles m
		JOIN (SELECT name, MAX(version) AS version FROM mapping_profiles GROUP BY name) newest
		  ON newest.name = m.name AND newest.version = m.version
		WHERE NOT m.deleted
		ORDER BY m.name`)
	if err != nil {
		return nil, fmt.Errorf("list mapping profiles: %w", sqldb.Translate(err))
	}
	out := make([]core.MappingProfile, len(rows))
	for i, r := range rows {
		out[i] = r.profile()
	}
	return out, nil
}

// MappingVersions returns every version of the profile, deleted ones
// included, oldest first; KindNotFound when it never existed.
func (m *Mappings) MappingVersions(ctx context.Context, name string) ([]core.MappingProfile, error) {
	var rows []mappingRow
	if err := m.db.SelectContext(ctx, &rows, m.base.Q("SELECT "+mappingColumns+" FROM mapping_profiles WHERE name = ? ORDER BY version"), name); err != nil {
		return nil, fmt.Errorf("mapping profile %s versions: %w", name, sqldb.Translate(err))
	}
	if len(rows) == 0 {
		return nil, core.NotFound("mapping profile", name)
	}
	out := make([]core.MappingProfile, len(rows))
	for i, r := range rows {
		out[i] = r.profile()
	}
	return out, nil
}
