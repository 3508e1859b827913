package app_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
)

var dialects = []string{"postgres", "sqlite"}

// putPolicy stores p as the policy (admin) and fails unless status is want.
// putPolicyYAML puts the policy source src in force as the bootstrap admin.
func (s *server) putPolicyYAML(src string) {
	s.t.Helper()
	if st := s.do("PUT", "/api/v1/policy", adminSecret, src, nil); st != http.StatusOK {
		s.t.Fatalf("put policy: %d", st)
	}
}

func (s *server) putPolicy(token string, p core.Policy, want int) map[string]any {
	s.t.Helper()
	body, err := json.Marshal(p)
	if err != nil {
		s.t.Fatal(err)
	}
	var out map[string]any
	if st := s.do("PUT", "/api/v1/policy", token, body, &out); st != want {
		s.t.Fatalf("PUT policy: status %d, want %d: %v", st, want, out)
	}
	return out
}

func (s *server) policyVersion() int {
	var out struct{ Version int }
	s.do("GET", "/api/v1/policy", adminSecret, nil, &out)
	return out.Version
}

// TestHoldOverridesApprovedChange: an approved change allows; a change
// manager's hold on the service makes the same check wait with who, why
// and until; a waiting long-poll is answered allow when the hold is
// lifted. Both are audited. PostgreSQL and SQLite.
func TestHoldOverridesApprovedChange(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, e2eConfig)
			ci, _ := s.token(core.RoleCI)
			cm, _ := s.token(core.RoleChangeManager)
			aud, _ := s.token(core.RoleAuditor)
			s.sendWebhook(change("CHG3001", core.ApprovalApproved, time.Now().UTC().Add(-time.Minute)))
			s.waitFor("CHG3001 stored", func() bool { return s.changeState("CHG3001") == "approved" })
			req := map[string]any{"service": "payments-api", "environment": "production", "version": "2.0.0", "changes": []string{"CHG3001"}, "actor": "dave"}
			if a := s.check(ci, "", req); a.Decision != "allow" {
				t.Fatalf("approved change: %s %s", a.Decision, a.codes())
			}

			if st := s.do("POST", "/api/v1/holds", ci, map[string]any{"scope": "service", "name": "payments-api", "reason": "x"}, nil); st != http.StatusForbidden {
				t.Fatalf("ci placing a hold: %d", st)
			}
			for _, bad := range []map[string]any{
				{"scope": "galaxy", "name": "payments-api", "reason": "x"},
				{"scope": "service", "name": "payments-api", "reason": ""},
				{"scope": "environment", "name": "moon", "reason": "x"},
				{"scope": "service", "name": "payments-api", "reason": "x", "until": time.Now().Add(-time.Hour)},
			} {
				if st := s.do("POST", "/api/v1/holds", cm, bad, nil); st != http.StatusBadRequest {
					t.Fatalf("bad hold %v: %d", bad, st)
				}
			}
			var h core.Hold
			until := time.Now().UTC().Add(6 * time.Hour).Truncate(time.Second)
			if st := s.do("POST", "/api/v1/holds", cm, map[string]any{"scope": "service", "name": "payments-api", "reason": "database migration tonight", "until": until}, &h); st != http.StatusCreated {
				t.Fatalf("place hold: %d", st)
			}
			a := s.check(ci, "", req)
			if a.Decision != "wait" || a.codes() != core.CodeHold || !strings.Contains(a.Reasons[0].Message, "database migration tonight") ||
				!strings.Contains(a.Reasons[0].Message, "test-change_manager") || a.Reasons[0].Ref != h.ID {
				t.Fatalf("held: %s %+v", a.Decision, a.Reasons)
			}
			var list struct{ Holds []core.Hold }
			if st := s.do("GET", "/api/v1/holds", aud, nil, &list); st != http.StatusOK || len(list.Holds) != 1 || list.Holds[0].ID != h.ID {
				t.Fatalf("list holds: %d %+v", st, list)
			}

			answered := make(chan gateAnswer, 1)
			go func() { answered <- s.check(ci, "?wait=20s", req) }()
			time.Sleep(300 * time.Millisecond)
			if st := s.do("DELETE", "/api/v1/holds/"+h.ID, cm, nil, nil); st != http.StatusOK {
				t.Fatalf("lift: %d", st)
			}
			select {
			case a := <-answered:
				if a.Decision != "allow" {
					t.Fatalf("after lifting: %s %s", a.Decision, a.codes())
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the waiting check was not answered when the hold was lifted")
			}
			if st := s.do("DELETE", "/api/v1/holds/"+h.ID, cm, nil, nil); st != http.StatusConflict {
				t.Fatalf("lifting twice: %d", st)
			}
			if st := s.do("DELETE", "/api/v1/holds/nope", cm, nil, nil); st != http.StatusNotFound {
				t.Fatalf("lifting an unknown hold: %d", st)
			}
			var audit struct{ Items []core.AuditEntry }
			s.do("GET", "/api/v1/audit?subject=hold:"+h.ID, aud, nil, &audit)
			seen := map[string]bool{}
			for _, e := range audit.Items {
				if e.Subject == "hold:"+h.ID {
					seen[e.Action] = true
				}
			}
			if !seen["hold.create"] || !seen["hold.lift"] {
				t.Fatalf("audit of the hold: %v", seen)
			}
		})
	}
}

