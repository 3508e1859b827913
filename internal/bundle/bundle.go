// Package bundle writes and verifies auditor evidence bundles: one tar.gz
// holding a reconciliation report (JSON, CSV, HTML), the gate decisions,
// change and incident versions it relied on, a slice of the audit trail
// with its hashes, MANIFEST.json with the SHA-256 of every other file, and
// (when the server has a signing key) MANIFEST.sig, an Ed25519 signature of
// the manifest. Verify checks a bundle offline — every file against the
// manifest, every audit row against its hash and its neighbour, and, given
// public keys, the manifest against its signature — and names the first
// mismatch. The hashes alone carry no secret: only the signature shows who
// made a bundle.
package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// Format names the bundle layout in its manifest.
const Format = "tollgate-evidence-bundle/1"

// ManifestName is the manifest's file name; it is the bundle's last file.
const ManifestName = "MANIFEST.json"

// AuditName is the audit-trail slice: a JSON array of core.AuditEntry in
// sequence order.
const AuditName = "audit.json"

// File is one manifest entry.
type File struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Manifest lists the bundle's files with their digests.
type Manifest struct {
	Format    string    `json:"format"`
	ReportID  string    `json:"report_id"`
	CreatedAt time.Time `json:"created_at"`
	// AuditHead is the audit chain's head when the bundle was made: with
	// `tollgate audit verify --expect-head SEQ:HASH` the live chain can be
	// shown to still contain it.
	AuditHead *core.AuditHead `json:"audit_head,omitempty"`
	Files     []File          `json:"files"`
}

// Writer writes a bundle. Add files, then Close.
type Writer struct {
	gz     *gzip.Writer
	tw     *tar.Writer
	at     time.Time
	files  []File
	signer *SigningKey
}

// NewWriter starts a bundle on w; at stamps its entries.
func NewWriter(w io.Writer, at time.Time) *Writer {
	gz := gzip.NewWriter(w)
	return &Writer{gz: gz, tw: tar.NewWriter(gz), at: at.UTC()}
}

// Sign makes Close sign the manifest with k (nil: the bundle stays
// unsigned).
func (b *Writer) Sign(k *SigningKey) { b.signer = k }

// validName accepts relative slash paths without "..".
func validName(name string) bool {
	return name != "" && name != ManifestName && name != SignatureName && !strings.HasPrefix(name, "/") && path.Clean(name) == name && !strings.HasPrefix(name, "..")
}

// Add writes one file and records its digest.
func (b *Writer) Add(name string, content []byte) error {
	if !validName(name) {
		return fmt.Errorf("bundle: invalid file name %q", name)
	}
	if slices.ContainsFunc(b.files, func(f File) bool { return f.Name == name }) {
		return fmt.Errorf("bundle: %s added twice", name)
	}
	if err := b.write(name, content); err != nil {
		return err
	}
	sum := sha256.Sum256(content)
	b.files = append(b.files, File{Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(content))})
	return nil
}

// AddJSON writes v as indented JSON.
func (b *Writer) AddJSON(name string, v any) error {
	j, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("bundle: encode %s: %w", name, err)
	}
	return b.Add(name, append(j, '\n'))
}

func (b *Writer) write(name string, content []byte) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: b.at, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := b.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("bundle: write %s: %w", name, err)
	}
	if _, err := b.tw.Write(content); err != nil {
		return fmt.Errorf("bundle: write %s: %w", name, err)
	}
	return nil
}

// Close writes the manifest (m's Files and Format are filled), its
// signature when Sign was given a key, and ends the archive.
func (b *Writer) Close(m Manifest) error {
	m.Format, m.Files = Format, b.files
	if m.CreatedAt.IsZero() {
		m.CreatedAt = b.at
	}
	j, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("bundle: encode manifest: %w", err)
	}
	j = append(j, '\n')
	if err := b.write(ManifestName, j); err != nil {
		return err
	}
	if b.signer != nil {
		sig, err := b.signer.sign(j)
		if err != nil {
			return err
		}
		if err := b.write(SignatureName, sig); err != nil {
			return err
		}
	}
	if err := b.tw.Close(); err != nil {
		return fmt.Errorf("bundle: close tar: %w", err)
	}
	return b.gz.Close()
}

// Mismatch is the first thing Verify found wrong: the file (and, in the
// audit slice, the row) and why.
type Mismatch struct {
	File   string
	Reason string
}

