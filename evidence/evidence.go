// Package evidence reads the proof a pipeline attaches to a release: JUnit
// XML test reports (github.com/joshdk/go-junit), SARIF reports of any
// scanner (github.com/owenrumney/go-sarif), and in-toto statements in DSSE
// envelopes verified against the environment's keys
// (github.com/secure-systems-lab/go-securesystemslib/dsse). Every reader
// fails closed: an empty or unreadable document, a report with no tests or
// no run, an envelope that does not verify is an error, never a pass.
package evidence

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	junit "github.com/joshdk/go-junit"
	"github.com/owenrumney/go-sarif/v3/pkg/report/v210/sarif"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/tollgate-dev/tollgate/core"
)

// JUnit reads a JUnit XML report (Surefire, go-junit-report, gotestsum,
// pytest …): totals over every test case. A report with no test case is an
// error: an empty run proves nothing.
func JUnit(data []byte) (core.TestSummary, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return core.TestSummary{}, errors.New("the JUnit report is empty")
	}
	if err := xmlShape(data); err != nil {
		return core.TestSummary{}, err
	}
	suites, err := junit.Ingest(data)
	if err != nil {
		return core.TestSummary{}, fmt.Errorf("the JUnit report is not readable XML: %w", err)
	}
	var s core.TestSummary
	countSuites(&s, suites)
	if s.Tests == 0 {
		return s, errors.New("the JUnit report holds no test case (zero tests ran)")
	}
	return s, nil
}

// countSuites adds every test case of suites and of the suites nested in
// them: PHPUnit writes a data provider's cases as a suite inside the class's
// suite, and a failure there must count.
func countSuites(s *core.TestSummary, suites []junit.Suite) {
	for _, suite := range suites {
		for _, t := range suite.Tests {
			s.Tests++
			switch t.Status {
			case junit.StatusPassed:
				s.Passed++
			case junit.StatusSkipped:
				s.Skipped++
			case junit.StatusFailed:
				s.Failures++
			case junit.StatusError:
				s.Errors++
			}
		}
		countSuites(s, suite.Suites)
	}
}

// maxJUnitDepth bounds a report's nesting. The JUnit reader keeps each
// element's whole inner XML, so its memory grows with the body times the
// depth: a megabyte nested ten thousand deep would hold gigabytes. Real
// reports nest six or seven deep (suites, suite, class, data provider,
// case, failure).
const maxJUnitDepth = 32

// xmlShape refuses, before the reader builds its tree, XML nested deeper
// than maxJUnitDepth.
func xmlShape(data []byte) error {
	dec := xml.NewDecoder(bytes.NewReader(data))
	depth := 0
	for {
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("the JUnit report is not readable XML: %w", err)
		}
		switch tok.(type) {
		case xml.StartElement:
			if depth++; depth > maxJUnitDepth {
				return fmt.Errorf("the JUnit report nests elements more than %d deep", maxJUnitDepth)
			}
		case xml.EndElement:
			depth--
		}
	}
}

// TestStatus is passed when no test failed or errored and at least one
// passed: a report whose every case was skipped (a suite that found no
// database, say) proves nothing, as an empty one.
func TestStatus(s core.TestSummary) string {
	if s.Failures > 0 || s.Errors > 0 || s.Passed == 0 {
		return core.EvidenceFailed
	}
	return core.EvidencePassed
}

// SARIF reads a SARIF 2.1.0 report: findings per severity over every run.
// A finding's severity is its rule's (or its own) "security-severity"
// property (a CVSS score: 9.0+ critical, 7.0+ high, 4.0+ medium, else
// low), else its level (error high, warning medium, note low; a result
// without a level takes its rule's default, else warning). A report with
// no run is an error: the scanner did not run.
func SARIF(data []byte) (core.FindingSummary, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return core.FindingSummary{}, errors.New("the SARIF report is empty")
	}
	rep, err := sarif.FromBytes(data)
	if err != nil {
		return core.FindingSummary{}, fmt.Errorf("the SARIF report is not readable JSON: %w", err)
	}
	if len(rep.Runs) == 0 {
		return core.FindingSummary{}, errors.New("the SARIF report holds no run (the scanner did not run)")
	}
	s := core.FindingSummary{BySeverity: map[string]int{}, MaxSeverity: "none"}
	for i, run := range rep.Runs {
		if run == nil {
			continue
		}
		if run.Tool != nil && run.Tool.Driver != nil {
			if n := run.Tool.Driver.Name; n != nil {
				s.Tools = append(s.Tools, *n)
			}
		}
		if err := runCompleted(i, run); err != nil {
			return core.FindingSummary{}, err
		}
		rules := newRuleSet(run.Tool)
		for _, res := range run.Results {
			if res == nil || res.Kind == "pass" || res.Kind == "notApplicable" {
				continue
			}
			sev := severity(res, rules.of(res))
			s.Findings++
			s.BySeverity[sev]++
			if core.SeverityRank(sev) > core.SeverityRank(s.MaxSeverity) {
				s.MaxSeverity = sev
			}
		}
	}
	if len(s.Tools) == 0 {
		return s, errors.New("the SARIF report names no tool (runs[].tool.driver.name)")
	}
	return s, nil
}