// TestTeamHoldHoldsItsServices: a team hold lists the services the team
// released (the catalog's, and those recorded with the team that the
// catalog gives to no other team), and holds their checks whatever team
// they name, or none; other teams' services are not held.
func TestTeamHoldHoldsItsServices(t *testing.T) {
	s := boot(t, "postgres", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	cm, _ := s.token(core.RoleChangeManager)
	chg := change("CHG3101", core.ApprovalApproved, time.Now().UTC().Add(-time.Minute))
	chg["services"] = []string{"search-api", "ledger-api", "checkout-api"}
	s.sendWebhook(chg)
	s.waitFor("CHG3101 stored", func() bool { return s.changeState("CHG3101") == "approved" })
	for i, d := range []struct{ service, team string }{{"search-api", "Search"}, {"ledger-api", "ledger"}} {
		if st := s.do("POST", "/api/v1/deployments", ci, map[string]any{"service": d.service, "environment": "staging", "version": "1.0.0",
			"team": d.team, "status": "succeeded", "started_at": time.Now().UTC(), "provider": "github", "run_id": fmt.Sprint(9100 + i)}, nil); st != http.StatusCreated {
			t.Fatalf("deployment of %s: %d", d.service, st)
		}
	}
	var h core.Hold
	if st := s.do("POST", "/api/v1/holds", cm, map[string]any{"scope": "team", "name": "SEARCH", "reason": "search outage review"}, &h); st != http.StatusCreated ||
		!slices.Equal(h.Services, []string{"search-api"}) {
		t.Fatalf("team hold: %d, services %v, want [search-api]", st, h.Services)
	}
	for _, team := range []string{"", "someone-else", "search"} {
		req := map[string]any{"service": "search-api", "environment": "production", "version": "1.1.0", "team": team, "changes": []string{"CHG3101"}}
		if a := s.check(ci, "", req); a.Decision != "wait" || !strings.Contains(a.codes(), core.CodeHold) {
			t.Errorf("search-api naming team %q: %s %s, want held", team, a.Decision, a.codes())
		}
	}
	if a := s.check(ci, "", map[string]any{"service": "ledger-api", "environment": "production", "version": "1.1.0", "changes": []string{"CHG3101"}}); a.Decision != "allow" {
		t.Errorf("another team's service: %s %s, want allow", a.Decision, a.codes())
	}
}

type edSigner struct{ priv ed25519.PrivateKey }

func (s edSigner) Sign(_ context.Context, data []byte) ([]byte, error) {
	return ed25519.Sign(s.priv, data), nil
}
func (s edSigner) KeyID() (string, error) { return "ci-key", nil }

// signedStatement returns a DSSE envelope over an in-toto statement naming
// digest, signed by priv.
func signedStatement(t *testing.T, priv ed25519.PrivateKey, digest string) json.RawMessage {
	t.Helper()
	stmt := `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"registry.example.com/payments-api","digest":{"sha256":"` +
		strings.TrimPrefix(digest, "sha256:") + `"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}`
	signer, err := dsse.NewEnvelopeSigner(edSigner{priv})
	if err != nil {
		t.Fatal(err)
	}
	env, err := signer.SignPayload(context.Background(), "application/vnd.in-toto+json", []byte(stmt))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(env)
	return b
}

func evidenceTestPolicy(t *testing.T, pub ed25519.PublicKey) core.Policy {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := core.DefaultPolicy()
	prod := p.Environments["production"]
	prod.Evidence = []core.EvidenceRequirement{
		{ID: "tests-pass", Kind: core.EvidenceTests, Controls: []string{"SOX-ITGC-CM-03"}},
		{ID: "no-high-vulns", Kind: core.EvidenceSecurityScan, MaxSeverity: "medium", Controls: []string{"SOX-ITGC-CM-05"}},
		{ID: "signed", Kind: core.EvidenceArtifactSignature, DigestMatchesDeployment: true},
	}
	prod.SigningKeys = []core.SigningKey{{ID: "ci-key", PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}}
	p.Environments["production"] = prod
	return p
}

func testdata(t *testing.T, name string) string {
	b, err := os.ReadFile(filepath.Join("..", "evidence", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestEvidenceFailsClosed attaches evidence through the API: every
// degenerate input is refused with a 400 and the reason, and nothing of it
// is recorded; the gate waits on missing evidence, denies on failing
// evidence and allows once every requirement passes, binding the
// signature to the digest deployed and evidence attached for a commit to
// that commit. PostgreSQL and SQLite.
func manyMetrics(n int) map[string]float64 {
	m := make(map[string]float64, n)
	for i := range n {
		m[fmt.Sprintf("p%d", i)] = float64(i)
	}
	return m
}

// TestEvidencePerReleaseBounded: every gate check of a release reads its
// evidence and records the current records in the decision, so one
// release takes at most service.MaxEvidencePerRelease current records
// (kind, name, commit): a new name past them is refused (409) naming the
// limit, while a re-run's record of a name it holds is taken.
func TestEvidencePerReleaseBounded(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	ref := map[string]any{"service": "payments-api", "environment": "production", "version": "3.1.0"}
	id := core.ReleaseID("payments-api", "3.1.0", "production")
	for i := range service.MaxEvidencePerRelease {
		body := map[string]any{"kind": "approval_checklist", "name": fmt.Sprintf("c%d", i), "status": "passed", "release": ref}
		if st := s.do("POST", "/api/v1/releases/"+id+"/evidence", ci, body, nil); st != http.StatusCreated {
			t.Fatalf("record %d: %d", i, st)
		}
	}
	var out struct{ Error struct{ Message string } }
	body := map[string]any{"kind": "approval_checklist", "name": "one-more", "status": "passed"}
	if st := s.do("POST", "/api/v1/releases/"+id+"/evidence", ci, body, &out); st != http.StatusConflict || !strings.Contains(out.Error.Message, "the most one release takes") {
		t.Fatalf("one record too many: %d %+v, want 409 naming the limit", st, out.Error)
	}
	again := map[string]any{"kind": "approval_checklist", "name": "c7", "status": "failed"}
	if st := s.do("POST", "/api/v1/releases/"+id+"/evidence", ci, again, nil); st != http.StatusCreated {
		t.Fatalf("a re-run's record of a name the release holds: %d, want 201", st)
	}
}

func TestEvidenceFailsClosed(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	const digest = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
	const other = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, e2eConfig)
			ci, _ := s.token(core.RoleCI)
			aud, _ := s.token(core.RoleAuditor)
			s.putPolicy(adminSecret, evidenceTestPolicy(t, pub), http.StatusOK)
			s.sendWebhook(change("CHG4001", core.ApprovalApproved, time.Now().UTC().Add(-time.Minute)))
			s.waitFor("CHG4001 stored", func() bool { return s.changeState("CHG4001") == "approved" })
			req := map[string]any{"service": "payments-api", "environment": "production", "version": "3.0.0", "changes": []string{"CHG4001"}, "digest": digest}
			a := s.check(ci, "", req)
			if a.Decision != "wait" || a.codes() != "EVIDENCE_MISSING,EVIDENCE_MISSING,EVIDENCE_MISSING" {
				t.Fatalf("no evidence: %s %s", a.Decision, a.codes())
			}
			if a.Reasons[0].Ref != "tests-pass" || a.Reasons[0].Controls[0] != "SOX-ITGC-CM-03" {
				t.Fatalf("reason must name rule and controls: %+v", a.Reasons[0])
			}
			path := "/api/v1/releases/" + a.ReleaseID + "/evidence"
			tampered := signedStatement(t, priv, digest)
			tampered = bytes.Replace(tampered, []byte(`"payload":"`), []byte(`"payload":"A`), 1)
			refused := []struct {
				name string
				body map[string]any
				want string
			}{
				{"empty status", map[string]any{"kind": "approval_checklist", "name": "cab", "status": ""}, "status"},
				{"a status for tests", map[string]any{"kind": "tests", "name": "unit", "status": "passed"}, "JUnit report"},
				{"a status for a scan", map[string]any{"kind": "security_scan", "name": "gosec", "status": "passed"}, "SARIF scan"},
				{"a status for a signature", map[string]any{"kind": "artifact_signature", "name": "cosign", "status": "passed", "digest": digest}, "signed DSSE envelope"},
				{"a scan for tests", map[string]any{"kind": "tests", "name": "unit", "sarif": json.RawMessage(testdata(t, "gosec.sarif"))}, "JUnit report"},
				{"no document", map[string]any{"kind": "tests", "name": "unit"}, "exactly one"},
				{"unknown kind", map[string]any{"kind": "sbom", "name": "x", "status": "passed"}, "unknown evidence kind"},
				{"zero tests", map[string]any{"kind": "tests", "name": "unit", "junit": testdata(t, "junit-zero-tests.xml")}, "zero tests"},
				{"empty junit", map[string]any{"kind": "tests", "name": "unit", "junit": ""}, "empty"},
				{"sarif without a run", map[string]any{"kind": "security_scan", "name": "gosec", "sarif": json.RawMessage(testdata(t, "sarif-no-runs.sarif"))}, "no run"},
				{"tampered envelope", map[string]any{"kind": "artifact_signature", "name": "cosign", "dsse": tampered}, "dsse"},
				{"untrusted key", map[string]any{"kind": "artifact_signature", "name": "cosign", "dsse": signedStatement(t, otherPriv, digest)}, "does not verify"},
				{"envelope for another digest", map[string]any{"kind": "artifact_signature", "name": "cosign", "dsse": signedStatement(t, priv, digest), "digest": other}, "not " + other},
				{"bad digest", map[string]any{"kind": "tests", "name": "unit", "status": "passed", "digest": "sha256:xyz"}, "digest"},
				{"too many measurements", map[string]any{"kind": "performance", "name": "k6", "status": "passed", "metrics": manyMetrics(service.MaxEvidenceMetrics + 1)}, "metrics"},
			}
			for _, r := range refused {
				var out struct {
					Error struct{ Message, Field string }
				}
				if st := s.do("POST", path, ci, r.body, &out); st != http.StatusBadRequest || !strings.Contains(out.Error.Field+" "+out.Error.Message, r.want) {
					t.Fatalf("%s: %d %+v, want 400 naming %q", r.name, st, out.Error, r.want)
				}
			}
			var rel struct {
				ID       string
				Evidence []core.Evidence
			}
			if st := s.do("GET", "/api/v1/releases/"+a.ReleaseID, aud, nil, &rel); st != http.StatusOK || len(rel.Evidence) != 0 {
				t.Fatalf("refused evidence was recorded: %d %+v", st, rel.Evidence)
			}

			attach := func(body map[string]any) {
				t.Helper()
				var e core.Evidence
				if st := s.do("POST", path, ci, body, &e); st != http.StatusCreated {
					t.Fatalf("attach %v: %d", body["name"], st)
				}
			}
			attach(map[string]any{"kind": "tests", "name": "unit", "junit": testdata(t, "gotestsum-failing.xml")})
			attach(map[string]any{"kind": "security_scan", "name": "semgrep", "sarif": json.RawMessage(testdata(t, "semgrep-clean.sarif"))})
			attach(map[string]any{"kind": "artifact_signature", "name": "cosign", "dsse": signedStatement(t, priv, digest)})
			var mismatch struct{ Error struct{ Message string } }
			if st := s.do("POST", path, ci, map[string]any{"kind": "performance", "name": "k6", "status": "passed", "digest": other}, &mismatch); st != http.StatusBadRequest ||
				!strings.Contains(mismatch.Error.Message, "does not match the release's artifact") {
				t.Fatalf("digest mismatch: %d %+v", st, mismatch)
			}
			if a := s.check(ci, "", req); a.Decision != "deny" || a.codes() != core.CodeEvidenceFailed || a.Reasons[0].Ref != "tests-pass" {
				t.Fatalf("failing tests: %s %+v", a.Decision, a.Reasons)
			}
			if a := s.check(ci, "", map[string]any{"service": "payments-api", "environment": "production", "version": "3.0.0", "changes": []string{"CHG4001"}, "digest": other}); a.Decision != "deny" ||
				!strings.Contains(a.codes(), core.CodeEvidenceFailed) || !strings.Contains(a.Reasons[len(a.Reasons)-1].Message, "digest") {
				t.Fatalf("another artifact deployed: %s %+v", a.Decision, a.Reasons)
			}
			attach(map[string]any{"kind": "tests", "name": "unit", "junit": testdata(t, "gotestsum-passing.xml")})
			if a := s.check(ci, "", req); a.Decision != "allow" {
				t.Fatalf("all evidence passes: %s %+v", a.Decision, a.Reasons)
			}
			s.do("GET", "/api/v1/releases/"+a.ReleaseID, aud, nil, &rel)
			if len(rel.Evidence) != 4 || rel.Evidence[2].Signer != "ci-key" || rel.Evidence[2].Digest != digest || rel.Evidence[0].RecordedBy == "" {
				t.Fatalf("release evidence: %+v", rel.Evidence)
			}

			// Evidence attached for a commit proves nothing about other code
			// shipped under the same version.
			shaA, shaB := strings.Repeat("a", 40), strings.Repeat("b", 40)
			ref := map[string]any{"service": "payments-api", "environment": "production", "version": "3.1.0", "commit": strings.ToUpper(shaA)}
			path = "/api/v1/releases/" + core.ReleaseID("payments-api", "3.1.0", "production") + "/evidence"
			attach(map[string]any{"kind": "tests", "name": "unit", "junit": testdata(t, "gotestsum-passing.xml"), "release": ref})
			attach(map[string]any{"kind": "security_scan", "name": "semgrep", "sarif": json.RawMessage(testdata(t, "semgrep-clean.sarif")), "release": ref})
			attach(map[string]any{"kind": "artifact_signature", "name": "cosign", "dsse": signedStatement(t, priv, digest), "release": ref})
			reqB := map[string]any{"service": "payments-api", "environment": "production", "version": "3.1.0", "changes": []string{"CHG4001"}, "digest": digest, "commit": shaB}
			if a := s.check(ci, "", reqB); a.Decision != "wait" || a.codes() != "EVIDENCE_MISSING,EVIDENCE_MISSING,EVIDENCE_MISSING" ||
				!strings.Contains(a.Reasons[0].Message, "is for commit "+shaA+", not "+shaB) {
				t.Fatalf("the version reused for commit B: %s %+v, want evidence missing for B", a.Decision, a.Reasons)
			}
			reqB["commit"] = shaA
			if a := s.check(ci, "", reqB); a.Decision != "allow" {
				t.Fatalf("commit A, its evidence attached: %s %+v", a.Decision, a.Reasons)
			}

			// Attached by release id alone, evidence is the commit's the
			// release was checked with, not every commit's.
			reqC := map[string]any{"service": "payments-api", "environment": "production", "version": "3.2.0", "changes": []string{"CHG4001"}, "digest": digest, "commit": shaA}
			if a := s.check(ci, "", reqC); a.Decision != "wait" {
				t.Fatalf("3.2.0 before its evidence: %s %+v", a.Decision, a.Reasons)
			}
			path = "/api/v1/releases/" + core.ReleaseID("payments-api", "3.2.0", "production") + "/evidence"
			attach(map[string]any{"kind": "tests", "name": "unit", "junit": testdata(t, "gotestsum-passing.xml")})
			attach(map[string]any{"kind": "security_scan", "name": "semgrep", "sarif": json.RawMessage(testdata(t, "semgrep-clean.sarif"))})
			attach(map[string]any{"kind": "artifact_signature", "name": "cosign", "dsse": signedStatement(t, priv, digest)})
			reqC["commit"] = shaB
			if a := s.check(ci, "", reqC); a.Decision != "wait" || a.codes() != "EVIDENCE_MISSING,EVIDENCE_MISSING,EVIDENCE_MISSING" {
				t.Fatalf("3.2.0 for commit B, evidence attached by release id for A: %s %+v, want evidence missing", a.Decision, a.Reasons)
			}
			reqC["commit"] = shaA
			if a := s.check(ci, "", reqC); a.Decision != "allow" {
				t.Fatalf("3.2.0 for commit A: %s %+v", a.Decision, a.Reasons)
			}
		})
	}
}

