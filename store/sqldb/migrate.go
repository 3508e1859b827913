package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/migrations"
)

// ErrSchemaTooNew is the error of a schema whose floor is above the newest
// migration this build knows: a newer tollgate migrated it past what this
// one can run against.
var ErrSchemaTooNew = errors.New("the database schema is newer than this tollgate can run against")

func (b *DB) provider() (*goose.Provider, error) {
	fsys, err := migrations.FS(b.dialect)
	if err != nil {
		return nil, fmt.Errorf("migrations for %s: %w", b.dialect, err)
	}
	var opts []goose.ProviderOption
	dialect := goose.DialectSQLite3
	if b.dialect == Postgres {
		dialect = goose.DialectPostgres
		// Two replicas starting at once: the second waits on a session
		// advisory lock instead of racing the first.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
		if err != nil {
			return nil, fmt.Errorf("migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, b.db.DB, fsys, opts...)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}

// Migrate applies every pending migration and returns how many it applied.
// A schema this build cannot run against (ErrSchemaTooNew) is left as it
// is. Before and after migrating it raises the schema's floor to this
// build's (migrations.OldestReader), so that an older replica still
// running stops before the migrations it cannot read are applied.
func (b *DB) Migrate(ctx context.Context) (int, error) {
	p, err := b.provider()
	if err != nil {
		return 0, err
	}
	unlock, err := b.lockMigrations(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	st, err := b.schema(ctx)
	if err != nil {
		return 0, err
	}
	if err := st.Err(); err != nil {
		return 0, err
	}
	floor, err := migrations.OldestReader()
	if err != nil {
		return 0, err
	}
	if st.Applied >= migrations.FloorSince {
		if err := b.raiseFloor(ctx, floor); err != nil {
			return 0, err
		}
	}
	res, err := p.Up(ctx)
	if err != nil {
		return len(res), fmt.Errorf("migrate %s: %w", b.dialect, Translate(err))
	}
	for _, r := range res {
		b.log.InfoContext(ctx, "migration applied", "dialect", b.dialect, "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	if err := b.raiseFloor(ctx, floor); err != nil {
		return len(res), err
	}
	return len(res), nil
}

// raiseFloor sets the schema's floor to floor unless it is higher already:
// a build never lowers it.
func (b *DB) raiseFloor(ctx context.Context, floor int64) error {
	_, err := b.db.ExecContext(ctx, b.Q(`INSERT INTO schema_floor (id, oldest_reader, raised_at) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET oldest_reader = excluded.oldest_reader, raised_at = excluded.raised_at
		WHERE schema_floor.oldest_reader < excluded.oldest_reader`), floor, b.Now())
	if err != nil {
		return fmt.Errorf("raise the schema's floor to %d: %w", floor, Translate(err))
	}
	return nil
}

// Schema is the database's migration state as this build sees it.
type Schema struct {
	// Pending counts the migrations this build knows that are not applied.
	Pending int
	// Applied is the newest migration applied to the database; Known the
	// newest this build holds.
	Applied, Known int64
	// Floor is the oldest build, named by the newest migration it knows,
	// that may run against the schema (0 before migration FloorSince).
	Floor int64
}

// Ahead reports whether a newer build has migrated the schema past what
// this one knows.
func (s Schema) Ahead() bool { return s.Applied > s.Known }

// Err is nil when this build may run against the schema (pending
// migrations aside), and ErrSchemaTooNew, saying what to do, when not.
func (s Schema) Err() error {
	if s.Floor <= s.Known {
		return nil
	}
	return core.Wrap(core.KindUnavailable, ErrSchemaTooNew, fmt.Sprintf(
		"the database is at migration %d and needs a tollgate that knows migration %d or later; this one knows up to %d: upgrade it (a newer replica migrated the schema, or this binary was rolled back past a migration it cannot read)",
		s.Applied, s.Floor, s.Known))
}

// Schema reads the database's migration state: pending migrations, the
// newest applied and the floor (for readiness and the doctor).
func (b *DB) Schema(ctx context.Context) (Schema, error) { return b.schema(ctx) }

// schema reads the state from goose's version table itself: goose's own
// status calls take the migration lock, which a replica migrating holds
// for as long as it takes, and readiness must not wait on it. The
// versions this build knows come from the migrations' file names
// (migrations.Versions), not a goose provider, which would parse every
// file at each readiness probe and each replica's check.
func (b *DB) schema(ctx context.Context) (Schema, error) {
	var s Schema
	exists := `SELECT to_regclass('goose_db_version') IS NOT NULL`
	if b.dialect == SQLite {
		exists = `SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'goose_db_version'`
	}
	var has bool
	if err := b.db.QueryRowContext(ctx, exists).Scan(&has); err != nil {
		return s, fmt.Errorf("migration status: %w", Translate(err))
	}
	applied := map[int64]bool{}
	if has {
		var vs []int64
		if err := b.db.SelectContext(ctx, &vs, `SELECT version_id FROM goose_db_version WHERE is_applied`); err != nil {
			return s, fmt.Errorf("migration status: %w", Translate(err))
		}
		for _, v := range vs {
			applied[v] = true
			s.Applied = max(s.Applied, v)
		}
	}
	known, err := migrations.Versions()
	if err != nil {
		return s, err
	}
	for _, v := range known {
		s.Known = max(s.Known, v)
		if !applied[v] {
			s.Pending++
		}
	}
	if s.Applied >= migrations.FloorSince {
		err := b.db.QueryRowContext(ctx, `SELECT oldest_reader FROM schema_floor WHERE id = 1`).Scan(&s.Floor)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return s, fmt.Errorf("read the schema's floor: %w", Translate(err))
		}
	}
	return s, nil
}
