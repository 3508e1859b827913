package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// SignatureName is the detached signature of MANIFEST.json: written after
// the manifest, and listed in no manifest (it signs the manifest, so it
// cannot be among what the manifest lists).
const SignatureName = "MANIFEST.sig"

// SignatureFormat names the signature file's layout.
const SignatureFormat = "tollgate-evidence-signature/1"

// maxSignatureSize bounds MANIFEST.sig: a few short JSON fields.
const maxSignatureSize = 64 << 10

// Signature is MANIFEST.sig. The signed message is MANIFEST.json's bytes
// exactly as in the archive, with plain Ed25519 (RFC 8032), so that
// `openssl pkeyutl -verify -rawin` checks it without tollgate.
type Signature struct {
	Format    string `json:"format"`
	Algorithm string `json:"algorithm"`
	// KeyFingerprint names the signing key (Fingerprint of its public key),
	// so a verifier holding several keys (a rotation) knows which to use.
	KeyFingerprint string `json:"key_fingerprint"`
	// ManifestSHA256 is the SHA-256 of the manifest signed: a signature
	// moved to another bundle says so before the check fails.
	ManifestSHA256 string `json:"manifest_sha256"`
	// Signature is the Ed25519 signature, base64 (standard, padded).
	Signature string `json:"signature"`
}

// PublicKey is an Ed25519 public key trusted to sign bundles.
type PublicKey struct {
	Key ed25519.PublicKey
	// Fingerprint is "sha256:" and the hex SHA-256 of the key's DER
	// SubjectPublicKeyInfo: what `openssl pkey -pubin -outform DER |
	// sha256sum` prints for its PEM.
	Fingerprint string
}

// SigningKey is the server's key that signs the bundles it makes.
type SigningKey struct {
	private ed25519.PrivateKey
	Public  PublicKey
}

// NewPublicKey wraps an Ed25519 public key with its fingerprint.
func NewPublicKey(k ed25519.PublicKey) (PublicKey, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return PublicKey{}, fmt.Errorf("encode public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return PublicKey{Key: k, Fingerprint: "sha256:" + hex.EncodeToString(sum[:])}, nil
}

// PEM renders the key as a PUBLIC KEY block (SubjectPublicKeyInfo), the
// form openssl writes and ParsePublicKeys reads.
func (k PublicKey) PEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(k.Key)
	if err != nil {
		return nil // an ed25519.PublicKey always encodes
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// NewSigningKey wraps an Ed25519 private key.
func NewSigningKey(k ed25519.PrivateKey) (*SigningKey, error) {
	pub, err := NewPublicKey(k.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &SigningKey{private: k, Public: pub}, nil
}

// generateHint is how to make a key the way ParseSigningKey reads it.
const generateHint = "generate one with: openssl genpkey -algorithm ed25519 -out evidence-signing.pem"

// ParseSigningKey reads an Ed25519 private key from PEM: a PKCS#8
// "PRIVATE KEY" block, what `openssl genpkey -algorithm ed25519` writes.
// An encrypted key, or a key of another algorithm, is refused by name.
func ParseSigningKey(data []byte) (*SigningKey, error) {
	block, _ := pem.Decode(data)
	switch {
	case block == nil:
		return nil, errors.New("no PEM block found; " + generateHint)
	case block.Type == "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the key is encrypted: tollgate reads it unattended at start; store it unencrypted with file permissions (0600) or a secret mount instead")
	case block.Type != "PRIVATE KEY":
		return nil, fmt.Errorf("a %q PEM block, not a PKCS#8 PRIVATE KEY; %s", block.Type, generateHint)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a PKCS#8 private key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key; %s", k, generateHint)
	}
	return NewSigningKey(ek)
}

// LoadSigningKey reads ParseSigningKey's PEM from a file.
func LoadSigningKey(path string) (*SigningKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the signing key: %w", err)
	}
	k, err := ParseSigningKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParsePublicKeys reads every PUBLIC KEY block of a PEM file (one key, or
// the current and previous keys of a rotation one after another). A
// private key is refused: whoever verifies bundles must not need it.
func ParsePublicKeys(data []byte) ([]PublicKey, error) {
	var out []PublicKey
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case strings.Contains(block.Type, "PRIVATE KEY"):
			return nil, errors.New("a private key: give the public key (openssl pkey -in KEY -pubout), or fetch it from GET /api/v1/evidence/public-key?format=pem")
		case block.Type != "PUBLIC KEY":
			continue // a certificate or parameters beside the keys
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key %d: %w", len(out)+1, err)
		}
		ek, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key %d is a %T, not an Ed25519 key", len(out)+1, k)
		}
		pk, err := NewPublicKey(ek)
		if err != nil {
			return nil, err
		}
		out = append(out, pk)
	}
	if len(out) == 0 {
		return nil, errors.New("no PUBLIC KEY PEM block found")
	}
	return out, nil
}

