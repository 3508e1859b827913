package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/bundle"
)

// TestAuditVerifySignedBundle: with --public-key a bundle must be signed
// by one of the keys given; without it, hashes are checked and the output
// says the origin was not.
func TestAuditVerifySignedBundle(t *testing.T) {
	dir := t.TempDir()
	key := func(name string) (*bundle.SigningKey, string, string) {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		k, err := bundle.NewSigningKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(priv)
		privPath, pubPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub")
		if err := os.WriteFile(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pubPath, k.Public.PEM(), 0o600); err != nil {
			t.Fatal(err)
		}
		return k, privPath, pubPath
	}
	server, serverPriv, serverPub := key("server")
	_, _, otherPub := key("other")
	write := func(name string, k *bundle.SigningKey) string {
		var buf bytes.Buffer
		w := bundle.NewWriter(&buf, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
		w.Sign(k)
		for n, body := range map[string]string{"report.json": `{"report":{"id":"r1"},"findings":[]}`, bundle.AuditName: "[]"} {
			if err := w.Add(n, []byte(body)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(bundle.Manifest{ReportID: "r1"}); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".tar.gz")
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	signed, unsigned := write("signed", server), write("unsigned", nil)
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string // in stdout (exit 0) or stderr
	}{
		{"signed, its key", []string{"--bundle", signed, "--public-key", serverPub}, 0, "bundle signed by key " + server.Public.Fingerprint},
		{"signed, keys of a rotation", []string{"--bundle", signed, "--public-key", otherPub, "--public-key", serverPub}, 0, "one of the public keys given"},
		{"signed, no key", []string{"--bundle", signed}, 0, "warning: the bundle's origin was NOT checked: it names key " + server.Public.Fingerprint},
		{"signed, another key", []string{"--bundle", signed, "--public-key", otherPub}, 1, "bundle NOT AUTHENTIC: MANIFEST.sig: signed by key " + server.Public.Fingerprint},
		{"unsigned, a key", []string{"--bundle", unsigned, "--public-key", serverPub}, 1, "bundle NOT AUTHENTIC: MANIFEST.sig: missing"},
		{"unsigned, no key", []string{"--bundle", unsigned}, 0, "warning: the bundle's origin was NOT checked: it is unsigned"},
		{"a private key given", []string{"--bundle", signed, "--public-key", serverPriv}, 2, "a private key: give the public key"},
		{"a key without a bundle", []string{"--public-key", serverPub}, 2, "give --bundle FILE too"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCLI(t, nil, append([]string{"audit", "verify"}, tc.args...)...)
			got := stderr
			if tc.code == 0 {
				got = out
			}
			if code != tc.code || !strings.Contains(got, tc.out) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant …%s…", code, tc.code, out, stderr, tc.out)
			}
		})
	}
}

// TestAuditVerifyAnchors: `audit verify --anchors FILE` holds the chain to
// every anchor of the file, as serve writes it or cron appended it.
func TestAuditVerifyAnchors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tollgate.db")
	env := map[string]string{"TOLLGATE_DATABASE_URL": "sqlite:" + path}
	anchors := filepath.Join(dir, "heads.jsonl")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	anchorHead := func() {
		t.Helper()
		var seq int64
		var hash string
		if err := db.QueryRow(`SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(anchors, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fmt.Fprintf(f, `{"seq":%d,"hash":"%s","at":"2026-12-02T16:05:31Z"}`+"\n", seq, hash)
	}
	for i, role := range []string{"ci", "auditor", "admin", "auditor"} {
		if code, _, stderr := runCLI(t, env, "token", "create", "--role", role, "--name", fmt.Sprintf("cli-%d", i)); code != 0 {
			t.Fatalf("token create: %d %q", code, stderr)
		}
		if i%2 == 1 {
			anchorHead() // rows 2 and 4
		}
	}
	if code, out, stderr := runCLI(t, env, "audit", "verify", "--anchors", anchors); code != 0 || !strings.Contains(out, "4 rows verified, reaching every one of the 2 rows anchored") {
		t.Fatalf("intact: %d %q %q", code, out, stderr)
	}
	if code, _, stderr := runCLI(t, env, "audit", "verify", "--anchors", anchors, "--expect-head", "1:"+strings.Repeat("a", 64)); code != 2 || !strings.Contains(stderr, "not both") {
		t.Fatalf("both: %d %q", code, stderr)
	}
	if _, err := db.Exec(`DELETE FROM audit_log WHERE seq >= 3`); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, env, "audit", "verify"); code != 0 {
		t.Fatalf("a cut chain alone verifies: %d %q", code, stderr)
	}
	if err := os.WriteFile(anchors+".empty", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(anchors)
	if err := os.WriteFile(anchors, append(raw, `{"seq":5,"ha`...), 0o600); err != nil { // a write torn by a crash
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, env, "audit", "verify", "--anchors", anchors)
	if code != 1 || !strings.Contains(stderr, "BROKEN at row 3: the chain ends at row 2, before the anchored row 4: 2 rows were deleted") || !strings.Contains(out, "1 lines of") {
		t.Fatalf("cut chain: %d %q %q", code, out, stderr)
	}
	if code, _, stderr := runCLI(t, env, "audit", "verify", "--anchors", anchors+".empty"); code != 2 || !strings.Contains(stderr, "holds no anchor") {
		t.Fatalf("empty anchors file: %d %q", code, stderr)
	}
}
