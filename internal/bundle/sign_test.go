package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/bundle/bundletest"
)

// newKey returns a fresh signing key.
func newKey(t *testing.T) *SigningKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signedSample is sample signed with k (unsigned when k is nil).
func signedSample(t *testing.T, k *SigningKey) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	w.Sign(k)
	for _, f := range []struct{ name, body string }{{"report.csv", "finding_id,code\n1,GATE_BYPASSED\n"}, {"decisions/d1.json", `{"decision":"deny"}`}} {
		if err := w.Add(f.name, []byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.AddJSON(AuditName, chain(2)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Manifest{ReportID: "r1"}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// forge edits decisions/d1.json (deny → allow) and rewrites the manifest
// to match, as someone with the bundle but not the key would: the hashes
// then agree again. With resign, the signature's manifest digest is
// rewritten too (the signature itself cannot be).
func forge(t *testing.T, in []byte, resign bool) []byte {
	t.Helper()
	forged := []byte(`{"decision":"allow"}`)
	sum := sha256.Sum256(forged)
	var manifestSum string
	out := bundletest.RepackFiles(t, in, func(name string, b []byte) []byte {
		switch name {
		case "decisions/d1.json":
			return forged
		case ManifestName:
			var m Manifest
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			for i := range m.Files {
				if m.Files[i].Name == "decisions/d1.json" {
					m.Files[i].SHA256, m.Files[i].Size = hex.EncodeToString(sum[:]), int64(len(forged))
				}
			}
			j, _ := json.MarshalIndent(m, "", "  ")
			j = append(j, '\n')
			s := sha256.Sum256(j)
			manifestSum = hex.EncodeToString(s[:])
			return j
		}
		return b
	})
	if !resign {
		return out
	}
	return editSignature(t, out, func(s *Signature) { s.ManifestSHA256 = manifestSum })
}

// editSignature rewrites MANIFEST.sig's fields.
func editSignature(t *testing.T, in []byte, edit func(*Signature)) []byte {
	t.Helper()
	return bundletest.RepackFiles(t, in, func(name string, b []byte) []byte {
		if name != SignatureName {
			return b
		}
		var s Signature
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		edit(&s)
		j, _ := json.Marshal(s)
		return j
	})
}

func dropFile(t *testing.T, in []byte, target string) []byte {
	t.Helper()
	return bundletest.RepackFiles(t, in, func(name string, b []byte) []byte {
		if name == target {
			return nil
		}
		return b
	})
}

// TestSignedBundles: a signed bundle verifies against its key, and what
// someone without the key can do to it — edit a file and rewrite the
// manifest to match, move the signature, strip it, sign with their own
// key — fails naming MANIFEST.sig once a public key is given. Without
// one, the hashes are checked and Origin says the origin was not.
func TestSignedBundles(t *testing.T) {
	key, other := newKey(t), newKey(t)
	signed, unsigned := signedSample(t, key), signedSample(t, nil)
	byOther := signedSample(t, other)
	for _, tc := range []struct {
		name   string
		bundle []byte
		keys   []PublicKey
		origin Origin     // when it verifies
		file   string     // when it fails: the file named
		reason string     // and a part of the reason
		fp     *PublicKey // the key the result names
	}{
		{name: "signed, its key", bundle: signed, keys: []PublicKey{key.Public}, origin: OriginVerified, fp: &key.Public},
		{name: "signed, keys of a rotation", bundle: signed, keys: []PublicKey{other.Public, key.Public}, origin: OriginVerified, fp: &key.Public},
		{name: "signed, no key given", bundle: signed, origin: OriginNotChecked, fp: &key.Public},
		{name: "old unsigned bundle, no key given", bundle: unsigned, origin: OriginUnsigned},
		{name: "old unsigned bundle, a key given", bundle: unsigned, keys: []PublicKey{key.Public},
			file: SignatureName, reason: "missing: the bundle is not signed"},
		{name: "signature stripped", bundle: dropFile(t, signed, SignatureName), keys: []PublicKey{key.Public},
			file: SignatureName, reason: "missing"},
		{name: "signed by another key", bundle: byOther, keys: []PublicKey{key.Public},
			file: SignatureName, reason: "signed by key " + other.Public.Fingerprint + ", which is none of the public keys given (" + key.Public.Fingerprint + ")"},
		{name: "another key passing for ours", bundle: editSignature(t, byOther, func(s *Signature) { s.KeyFingerprint = key.Public.Fingerprint }),
			keys: []PublicKey{key.Public}, file: SignatureName, reason: "does not match MANIFEST.json under key"},
		{name: "tampered: decision edited, manifest rewritten", bundle: forge(t, signed, false), keys: []PublicKey{key.Public},
			file: SignatureName, reason: "signs another MANIFEST.json"},
		{name: "tampered, the signature's digest rewritten too", bundle: forge(t, signed, true), keys: []PublicKey{key.Public},
			file: SignatureName, reason: "does not match MANIFEST.json"},
		// What the signature is for: without a key, a forgery whose
		// hashes agree passes, and says its origin was not checked.
		{name: "tampered, no key given", bundle: forge(t, signed, true), origin: OriginNotChecked, fp: &key.Public},
		{name: "tampered file, manifest left", bundle: bundletest.Flip(t, signed, "report.csv"), keys: []PublicKey{key.Public},
			file: "report.csv", reason: "does not match the manifest's"},
		{name: "signature bytes garbled", bundle: editSignature(t, signed, func(s *Signature) {
			b, _ := base64.StdEncoding.DecodeString(s.Signature)
			b[10] ^= 1
			s.Signature = base64.StdEncoding.EncodeToString(b)
		}), keys: []PublicKey{key.Public}, file: SignatureName, reason: "does not match"},
		{name: "signature not base64", bundle: editSignature(t, signed, func(s *Signature) { s.Signature = "!!" }),
			keys: []PublicKey{key.Public}, file: SignatureName, reason: "not a base64 Ed25519 signature"},
		{name: "signature of another format", bundle: editSignature(t, signed, func(s *Signature) { s.Algorithm = "rsa" }),
			file: SignatureName, reason: "algorithm \"rsa\""},
		{name: "signature twice", bundle: bundletest.Repack(t, signed, appendCopyOf(SignatureName)), keys: []PublicKey{key.Public},
			file: SignatureName, reason: "appears twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Verify(bytes.NewReader(tc.bundle), tc.keys...)
			if tc.file != "" {
				var mm *Mismatch
				if !errors.As(err, &mm) || mm.File != tc.file || !strings.Contains(mm.Reason, tc.reason) {
					t.Fatalf("got %v, want a mismatch of %s: …%s…", err, tc.file, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			want := ""
			if tc.fp != nil {
				want = tc.fp.Fingerprint
			}
			if res.Origin != tc.origin || res.KeyFingerprint != want || res.Files != 3 || res.AuditRows != 2 {
				t.Fatalf("result %+v, want origin %s, key %q", res, tc.origin, want)
			}
		})
	}
}

// appendCopyOf re-packs with the named entry written twice.
func appendCopyOf(target string) func(tw *tar.Writer, hdr *tar.Header, b []byte) ([]byte, *tar.Header) {
	return func(tw *tar.Writer, hdr *tar.Header, b []byte) ([]byte, *tar.Header) {
		if hdr.Name == target {
			cp := *hdr
			cp.Size = int64(len(b))
			if err := tw.WriteHeader(&cp); err == nil {
				_, _ = tw.Write(b)
			}
		}
		return b, hdr
	}
}

// TestParseKeys: the PEM forms tollgate reads (openssl's PKCS#8 private
// key, SubjectPublicKeyInfo public keys, several in one file for a
// rotation) and what it refuses by name.
func TestParseKeys(t *testing.T) {
	key := newKey(t)
	der, err := x509.MarshalPKCS8PrivateKey(key.private)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecPub, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	other := newKey(t)
	t.Run("signing keys", func(t *testing.T) {
		for _, tc := range []struct {
			name, pem, err string
		}{
			{"pkcs8 ed25519", string(privPEM), ""},
			{"not PEM", "MC4CAQAwBQYDK2VwBCIEI", "no PEM block found; generate one with: openssl genpkey"},
			{"encrypted", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "the key is encrypted"},
			{"a public key", string(key.Public.PEM()), `a "PUBLIC KEY" PEM block, not a PKCS#8 PRIVATE KEY`},
			{"ecdsa", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})), "not an Ed25519 key"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				k, err := ParseSigningKey([]byte(tc.pem))
				switch {
				case tc.err == "" && (err != nil || k.Public.Fingerprint != key.Public.Fingerprint):
					t.Fatalf("got %v, %v", k, err)
				case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
					t.Fatalf("got %v, want …%s…", err, tc.err)
				}
			})
		}
	})
	t.Run("public keys", func(t *testing.T) {
		for _, tc := range []struct {
			name, pem, err string
			want           []PublicKey
		}{
			{"one", string(key.Public.PEM()), "", []PublicKey{key.Public}},
			{"current and previous", string(key.Public.PEM()) + string(other.Public.PEM()), "", []PublicKey{key.Public, other.Public}},
			{"a private key", string(privPEM), "a private key: give the public key", nil},
			{"ecdsa", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecPub})), "not an Ed25519 key", nil},
			{"nothing", "hello", "no PUBLIC KEY PEM block found", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := ParsePublicKeys([]byte(tc.pem))
				if tc.err != "" {
					if err == nil || !strings.Contains(err.Error(), tc.err) {
						t.Fatalf("got %v, want …%s…", err, tc.err)
					}
					return
				}
				if err != nil || len(got) != len(tc.want) {
					t.Fatalf("got %v, %v", got, err)
				}
				for i := range got {
					if got[i].Fingerprint != tc.want[i].Fingerprint || !got[i].Key.Equal(tc.want[i].Key) {
						t.Errorf("key %d: %s, want %s", i, got[i].Fingerprint, tc.want[i].Fingerprint)
					}
				}
			})
		}
	})
}

