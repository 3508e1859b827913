package core

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"
)

func flt(v float64) *float64 { return &v }

// evidencePolicy is testPolicy with production requiring the four
// kinds of evidence, staging in observe mode requiring tests.
func evidencePolicy() Policy {
	p := testPolicy()
	prod := p.Environments["production"]
	prod.Evidence = []EvidenceRequirement{
		{ID: "tests-pass", Kind: EvidenceTests, Require: EvidencePassed, Controls: []string{"SOX-ITGC-CM-03"}},
		{ID: "no-high-vulns", Kind: EvidenceSecurityScan, MaxSeverity: "medium", Controls: []string{"SOX-ITGC-CM-05", "HIPAA-164.312(b)"}},
		{ID: "signed", Kind: EvidenceArtifactSignature, DigestMatchesDeployment: true},
		{ID: "perf", Kind: EvidencePerformance, Metric: "p99_ms", Max: flt(300)},
	}
	p.Environments["production"] = prod
	st := p.Environments["staging"]
	st.Mode = ModeObserve
	st.Evidence = []EvidenceRequirement{{ID: "tests-pass", Kind: EvidenceTests}}
	p.Environments["staging"] = st
	return p
}

const digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
const digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

// fullEvidence satisfies every production requirement of evidencePolicy.
func fullEvidence() []Evidence {
	at := wednesday.Add(-time.Hour)
	return []Evidence{
		{ID: "e1", Kind: EvidenceTests, Name: "unit", Status: EvidencePassed, Tests: &TestSummary{Tests: 3, Passed: 3}, RecordedAt: at},
		{ID: "e2", Kind: EvidenceSecurityScan, Name: "gosec", Status: EvidencePassed, Findings: &FindingSummary{Findings: 1, MaxSeverity: "medium"}, RecordedAt: at},
		{ID: "e3", Kind: EvidenceArtifactSignature, Name: "cosign", Status: EvidencePassed, Digest: digestA, RecordedAt: at},
		{ID: "e4", Kind: EvidencePerformance, Name: "k6", Status: EvidencePassed, Metrics: map[string]float64{"p99_ms": 240}, RecordedAt: at},
	}
}