// TestObserveModeEndToEnd runs the same checks against two environments
// with the same rules, one enforcing and one observing: the observing one
// blocks nothing and reports exactly what the enforcing one answered.
func TestObserveModeEndToEnd(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	start := time.Now().UTC().Add(-time.Second)
	p := core.DefaultPolicy()
	req := []core.EvidenceRequirement{{ID: "tests-pass", Kind: core.EvidenceTests, Controls: []string{"SOX-ITGC-CM-03"}}}
	p.Environments["live"] = core.EnvironmentPolicy{Preset: core.PresetStrict, Evidence: req}
	p.Environments["shadow"] = core.EnvironmentPolicy{Preset: core.PresetStrict, Evidence: req, Mode: core.ModeObserve}
	s.putPolicy(adminSecret, p, http.StatusOK)
	s.sendWebhook(change("CHG5001", core.ApprovalApproved, time.Now().UTC().Add(-time.Minute)))
	s.sendWebhook(change("CHG5002", core.ApprovalRequested, time.Now().UTC().Add(-time.Minute)))
	s.waitFor("changes stored", func() bool { return s.changeState("CHG5002") == "requested" })

	type answer struct {
		gateAnswer
		WouldBe string `json:"would_be"`
	}
	blocked := 0
	for i, changes := range [][]string{{"CHG5001"}, {"CHG5002"}, {"CHG404"}, {}} {
		for _, withTests := range []bool{false, true} {
			version := "1.0." + string(rune('0'+i)) + map[bool]string{false: "-a", true: "-b"}[withTests]
			var enforce, observe answer
			for env, out := range map[string]*answer{"live": &enforce, "shadow": &observe} {
				body := map[string]any{"service": "payments-api", "environment": env, "version": version, "changes": changes}
				if withTests {
					rid := core.ReleaseID("payments-api", version, env)
					if st := s.do("POST", "/api/v1/releases/"+rid+"/evidence", ci, map[string]any{"kind": "tests", "name": "unit", "junit": testdata(t, "gotestsum-passing.xml"),
						"release": map[string]any{"service": "payments-api", "environment": env, "version": version}}, nil); st != http.StatusCreated {
						t.Fatalf("attach: %d", st)
					}
				}
				if st := s.do("POST", "/api/v1/gate/check", ci, body, out); st != http.StatusOK {
					t.Fatalf("check: %d", st)
				}
			}
			if observe.Decision != "allow" {
				t.Fatalf("observe mode blocked: %+v", observe)
			}
			want := ""
			if enforce.Decision != "allow" {
				want = enforce.Decision
				blocked++
			}
			if observe.WouldBe != want || observe.codes() != enforce.codes() {
				t.Fatalf("changes %v tests %v: observe would_be %q %s, enforce %s %s", changes, withTests, observe.WouldBe, observe.codes(), enforce.Decision, enforce.codes())
			}
		}
	}
	if blocked < 6 {
		t.Fatalf("the scenario should block most releases under enforce, blocked %d", blocked)
	}
	var report struct{ Items []map[string]any }
	q := "/api/v1/reports/observe?environment=shadow&from=" + start.Format(time.RFC3339) + "&to=" + time.Now().UTC().Add(time.Minute).Format(time.RFC3339)
	if st := s.do("GET", q, adminSecret, nil, &report); st != http.StatusOK || len(report.Items) != blocked {
		t.Fatalf("observe report: %d, %d items, want the %d enforce blocked", st, len(report.Items), blocked)
	}
}

