package store

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestSQLiteFilesArePrivate: a new database file, its -wal and -shm files
// and the migration lock file are created 0600 whatever the umask allows.
func TestSQLiteFilesArePrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "tollgate.db")
	db := openTestDB(t, "sqlite:"+path, nil)
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.db.Exec("INSERT INTO api_tokens (id, name, role, hash, created_at) VALUES ('t1', 'n', 'ci', 'h', ?)", time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm", path + ".lock"} {
		st, err := os.Stat(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if m := st.Mode().Perm(); m != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(f), m)
		}
	}
}

// TestSQLiteSynchronous: synchronous=NORMAL by default, FULL on request
// (sqlite:PATH?synchronous=full); unknown parameters are refused.
func TestSQLiteSynchronous(t *testing.T) {
	dir := t.TempDir()
	for url, want := range map[string]int{
		"sqlite:" + filepath.Join(dir, "a.db"):                       1,
		"sqlite:" + filepath.Join(dir, "b.db") + "?synchronous=full": 2,
		"sqlite:" + filepath.Join(dir, "c.db") + "?synchronous=FULL": 2,
	} {
		db := openTestDB(t, url, nil)
		var got int
		if err := db.db.Get(&got, "PRAGMA synchronous"); err != nil || got != want {
			t.Errorf("%s: synchronous %d (%v), want %d", url, got, err, want)
		}
	}
	for _, bad := range []string{"?synchronous=off", "?cache=shared"} {
		if _, err := Open(context.Background(), "sqlite:"+filepath.Join(dir, "d.db")+bad, Options{Logger: quietLog()}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// migrateHelperEnv makes the test binary a migrating process (below).
const migrateHelperEnv = "TOLLGATE_TEST_MIGRATE_HELPER"

// TestMain lets TestConcurrentSQLiteMigrate start this binary as separate
// processes that each open and migrate one file.
func TestMain(m *testing.M) {
	if path := os.Getenv(migrateHelperEnv); path != "" {
		db, err := Open(context.Background(), "sqlite:"+path, Options{Logger: quietLog()})
		if err == nil {
			_, err = db.Migrate(context.Background())
			db.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestConcurrentSQLiteMigrate: processes (and stores within one process)
// migrating one fresh SQLite file at once all succeed, one after the
// other, instead of racing to create the same tables.
func TestConcurrentSQLiteMigrate(t *testing.T) {
	for round := 0; round < 3; round++ {
		path := filepath.Join(t.TempDir(), "tollgate.db")
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := 0; i < 4; i++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), migrateHelperEnv+"="+path)
				if out, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Errorf("process: %v: %s", err, out)
				}
			}()
			go func() {
				defer wg.Done()
				db, err := Open(context.Background(), "sqlite:"+path, Options{Logger: quietLog()})
				if err == nil {
					_, err = db.Migrate(context.Background())
					db.Close()
				}
				if err != nil {
					errs <- fmt.Errorf("in process: %w", err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		db := openTestDB(t, "sqlite:"+path, nil)
		if st, err := db.Schema(context.Background()); err != nil || st.Pending != 0 {
			t.Errorf("round %d: %d pending (%v)", round, st.Pending, err)
		}
		if t.Failed() {
			return
		}
	}
}