func TestEvidenceRules(t *testing.T) {
	cp := mustCompile(t, evidencePolicy())
	tests := []struct {
		name    string
		mod     func(f *Facts)
		want    Decision
		reasons []string
		matches map[string]string // rule → result
	}{
		{name: "all evidence passes", mod: func(*Facts) {}, want: Allow, reasons: []string{},
			matches: map[string]string{"tests-pass": MatchPassed, "no-high-vulns": MatchPassed, "signed": MatchPassed, "perf": MatchPassed}},
		{name: "no evidence at all waits on each", mod: func(f *Facts) { f.Evidence = nil }, want: Wait,
			reasons: []string{"EVIDENCE_MISSING:wait:tests-pass", "EVIDENCE_MISSING:wait:no-high-vulns", "EVIDENCE_MISSING:wait:signed", "EVIDENCE_MISSING:wait:perf"}},
		{name: "failed tests deny", mod: func(f *Facts) { f.Evidence[0].Status = EvidenceFailed }, want: Deny,
			reasons: []string{"EVIDENCE_FAILED:deny:tests-pass"}},
		{name: "a newer passing run of the same name supersedes a failure", mod: func(f *Facts) {
			f.Evidence[0].Status = EvidenceFailed
			f.Evidence = append(f.Evidence, Evidence{ID: "e5", Kind: EvidenceTests, Name: "unit", Status: EvidencePassed, RecordedAt: wednesday.Add(-time.Minute)})
		}, want: Allow, reasons: []string{}},
		{name: "evidence recorded after the moment does not count", mod: func(f *Facts) { f.Evidence[0].RecordedAt = wednesday.Add(time.Minute) }, want: Wait,
			reasons: []string{"EVIDENCE_MISSING:wait:tests-pass"}},
		{name: "a high finding above medium denies", mod: func(f *Facts) { f.Evidence[1].Findings.MaxSeverity = "high" }, want: Deny,
			reasons: []string{"EVIDENCE_FAILED:deny:no-high-vulns"}},
		{name: "a scan with no findings passes", mod: func(f *Facts) { f.Evidence[1].Findings = nil }, want: Allow, reasons: []string{}},
		{name: "signature for another digest denies", mod: func(f *Facts) { f.Evidence[2].Digest = digestB }, want: Deny,
			reasons: []string{"EVIDENCE_FAILED:deny:signed"}},
		{name: "a check naming no digest waits on the signature", mod: func(f *Facts) { f.Request.Digest = "" }, want: Wait,
			reasons: []string{"EVIDENCE_MISSING:wait:signed"}},
		{name: "p99 over the maximum denies", mod: func(f *Facts) { f.Evidence[3].Metrics["p99_ms"] = 301 }, want: Deny,
			reasons: []string{"EVIDENCE_FAILED:deny:perf"}},
		{name: "a performance run without the metric waits", mod: func(f *Facts) { f.Evidence[3].Metrics = nil }, want: Wait,
			reasons: []string{"EVIDENCE_MISSING:wait:perf"}},
		{name: "evidence of the commit checked counts", mod: func(f *Facts) {
			f.Request.Commit = "ABC123"
			f.Evidence[0].Commit = "abc123"
		}, want: Allow, reasons: []string{}},
		{name: "evidence of another commit under the same version does not count", mod: func(f *Facts) {
			f.Request.Commit = "def456"
			f.Evidence[0].Commit = "abc123"
		}, want: Wait, reasons: []string{"EVIDENCE_MISSING:wait:tests-pass"}},
		{name: "a newer run for another commit does not supersede this commit's", mod: func(f *Facts) {
			f.Request.Commit = "abc123"
			f.Evidence[0].Commit = "abc123"
			f.Evidence = append(f.Evidence, Evidence{ID: "e5", Kind: EvidenceTests, Name: "unit", Status: EvidenceFailed, Commit: "def456", RecordedAt: wednesday.Add(-time.Minute)})
		}, want: Allow, reasons: []string{}},
		{name: "failed and missing together deny", mod: func(f *Facts) { f.Evidence = f.Evidence[1:]; f.Evidence[0].Findings.MaxSeverity = "critical" }, want: Deny,
			reasons: []string{"EVIDENCE_MISSING:wait:tests-pass", "EVIDENCE_FAILED:deny:no-high-vulns"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := goodFacts()
			f.Request.Digest = digestA
			f.Evidence = fullEvidence()
			tt.mod(&f)
			d := Evaluate(cp, f, wednesday)
			if d.Decision != tt.want || !slices.Equal(reasonList(d.Reasons), tt.reasons) {
				t.Fatalf("got %s %v, want %s %v", d.Decision, reasonList(d.Reasons), tt.want, tt.reasons)
			}
			if len(d.Evidence) != 4 {
				t.Fatalf("evidence matches %+v, want one per requirement", d.Evidence)
			}
			for _, m := range d.Evidence {
				if want, ok := tt.matches[m.Rule]; ok && m.Result != want {
					t.Errorf("rule %s: %s, want %s", m.Rule, m.Result, want)
				}
			}
		})
	}
}

