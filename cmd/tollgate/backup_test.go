package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// TestBackup: `tollgate backup` copies an embedded store that is in use
// into a new file readable by its owner only and prints the copy's audit
// head; the copy, restored in the store's place, verifies against that
// head, and the original, grown since, still does too. An existing file is
// not overwritten; a PostgreSQL store is refused with the tools to use.
func TestBackup(t *testing.T) {
	dir := t.TempDir()
	live := map[string]string{"TOLLGATE_DATABASE_URL": "sqlite:" + filepath.Join(dir, "live.db")}
	if code, _, errs := runCLI(t, live, "token", "create", "--role", "auditor", "--name", "before"); code != 0 {
		t.Fatalf("token create: %d %s", code, errs)
	}
	backup := filepath.Join(dir, "backup.db")
	code, out, errs := runCLI(t, live, "backup", "--to", backup)
	if code != 0 {
		t.Fatalf("backup: exit %d: %s", code, errs)
	}
	m := regexp.MustCompile(`--expect-head ([0-9]+:[0-9a-f]{64})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no audit head printed:\n%s", out)
	}
	st, err := os.Stat(backup)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, mode %v, want 0600", err, st.Mode().Perm())
	}
	if _, err := os.Stat(backup + ".lock"); err == nil {
		t.Error("the copy's lock file is left beside it")
	}
	if code, _, errs := runCLI(t, live, "token", "create", "--role", "auditor", "--name", "after"); code != 0 {
		t.Fatalf("token create: %d %s", code, errs)
	}

	restored := map[string]string{"TOLLGATE_DATABASE_URL": "sqlite:" + backup}
	for name, env := range map[string]map[string]string{"the restored copy": restored, "the store, grown since": live} {
		if code, out, errs := runCLI(t, env, "audit", "verify", "--expect-head", m[1]); code != 0 || !strings.Contains(out, "intact") {
			t.Errorf("%s: verify --expect-head %s: exit %d: %s%s", name, m[1], code, out, errs)
		}
	}
	if code, out, _ := runCLI(t, restored, "token", "list"); code != 0 || !strings.Contains(out, "before") || strings.Contains(out, "after") {
		t.Errorf("the copy holds what was there at the backup, not after: exit %d\n%s", code, out)
	}

	if code, _, errs := runCLI(t, live, "backup", "--to", backup); code == 0 || !strings.Contains(errs, "exists") {
		t.Errorf("a backup over an existing file: exit %d: %s", code, errs)
	}
	pg := map[string]string{"TOLLGATE_DATABASE_URL": testpg.NewDatabase(t)}
	if code, _, errs := runCLI(t, pg, "backup", "--to", filepath.Join(dir, "pg.db")); code == 0 || !strings.Contains(errs, "pg_dump") {
		t.Errorf("PostgreSQL: exit %d: %s", code, errs)
	}
}
