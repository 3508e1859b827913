package core

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Hold scopes: what a change manager's hold stops.
const (
	HoldScopeService     = "service"
	HoldScopeTeam        = "team"
	HoldScopeEnvironment = "environment"
)

// Hold is a change manager's stop on every release of a service, a team
// or to an environment (HOLD), whatever else allows: from CreatedAt until
// it is lifted or Until passes.
type Hold struct {
	ID     string     `json:"id"`
	Scope  string     `json:"scope"`
	Name   string     `json:"name"`
	Reason string     `json:"reason"`
	Until  *time.Time `json:"until,omitempty"`
	// Services, for a team hold, are the services the team was known to
	// release when the hold was placed (the policy's catalog and the
	// releases and deployments recorded with the team): their checks are
	// held whatever team they name, or none, since the team is the
	// caller's word for a service the catalog does not list.
	Services  []string   `json:"services,omitempty"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	LiftedBy  string     `json:"lifted_by,omitempty"`
	LiftedAt  *time.Time `json:"lifted_at,omitempty"`
}

// ActiveAt reports whether the hold is in force at t: placed by then, not
// lifted by then, and not past its Until.
func (h Hold) ActiveAt(t time.Time) bool {
	return !h.CreatedAt.After(t) && (h.LiftedAt == nil || h.LiftedAt.After(t)) && (h.Until == nil || t.Before(*h.Until))
}

// ValidHoldScope reports whether s is a hold scope.
func ValidHoldScope(s string) bool {
	return s == HoldScopeService || s == HoldScopeTeam || s == HoldScopeEnvironment
}

// Built-in evidence kinds; a policy declares more in evidence_kinds.
const (
	EvidenceTests             = "tests"
	EvidenceSecurityScan      = "security_scan"
	EvidenceArtifactSignature = "artifact_signature"
	EvidencePerformance       = "performance"
	EvidenceApprovalChecklist = "approval_checklist"
)

// BuiltinEvidenceKinds are the kinds every policy knows.
var BuiltinEvidenceKinds = []string{EvidenceTests, EvidenceSecurityScan, EvidenceArtifactSignature, EvidencePerformance, EvidenceApprovalChecklist}

// Evidence statuses.
const (
	EvidencePassed = "passed"
	EvidenceFailed = "failed"
)

// EvidenceFormatDSSE is the format of evidence read from a signed DSSE
// envelope: it counts while its signer (Evidence.Signer) is among the
// environment's signing keys.
const EvidenceFormatDSSE = "dsse"

// Severities of security findings, lowest first ("none": no finding).
var Severities = []string{"none", "low", "medium", "high", "critical"}

// SeverityRank is the rank of a severity in Severities, -1 when unknown.
func SeverityRank(s string) int {
	return slices.Index(Severities, strings.ToLower(strings.TrimSpace(s)))
}

// TestSummary is what a JUnit report held.
type TestSummary struct {
	Tests    int `json:"tests"`
	Passed   int `json:"passed"`
	Failures int `json:"failures"`
	Errors   int `json:"errors"`
	Skipped  int `json:"skipped"`
}

// FindingSummary is what a SARIF report held: findings per severity and the
// highest ("none" when there were none), and the tools that ran.
type FindingSummary struct {
	Tools       []string       `json:"tools"`
	Findings    int            `json:"findings"`
	BySeverity  map[string]int `json:"by_severity,omitempty"`
	MaxSeverity string         `json:"max_severity"`
}

// Evidence is one piece of proof attached to a release (the artifact of a
// service version bound for an environment): a test run, a scan, a
// signature, a measurement, a checklist. Status is passed or failed as the
// proof itself says (a failed test, a verified signature); whether it is
// good enough is the policy's call (EVIDENCE_FAILED). A later record of the
// same kind and name supersedes an earlier one.
type Evidence struct {
	ID        string `json:"id"`
	ReleaseID string `json:"release_id"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Digest    string `json:"digest,omitempty"`
	// Commit is the commit the evidence is for, when the attaching
	// pipeline named one: it then counts only for checks of that commit
	// (or checks naming none).
	Commit   string          `json:"commit,omitempty"`
	URL      string          `json:"url,omitempty"`
	Format   string          `json:"format,omitempty"` // junit, sarif, dsse (EvidenceFormatDSSE) or status
	Tests    *TestSummary    `json:"tests,omitempty"`
	Findings *FindingSummary `json:"findings,omitempty"`
	Signer   string          `json:"signer,omitempty"` // the key id a DSSE envelope verified against
	// SignerKey is that key's KeyFingerprint: the envelope vouches only
	// while the environment trusts that very key under that id.
	SignerKey  string             `json:"signer_key,omitempty"`
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	RecordedBy string             `json:"recorded_by"`
	RecordedAt time.Time          `json:"recorded_at"`
}