// testKeyPEM is a fresh Ed25519 public key in PEM.
func testKeyPEM(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestSignedEvidenceCountsWhileItsKeyIsTrusted: a DSSE envelope counts
// while its signer is in the environment's signing_keys; once the key is
// taken out (it leaked) the release waits, naming the key.
func TestSignedEvidenceCountsWhileItsKeyIsTrusted(t *testing.T) {
	pemA, pemB := testKeyPEM(t), testKeyPEM(t)
	printA, printB := KeyFingerprint(pemA), KeyFingerprint(pemB)
	tests := []struct {
		name      string
		keys      []SigningKey
		signer    string
		signerKey string
		want      Decision
		why       string
	}{
		{"signed with a trusted key", []SigningKey{{ID: "ci-2026", PublicKey: pemA}, {ID: "ci-2025", PublicKey: pemB}}, "ci-2025", printB, Allow, ""},
		{"signed with a key taken out", []SigningKey{{ID: "ci-2026", PublicKey: pemA}}, "ci-2025", printB, Wait, "cosign was signed with key ci-2025, which the environment no longer trusts"},
		{"an environment with no keys trusts none", nil, "ci-2025", printB, Wait, "which the environment no longer trusts"},
		// The leaked key rotated the usual way: same id, new public key.
		{"the id now names another key", []SigningKey{{ID: "ci-2025", PublicKey: pemA}}, "ci-2025", printB, Wait, "the id now names another key (" + printA + ")"},
		// Recorded by an older build, without a fingerprint: the id alone.
		{"recorded without a fingerprint, its id trusted", []SigningKey{{ID: "ci-2025", PublicKey: pemB}}, "ci-2025", "", Allow, ""},
		{"recorded without a fingerprint, its id taken out", []SigningKey{{ID: "ci-2026", PublicKey: pemA}}, "ci-2025", "", Wait, "which the environment no longer trusts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := evidencePolicy()
			prod := p.Environments["production"]
			prod.SigningKeys = tt.keys
			p.Environments["production"] = prod
			cp := mustCompile(t, p)
			f := goodFacts()
			f.Request.Digest = digestA
			f.Evidence = fullEvidence()
			f.Evidence[2].Format, f.Evidence[2].Signer, f.Evidence[2].SignerKey = EvidenceFormatDSSE, tt.signer, tt.signerKey
			d := Evaluate(cp, f, wednesday)
			if d.Decision != tt.want {
				t.Fatalf("got %s %v, want %s", d.Decision, reasonList(d.Reasons), tt.want)
			}
			if tt.want == Wait && (len(d.Reasons) != 1 || d.Reasons[0].Code != CodeEvidenceMissing ||
				!strings.Contains(d.Reasons[0].Message, tt.why)) {
				t.Fatalf("reasons %+v, want EVIDENCE_MISSING with %q", d.Reasons, tt.why)
			}
		})
	}
}

func TestCurrentEvidence(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	all := []Evidence{
		{ID: "a1", Kind: "tests", Name: "unit", Commit: "abc", RecordedAt: t0},
		{ID: "b1", Kind: "tests", Name: "unit", Commit: "def", RecordedAt: t0.Add(time.Minute)},
		{ID: "a2", Kind: "tests", Name: "unit", Commit: "ABC", RecordedAt: t0.Add(2 * time.Minute)},
		{ID: "c1", Kind: "security_scan", Name: "unit", Commit: "abc", RecordedAt: t0.Add(3 * time.Minute)},
	}
	var ids []string
	for _, e := range CurrentEvidence(all) {
		ids = append(ids, e.ID)
	}
	if !slices.Equal(ids, []string{"b1", "a2", "c1"}) {
		t.Fatalf("current records %v, want b1 a2 c1 (a1 superseded by a2)", ids)
	}
}

func TestKeyFingerprint(t *testing.T) {
	pemA := testKeyPEM(t)
	if got := KeyFingerprint(pemA); !strings.HasPrefix(got, "sha256:") || len(got) != 71 || KeyFingerprint("\n"+pemA+"\n") != got {
		t.Fatalf("KeyFingerprint = %q", got)
	}
	if KeyFingerprint(testKeyPEM(t)) == KeyFingerprint(pemA) || KeyFingerprint("not pem") != "" {
		t.Fatal("fingerprints must tell keys apart and name no key for non-PEM text")
	}
}

// TestEvidenceOfAnotherCommitSaysSo: evidence attached only for another
// commit under the same version is missing for this one, and the reason
// names both commits.
func TestEvidenceOfAnotherCommitSaysSo(t *testing.T) {
	cp := mustCompile(t, evidencePolicy())
	f := goodFacts()
	f.Request.Digest, f.Request.Commit = digestA, "def456"
	f.Evidence = fullEvidence()
	f.Evidence[0].Commit = "abc123"
	d := Evaluate(cp, f, wednesday)
	if len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0].Message, "the tests evidence attached is for commit abc123, not def456") {
		t.Fatalf("reasons %+v, want the tests evidence missing for commit def456", d.Reasons)
	}
}

