package testpg

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/tollgate-dev/tollgate/migrations"
)

// The template database: the PostgreSQL migrations applied once, then
// cloned for every test that wants a migrated database (CREATE DATABASE …
// TEMPLATE copies files, which is far cheaper than replaying the
// migrations). Its name carries a hash of the embedded migration files, so
// a changed or added migration gets a new template, and test runs of
// different checkouts sharing one server each find their own.
const (
	templatePrefix = "tollgate_tmpl_"
	// templateLock is the advisory lock (on the admin database) that
	// go test processes of several packages take to build or look up a
	// template one at a time ("tollgate" in ASCII).
	templateLock int64 = 0x746f6c6c67617465
	// templateRecipe changes when the way a template is built does, so
	// templates built the old way are not reused.
	templateRecipe = "goose-v3 postgres 1"
	// templateUnusedFor is how long a template of other migrations must
	// have gone unused before a build drops it: longer than any test
	// run (scripts/test.sh's go test -timeout is 20 minutes).
	templateUnusedFor = 6 * time.Hour
)

var tmpl struct {
	once sync.Once
	name string
	err  error
}

// NewMigratedDatabase is NewDatabase with the PostgreSQL migrations
// (migrations/postgres) already applied: it is cloned from a template
// migrated once per set of migrations.
func NewMigratedDatabase(t testing.TB) string {
	t.Helper()
	requireServer(t)
	tmpl.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		fsys, err := migrations.FS("postgres")
		if err != nil {
			tmpl.err = err
			return
		}
		tmpl.name, tmpl.err = ensureTemplate(ctx, srv.admin, srv.url, fsys)
	})
	if tmpl.err != nil {
		t.Fatalf("migrated template database: %v", tmpl.err)
	}
	return NewDatabaseWith(t, "TEMPLATE "+tmpl.name)
}

// migrationsHash names a template: a hash of every migration file (name
// and content) and of the recipe.
func migrationsHash(fsys fs.FS) (string, error) {
	h := sha256.New()
	h.Write([]byte(templateRecipe))
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "\x00%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash migrations: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:20], nil
}

// ensureTemplate returns the name of the template for the migrations in
// fsys, building it when no process has yet. Builders and lookups
// hold an advisory lock, so concurrent go test processes never race: the
// first builds, the others wait and find it. A template is built under a
// temporary name and renamed when complete, so a crashed build is never
// cloned. It accepts no connections (ALLOW_CONNECTIONS false): PostgreSQL
// copies a template only while nobody is connected to it.
func ensureTemplate(ctx context.Context, admin *sql.DB, adminURL string, fsys fs.FS) (string, error) {
	sum, err := migrationsHash(fsys)
	if err != nil {
		return "", err
	}
	name := templatePrefix + sum
	conn, err := admin.Conn(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", templateLock); err != nil {
		return "", fmt.Errorf("lock: %w", err)
	}
	defer conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", templateLock) //nolint:errcheck // the lock also ends with the session

	var exists bool
	if err := conn.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look up %s: %w", name, err)
	}
	if !exists {
		if err := buildTemplate(ctx, conn, adminURL, name, fsys); err != nil {
			return "", err
		}
		dropUnusedTemplates(ctx, conn, name)
	}
	// The comment records when the template was last looked up, for
	// dropUnusedTemplates in other checkouts.
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("COMMENT ON DATABASE %s IS 'tollgate test template, used %d'", name, time.Now().Unix())); err != nil {
		return "", fmt.Errorf("mark %s used: %w", name, err)
	}
	return name, nil
}

// buildTemplate migrates a new database and turns it into the template
// called name.
func buildTemplate(ctx context.Context, conn *sql.Conn, adminURL, name string, fsys fs.FS) error {
	build := name + "_build"
	// A leftover of a build that died: nobody else builds while we hold
	// the lock.
	if _, err := conn.ExecContext(ctx, "DROP DATABASE IF EXISTS "+build+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop %s: %w", build, err)
	}
	if _, err := conn.ExecContext(ctx, "CREATE DATABASE "+build); err != nil {
		return fmt.Errorf("create %s: %w", build, err)
	}
	u, err := databaseURL(adminURL, build)
	if err != nil {
		return err
	}
	if err := migrate(ctx, u, fsys); err != nil {
		return fmt.Errorf("migrate %s: %w", build, err)
	}
	// Renaming waits (up to 5 s) for the migration's closed connections'
	// server processes to exit.
	for _, q := range []string{
		"ALTER DATABASE " + build + " RENAME TO " + name,
		"ALTER DATABASE " + name + " WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// migrate applies the migrations in fsys to the database at url the way
// the store does (goose, its default version table), so the store's own
// Migrate finds nothing pending in a clone.
func migrate(ctx context.Context, url string, fsys fs.FS) error {
	db, err := sql.Open("postgres", url)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys)
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// dropUnusedTemplates drops the templates of other migrations that nobody
// has looked up for templateUnusedFor (a checkout whose migrations have
// since changed leaves its old template behind), and the leftovers of
// builds that died (nobody else builds while we hold the lock). Failures
// are ignored: a template still in use stays, and the next build tries
// again.
func dropUnusedTemplates(ctx context.Context, conn *sql.Conn, keep string) {
	rows, err := conn.QueryContext(ctx, `SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '')
		FROM pg_database WHERE datname LIKE $1 AND datname <> $2`, templatePrefix+"%", keep)
	if err != nil {
		return
	}
	var stale []string
	for rows.Next() {
		var name, comment string
		if rows.Scan(&name, &comment) != nil {
			continue
		}
		used, err := strconv.ParseInt(comment[strings.LastIndexByte(comment, ' ')+1:], 10, 64)
		if strings.HasSuffix(name, "_build") || err != nil || time.Since(time.Unix(used, 0)) > templateUnusedFor {
			stale = append(stale, name)
		}
	}
	rows.Close()
	for _, name := range stale {
		if _, err := conn.ExecContext(ctx, "ALTER DATABASE "+name+" WITH IS_TEMPLATE false"); err == nil {
			_, _ = conn.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		}
	}
}