// runCompleted refuses a run whose invocation says the scanner failed: by
// SARIF's rules executionSuccessful stays true when the tool finds
// something, so false means the analysis did not finish, and its empty
// result list proves nothing.
func runCompleted(i int, run *sarif.Run) error {
	for _, inv := range run.Invocations {
		if inv != nil && inv.ExecutionSuccessful != nil && !*inv.ExecutionSuccessful {
			return fmt.Errorf("the SARIF report's run %d says the scan did not complete (invocations[].executionSuccessful is false)", i)
		}
	}
	return nil
}

// ruleSet finds a result's rule in the tool's driver or in its extensions:
// CodeQL lists its rules (and their security-severity) under
// tool.extensions[] and leaves the driver's list empty.
type ruleSet struct {
	driver map[string]*sarif.ReportingDescriptor
	ext    []map[string]*sarif.ReportingDescriptor
	names  map[string]int // extension name → index
}

func newRuleSet(tool *sarif.Tool) ruleSet {
	rs := ruleSet{names: map[string]int{}}
	if tool == nil {
		return rs
	}
	rs.driver = rulesByID(tool.Driver)
	for i, ext := range tool.Extensions {
		rs.ext = append(rs.ext, rulesByID(ext))
		if ext != nil && ext.Name != nil {
			rs.names[*ext.Name] = i
		}
	}
	return rs
}

func rulesByID(c *sarif.ToolComponent) map[string]*sarif.ReportingDescriptor {
	m := map[string]*sarif.ReportingDescriptor{}
	if c == nil {
		return m
	}
	for _, r := range c.Rules {
		if r != nil && r.ID != nil {
			m[*r.ID] = r
		}
	}
	return m
}

// of is the rule a result names: by its id, in the component its rule
// reference points to when it points to an extension, else in the driver,
// else in the first extension that defines it.
func (rs ruleSet) of(res *sarif.Result) *sarif.ReportingDescriptor {
	id := ""
	if res.RuleID != nil {
		id = *res.RuleID
	} else if res.Rule != nil && res.Rule.ID != nil {
		id = *res.Rule.ID
	}
	if id == "" {
		return nil
	}
	if ref := res.Rule; ref != nil && ref.ToolComponent != nil {
		i := ref.ToolComponent.Index
		if n := ref.ToolComponent.Name; n != nil {
			if j, ok := rs.names[*n]; ok {
				i = j
			}
		}
		if i >= 0 && i < len(rs.ext) {
			if r := rs.ext[i][id]; r != nil {
				return r
			}
		}
	}
	if r := rs.driver[id]; r != nil {
		return r
	}
	for _, m := range rs.ext {
		if r := m[id]; r != nil {
			return r
		}
	}
	return nil
}

func severity(res *sarif.Result, rule *sarif.ReportingDescriptor) string {
	if v, ok := securitySeverity(res.Properties); ok {
		return cvss(v)
	}
	level := res.Level
	if rule != nil {
		if v, ok := securitySeverity(rule.Properties); ok {
			return cvss(v)
		}
		if level == "" && rule.DefaultConfiguration != nil {
			level = rule.DefaultConfiguration.Level
		}
	}
	switch level {
	case "error":
		return "high"
	case "note":
		return "low"
	case "none":
		return "none"
	}
	return "medium" // warning, or no level at all (SARIF's default)
}

func securitySeverity(p *sarif.PropertyBag) (float64, bool) {
	if p == nil {
		return 0, false
	}
	switch v := p.Properties["security-severity"].(type) {
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return f, err == nil
	case float64:
		return v, true
	}
	return 0, false
}

func cvss(v float64) string {
	switch {
	case v >= 9:
		return "critical"
	case v >= 7:
		return "high"
	case v >= 4:
		return "medium"
	case v > 0:
		return "low"
	}
	return "none"
}

var digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ValidDigest reports whether d is "sha256:" and 64 lower-case hex digits.
func ValidDigest(d string) bool { return digestPattern.MatchString(d) }

// Key is a public key an environment trusts for signatures.
type Key struct {
	ID  string
	PEM string
}

// Signature is a verified envelope: the key that signed it and the artifact
// digests its in-toto statement names.
type Signature struct {
	KeyID string
	// KeyFingerprint is core.KeyFingerprint of the key that verified it.
	KeyFingerprint string
	Digests        []string // "sha256:…"
}