func (m *Mismatch) Error() string { return m.File + ": " + m.Reason }

// Result is what Verify checked.
type Result struct {
	Manifest   Manifest
	Files      int
	AuditRows  int
	ManifestSH string // SHA-256 of MANIFEST.json, to compare with a copy kept elsewhere
	// Origin is whether the signature was checked against a key given;
	// KeyFingerprint the key the signature names ("" when unsigned).
	Origin         Origin
	KeyFingerprint string
}

// maxFileSize bounds one file read from a bundle; maxManifestSize its
// manifest (a list of names and digests).
const (
	maxFileSize     = 1 << 30
	maxManifestSize = 64 << 20
)

// Verify reads a bundle and checks it: the manifest is present and well
// formed; given keys, MANIFEST.sig is present, names one of them and holds
// its valid signature of the manifest; every file is listed with the
// SHA-256 and size of its content, no listed file is missing and no
// unlisted one present; and every row of the audit slice matches its hash
// (over its previous hash and content) and, where rows are consecutive,
// links to the row before. Without keys the signature is not checked and
// an unsigned bundle passes: Result.Origin says which. The first problem
// is returned as a *Mismatch naming the file; a bundle that cannot be read
// at all is another error.
func Verify(r io.Reader, keys ...PublicKey) (Result, error) {
	a, err := readArchive(r)
	if err != nil {
		return Result{}, err
	}
	if a.manifest == nil {
		return Result{}, &Mismatch{File: ManifestName, Reason: "missing"}
	}
	var m Manifest
	if err := json.Unmarshal(a.manifest, &m); err != nil {
		return Result{}, &Mismatch{File: ManifestName, Reason: "not valid JSON: " + err.Error()}
	}
	if m.Format != Format {
		return Result{}, &Mismatch{File: ManifestName, Reason: fmt.Sprintf("format %q, want %q", m.Format, Format)}
	}
	// The signature first: a manifest rewritten to match edited files is
	// what it catches, and what the hashes below cannot.
	origin, fp, err := checkSignature(a.manifest, a.signature, keys)
	if err != nil {
		return Result{}, err
	}
	if err := checkFiles(m, a); err != nil {
		return Result{}, err
	}
	res := Result{Manifest: m, Files: len(a.order), Origin: origin, KeyFingerprint: fp}
	sum := sha256.Sum256(a.manifest)
	res.ManifestSH = hex.EncodeToString(sum[:])
	// The audit slice is what ties the bundle's decisions to the chain: a
	// bundle without it (removed from the archive and the manifest alike)
	// proves nothing.
	if a.audit == nil {
		return Result{}, &Mismatch{File: AuditName, Reason: "missing: a bundle carries the audit rows of its decisions"}
	}
	n, err := verifyAudit(a.audit)
	if err != nil {
		return Result{}, err
	}
	res.AuditRows = n
	return res, nil
}

// archive is what readArchive found in a bundle.
type archive struct {
	digests   map[string]File // by name: the digest of each file's content
	order     []string        // file names in archive order
	manifest  []byte
	signature []byte // nil when the bundle has none
	audit     []byte
}

// readArchive reads every file of a bundle, digesting each.
func readArchive(r io.Reader) (archive, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return archive{}, fmt.Errorf("not a gzip file: %w", err)
	}
	tr := tar.NewReader(gz)
	a := archive{digests: map[string]File{}}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return a, nil
		}
		if err != nil {
			return archive{}, fmt.Errorf("read tar: %w", err)
		}
		if hdr.Typeflag == tar.TypeDir {
			continue // a directory entry (an archive re-made with tar -C dir .)
		}
		// An archive re-made from an unpacked bundle names "./report.csv".
		hdr.Name = strings.TrimPrefix(hdr.Name, "./")
		switch {
		case hdr.Typeflag != tar.TypeReg:
			return archive{}, &Mismatch{File: hdr.Name, Reason: "not a regular file"}
		case hdr.Size > maxFileSize:
			return archive{}, &Mismatch{File: hdr.Name, Reason: "larger than a bundle file may be"}
		}
		if hdr.Name == ManifestName || hdr.Name == SignatureName {
			if err := a.readSpecial(hdr, tr); err != nil {
				return archive{}, err
			}
			continue
		}
		if _, dup := a.digests[hdr.Name]; dup {
			return archive{}, &Mismatch{File: hdr.Name, Reason: "appears twice in the bundle"}
		}
		// Digested as it streams: only the audit slice, which is read
		// row by row afterwards, is held in memory, so a crafted archive
		// (a gzip bomb) cannot make the verifier hold its other entries.
		h := sha256.New()
		var src io.Reader = io.LimitReader(tr, maxFileSize)
		var audit bytes.Buffer
		if hdr.Name == AuditName {
			src = io.TeeReader(src, &audit)
		}
		n, err := io.Copy(h, src)
		if err != nil {
			return archive{}, fmt.Errorf("read %s: %w", hdr.Name, err)
		}
		a.digests[hdr.Name] = File{Name: hdr.Name, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}
		a.order = append(a.order, hdr.Name)
		if hdr.Name == AuditName {
			a.audit = audit.Bytes()
		}
	}
}

