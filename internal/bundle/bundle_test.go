package bundle

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/bundle/bundletest"
)

// chain returns n linked audit rows.
func chain(n int) []core.AuditEntry {
	prev := core.GenesisHash
	var out []core.AuditEntry
	for i := 1; i <= n; i++ {
		e := core.AuditEntry{Seq: int64(i), At: time.Date(2026, 12, 1, 10, 0, i, 0, time.UTC), Actor: "token:cm", Action: "report.reconciliation",
			Subject: "report:r1", Data: json.RawMessage(`{"n":1}`), PrevHash: prev}
		e.Hash = core.HashAuditEntry(prev, e)
		prev = e.Hash
		out = append(out, e)
	}
	return out
}

// Sample writes a small valid bundle.
func sample(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	for _, f := range []struct{ name, body string }{{"report.json", `{"report":{}}`}, {"report.csv", "finding_id,code\n1,NO_CHANGE\n"}, {"decisions/d1.json", `{}`}} {
		if err := w.Add(f.name, []byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.AddJSON(AuditName, chain(3)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Manifest{ReportID: "r1"}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestVerify(t *testing.T) {
	good := sample(t)
	res, err := Verify(bytes.NewReader(good))
	if err == nil {
		_, err = Verify(bytes.NewReader(rewriteDotted(t, good, "")))
	}
	if err != nil || res.Files != 4 || res.AuditRows != 3 || res.Manifest.ReportID != "r1" || res.ManifestSH == "" {
		t.Fatalf("intact bundle: %+v %v", res, err)
	}
	flip := func(target string, at int) func(string, []byte) []byte {
		return func(name string, b []byte) []byte {
			if name == target {
				b = bytes.Clone(b)
				b[at] ^= 0x01
			}
			return b
		}
	}
	for _, tc := range []struct {
		name     string
		edit     func(string, []byte) []byte
		wantFile string
	}{
		{"one byte of the CSV", flip("report.csv", 3), "report.csv"},
		{"one byte of a decision", flip("decisions/d1.json", 0), "decisions/d1.json"},
		{"a file removed", func(n string, b []byte) []byte {
			if n == "report.json" {
				return nil
			}
			return b
		}, "report.json"},
		{"the manifest removed", func(n string, b []byte) []byte {
			if n == ManifestName {
				return nil
			}
			return b
		}, ManifestName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(bundletest.RepackFiles(t, good, tc.edit)))
			var mm *Mismatch
			if !errors.As(err, &mm) || mm.File != tc.wantFile {
				t.Fatalf("err = %v, want a mismatch in %s", err, tc.wantFile)
			}
		})
	}
	// Unpacked and re-packed with tar -C dir . ("./" names, a directory
	// entry): still verifiable, and a changed file is named.
	dotted := rewriteDotted(t, good, "report.csv")
	_, err = Verify(bytes.NewReader(dotted))
	var dm *Mismatch
	if !errors.As(err, &dm) || dm.File != "report.csv" {
		t.Fatalf("re-packed tampered bundle: %v", err)
	}
	// A bundle without its audit slice (removed from the archive and the
	// manifest alike) ties its decisions to nothing: refused.
	var bare bytes.Buffer
	wb := NewWriter(&bare, time.Now())
	_ = wb.Add("report.json", []byte(`{"report":{}}`))
	_ = wb.Close(Manifest{ReportID: "r1"})
	var am *Mismatch
	if _, err := Verify(&bare); !errors.As(err, &am) || am.File != AuditName {
		t.Fatalf("a bundle without audit.json: %v, want a mismatch naming it", err)
	}
	// An audit row edited and the manifest updated to match: the row's own
	// hash still catches it.
	var buf bytes.Buffer
	w := NewWriter(&buf, time.Now())
	rows := chain(3)
	rows[1].Actor = "someone-else"
	_ = w.AddJSON(AuditName, rows)
	_ = w.Close(Manifest{ReportID: "r1"})
	_, err = Verify(&buf)
	var mm *Mismatch
	if !errors.As(err, &mm) || mm.File != AuditName || !bytes.Contains([]byte(mm.Reason), []byte("row 2")) {
		t.Fatalf("edited audit row: %v", err)
	}
}

// rewriteDotted re-packs a bundle as tar -C dir . would: a "./" directory
// entry and "./"-prefixed names; target (if any) gets one byte appended.
func rewriteDotted(t *testing.T, in []byte, target string) []byte {
	t.Helper()
	first := true
	return bundletest.Repack(t, in, func(tw *tar.Writer, hdr *tar.Header, b []byte) ([]byte, *tar.Header) {
		if first {
			first = false
			_ = tw.WriteHeader(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755})
		}
		if hdr.Name == target {
			b = append(bytes.Clone(b), 'X')
		}
		hdr.Name = "./" + hdr.Name
		return b, hdr
	})
}

// TestVerifyStreamsLargeFiles: an entry that inflates far beyond its
// compressed size (a gzip bomb, or a genuine large export) is digested as
// it streams, not held in memory.
func TestVerifyStreamsLargeFiles(t *testing.T) {
	const size = 64 << 20
	var buf bytes.Buffer
	w := NewWriter(&buf, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	if err := w.Add("report.csv", make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddJSON(AuditName, chain(2)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Manifest{ReportID: "r1"}); err != nil {
		t.Fatal(err)
	}
	packed := buf.Bytes()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := Verify(bytes.NewReader(packed))
	runtime.ReadMemStats(&after)
	if err != nil || res.Files != 2 || res.AuditRows != 2 {
		t.Fatalf("verify: %+v %v", res, err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > size/4 {
		t.Errorf("verifying a %d MiB entry allocated %d MiB: it was held in memory", size>>20, got>>20)
	}
}
