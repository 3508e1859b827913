//go:build linux

package app_test

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// TestDiskFullPostgres fills the data disk under a private PostgreSQL:
// tollgate's tables and indexes are created in a tablespace on a tmpfs of
// its own (the database's default_tablespace), which is then shrunk to
// what they use plus a little room, so that extending a relation fails
// with ENOSPC — SQLSTATE 53100, as on a full disk. The WAL and the
// catalogs stay on the main disk (a full WAL disk stops the server, which
// is TestDatabaseOutage's case). The checks are SQLite's (fullDisk): 503
// with Retry-After and nothing acknowledged unstored while full, full
// service once there is room, without a restart.
func TestDiskFullPostgres(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs for the tablespace needs root")
	}
	// The server's user must reach the tablespace: a directory of its own,
	// not t.TempDir (0700, root's).
	parent, err := os.MkdirTemp("", "tollgate-tablespace-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	ts := filepath.Join(parent, "ts")
	if err := os.Mkdir(ts, 0o700); err != nil {
		t.Fatal(err)
	}
	opts := "size=64m,mode=0700"
	if u, err := user.Lookup("postgres"); err == nil { // the private server runs as postgres under root
		opts += ",uid=" + u.Uid + ",gid=" + u.Gid
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", ts).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs for the tablespace: %v %s", err, out)
	}
	// Registered before the server's own cleanup, so it runs after the
	// server has stopped and closed its files.
	t.Cleanup(func() { _ = exec.Command("umount", "-l", ts).Run() })
	remount := func(size int64) {
		t.Helper()
		if out, err := exec.Command("mount", "-o", "remount,size="+strconv.FormatInt(size, 10), ts).CombinedOutput(); err != nil {
			t.Fatalf("remount the tablespace's tmpfs at %d bytes: %v %s", size, err, out)
		}
	}

	pg := testpg.NewPrivate(t)
	admin, err := sql.Open("postgres", pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, q := range []string{
		fmt.Sprintf("CREATE TABLESPACE tollgate_full LOCATION '%s'", ts),
		"ALTER DATABASE postgres SET default_tablespace = 'tollgate_full'",
	} {
		if _, err := admin.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The inbox's default lease (2 min): an event whose claim the full
	// disk kept the normalizer from giving back is handed back when the
	// database takes writes again, not when the lease ends.
	s := bootURL(t, pg.URL, e2eConfig) // migrates: every table and index in the tablespace
	var n int
	if err := admin.QueryRow(`SELECT count(*) FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace
		WHERE t.spcname = 'tollgate_full' AND c.relname = 'inbox_events'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("inbox_events is not in the tablespace (%d, %v)", n, err)
	}
	fullDisk(t, s, diskFiller{
		fill: func() {
			var st unix.Statfs_t
			if err := unix.Statfs(ts, &st); err != nil {
				t.Fatal(err)
			}
			used := int64(st.Blocks-st.Bfree) * st.Bsize
			remount(used + 256<<10)
		},
		free: func() { remount(64 << 20) },
		count: func(q string, arg any) (int, error) {
			var n int
			err := admin.QueryRow(q, arg).Scan(&n)
			return n, err
		},
		eventsWith: "SELECT count(*) FROM inbox_events WHERE position($1 in convert_from(body, 'UTF8')) > 0",
		decision:   "SELECT count(*) FROM gate_decisions WHERE id = $1",
	})
}