// CurrentEvidence is the records of all that count: the newest per kind,
// name and commit (a later record of the same supersedes an earlier one),
// in the order of all. A gate check reads and records only these, so a
// release re-run many times does not carry its whole history into every
// decision.
func CurrentEvidence(all []Evidence) []Evidence {
	type key struct{ kind, name, commit string }
	newest := make(map[key]int, len(all))
	for i := range all {
		k := key{all[i].Kind, all[i].Name, strings.ToLower(all[i].Commit)}
		if j, ok := newest[k]; !ok || !all[i].RecordedAt.Before(all[j].RecordedAt) {
			newest[k] = i
		}
	}
	if len(newest) == len(all) {
		return all
	}
	out := make([]Evidence, 0, len(newest))
	for i := range all {
		if newest[key{all[i].Kind, all[i].Name, strings.ToLower(all[i].Commit)}] == i {
			out = append(out, all[i])
		}
	}
	return out
}

// EvidenceRequirement is one piece of evidence an environment requires
// before a release goes there (EVIDENCE_MISSING / EVIDENCE_FAILED).
type EvidenceRequirement struct {
	// ID names the requirement in decisions and reports (e.g. tests-pass).
	ID   string `json:"id" yaml:"id"`
	Kind string `json:"kind" yaml:"kind"`
	// Require is the status the latest evidence of the kind must have:
	// "passed" (the default).
	Require string `json:"require,omitempty" yaml:"require,omitempty"`
	// MaxSeverity is the highest finding severity tolerated (none, low,
	// medium, high, critical); a scan with a higher one fails.
	MaxSeverity string `json:"max_severity,omitempty" yaml:"max_severity,omitempty"`
	// DigestMatchesDeployment demands that the evidence names the digest
	// the gate check names for the artifact being deployed.
	DigestMatchesDeployment bool `json:"digest_matches_deployment,omitempty" yaml:"digest_matches_deployment,omitempty"`
	// Metric and Max: the evidence's metric must be at most Max.
	Metric string   `json:"metric,omitempty" yaml:"metric,omitempty"`
	Max    *float64 `json:"max,omitempty" yaml:"max,omitempty"`
	// Controls are the compliance control ids the requirement serves
	// (SOX-ITGC-CM-03 …), recorded on every decision.
	Controls []string `json:"controls,omitempty" yaml:"controls,omitempty"`
}

// EvidenceMatch is how one requirement was judged on a decision: the
// requirement, its controls, the evidence it matched and the outcome
// (passed, missing or failed).
type EvidenceMatch struct {
	Rule     string   `json:"rule"`
	Kind     string   `json:"kind"`
	Controls []string `json:"controls,omitempty"`
	Evidence []string `json:"evidence,omitempty"` // evidence ids
	Result   string   `json:"result"`
}

// Evidence match results.
const (
	MatchPassed  = "passed"
	MatchMissing = "missing"
	MatchFailed  = "failed"
)

// ApproverRule requires an approval from one of Groups for changes that
// match When (every field set must match, case-insensitively).
type ApproverRule struct {
	When   ApproverWhen `json:"when" yaml:"when"`
	Groups []string     `json:"groups" yaml:"groups"`
}

// ApproverWhen selects changes by the change's risk and the service's tier.
type ApproverWhen struct {
	Risk string `json:"risk,omitempty" yaml:"risk,omitempty"`
	Tier string `json:"tier,omitempty" yaml:"tier,omitempty"`
}

