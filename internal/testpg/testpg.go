// Package testpg gives each test its own PostgreSQL database: empty
// (NewDatabase), or with the migrations applied (NewMigratedDatabase, a
// clone of a template database migrated once per set of migrations).
//
// It finds a server through TOLLGATE_TEST_DATABASE_URL (a URL with rights to
// CREATE DATABASE; scripts/test.sh sets it, starting a throwaway server when
// none is reachable), else tries postgres://postgres@127.0.0.1:5432. With no
// server: under CI=true the test fails — PostgreSQL tests never silently
// skip in CI — otherwise it is skipped with a hint to run `make test`.
package testpg

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	_ "github.com/lib/pq" // the PostgreSQL driver
)

// EnvURL names the variable holding the admin URL of the test server.
const EnvURL = "TOLLGATE_TEST_DATABASE_URL"

const fallbackURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

type server struct {
	admin *sql.DB
	url   string
	err   error
}

var (
	once sync.Once
	srv  server
)

func connect() server {
	u := os.Getenv(EnvURL)
	if u == "" {
		u = fallbackURL
	}
	db, err := sql.Open("postgres", u)
	if err != nil {
		return server{err: fmt.Errorf("open %s: %w", redact(u), err)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return server{err: fmt.Errorf("no PostgreSQL at %s: %w", redact(u), err)}
	}
	return server{admin: db, url: u}
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}

// Available reports whether a test server answers, and why not.
func Available() error {
	once.Do(func() { srv = connect() })
	return srv.err
}

// NewDatabase creates an empty database for t, drops it when t ends, and
// returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return NewDatabaseWith(t, "")
}

// NewDatabaseWith is NewDatabase with CREATE DATABASE options, e.g.
// "ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'".
func NewDatabaseWith(t testing.TB, options string) string {
	t.Helper()
	requireServer(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "tollgate_test_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	if _, err := srv.admin.ExecContext(ctx, strings.TrimSpace("CREATE DATABASE "+name+" "+options)); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := srv.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := databaseURL(srv.url, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// requireServer skips t, or fails it under CI=true, when no server answers.
func requireServer(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required under CI=true: %v (set %s)", err, EnvURL)
		}
		t.Skipf("PostgreSQL not available: %v; run `make test`, which starts one", err)
	}
}

// databaseURL is the admin URL with its database replaced by name.
func databaseURL(adminURL, name string) (string, error) {
	p, err := url.Parse(adminURL)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", EnvURL, err)
	}
	p.Path = "/" + name
	q := p.Query()
	if q.Get("sslmode") == "" {
		q.Set("sslmode", "disable")
	}
	p.RawQuery = q.Encode()
	return p.String(), nil
}

// VerifyNoLeaks runs a package's tests, closes the shared admin pool (which
// lives for the whole binary on purpose), and then fails the run if any
// goroutine is left: the TestMain of a package that both uses this server
// and checks for leaks (goleak.VerifyTestMain would count the pool).
func VerifyNoLeaks(m *testing.M) {
	code := m.Run()
	if srv.admin != nil {
		srv.admin.Close()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