func TestEvidenceReasonCarriesRuleControlsAndEvidence(t *testing.T) {
	cp := mustCompile(t, evidencePolicy())
	f := goodFacts()
	f.Request.Digest = digestA
	f.Evidence = fullEvidence()
	f.Evidence[1].Findings.MaxSeverity = "critical"
	d := Evaluate(cp, f, wednesday)
	r := d.Reasons[0]
	if r.Code != CodeEvidenceFailed || r.Ref != "no-high-vulns" || !slices.Equal(r.Controls, []string{"SOX-ITGC-CM-05", "HIPAA-164.312(b)"}) ||
		!slices.Equal(r.Evidence, []string{"e2"}) || !strings.Contains(r.Message, "critical") {
		t.Fatalf("reason %+v", r)
	}
	if m := d.Evidence[0]; m.Rule != "tests-pass" || m.Result != MatchPassed || !slices.Equal(m.Evidence, []string{"e1"}) || m.Controls[0] != "SOX-ITGC-CM-03" {
		t.Fatalf("match %+v", m)
	}
}

func TestObserveMode(t *testing.T) {
	cp := mustCompile(t, evidencePolicy())
	tests := []struct {
		name          string
		mod           func(f *Facts)
		want, wouldBe Decision
		reasons       []string
	}{
		{name: "missing evidence would wait", mod: func(*Facts) {}, want: Allow, wouldBe: Wait, reasons: []string{"EVIDENCE_MISSING:wait:tests-pass"}},
		{name: "an unknown change would deny", mod: func(f *Facts) { f.Request.Changes = []string{"CHG404"} },
			want: Allow, wouldBe: Deny, reasons: []string{"CHANGE_NOT_FOUND:deny:CHG404", "EVIDENCE_MISSING:wait:tests-pass"}},
		{name: "what enforce allows has no would_be", mod: func(f *Facts) {
			f.Evidence = fullEvidence()[:1]
		}, want: Allow, wouldBe: "", reasons: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := goodFacts()
			f.Request.Environment = "stage"
			tt.mod(&f)
			d := Evaluate(cp, f, wednesday)
			if d.Decision != tt.want || d.WouldBe != tt.wouldBe {
				t.Fatalf("got %s would_be %q %v, want %s would_be %q", d.Decision, d.WouldBe, reasonList(d.Reasons), tt.want, tt.wouldBe)
			}
			if !slices.Equal(reasonList(d.Reasons), tt.reasons) {
				t.Fatalf("reasons %v, want %v", reasonList(d.Reasons), tt.reasons)
			}
		})
	}
}

func TestHoldRule(t *testing.T) {
	placed := wednesday.Add(-time.Hour)
	hold := func(scope, name string) Hold {
		return Hold{ID: "h1", Scope: scope, Name: name, Reason: "database migration tonight", CreatedBy: "cm-carol", CreatedAt: placed}
	}
	tests := []struct {
		name    string
		env     string
		h       Hold
		want    Decision
		reasons []string
	}{
		{name: "service hold overrides an approved change", h: hold(HoldScopeService, "Checkout"), want: Wait, reasons: []string{"HOLD:wait:h1"}},
		{name: "team hold (catalog team)", h: hold(HoldScopeTeam, "payments"), want: Wait, reasons: []string{"HOLD:wait:h1"}},
		{name: "environment hold", h: hold(HoldScopeEnvironment, "production"), want: Wait, reasons: []string{"HOLD:wait:h1"}},
		{name: "another team's hold listing the service", h: func() Hold {
			h := hold(HoldScopeTeam, "other-team")
			h.Services = []string{"ledger", "CHECKOUT"}
			return h
		}(), want: Wait, reasons: []string{"HOLD:wait:h1"}},
		{name: "another team's hold listing other services", h: func() Hold {
			h := hold(HoldScopeTeam, "other-team")
			h.Services = []string{"ledger"}
			return h
		}(), want: Allow, reasons: []string{}},
		{name: "hold applies in an open environment too", env: "dev", h: hold(HoldScopeEnvironment, "development"), want: Wait, reasons: []string{"HOLD:wait:h1"}},
		{name: "another service's hold", h: hold(HoldScopeService, "ledger"), want: Allow, reasons: []string{}},
		{name: "lifted hold", h: func() Hold {
			h := hold(HoldScopeService, "checkout")
			h.LiftedBy, h.LiftedAt = "cm", tp(wednesday.Add(-time.Minute))
			return h
		}(),
			want: Allow, reasons: []string{}},
		{name: "expired hold", h: func() Hold { h := hold(HoldScopeService, "checkout"); h.Until = tp(wednesday); return h }(), want: Allow, reasons: []string{}},
		{name: "hold placed later", h: func() Hold {
			h := hold(HoldScopeService, "checkout")
			h.CreatedAt = wednesday.Add(time.Second)
			return h
		}(),
			want: Allow, reasons: []string{}},
	}
	cp := mustCompile(t, testPolicy())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := goodFacts()
			if tt.env != "" {
				f.Request.Environment = tt.env
			}
			f.Holds = []Hold{tt.h}
			d := Evaluate(cp, f, wednesday)
			if d.Decision != tt.want || !slices.Equal(reasonList(d.Reasons), tt.reasons) {
				t.Fatalf("got %s %v, want %s %v", d.Decision, reasonList(d.Reasons), tt.want, tt.reasons)
			}
			if tt.want == Wait && (!strings.Contains(d.Reasons[0].Message, "cm-carol") || !strings.Contains(d.Reasons[0].Message, "database migration tonight")) {
				t.Fatalf("HOLD must say who and why: %q", d.Reasons[0].Message)
			}
		})
	}
}

