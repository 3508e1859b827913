package testpg

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/tollgate-dev/tollgate/migrations"
)

func TestMigrationsHashFollowsTheFiles(t *testing.T) {
	base := fstest.MapFS{
		"00001_init.sql": {Data: []byte("-- +goose Up\nCREATE TABLE a (id int);\n")},
	}
	changed := fstest.MapFS{
		"00001_init.sql": {Data: []byte("-- +goose Up\nCREATE TABLE a (id bigint);\n")},
	}
	added := fstest.MapFS{
		"00001_init.sql": base["00001_init.sql"],
		"00002_more.sql": {Data: []byte("-- +goose Up\nCREATE TABLE b (id int);\n")},
	}
	renamed := fstest.MapFS{
		"00002_init.sql": base["00001_init.sql"],
	}
	sums := map[string]string{}
	for name, fsys := range map[string]fs.FS{"base": base, "changed": changed, "added": added, "renamed": renamed} {
		sum, err := migrationsHash(fsys)
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := sums[sum]; dup {
			t.Errorf("%s and %s hash alike", name, other)
		}
		sums[sum] = name
	}
	again, _ := migrationsHash(base)
	if sums[again] != "base" {
		t.Errorf("the same files hash differently")
	}
}

// TestNewMigratedDatabase: a clone has every migration applied, in goose's
// version table as the store keeps it, and its own data.
func TestNewMigratedDatabase(t *testing.T) {
	ctx := context.Background()
	fsys, err := migrations.FS("postgres")
	if err != nil {
		t.Fatal(err)
	}
	var dbs [2]*sql.DB
	for i := range dbs {
		db, err := sql.Open("postgres", NewMigratedDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
		p, err := goose.NewProvider(goose.DialectPostgres, db, fsys)
		if err != nil {
			t.Fatal(err)
		}
		if pending, err := p.HasPending(ctx); err != nil || pending {
			t.Fatalf("clone %d: pending %v, err %v", i, pending, err)
		}
	}
	if _, err := dbs[0].ExecContext(ctx, "CREATE TABLE only_here (id int)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := dbs[1].QueryRowContext(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("a table created in one clone is in the other: %d, %v", n, err)
	}
}

// TestEnsureTemplateConcurrently: go test processes of several packages
// start at once (each with its own admin pool); one builds the template,
// the others wait for it, and the migrations run once.
func TestEnsureTemplateConcurrently(t *testing.T) {
	requireServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var b [4]byte
	_, _ = rand.Read(b[:])
	table := "probe_" + hex.EncodeToString(b[:])
	// A unique migration set, so this test builds a template of its own.
	fsys := fstest.MapFS{
		"00001_probe.sql": {Data: []byte("-- +goose Up\nCREATE TABLE " + table + " (id int);\nINSERT INTO " + table + " VALUES (1);\n-- +goose Down\nDROP TABLE " + table + ";\n")},
	}
	const processes = 4
	names := make(chan string, processes)
	errs := make(chan error, processes)
	for i := 0; i < processes; i++ {
		go func() {
			admin, err := sql.Open("postgres", srv.url)
			if err != nil {
				errs <- err
				return
			}
			defer admin.Close()
			name, err := ensureTemplate(ctx, admin, srv.url, fsys)
			names <- name
			errs <- err
		}()
	}
	for i := 0; i < processes; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
	}
	close(names)
	var name string
	for n := range names {
		if name != "" && n != name {
			t.Fatalf("two templates: %s and %s", name, n)
		}
		name = n
	}
	t.Cleanup(func() {
		_, _ = srv.admin.Exec("ALTER DATABASE " + name + " WITH IS_TEMPLATE false")
		_, _ = srv.admin.Exec("DROP DATABASE IF EXISTS " + name)
	})
	var isTemplate, allowConn bool
	if err := srv.admin.QueryRowContext(ctx, "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = $1", name).Scan(&isTemplate, &allowConn); err != nil {
		t.Fatal(err)
	}
	if !isTemplate || allowConn {
		t.Errorf("%s: datistemplate %v, datallowconn %v; want a template nobody can connect to", name, isTemplate, allowConn)
	}
	var builds int
	if err := srv.admin.QueryRowContext(ctx, "SELECT count(*) FROM pg_database WHERE datname LIKE $1", name+"%").Scan(&builds); err != nil || builds != 1 {
		t.Errorf("databases named %s*: %d (%v); want the template alone", name, builds, err)
	}
	clone := NewDatabaseWith(t, "TEMPLATE "+name)
	db, err := sql.Open("postgres", clone)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, versions int
	if err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM %s", table)).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("the migration ran %d times (%v); want once", rows, err)
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM goose_db_version WHERE version_id > 0").Scan(&versions); err != nil || versions != 1 {
		t.Fatalf("goose versions %d (%v); want 1", versions, err)
	}
	if !strings.HasPrefix(name, templatePrefix) {
		t.Errorf("template %q lacks the prefix %q", name, templatePrefix)
	}
}

// TestUnusedTemplatesAreDropped: a template of other migrations unused for
// longer than templateUnusedFor, and a build that died, are dropped when a
// template is built; a template used recently stays.
func TestUnusedTemplatesAreDropped(t *testing.T) {
	requireServer(t)
	ctx := context.Background()
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	old, recent, dead := templatePrefix+"old"+id, templatePrefix+"recent"+id, templatePrefix+"dead"+id+"_build"
	for name, used := range map[string]time.Time{old: time.Now().Add(-templateUnusedFor - time.Hour), recent: time.Now()} {
		for _, q := range []string{
			"CREATE DATABASE " + name,
			fmt.Sprintf("COMMENT ON DATABASE %s IS 'tollgate test template, used %d'", name, used.Unix()),
			"ALTER DATABASE " + name + " WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
		} {
			if _, err := srv.admin.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	if _, err := srv.admin.ExecContext(ctx, "CREATE DATABASE "+dead); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, name := range []string{old, recent, dead} {
			_, _ = srv.admin.Exec("ALTER DATABASE " + name + " WITH IS_TEMPLATE false")
			_, _ = srv.admin.Exec("DROP DATABASE IF EXISTS " + name)
		}
	})
	conn, err := srv.admin.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// As ensureTemplate does: under the lock, or a concurrent build's
	// _build database would count as dead.
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", templateLock); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", templateLock) //nolint:errcheck // ends with the session too
	dropUnusedTemplates(ctx, conn, "keep")
	for name, want := range map[string]bool{old: false, recent: true, dead: false} {
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if (n == 1) != want {
			t.Errorf("%s exists: %v, want %v", name, n == 1, want)
		}
	}
}

// BenchmarkMigratedDatabase compares what a test pays for a migrated
// database: an empty one migrated, or a clone of the template.
func BenchmarkMigratedDatabase(b *testing.B) {
	fsys, err := migrations.FS("postgres")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("migrate", func(b *testing.B) {
		for b.Loop() {
			if err := migrate(context.Background(), NewDatabase(b), fsys); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("template", func(b *testing.B) {
		NewMigratedDatabase(b) // the template is built once per process
		for b.Loop() {
			NewMigratedDatabase(b)
		}
	})
}
