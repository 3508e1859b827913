package config

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
)

// writeKeys writes an Ed25519 private key (PKCS#8 PEM) and its public key
// to dir, and returns their paths.
func writeKeys(t *testing.T, dir string) (priv, pub string) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(sk)
	pder, _ := x509.MarshalPKIXPublicKey(pk)
	priv, pub = filepath.Join(dir, "signing.pem"), filepath.Join(dir, "old.pub")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// TestEvidenceAndAnchorConfig: the signing key and the anchor's targets
// are checked at load, naming the field; what is left unset is said as a
// warning; the anchor's URL path and headers stay out of the log.
func TestEvidenceAndAnchorConfig(t *testing.T) {
	dir := t.TempDir()
	priv, pub := writeKeys(t, dir)
	env := func(string) string { return "" }
	good := "evidence:\n  signing_key_file: " + priv + "\n  previous_public_key_files: [" + pub + "]\n" +
		"audit:\n  anchor:\n    file: /mnt/anchors/heads.jsonl\n    url: https://anchors.example.com/t0k3n-in-path\n" +
		"    headers: {Authorization: Bearer s3cr3t}\n    interval: 5m\n"
	c, err := Parse([]byte(good), env)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	key, err := c.Evidence.SigningKey()
	if err != nil || key == nil {
		t.Fatalf("signing key: %v %v", key, err)
	}
	if prev, err := c.Evidence.PreviousKeys(); err != nil || len(prev) != 1 {
		t.Fatalf("previous keys: %v %v", prev, err)
	}
	if !c.Audit.Anchor.Enabled() || c.Audit.Anchor.Every() != 5*time.Minute {
		t.Fatalf("anchor %+v", c.Audit.Anchor)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", c)
	if out := buf.String(); strings.Contains(out, "s3cr3t") || strings.Contains(out, "t0k3n") || !strings.Contains(out, "anchors.example.com") || !strings.Contains(out, priv) {
		t.Errorf("start-up log: %s", out)
	}
	for _, f := range c.AuditFindings() {
		if f.Status != connectors.StatusOK {
			t.Errorf("configured, yet %s: %s", f.Check, f.Detail)
		}
	}
	d, _ := Parse(nil, env)
	if d.Audit.Anchor.Enabled() || d.Audit.Anchor.Every() != 10*time.Minute {
		t.Errorf("default anchor %+v every %v", d.Audit.Anchor, d.Audit.Anchor.Every())
	}
	warned := map[string]bool{}
	for _, f := range d.AuditFindings() {
		warned[f.Check] = f.Status == connectors.StatusWarn
	}
	if !warned["evidence signing"] || !warned["audit anchor"] {
		t.Errorf("unset key and anchor not warned about: %v", d.AuditFindings())
	}

	rsa := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(rsa, []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ yaml, field, reason string }{
		{"evidence: {signing_key_file: " + filepath.Join(dir, "none.pem") + "}", "evidence.signing_key_file", "no such file"},
		{"evidence: {signing_key_file: " + rsa + "}", "evidence.signing_key_file", "not a PKCS#8 PRIVATE KEY"},
		{"evidence: {signing_key_file: " + pub + "}", "evidence.signing_key_file", "PUBLIC KEY"},
		{"evidence: {signing_key_file: " + priv + ", previous_public_key_files: [" + priv + "]}", "evidence.previous_public_key_files[0]", "a private key"},
		{"evidence: {previous_public_key_files: [" + pub + "]}", "evidence.previous_public_key_files[0]", "needs evidence.signing_key_file"},
		{"audit: {anchor: {url: http://anchors.example.com/}}", "audit.anchor.url", "https"},
		{"audit: {anchor: {url: https://u:p@anchors.example.com/}}", "audit.anchor.url", "credentials"},
		{"audit: {anchor: {file: /a, headers: {Authorization: x}}}", "audit.anchor.headers", "not set"},
		{"audit: {anchor: {url: https://a.example.com, headers: {\"Bad Header\": x}}}", "audit.anchor.headers", "Bad Header"},
		{"audit: {anchor: {file: /a, interval: 1s}}", "audit.anchor.interval", "between 10s and 24h"},
		{"audit: {anchor: {fil: /a}}", "fil", "not found"},
	} {
		if _, err := Parse([]byte(tc.yaml), env); err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: err %v, want one naming %s: …%s…", tc.yaml, err, tc.field, tc.reason)
		}
	}
}