// inTotoPayload is the DSSE payload type of an in-toto statement, and
// inTotoStatements the statement types read.
const inTotoPayload = "application/vnd.in-toto+json"

var inTotoStatements = []string{"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"}

// DSSE verifies a DSSE envelope (JSON) against keys and reads the in-toto
// statement it carries: the subjects' sha256 digests. An envelope that no
// key verifies, that carries another payload type than an in-toto
// statement (the key may sign other documents that name a digest), or
// whose statement names no sha256 subject, is an error.
func DSSE(ctx context.Context, data []byte, keys []Key) (Signature, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return Signature{}, errors.New("the DSSE envelope is empty")
	}
	if len(keys) == 0 {
		return Signature{}, errors.New("no signing keys are configured for the environment (environments.<env>.signing_keys); a signature cannot be verified")
	}
	var env dsse.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return Signature{}, fmt.Errorf("the DSSE envelope is not readable JSON: %w", err)
	}
	if len(env.Signatures) == 0 || env.Payload == "" {
		return Signature{}, errors.New("the DSSE envelope has no payload or no signature")
	}
	if env.PayloadType != inTotoPayload {
		return Signature{}, fmt.Errorf("the DSSE envelope's payloadType is %q, not an in-toto statement (%s)", env.PayloadType, inTotoPayload)
	}
	verifiers := make([]dsse.Verifier, 0, len(keys))
	for _, k := range keys {
		v, err := NewVerifier(k)
		if err != nil {
			return Signature{}, err
		}
		verifiers = append(verifiers, v)
	}
	ev, err := dsse.NewEnvelopeVerifier(verifiers...)
	if err != nil {
		return Signature{}, fmt.Errorf("DSSE verifier: %w", err)
	}
	accepted, payload, err := ev.VerifyAndDecode(ctx, &env)
	if err != nil {
		return Signature{}, fmt.Errorf("the DSSE envelope does not verify against the environment's keys: %w", err)
	}
	var stmt struct {
		Type    string `json:"_type"`
		Subject []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(payload, &stmt); err != nil {
		return Signature{}, fmt.Errorf("the DSSE payload is not an in-toto statement: %w", err)
	}
	if !slices.Contains(inTotoStatements, stmt.Type) {
		return Signature{}, fmt.Errorf("the DSSE payload's _type is %q, not an in-toto statement (%s)", stmt.Type, strings.Join(inTotoStatements, ", "))
	}
	sig := Signature{KeyID: accepted[0].KeyID}
	for _, k := range keys {
		if k.ID == sig.KeyID {
			sig.KeyFingerprint = core.KeyFingerprint(k.PEM)
			break
		}
	}
	for _, s := range stmt.Subject {
		if h := strings.ToLower(s.Digest["sha256"]); h != "" {
			sig.Digests = append(sig.Digests, "sha256:"+h)
		}
	}
	if len(sig.Digests) == 0 {
		return Signature{}, errors.New("the in-toto statement names no sha256 subject digest")
	}
	sort.Strings(sig.Digests)
	return sig, nil
}

// verifier checks DSSE signatures with an Ed25519 or ECDSA public key.
type verifier struct {
	id  string
	pub crypto.PublicKey
}

// NewVerifier parses a PEM public key (PKIX: Ed25519 or ECDSA).
func NewVerifier(k Key) (dsse.Verifier, error) {
	block, _ := pem.Decode([]byte(k.PEM))
	if block == nil {
		return nil, fmt.Errorf("signing key %s is not a PEM public key", k.ID)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", k.ID, err)
	}
	switch pub.(type) {
	case ed25519.PublicKey, *ecdsa.PublicKey:
	default:
		return nil, fmt.Errorf("signing key %s: %T keys are not supported (use Ed25519 or ECDSA)", k.ID, pub)
	}
	return &verifier{id: k.ID, pub: pub}, nil
}

func (v *verifier) Verify(_ context.Context, data, sig []byte) error {
	switch pub := v.pub.(type) {
	case ed25519.PublicKey:
		if ed25519.Verify(pub, data, sig) {
			return nil
		}
	case *ecdsa.PublicKey:
		h := sha256.Sum256(data)
		if ecdsa.VerifyASN1(pub, h[:], sig) {
			return nil
		}
	}
	return errors.New("signature does not verify")
}

func (v *verifier) KeyID() (string, error)   { return v.id, nil }
func (v *verifier) Public() crypto.PublicKey { return v.pub }

// SHA256 is the digest string of data, for tests and callers hashing an
// artifact themselves.
func SHA256(data []byte) string {
	h := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(h[:])
}