func TestNextChangeHoldExpiry(t *testing.T) {
	cp := mustCompile(t, testPolicy())
	f := goodFacts()
	until := wednesday.Add(30 * time.Minute)
	f.Holds = []Hold{{ID: "h1", Scope: HoldScopeService, Name: "checkout", Reason: "r", CreatedBy: "cm", CreatedAt: wednesday.Add(-time.Hour), Until: &until}}
	next, ok := NextChange(cp, f, wednesday)
	if !ok || !next.Equal(until) {
		t.Fatalf("NextChange = %v %v, want the hold's expiry %v", next, ok, until)
	}
	if d := Evaluate(cp, f, until); d.Decision != Allow {
		t.Fatalf("at expiry: %s %v", d.Decision, reasonList(d.Reasons))
	}
}

func TestApproverMissing(t *testing.T) {
	p := testPolicy()
	p.Approvals = []ApproverRule{{When: ApproverWhen{Risk: "high"}, Groups: []string{"security"}}, {When: ApproverWhen{Tier: TierCustomerFacing}, Groups: []string{"business"}}}
	p.ApproverGroups = map[string][]string{"security": {"sec-sam"}, "business": {"biz-bea"}}
	p.FallbackApprovers = []string{"cto-cleo"}
	p.EmergencyApprovers = []string{"oncall-leads"}
	cp := mustCompile(t, p)
	approvals := func(names ...string) []Approval {
		out := []Approval{}
		for _, n := range names {
			out = append(out, Approval{Approver: n, Decision: ApprovalApproved})
		}
		return out
	}
	tests := []struct {
		name    string
		mod     func(c *Change)
		want    Decision
		reasons []string
		group   string
	}{
		{name: "customer-facing needs business", mod: func(c *Change) { c.Approvals = approvals("cab-alice") }, want: Wait, reasons: []string{"APPROVER_MISSING:wait:CHG1"}, group: "business"},
		{name: "business member approved", mod: func(c *Change) { c.Approvals = approvals("cab-alice", "biz-bea") }, want: Allow, reasons: []string{}},
		{name: "high risk needs security too", mod: func(c *Change) { c.Risk = "High"; c.Approvals = approvals("cab-alice", "biz-bea") }, want: Wait, reasons: []string{"APPROVER_MISSING:wait:CHG1"}, group: "security"},
		{name: "group approval recorded by group name", mod: func(c *Change) { c.Risk = "high"; c.Approvals = approvals("security", "biz-bea") }, want: Allow, reasons: []string{}},
		{name: "fallback approver satisfies every group", mod: func(c *Change) { c.Risk = "high"; c.Approvals = approvals("cto-cleo") }, want: Allow, reasons: []string{}},
		{name: "rejected approval does not count", mod: func(c *Change) {
			c.Approvals = []Approval{{Approver: "biz-bea", Decision: ApprovalRejected}, {Approver: "cab-alice", Decision: ApprovalApproved}}
		},
			want: Wait, reasons: []string{"APPROVER_MISSING:wait:CHG1"}, group: "business"},
		{name: "emergency change without an emergency approver", mod: func(c *Change) { c.Type = ChangeEmergency; c.Approvals = approvals("biz-bea") },
			want: Wait, reasons: []string{"APPROVER_MISSING:wait:CHG1"}, group: "oncall-leads"},
		{name: "emergency change approved by the emergency group", mod: func(c *Change) { c.Type = ChangeEmergency; c.Approvals = approvals("biz-bea", "oncall-leads") },
			want: Allow, reasons: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := goodFacts()
			c := f.Changes["CHG1"]
			tt.mod(&c)
			f.Changes["CHG1"] = c
			d := Evaluate(cp, f, wednesday)
			codes := []string{}
			for _, r := range d.Reasons {
				if r.Code == CodeApproverMissing {
					codes = append(codes, r.Code+":"+string(r.Result)+":"+r.Ref)
				}
			}
			if d.Decision != tt.want || !slices.Equal(codes, tt.reasons) {
				t.Fatalf("got %s %v, want %s %v", d.Decision, reasonList(d.Reasons), tt.want, tt.reasons)
			}
			if tt.group != "" && !strings.Contains(d.Reasons[0].Message, tt.group) {
				t.Fatalf("APPROVER_MISSING must name group %s: %q", tt.group, d.Reasons[0].Message)
			}
		})
	}
}