// Governance holds the settings of how the policy itself is changed.
type Governance struct {
	// FourEyes stores a policy or mapping change as a proposal that takes
	// effect only when a second admin confirms it. It is read from the
	// server configuration (governance.four_eyes), so a policy change cannot
	// switch it off.
	FourEyes bool `json:"four_eyes,omitempty" yaml:"four_eyes,omitempty"`
}

// Environment modes.
const (
	ModeEnforce = "enforce"
	ModeObserve = "observe"
)

// compiledEvidence is one environment's requirements, validated.
type compiledEvidence struct {
	reqs []EvidenceRequirement
}

// compileEvidence validates an environment's evidence requirements.
func compileEvidence(ps *problems, field string, reqs []EvidenceRequirement, kinds []string) compiledEvidence {
	var ce compiledEvidence
	seen := map[string]bool{}
	for i, r := range reqs {
		f := fmt.Sprintf("%s.evidence[%d]", field, i)
		r.ID, r.Kind = strings.TrimSpace(r.ID), strings.TrimSpace(r.Kind)
		switch {
		case r.ID == "":
			ps.add(f+".id", "a requirement id is required (it names the rule in decisions)")
		case seen[strings.ToLower(r.ID)]:
			ps.add(f+".id", "requirement %q is listed twice", r.ID)
		}
		seen[strings.ToLower(r.ID)] = true
		if !slices.Contains(kinds, r.Kind) {
			ps.add(f+".kind", "unknown evidence kind %q; kinds are %s (declare others in evidence_kinds)", r.Kind, strings.Join(kinds, ", "))
		}
		switch r.Require {
		case "":
			r.Require = EvidencePassed
		case EvidencePassed:
		default:
			ps.add(f+".require", "unknown status %q; use passed", r.Require)
		}
		if r.MaxSeverity != "" && SeverityRank(r.MaxSeverity) < 0 {
			ps.add(f+".max_severity", "unknown severity %q; use %s", r.MaxSeverity, strings.Join(Severities, ", "))
		}
		if (r.Metric == "") != (r.Max == nil) {
			ps.add(f+".metric", "metric and max go together")
		}
		ce.reqs = append(ce.reqs, r)
	}
	return ce
}

// evidenceKinds is the built-in kinds plus the policy's custom ones.
func evidenceKinds(ps *problems, custom []string) []string {
	kinds := slices.Clone(BuiltinEvidenceKinds)
	for i, k := range custom {
		k = strings.TrimSpace(k)
		if !namePatternOK(k) || slices.Contains(kinds, k) {
			ps.add(fmt.Sprintf("evidence_kinds[%d]", i), "kind %q is empty, not a plain name, or already known", k)
			continue
		}
		kinds = append(kinds, k)
	}
	return kinds
}

func namePatternOK(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// EvidenceKnown reports whether kind is a built-in kind or one the policy
// declares (evidence_kinds).
func (cp *CompiledPolicy) EvidenceKnown(kind string) bool {
	return slices.Contains(cp.evidenceKinds(), kind)
}

func (cp *CompiledPolicy) evidenceKinds() []string {
	if cp.kinds == nil {
		return BuiltinEvidenceKinds
	}
	return cp.kinds
}

// EvidenceKinds lists the kinds the policy knows.
func (cp *CompiledPolicy) EvidenceKinds() []string { return slices.Clone(cp.evidenceKinds()) }

// compileApprovers validates approver rules and groups.
func compileApprovers(ps *problems, p Policy) {
	for i, r := range p.Approvals {
		f := fmt.Sprintf("approvals[%d]", i)
		if r.When.Risk == "" && r.When.Tier == "" {
			ps.add(f+".when", "name a risk or a tier the rule applies to")
		}
		if r.When.Tier != "" && r.When.Tier != TierCustomerFacing && r.When.Tier != TierInternal {
			ps.add(f+".when.tier", "unknown tier %q; use %q or %q", r.When.Tier, TierCustomerFacing, TierInternal)
		}
		if len(r.Groups) == 0 {
			ps.add(f+".groups", "at least one approver group is required")
		}
		for j, g := range r.Groups {
			if strings.TrimSpace(g) == "" {
				ps.add(fmt.Sprintf("%s.groups[%d]", f, j), "group name is empty")
			}
		}
	}
}

// approvedBy reports whether an approval of c satisfies group: the approver
// is the group itself (an ITSM group approval), one of its members in
// approver_groups, or a fallback approver.
func (cp *CompiledPolicy) approvedBy(c *Change, group string, members []string) (string, bool) {
	for i := range c.Approvals {
		a := &c.Approvals[i]
		name := strings.TrimSpace(a.Approver)
		if a.Decision != ApprovalApproved || name == "" {
			continue
		}
		if strings.EqualFold(name, group) || containsFold(members, name) || containsFold(cp.src.FallbackApprovers, name) {
			return name, true
		}
	}
	return "", false
}

// compileKeys checks an environment's signing keys: ids unique, each a PEM
// public key.
func compileKeys(ps *problems, field string, keys []SigningKey) []SigningKey {
	seen := map[string]bool{}
	for i, k := range keys {
		f := fmt.Sprintf("%s.signing_keys[%d]", field, i)
		if strings.TrimSpace(k.ID) == "" || seen[k.ID] {
			ps.add(f+".id", "a unique key id is required")
		}
		seen[k.ID] = true
		block, _ := pem.Decode([]byte(k.PublicKey))
		if block == nil {
			ps.add(f+".public_key", "is not a PEM public key")
			continue
		}
		if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
			ps.add(f+".public_key", "is not a PKIX public key: %v", err)
		}
	}
	return slices.Clone(keys)
}

