package sqldb

import (
	"context"
	"fmt"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/tollgate-dev/tollgate/migrations"
)

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
	res, err := p.Up(ctx)
	if err != nil {
		return len(res), fmt.Errorf("migrate %s: %w", b.dialect, Translate(err))
	}
	for _, r := range res {
		b.log.InfoContext(ctx, "migration applied", "dialect", b.dialect, "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	return len(res), nil
}

// MigrationsPending reports how many migrations are not applied yet (for
// readiness).
func (b *DB) MigrationsPending(ctx context.Context) (int, error) {
	p, err := b.provider()
	if err != nil {
		return 0, err
	}
	has, err := p.HasPending(ctx)
	if err != nil {
		return 0, fmt.Errorf("migration status: %w", Translate(err))
	}
	if !has {
		return 0, nil
	}
	st, err := p.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("migration status: %w", Translate(err))
	}
	n := 0
	for _, s := range st {
		if s.State == goose.StatePending {
			n++
		}
	}
	return n, nil
}