func TestGovernancePolicyValidation(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(p *Policy)
		field string
	}{
		{name: "unknown evidence kind", mod: func(p *Policy) {
			e := p.Environments["production"]
			e.Evidence = []EvidenceRequirement{{ID: "x", Kind: "sbom"}}
			p.Environments["production"] = e
		}, field: "environments.production.evidence[0].kind"},
		{name: "custom kind declared is fine", mod: func(p *Policy) {
			p.EvidenceKinds = []string{"sbom"}
			e := p.Environments["production"]
			e.Evidence = []EvidenceRequirement{{ID: "x", Kind: "sbom"}}
			p.Environments["production"] = e
		}},
		{name: "requirement without id", mod: func(p *Policy) {
			e := p.Environments["production"]
			e.Evidence = []EvidenceRequirement{{Kind: EvidenceTests}}
			p.Environments["production"] = e
		}, field: "environments.production.evidence[0].id"},
		{name: "unknown severity", mod: func(p *Policy) {
			e := p.Environments["production"]
			e.Evidence = []EvidenceRequirement{{ID: "s", Kind: EvidenceSecurityScan, MaxSeverity: "severe"}}
			p.Environments["production"] = e
		}, field: "environments.production.evidence[0].max_severity"},
		{name: "metric without max", mod: func(p *Policy) {
			e := p.Environments["production"]
			e.Evidence = []EvidenceRequirement{{ID: "p", Kind: EvidencePerformance, Metric: "p99_ms"}}
			p.Environments["production"] = e
		}, field: "environments.production.evidence[0].metric"},
		{name: "unknown mode", mod: func(p *Policy) {
			e := p.Environments["staging"]
			e.Mode = "dry-run"
			p.Environments["staging"] = e
		}, field: "environments.staging.mode"},
		{name: "bad signing key", mod: func(p *Policy) {
			e := p.Environments["production"]
			e.SigningKeys = []SigningKey{{ID: "k", PublicKey: "not pem"}}
			p.Environments["production"] = e
		}, field: "environments.production.signing_keys[0].public_key"},
		{name: "approval rule without groups", mod: func(p *Policy) { p.Approvals = []ApproverRule{{When: ApproverWhen{Risk: "high"}}} }, field: "approvals[0].groups"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			tt.mod(&p)
			err := p.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate = %v, want a problem at %s", err, tt.field)
			}
		})
	}
}