// TestFourEyes: with governance.four_eyes a policy change is a proposal
// (202) that is not in force until a second admin confirms it; the
// proposer cannot confirm their own — nor can the token that made the
// proposer's, nor one the proposer's made —, an unknown proposal is 404, a
// decided one 409, one made against a policy version that changed since
// 409; both names are in the audit trail.
func TestFourEyes(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, e2eConfig+"governance:\n  four_eyes: true\n")
			mint := func(by, name string) string {
				t.Helper()
				var out struct{ Token string }
				if st := s.do("POST", "/api/v1/tokens", by, map[string]any{"name": name, "role": core.RoleAdmin}, &out); st != http.StatusCreated {
					t.Fatalf("create token %s: %d", name, st)
				}
				return out.Token
			}
			// Two people's tokens, made by the bootstrap admin.
			alice, bob := mint(adminSecret, "alice"), mint(adminSecret, "bob")
			v0 := s.policyVersion()
			p := core.DefaultPolicy()
			prod := p.Environments["production"]
			prod.Mode = core.ModeObserve
			p.Environments["production"] = prod
			propose := func(by string, pol core.Policy) core.Proposal {
				t.Helper()
				out := s.putPolicy(by, pol, http.StatusAccepted)
				raw, _ := json.Marshal(out["proposal"])
				var pr core.Proposal
				_ = json.Unmarshal(raw, &pr)
				return pr
			}
			pr := propose(alice, p)
			if pr.ID == "" || pr.Status != core.ProposalPending || s.policyVersion() != v0 || pr.BaseVersion != v0 {
				t.Fatalf("proposal %+v, version %d (was %d)", pr, s.policyVersion(), v0)
			}
			bad := p
			bad.Environments = map[string]core.EnvironmentPolicy{"production": {Mode: "dry-run"}}
			s.putPolicy(alice, bad, http.StatusBadRequest)

			// The proposer, the token that made hers, and a token she makes
			// now are all hers as far as tollgate can tell.
			for who, token := range map[string]string{"the proposer": alice, "the token that made hers": adminSecret, "a token she made": mint(alice, "alice-2")} {
				if st := s.do("POST", "/api/v1/proposals/"+pr.ID+"/confirm", token, nil, nil); st != http.StatusForbidden {
					t.Fatalf("confirmed by %s: %d, want 403", who, st)
				}
			}
			if st := s.do("POST", "/api/v1/proposals/nope/confirm", bob, nil, nil); st != http.StatusNotFound {
				t.Fatalf("unknown proposal: %d", st)
			}
			if s.policyVersion() != v0 {
				t.Fatal("a refused confirmation changed the policy")
			}
			// A second proposal made against the same version goes stale
			// when the first is confirmed: confirming it would undo the first.
			stale := p
			stale.TimeZone = "Europe/Berlin"
			second := propose(alice, stale)
			if st := s.do("POST", "/api/v1/proposals/"+pr.ID+"/confirm", bob, nil, &pr); st != http.StatusOK || pr.Status != core.ProposalConfirmed {
				t.Fatalf("confirm: %d %+v", st, pr)
			}
			if s.policyVersion() != v0+1 {
				t.Fatalf("confirmed policy not in force: version %d", s.policyVersion())
			}
			if st := s.do("POST", "/api/v1/proposals/"+pr.ID+"/confirm", bob, nil, nil); st != http.StatusConflict {
				t.Fatalf("confirming twice: %d", st)
			}
			var errBody struct{ Error struct{ Message string } }
			if st := s.do("POST", "/api/v1/proposals/"+second.ID+"/confirm", bob, nil, &errBody); st != http.StatusConflict ||
				!strings.Contains(errBody.Error.Message, "changed since the proposal") || s.policyVersion() != v0+1 {
				t.Fatalf("confirming a proposal made against an older version: %d %q, version %d", st, errBody.Error.Message, s.policyVersion())
			}
			var audit struct{ Items []core.AuditEntry }
			s.do("GET", "/api/v1/audit?subject=proposal:"+pr.ID, adminSecret, nil, &audit)
			var created, confirmed core.AuditEntry
			for _, e := range audit.Items {
				switch {
				case e.Subject == "proposal:"+pr.ID && e.Action == "proposal.create":
					created = e
				case e.Subject == "proposal:"+pr.ID && e.Action == "proposal.confirmed":
					confirmed = e
				}
			}
			if created.Actor == "" || confirmed.Actor == "" || created.Actor == confirmed.Actor || !strings.Contains(string(confirmed.Data), created.Actor) {
				t.Fatalf("audit: created %+v confirmed %+v", created, confirmed)
			}
			// Mapping changes are proposals too.
			if st := s.do("PUT", "/api/v1/mappings/x", alice, "name: y\n", nil); st != http.StatusBadRequest {
				t.Fatalf("mapping proposal with a wrong name: %d", st)
			}
			var del struct{ Proposal core.Proposal }
			if st := s.do("DELETE", "/api/v1/mappings/servicenow", alice, nil, &del); st != http.StatusAccepted || del.Proposal.Kind != core.ProposalMappingDelete {
				t.Fatalf("mapping delete under four-eyes: %d %+v", st, del)
			}
			if st := s.do("POST", "/api/v1/proposals/"+del.Proposal.ID+"/withdraw", alice, nil, nil); st != http.StatusOK {
				t.Fatalf("withdraw: %d", st)
			}
			if st := s.do("POST", "/api/v1/proposals/"+del.Proposal.ID+"/confirm", bob, nil, nil); st != http.StatusConflict {
				t.Fatalf("confirming a withdrawn proposal: %d", st)
			}
		})
	}
}

