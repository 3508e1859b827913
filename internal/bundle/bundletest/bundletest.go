// Package bundletest re-packs evidence bundles (tar.gz) for the tests that
// tamper with them, so each test states only what it changes.
package bundletest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"
)

// Repack re-packs the tar.gz in with edit applied to each entry in order:
// edit gets the archive being written (to add entries of its own), the
// entry's header and content, and returns the content and header to write,
// or nil content to drop the entry.
func Repack(t testing.TB, in []byte, edit func(tw *tar.Writer, hdr *tar.Header, b []byte) ([]byte, *tar.Header)) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out bytes.Buffer
	gw := gzip.NewWriter(&out)
	tw := tar.NewWriter(gw)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if b, hdr = edit(tw, hdr, b); b == nil {
			continue
		}
		hdr.Size = int64(len(b))
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// RepackFiles re-packs in with edit(name, content) applied to each file:
// its result is the new content, nil drops the file.
func RepackFiles(t testing.TB, in []byte, edit func(name string, b []byte) []byte) []byte {
	t.Helper()
	return Repack(t, in, func(_ *tar.Writer, hdr *tar.Header, b []byte) ([]byte, *tar.Header) {
		return edit(hdr.Name, b), hdr
	})
}

// Flip re-packs in with one byte in the middle of the file named target
// changed (the archive itself stays sound).
func Flip(t testing.TB, in []byte, target string) []byte {
	t.Helper()
	return RepackFiles(t, in, func(name string, b []byte) []byte {
		if name == target && len(b) > 0 {
			b[len(b)/2] ^= 0x20
		}
		return b
	})
}