// LoadPublicKeys reads ParsePublicKeys' PEM from a file.
func LoadPublicKeys(path string) ([]PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	keys, err := ParsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// sign makes MANIFEST.sig for manifest.
func (k *SigningKey) sign(manifest []byte) ([]byte, error) {
	sum := sha256.Sum256(manifest)
	sig := Signature{
		Format: SignatureFormat, Algorithm: "ed25519", KeyFingerprint: k.Public.Fingerprint,
		ManifestSHA256: hex.EncodeToString(sum[:]),
		Signature:      base64.StdEncoding.EncodeToString(ed25519.Sign(k.private, manifest)),
	}
	j, err := json.MarshalIndent(sig, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("bundle: encode signature: %w", err)
	}
	return append(j, '\n'), nil
}

// Origin says what a verification learned about who made a bundle.
type Origin string

const (
	// OriginVerified: signed by one of the public keys given.
	OriginVerified Origin = "verified"
	// OriginNotChecked: signed, but no public key was given to check it.
	OriginNotChecked Origin = "not_checked"
	// OriginUnsigned: no signature (a server without a signing key, or a
	// bundle made before bundles were signed).
	OriginUnsigned Origin = "unsigned"
)

// checkSignature holds the manifest to its signature when keys are given
// (a missing or foreign signature is then a mismatch), and otherwise only
// reads which key the signature names.
func checkSignature(manifest, raw []byte, keys []PublicKey) (Origin, string, error) {
	bad := func(format string, args ...any) error {
		return &Mismatch{File: SignatureName, Reason: fmt.Sprintf(format, args...)}
	}
	if raw == nil {
		if len(keys) > 0 {
			return "", "", bad("missing: the bundle is not signed, so nothing shows that the server whose key you hold made it (a server without evidence.signing_key_file, or an older bundle: verify it without --public-key, which checks its hashes only)")
		}
		return OriginUnsigned, "", nil
	}
	var sig Signature
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sig); err != nil {
		return "", "", bad("not a signature file: %v", err)
	}
	if sig.Format != SignatureFormat || sig.Algorithm != "ed25519" {
		return "", "", bad("format %q, algorithm %q; want %q, ed25519", sig.Format, sig.Algorithm, SignatureFormat)
	}
	if len(keys) == 0 {
		return OriginNotChecked, sig.KeyFingerprint, nil
	}
	var key *PublicKey
	names := make([]string, len(keys))
	for i := range keys {
		names[i] = keys[i].Fingerprint
		if keys[i].Fingerprint == sig.KeyFingerprint {
			key = &keys[i]
		}
	}
	if key == nil {
		return "", sig.KeyFingerprint, bad("signed by key %s, which is none of the public keys given (%s): another server (or someone else) made this bundle, or its server's key was rotated since (give the previous public key too)",
			sig.KeyFingerprint, strings.Join(names, ", "))
	}
	sum := sha256.Sum256(manifest)
	s, err := base64.StdEncoding.DecodeString(sig.Signature)
	switch {
	case err != nil || len(s) != ed25519.SignatureSize:
		return "", sig.KeyFingerprint, bad("the signature is not a base64 Ed25519 signature")
	case sig.ManifestSHA256 != hex.EncodeToString(sum[:]):
		return "", sig.KeyFingerprint, bad("signs another MANIFEST.json (sha256 %s, this one's is %s): the manifest was changed after signing, or the signature taken from another bundle", sig.ManifestSHA256, hex.EncodeToString(sum[:]))
	case !ed25519.Verify(key.Key, manifest, s):
		return "", sig.KeyFingerprint, bad("the signature does not match MANIFEST.json under key %s: the manifest was changed after signing, or the signature was not made with that key", key.Fingerprint)
	}
	return OriginVerified, sig.KeyFingerprint, nil
}
