//go:build unix

package main

import (
	"bytes"
	"context"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// quickStart returns the first ```sh block of README.md's "## Quick start"
// section: the test runs what the README says, so the two cannot drift.
func quickStart(t *testing.T, readme string) string {
	t.Helper()
	_, sec, ok := strings.Cut(readme, "\n## Quick start\n")
	if !ok {
		t.Fatal("README.md has no ## Quick start section")
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	_, block, ok := strings.Cut(sec, "```sh\n")
	if !ok {
		t.Fatal("the Quick start has no ```sh block")
	}
	block, _, ok = strings.Cut(block, "```")
	if !ok {
		t.Fatal("the Quick start's ```sh block is not closed")
	}
	return block
}

// copyRepo copies the repository at root into dst, as a fresh clone would
// have it: no build output, no data, no git metadata.
func copyRepo(t *testing.T, root, dst string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch rel {
			case ".git", "bin", "data":
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy repository: %v", err)
	}
}

// TestQuickStartRunsAsWritten runs the README's Quick start, command by
// command in order (bash, set -e), in a fresh copy of the repository: it
// builds the binary, starts the server, waits for readiness, creates a CI
// token and asks the gate, which must answer deny CHANGE_NOT_FOUND with
// exit code 1. Only the port differs (8080 may be taken here).
func TestQuickStartRunsAsWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	for _, tool := range []string{"bash", "curl", "openssl", "go", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the Quick start needs %s: %v", tool, err)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block := quickStart(t, string(readme))
	for _, want := range []string{"make build", "bin/tollgate serve &", "/readyz", "token create", "bin/tollgate check"} {
		if !strings.Contains(block, want) {
			t.Fatalf("the Quick start lost %q:\n%s", want, block)
		}
	}

	dir := t.TempDir()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	copyRepo(t, root, dir)
	// The port is picked free and released before the server binds it, so
	// another process may take it in between: a run whose server could not
	// bind is tried again on a new port.
	var stdout, stderr bytes.Buffer
	var cmd *exec.Cmd
	for attempt := 1; ; attempt++ {
		stdout.Reset()
		stderr.Reset()
		cmd, err = runQuickStart(t, dir, block, &stdout, &stderr)
		if attempt == 3 || !strings.Contains(stderr.String(), "address already in use") {
			break
		}
		t.Logf("attempt %d: the port was taken, trying another", attempt)
	}
	code := cmd.ProcessState.ExitCode()
	out := stdout.String()
	if code != exitDeny || !strings.Contains(out, `"status":"ready"`) || !strings.Contains(out, "decision: DENY") || !strings.Contains(out, "CHANGE_NOT_FOUND") {
		t.Fatalf("exit %d (%v), want %d with deny CHANGE_NOT_FOUND\nstdout:\n%s\nstderr:\n%s", code, err, exitDeny, out, stderr.String())
	}
	if st, err := os.Stat(filepath.Join(dir, "data", "tollgate.db")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("database file: %v %v", st, err)
	}
}

// runQuickStart runs the Quick start block once in dir on a free port.
func runQuickStart(t *testing.T, dir, block string, stdout, stderr *bytes.Buffer) (*exec.Cmd, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	script := "set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + strings.ReplaceAll(block, "8080", port)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOLLGATE_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "TOLLGATE_ADDR=127.0.0.1:"+port)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Run()
	// Whatever happened, nothing the script started outlives the run.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if ctx.Err() != nil {
		t.Fatalf("the Quick start did not finish in time\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	return cmd, err
}
