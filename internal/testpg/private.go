package testpg

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
)

// Private is a PostgreSQL server of one test's own (initdb + pg_ctl in a
// temporary directory), for the tests that stop and start the database
// under a running tollgate: the shared server must never be stopped.
type Private struct {
	t      testing.TB
	bin    string
	dir    string
	port   int
	runAs  []string
	URL    string // postgres://…/postgres on the private server
	logDir string
}

// findInitdb returns the directory of initdb and pg_ctl ("" when absent).
func findInitdb() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return filepath.Dir(m[len(m)-1])
}

// NewPrivate starts a private server, stopped when t ends. It skips the
// test where initdb is not installed (scripts/test.sh installs it under
// CI=true, where a missing initdb fails instead).
func NewPrivate(t testing.TB) *Private {
	t.Helper()
	bin := findInitdb()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("initdb not found (CI=true: scripts/test.sh installs PostgreSQL)")
		}
		t.Skip("initdb not found: no private PostgreSQL for this test")
	}
	dir, err := os.MkdirTemp("", "tollgate-private-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Private{t: t, bin: bin, dir: dir, logDir: dir}
	if os.Geteuid() == 0 { // initdb refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root without a postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		p.runAs = []string{"runuser", "-u", "postgres", "--"}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p.run("initdb", "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
	p.Start()
	t.Cleanup(func() {
		p.pgctl("-m", "immediate", "stop")
		os.RemoveAll(dir)
	})
	p.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
	return p
}

func (p *Private) run(tool string, args ...string) {
	p.t.Helper()
	argv := append(append([]string{}, p.runAs...), append([]string{filepath.Join(p.bin, tool)}, args...)...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("%s: %v\n%s", tool, err, out)
	}
}

func (p *Private) pgctl(args ...string) error {
	argv := append(append([]string{}, p.runAs...), filepath.Join(p.bin, "pg_ctl"), "-D", filepath.Join(p.dir, "data"), "-w")
	argv = append(argv, args...)
	return exec.Command(argv[0], argv[1:]...).Run()
}

// Start starts (or restarts) the server and waits until it accepts
// connections.
func (p *Private) Start() {
	p.t.Helper()
	p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-l", filepath.Join(p.logDir, "server.log"), "-w", "-t", "60",
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", p.port, p.dir), "start")
}

// Crash stops the server as a crash would (immediate shutdown: no
// checkpoint, and what its WAL buffers held that no commit had written
// out is gone); Start recovers it from the WAL.
func (p *Private) Crash() {
	p.t.Helper()
	if err := p.pgctl("-m", "immediate", "stop"); err != nil {
		p.t.Fatalf("pg_ctl stop -m immediate: %v", err)
	}
}

// Stop stops the server at once (fast shutdown: sessions are
// disconnected, as when the database host goes away).
func (p *Private) Stop() {
	p.t.Helper()
	if err := p.pgctl("-m", "fast", "stop"); err != nil {
		p.t.Fatalf("pg_ctl stop: %v", err)
	}
}