// KeyFingerprint names a PEM public key by what it is, not by the id a
// policy gives it: "sha256:" and the hex SHA-256 of its DER bytes (for a
// PKIX key, its SubjectPublicKeyInfo); "" when publicKeyPEM is not PEM.
// Evidence records the fingerprint of the key that verified it, so a key
// id given a new key (rotated after a leak) no longer vouches for what the
// old key signed.
func KeyFingerprint(publicKeyPEM string) string {
	block, _ := pem.Decode([]byte(publicKeyPEM))
	if block == nil {
		return ""
	}
	sum := sha256.Sum256(block.Bytes)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func keyPrints(keys []SigningKey) map[string]string {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[k.ID] = KeyFingerprint(k.PublicKey)
	}
	return m
}

// SigningKeys returns the keys environment env trusts for artifact
// signatures (none for an unknown environment).
func (cp *CompiledPolicy) SigningKeys(env string) []SigningKey {
	canonical, ok := cp.ResolveEnvironment(env)
	if !ok {
		return nil
	}
	if ce := cp.envPolicy(canonical); ce != nil {
		return slices.Clone(ce.keys)
	}
	return nil
}

// RequiresEvidence reports whether environment env requires evidence (the
// gate then reads the release's evidence with its facts).
func (cp *CompiledPolicy) RequiresEvidence(env string) bool {
	canonical, ok := cp.ResolveEnvironment(env)
	if !ok {
		return false
	}
	ce := cp.envPolicy(canonical)
	return ce != nil && len(ce.evidence.reqs) > 0
}

// Proposal kinds and statuses (four-eyes).
const (
	ProposalPolicy        = "policy"
	ProposalMapping       = "mapping"
	ProposalMappingDelete = "mapping_delete"

	ProposalPending   = "pending"
	ProposalConfirmed = "confirmed"
	ProposalWithdrawn = "withdrawn"
)

// Proposal is a policy or mapping change waiting for a second admin
// (governance.four_eyes): it takes effect only when someone other than
// its proposer confirms it.
type Proposal struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`             // policy, mapping or mapping_delete
	Target string `json:"target,omitempty"` // the mapping profile's name
	// Source is the proposed document as the proposer sent it.
	Source     string     `json:"source"`
	Status     string     `json:"status"`
	ProposedBy string     `json:"proposed_by"`
	ProposedAt time.Time  `json:"proposed_at"`
	DecidedBy  string     `json:"decided_by,omitempty"`
	DecidedAt  *time.Time `json:"decided_at,omitempty"`
	// BaseVersion is the version the proposal was made against: the newest
	// policy version (kind policy), the profile's newest version, 0 for
	// none (mapping kinds). It is confirmed only while that is still so.
	BaseVersion int `json:"base_version,omitempty"`
}