// readSpecial reads the manifest or its signature, each held whole and
// bounded. One appearing twice is refused: tar tools keep the last copy,
// this verifier would otherwise check another.
func (a *archive) readSpecial(hdr *tar.Header, r io.Reader) error {
	dst, limit, what := &a.manifest, int64(maxManifestSize), "a manifest"
	if hdr.Name == SignatureName {
		dst, limit, what = &a.signature, maxSignatureSize, "a signature"
	}
	switch {
	case *dst != nil:
		return &Mismatch{File: hdr.Name, Reason: "appears twice in the bundle"}
	case hdr.Size > limit:
		return &Mismatch{File: hdr.Name, Reason: "larger than " + what + " may be"}
	}
	b, err := io.ReadAll(io.LimitReader(r, limit))
	if err != nil {
		return fmt.Errorf("read %s: %w", hdr.Name, err)
	}
	if b == nil {
		b = []byte{}
	}
	*dst = b
	return nil
}

// checkFiles compares the files with the manifest: in archive order, then
// anything listed but absent.
func checkFiles(m Manifest, a archive) error {
	listed := map[string]File{}
	for _, f := range m.Files {
		listed[f.Name] = f
	}
	for _, name := range a.order {
		want, ok := listed[name]
		got := a.digests[name]
		switch {
		case !ok:
			return &Mismatch{File: name, Reason: "not listed in the manifest"}
		case want.SHA256 != got.SHA256:
			return &Mismatch{File: name, Reason: fmt.Sprintf("SHA-256 %s does not match the manifest's %s (the file was changed)", got.SHA256, want.SHA256)}
		case want.Size != got.Size:
			return &Mismatch{File: name, Reason: fmt.Sprintf("size %d does not match the manifest's %d", got.Size, want.Size)}
		}
	}
	for _, f := range m.Files {
		if _, ok := a.digests[f.Name]; !ok {
			return &Mismatch{File: f.Name, Reason: "listed in the manifest but missing"}
		}
	}
	return nil
}

// verifyAudit checks each row's hash and the links between consecutive
// rows of the slice.
func verifyAudit(raw []byte) (int, error) {
	var rows []core.AuditEntry
	if err := json.Unmarshal(raw, &rows); err != nil {
		return 0, &Mismatch{File: AuditName, Reason: "not a JSON array of audit rows: " + err.Error()}
	}
	for i, e := range rows {
		if got := core.HashAuditEntry(e.PrevHash, e); got != e.Hash {
			return 0, &Mismatch{File: AuditName, Reason: fmt.Sprintf("row %d: hash does not match the row's content (the row was edited)", e.Seq)}
		}
		if i > 0 {
			prev := rows[i-1]
			if e.Seq <= prev.Seq {
				return 0, &Mismatch{File: AuditName, Reason: fmt.Sprintf("row %d: out of sequence order after row %d", e.Seq, prev.Seq)}
			}
			if e.Seq == prev.Seq+1 && e.PrevHash != prev.Hash {
				return 0, &Mismatch{File: AuditName, Reason: fmt.Sprintf("row %d: prev_hash does not match row %d's hash", e.Seq, prev.Seq)}
			}
		}
	}
	return len(rows), nil
}

// ReadFile returns one file of a bundle (for tests and tools).
func ReadFile(r io.Reader, name string) ([]byte, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("%s not in bundle: %w", name, err)
		}
		if hdr.Name == name {
			var b bytes.Buffer
			_, err := io.Copy(&b, io.LimitReader(tr, maxFileSize))
			return b.Bytes(), err
		}
	}
}
