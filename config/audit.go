package config

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/internal/bundle"
)

// EvidenceConfig is how evidence bundles are signed.
type EvidenceConfig struct {
	// SigningKeyFile is an Ed25519 private key, PEM PKCS#8 (`openssl
	// genpkey -algorithm ed25519`), read at start: every evidence bundle
	// is signed with it (MANIFEST.sig) and its public key is served at GET
	// /api/v1/evidence/public-key. Empty: bundles are unsigned, and show
	// only that they are unchanged since their manifest was written, not
	// who wrote it. Every replica must have the same key.
	SigningKeyFile string `yaml:"signing_key_file"`
	// PreviousPublicKeyFiles are the public keys (PEM) of keys signing_key_file
	// held before a rotation: served beside the current one, so bundles
	// signed before the rotation stay verifiable by anyone who fetches them.
	PreviousPublicKeyFiles []string `yaml:"previous_public_key_files"`
}

// SigningKey reads signing_key_file (nil when it is not set).
func (e EvidenceConfig) SigningKey() (*bundle.SigningKey, error) {
	if e.SigningKeyFile == "" {
		return nil, nil
	}
	return bundle.LoadSigningKey(e.SigningKeyFile)
}

// PreviousKeys reads previous_public_key_files.
func (e EvidenceConfig) PreviousKeys() ([]bundle.PublicKey, error) {
	var out []bundle.PublicKey
	for _, f := range e.PreviousPublicKeyFiles {
		keys, err := bundle.LoadPublicKeys(f)
		if err != nil {
			return nil, err
		}
		out = append(out, keys...)
	}
	return out, nil
}

// AuditConfig configures the audit trail.
type AuditConfig struct {
	// Anchor keeps the chain's head outside the database on a schedule.
	Anchor AnchorConfig `yaml:"anchor"`
}

// AnchorConfig is where the replica holding the "audit-anchor" lease
// writes the audit chain's head ({"seq","hash","at"}) every interval: a
// file (one JSON line appended and fsynced each time) and/or an https URL
// (POSTed the same JSON). Both are places the database's writers should
// not reach: a file on another filesystem (an NFS mount of another host,
// a volume with append-only rights), write-once object storage behind a
// small receiver. Off when neither is set.
type AnchorConfig struct {
	// File is a JSON Lines file the head is appended to. It is also what
	// every replica reads at start (and `tollgate audit verify --anchors`
	// reads) to compare the chain with its newest anchor; the replicas
	// must therefore see the same file (a shared mount).
	File string `yaml:"file"`
	// URL receives each head as a POST (application/json); any 2xx is
	// success. https only.
	URL string `yaml:"url"`
	// Headers are sent with each POST (an Authorization for the
	// receiver); their values are secrets, masked in the log.
	Headers map[string]string `yaml:"headers"`
	// Interval is how often the head is anchored (default 10m).
	Interval Duration `yaml:"interval"`
}

// DefaultAnchorInterval is how often the head is anchored unless
// audit.anchor.interval says otherwise.
const DefaultAnchorInterval = 10 * time.Minute

// Enabled reports whether anchors are written anywhere.
func (a AnchorConfig) Enabled() bool { return a.File != "" || a.URL != "" }

// Every is the anchoring interval.
func (a AnchorConfig) Every() time.Duration {
	if a.Interval == 0 {
		return DefaultAnchorInterval
	}
	return a.Interval.D()
}

// headerName is an HTTP field name (RFC 9110's token).
var headerName = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

// validateAudit checks the evidence and audit blocks, reading the key
// files so that a key serve could not use fails validation, not a bundle
// download.
func (c *Config) validateAudit(bad func(field, format string, args ...any)) {
	ev := c.Evidence
	if ev.SigningKeyFile != "" && !strings.Contains(ev.SigningKeyFile, placeholder) {
		if _, err := ev.SigningKey(); err != nil {
			bad("evidence.signing_key_file", "%v", err)
		}
	}
	for i, f := range ev.PreviousPublicKeyFiles {
		field := fmt.Sprintf("evidence.previous_public_key_files[%d]", i)
		switch {
		case ev.SigningKeyFile == "":
			bad(field, "needs evidence.signing_key_file: previous keys are served beside the current one")
		case !strings.Contains(f, placeholder):
			if _, err := bundle.LoadPublicKeys(f); err != nil {
				bad(field, "%v", err)
			}
		}
	}
	a := c.Audit.Anchor
	if a.URL != "" && !strings.Contains(a.URL, placeholder) {
		u, err := url.Parse(a.URL)
		switch {
		case err != nil || u.Scheme != "https" || u.Host == "":
			bad("audit.anchor.url", "must be an https URL: the head it carries is what proves the chain whole, and must not be altered on the way")
		case u.User != nil:
			bad("audit.anchor.url", "must not carry credentials; send them in audit.anchor.headers")
		}
	}
	for name := range a.Headers {
		if !headerName.MatchString(name) || strings.EqualFold(name, "Content-Type") || strings.EqualFold(name, "Content-Length") {
			bad("audit.anchor.headers", "%q is not a header tollgate may set", name)
		}
	}
	if len(a.Headers) > 0 && a.URL == "" {
		bad("audit.anchor.headers", "are sent to audit.anchor.url, which is not set")
	}
	if a.Interval != 0 && (a.Interval.D() < 10*time.Second || a.Interval.D() > 24*time.Hour) {
		bad("audit.anchor.interval", "must be between 10s and 24h")
	}
}

// AuditFindings say what the configuration leaves unproved: bundles
// nobody can tell apart from a forgery when unsigned, and a chain head
// anchored nowhere outside the database. serve logs them, `tollgate
// config validate` and the doctor show them.
func (c *Config) AuditFindings() []connectors.Finding {
	var out []connectors.Finding
	if k := c.Evidence.SigningKeyFile; k == "" {
		out = append(out, connectors.Warn("evidence signing", "evidence.signing_key_file is not set: evidence bundles are unsigned, so "+
			"anyone can make one with edited decisions and a matching manifest; set a key (openssl genpkey -algorithm ed25519) so auditors can tell (docs/reconciliation.md#signed-bundles)"))
	} else {
		out = append(out, connectors.OK("evidence signing", "evidence bundles are signed with "+k))
	}
	if a := c.Audit.Anchor; !a.Enabled() {
		out = append(out, connectors.Warn("audit anchor", "audit.anchor is not set: the audit chain's head is kept nowhere outside the database "+
			"(rows deleted from its end, or a chain recomputed after an edit, go unseen) unless you anchor it yourself (docs/audit.md#keep-the-head-outside)"))
	}
	return out
}

// auditLogValue renders the evidence and audit blocks for the start-up
// log: the URL's host only (a path may hold a token), headers masked.
func (c *Config) auditLogValue() map[string]any {
	a := c.Audit.Anchor
	hook := ""
	if u, err := url.Parse(a.URL); err == nil && a.URL != "" {
		hook = u.Scheme + "://" + u.Host + "/" + masked
	}
	headers := map[string]string{}
	for k := range a.Headers {
		headers[http.CanonicalHeaderKey(k)] = masked
	}
	return map[string]any{
		"evidence.signing_key_file":          c.Evidence.SigningKeyFile,
		"evidence.previous_public_key_files": c.Evidence.PreviousPublicKeyFiles,
		"audit.anchor.file":                  a.File, "audit.anchor.url": hook, "audit.anchor.headers": headers,
		"audit.anchor.interval": a.Every().String(),
	}
}
