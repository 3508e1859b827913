package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// governanceHistory seeds deployments of service ledger to production
// whose evidence and holds differ, through the store's own API.
func governanceHistory(t *testing.T, db *DB) {
	t.Helper()
	ctx := context.Background()
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	c := core.Change{
		Source: "snow", Key: "CHG-L", Type: core.ChangeNormal, State: core.ChangeStateScheduled, Approval: core.ApprovalApproved,
		Approvals:    []core.Approval{{Approver: "cab-alice", Decision: core.ApprovalApproved, At: rtp(base.Add(-48 * time.Hour))}},
		PlannedStart: rtp(base.Add(-24 * time.Hour)), PlannedEnd: rtp(base.Add(30 * 24 * time.Hour)),
		Services: []string{"ledger"}, RequestedBy: "bob", HasRiskAssessment: true, HasBackoutPlan: true,
		SourceUpdatedAt: base.Add(-72 * time.Hour),
	}
	if _, err := db.UpsertChange(ctx, c); err != nil {
		t.Fatal(err)
	}
	const digest = "sha256:aaaa"
	n := 0
	type ev struct {
		kind, status, digest string
		at                   time.Duration // from the deployment's start
	}
	deploy := func(version string, at time.Time, evs ...ev) {
		t.Helper()
		n++
		relID := core.ReleaseID("ledger", version, "production")
		if _, err := db.UpsertRelease(ctx, core.Release{Service: "ledger", Version: version, Environment: "production", Team: "payments", Changes: []string{"CHG-L"}}); err != nil {
			t.Fatal(err)
		}
		for i, e := range evs {
			rec := core.Evidence{ID: fmt.Sprintf("ev-%d-%d", n, i), ReleaseID: relID, Kind: e.kind, Name: e.kind, Status: e.status,
				Digest: e.digest, RecordedBy: "token:ci", RecordedAt: at.Add(e.at)}
			if _, err := db.AddEvidence(ctx, rec); err != nil {
				t.Fatalf("add evidence: %v", err)
			}
		}
		dec := core.GateDecision{
			ID: fmt.Sprintf("00000000-0000-7000-8000-1%011d", n), ReleaseID: relID, Decision: core.Allow, PolicyVersion: 1,
			EvaluatedAt: at.Add(-time.Minute), Reasons: []core.Reason{},
			Request: core.GateRequest{Service: "ledger", Environment: "production", Version: version, Commit: "c" + version,
				Team: "payments", Changes: []string{"CHG-L"}, Digest: digest},
		}
		if err := db.SaveDecision(ctx, dec, "token:ci"); err != nil {
			t.Fatal(err)
		}
		d := core.Deployment{
			ReleaseID: relID, Service: "ledger", Environment: "production", Version: version, Commit: "c" + version, Team: "payments",
			Status: core.DeploySucceeded, StartedAt: at, FinishedAt: rtp(at.Add(10 * time.Minute)), Actor: "dora",
			Changes: []string{"CHG-L"}, Provider: "github", RunID: fmt.Sprint(n),
		}
		if _, _, err := db.RecordDeployment(ctx, d, "test"); err != nil {
			t.Fatal(err)
		}
	}
	passed := func(kind string) ev { return ev{kind, core.EvidencePassed, digest, -time.Hour} }
	signed := ev{core.EvidenceArtifactSignature, core.EvidencePassed, digest, -time.Hour}
	deploy("2.0.0", base, passed(core.EvidenceTests), signed)                                                                                   // compliant
	deploy("2.0.1", base.Add(time.Hour), signed)                                                                                                // EVIDENCE_MISSING tests-pass
	deploy("2.0.2", base.Add(2*time.Hour), ev{core.EvidenceTests, core.EvidenceFailed, "", -time.Hour}, signed)                                 // EVIDENCE_FAILED tests-pass
	deploy("2.0.3", base.Add(3*time.Hour), ev{core.EvidenceTests, core.EvidencePassed, "", time.Minute}, signed)                                // attached after: EVIDENCE_MISSING
	deploy("2.0.4", base.Add(4*time.Hour), passed(core.EvidenceTests), ev{core.EvidenceArtifactSignature, "passed", "sha256:bbbb", -time.Hour}) // EVIDENCE_FAILED signed
	// A hold on the service from base+4h30 to base+6h: 2.0.5 deployed in it.
	if _, err := db.CreateHold(ctx, core.Hold{ID: "hold-1", Scope: core.HoldScopeService, Name: "ledger", Reason: "audit week",
		CreatedAt: base.Add(4*time.Hour + 30*time.Minute)}, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.LiftHold(ctx, "hold-1", "carol", base.Add(6*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A hold placed after the cut-off is not read.
	if _, err := db.CreateHold(ctx, core.Hold{ID: "hold-2", Scope: core.HoldScopeEnvironment, Name: "production", Reason: "later",
		CreatedAt: time.Date(2026, 12, 21, 0, 0, 0, 0, time.UTC)}, "carol"); err != nil {
		t.Fatal(err)
	}
	deploy("2.0.5", base.Add(5*time.Hour), passed(core.EvidenceTests), signed) // HOLD
	deploy("2.0.6", base.Add(7*time.Hour), passed(core.EvidenceTests), signed) // after the lift: compliant
}

// governancePolicy requires passing tests (a SOX control) and a signature
// of the deployed digest in production.
func governancePolicy(t *testing.T) *core.CompiledPolicy {
	t.Helper()
	p := core.DefaultPolicy()
	prod := p.Environments["production"]
	prod.Evidence = []core.EvidenceRequirement{
		{ID: "tests-pass", Kind: core.EvidenceTests, Controls: []string{"SOX-ITGC-CM-03"}},
		{ID: "signed", Kind: core.EvidenceArtifactSignature, DigestMatchesDeployment: true},
	}
	p.Environments["production"] = prod
	cp, err := core.Compile(p, 1)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestReconcileScanEvidenceAndHolds: the scan gives each deployment the
// holds and its release's evidence as of its start, and PostgreSQL and
// SQLite agree, in any page size.
func TestReconcileScanEvidenceAndHolds(t *testing.T) {
	want := []string{
		"2.0.1 EVIDENCE_MISSING tests-pass",
		"2.0.2 EVIDENCE_FAILED tests-pass",
		"2.0.3 EVIDENCE_MISSING tests-pass",
		"2.0.4 EVIDENCE_FAILED signed",
		"2.0.5 HOLD hold-1",
	}
	cp := governancePolicy(t)
	cutoff := time.Date(2026, 12, 20, 0, 0, 0, 0, time.UTC)
	q := core.ReconcileQuery{From: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC),
		Service: "ledger", Cutoff: cutoff}
	results := map[string][]string{}
	for _, dialect := range []string{Postgres, SQLite} {
		clock := &testClock{t: time.Date(2026, 12, 19, 0, 0, 0, 0, time.UTC)}
		db := newTestDB(t, dialect, clock)
		governanceHistory(t, db)
		for _, page := range []int{1, 3, 1000} {
			var keys, lines []string
			err := db.ReconcileScan(context.Background(), q, cp.IsMajor, page, func(ds []core.DeploymentFacts) error {
				for _, df := range ds {
					for _, f := range core.ReconcileDeployment(cp, df, cutoff, core.ReconcileOptions{}) {
						keys = append(keys, f.Deployment.Version+" "+f.Code+" "+f.Ref)
						f.Deployment.ID = ""
						b, _ := json.Marshal(f)
						lines = append(lines, string(b))
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s: scan: %v", dialect, err)
			}
			if !slices.Equal(keys, want) {
				t.Fatalf("%s page %d: findings\n%q\nwant\n%q", dialect, page, keys, want)
			}
			results[dialect] = lines
		}
	}
	if !slices.Equal(results[Postgres], results[SQLite]) {
		t.Fatalf("PostgreSQL and SQLite disagree:\n%q\n%q", results[Postgres], results[SQLite])
	}
}