// TestSimulatePolicy seeds deployments and gate checks, then simulates a
// stricter policy: every recorded release is judged by both policies, the
// policy in force agreeing with what the gate answered, the proposed one
// waiting on the evidence it would require.
func TestSimulatePolicy(t *testing.T) {
	s := boot(t, "postgres", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	cm, _ := s.token(core.RoleChangeManager)
	from := time.Now().UTC().Add(-time.Hour)
	s.sendWebhook(change("CHG6001", core.ApprovalApproved, time.Now().UTC().Add(-2*time.Minute)))
	s.waitFor("CHG6001 stored", func() bool { return s.changeState("CHG6001") == "approved" })
	recorded := map[string]string{}
	for _, v := range []string{"4.0.0", "4.0.1"} {
		a := s.check(ci, "", map[string]any{"service": "payments-api", "environment": "production", "version": v, "changes": []string{"CHG6001"}})
		recorded[a.ReleaseID] = a.Decision
	}
	a := s.check(ci, "", map[string]any{"service": "payments-api", "environment": "production", "version": "4.0.2", "changes": []string{"CHG404"}})
	recorded[a.ReleaseID] = a.Decision
	if st := s.do("POST", "/api/v1/deployments", ci, map[string]any{"service": "payments-api", "environment": "production", "version": "4.0.0",
		"changes": []string{"CHG6001"}, "status": "succeeded", "started_at": time.Now().UTC(), "provider": "github", "run_id": "77"}, nil); st/100 != 2 {
		t.Fatalf("deployment: %d", st)
	}
	p := core.DefaultPolicy()
	prod := p.Environments["production"]
	prod.Evidence = []core.EvidenceRequirement{{ID: "tests-pass", Kind: core.EvidenceTests}}
	p.Environments["production"] = prod
	pol, _ := json.Marshal(p)
	body, _ := json.Marshal(map[string]any{"policy": json.RawMessage(pol), "from": from, "to": time.Now().UTC().Add(time.Minute), "environment": "prod"})

	if st := s.do("POST", "/api/v1/policy/simulate", ci, body, nil); st != http.StatusForbidden {
		t.Fatalf("ci simulating: %d", st)
	}
	bad, _ := json.Marshal(map[string]any{"policy": map[string]any{"environments": map[string]any{}}, "from": from, "to": time.Now()})
	if st := s.do("POST", "/api/v1/policy/simulate", cm, bad, nil); st != http.StatusBadRequest {
		t.Fatalf("invalid proposed policy: %d", st)
	}
	req, _ := http.NewRequest("POST", s.url+"/api/v1/policy/simulate", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+cm)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("simulate: %d %s", resp.StatusCode, raw)
	}
	var items []map[string]json.RawMessage
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		items = append(items, line)
	}
	if len(items) != 4 || items[3]["summary"] == nil {
		t.Fatalf("want 3 releases and a summary, got %d lines", len(items))
	}
	sources := map[string]int{}
	for _, it := range items[:3] {
		var r struct {
			Source   string                    `json:"source"`
			ID       string                    `json:"release_id"`
			InForce  struct{ Decision string } `json:"in_force"`
			Proposed struct {
				Decision string
				Reasons  []core.Reason
			} `json:"proposed"`
			Changed bool
		}
		_ = json.Unmarshal(it["release"], &r)
		sources[r.Source]++
		if got := recorded[r.ID]; r.InForce.Decision != got {
			t.Fatalf("%s: in force %s, the gate answered %s", r.ID, r.InForce.Decision, got)
		}
		if got := recorded[r.ID]; got == "allow" && (r.Proposed.Decision != "wait" || r.Proposed.Reasons[0].Code != core.CodeEvidenceMissing || !r.Changed) {
			t.Fatalf("%s: proposed %+v", r.ID, r.Proposed)
		}
	}
	if sources["deployment"] != 1 || sources["gate_check"] != 2 {
		t.Fatalf("sources %v", sources)
	}
	var sum struct {
		Releases, Changed int
	}
	_ = json.Unmarshal(items[3]["summary"], &sum)
	if sum.Releases != 3 || sum.Changed != 2 {
		t.Fatalf("summary %+v", sum)
	}
}
