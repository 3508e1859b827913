package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/bundle"
	"github.com/tollgate-dev/tollgate/internal/bundle/bundletest"
)

// TestAuditVerifyBundle: `audit verify --bundle` passes an intact bundle
// offline (no database configured) and, after one byte of one file
// changes, fails naming that file.
func TestAuditVerifyBundle(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	w := bundle.NewWriter(&buf, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	for name, body := range map[string]string{"report.json": `{"report":{"id":"r1"},"findings":[]}`, "report.csv": "finding_id,code\n", bundle.AuditName: "[]"} {
		if err := w.Add(name, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(bundle.Manifest{ReportID: "r1"}); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.tar.gz")
	if err := os.WriteFile(good, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, nil, "audit", "verify", "--bundle", good)
	if code != 0 || !strings.Contains(out, "bundle intact: report r1, 3 files") {
		t.Fatalf("intact: %d %q %q", code, out, stderr)
	}

	// The same bundle with one byte of "report.csv" changed (re-packed, so
	// the archive itself stays sound).
	tampered := bundletest.RepackFiles(t, buf.Bytes(), func(name string, b []byte) []byte {
		if name == "report.csv" {
			b[3] ^= 0x20
		}
		return b
	})
	path := filepath.Join(dir, "tampered.tar.gz")
	if err := os.WriteFile(path, tampered, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, nil, "audit", "verify", "--bundle", path)
	if code != 1 || !strings.Contains(stderr, "report.csv") || !strings.Contains(stderr, "BROKEN") {
		t.Fatalf("tampered: %d %q", code, stderr)
	}
	if code, _, _ := runCLI(t, nil, "audit", "verify", "--bundle", filepath.Join(dir, "missing.tar.gz")); code == 0 {
		t.Error("a missing file verified")
	}
}