// TestOpenSSLInterop holds the documented openssl commands to the code:
// a key from `openssl genpkey` signs, `openssl pkeyutl -verify -rawin`
// accepts the signature of MANIFEST.json, and the fingerprint is the
// SHA-256 of the public key's DER, as `openssl pkey -outform DER` writes
// it. Skipped where openssl is not installed.
func TestOpenSSLInterop(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	run := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command("openssl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	run("genpkey", "-algorithm", "ed25519", "-out", at("key.pem"))
	run("pkey", "-in", at("key.pem"), "-pubout", "-out", at("key.pub"))
	key, err := LoadSigningKey(at("key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := LoadPublicKeys(at("key.pub"))
	if err != nil || pubs[0].Fingerprint != key.Public.Fingerprint {
		t.Fatalf("public key %v, %v; want %s", pubs, err, key.Public.Fingerprint)
	}
	der := run("pkey", "-pubin", "-in", at("key.pub"), "-outform", "DER")
	if sum := sha256.Sum256(der); "sha256:"+hex.EncodeToString(sum[:]) != key.Public.Fingerprint {
		t.Fatalf("fingerprint %s is not the SHA-256 of openssl's DER", key.Public.Fingerprint)
	}
	b := signedSample(t, key)
	if _, err := Verify(bytes.NewReader(b), pubs...); err != nil {
		t.Fatal(err)
	}
	manifest, err := ReadFile(bytes.NewReader(b), ManifestName)
	if err != nil {
		t.Fatal(err)
	}
	rawSig, err := ReadFile(bytes.NewReader(b), SignatureName)
	if err != nil {
		t.Fatal(err)
	}
	var sig Signature
	if err := json.Unmarshal(rawSig, &sig); err != nil {
		t.Fatal(err)
	}
	s, _ := base64.StdEncoding.DecodeString(sig.Signature)
	for name, content := range map[string][]byte{"MANIFEST.json": manifest, "sig.bin": s} {
		if err := os.WriteFile(at(name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out := run("pkeyutl", "-verify", "-pubin", "-inkey", at("key.pub"), "-rawin", "-in", at("MANIFEST.json"), "-sigfile", at("sig.bin")); !strings.Contains(string(out), "Signature Verified Successfully") {
		t.Fatalf("openssl: %s", out)
	}
}
