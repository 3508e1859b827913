package store

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestHoldsAsOf: the gate's facts carry the holds in force now; as of an
// earlier moment (the reconciler) they carry the holds in force then, a
// lifted or expired one included while it held.
func TestHoldsAsOf(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		t0 := clock.t
		until := t0.Add(2 * time.Hour)
		h1, err := db.CreateHold(ctx, core.Hold{ID: "h1", Scope: core.HoldScopeService, Name: "pay", Reason: "migration", CreatedAt: t0, Until: &until}, "cm")
		if err != nil || h1.CreatedBy != "cm" {
			t.Fatalf("create: %+v %v", h1, err)
		}
		if _, err := db.CreateHold(ctx, core.Hold{ID: "h2", Scope: core.HoldScopeEnvironment, Name: "production", Reason: "audit", CreatedAt: t0.Add(time.Hour)}, "cm"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.CreateHold(ctx, core.Hold{ID: "h1", Scope: core.HoldScopeService, Name: "x", Reason: "y", CreatedAt: t0}, "cm"); !core.IsKind(err, core.KindConflict) {
			t.Fatalf("duplicate id: %v", err)
		}
		lifted, err := db.LiftHold(ctx, "h2", "cm2", t0.Add(90*time.Minute))
		if err != nil || lifted.LiftedBy != "cm2" {
			t.Fatalf("lift: %+v %v", lifted, err)
		}
		if _, err := db.LiftHold(ctx, "h2", "cm2", time.Time{}); !core.IsKind(err, core.KindConflict) {
			t.Fatalf("lift twice: %v", err)
		}
		if _, err := db.LiftHold(ctx, "h9", "cm2", time.Time{}); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("lift unknown: %v", err)
		}
		ids := func(at time.Time) []string {
			f, err := db.GateFacts(ctx, core.FactsQuery{Service: "pay", Environment: "production", Version: "1", AsOf: at})
			if err != nil {
				t.Fatal(err)
			}
			out := []string{}
			for _, h := range f.Holds {
				out = append(out, h.ID)
			}
			return out
		}
		for _, tc := range []struct {
			at   time.Time
			want string
		}{
			{t0.Add(-time.Minute), ""},
			{t0.Add(30 * time.Minute), "h1"},
			{t0.Add(80 * time.Minute), "h1,h2"},
			{t0.Add(100 * time.Minute), "h1"},
			{t0.Add(3 * time.Hour), ""},
		} {
			if got := join(ids(tc.at)); got != tc.want {
				t.Errorf("as of %v: %s, want %s", tc.at.Sub(t0), got, tc.want)
			}
		}
		clock.t = t0.Add(100 * time.Minute)
		f, err := db.GateFacts(ctx, core.FactsQuery{Service: "pay", Environment: "production", Version: "1"})
		if err != nil || len(f.Holds) != 1 || f.Holds[0].ID != "h1" {
			t.Fatalf("current facts: %+v %v", f.Holds, err)
		}
		all, _ := db.ListHolds(ctx, true, clock.t)
		active, _ := db.ListHolds(ctx, false, clock.t)
		if len(all) != 2 || len(active) != 1 {
			t.Fatalf("list: all %d active %d", len(all), len(active))
		}
	})
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

// TestEvidenceStore: evidence needs its release, reads back whole, and is
// in the facts as of a moment only when the query asks for it.
func TestEvidenceStore(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		t0 := clock.t
		if _, err := db.AddEvidence(ctx, core.Evidence{ID: "e0", ReleaseID: "nope", Kind: "tests", Name: "unit", Status: "passed", RecordedBy: "ci"}); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("unknown release: %v", err)
		}
		rel, err := db.UpsertRelease(ctx, core.Release{Service: "pay", Version: "1", Environment: "production"})
		if err != nil {
			t.Fatal(err)
		}
		e1 := core.Evidence{ID: "e1", ReleaseID: rel.ID, Kind: "tests", Name: "unit", Status: "failed", Format: "junit",
			Tests: &core.TestSummary{Tests: 3, Passed: 2, Failures: 1}, RecordedBy: "ci", RecordedAt: t0}
		e2 := core.Evidence{ID: "e2", ReleaseID: rel.ID, Kind: "security_scan", Name: "gosec", Status: "passed", Digest: "sha256:ab",
			Findings: &core.FindingSummary{Tools: []string{"gosec"}, Findings: 1, BySeverity: map[string]int{"high": 1}, MaxSeverity: "high"}, RecordedBy: "ci", RecordedAt: t0.Add(time.Hour)}
		for _, e := range []core.Evidence{e1, e2} {
			if _, err := db.AddEvidence(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		all, err := db.ListEvidence(ctx, rel.ID, time.Time{})
		if err != nil || len(all) != 2 || all[0].Tests.Failures != 1 || all[1].Findings.BySeverity["high"] != 1 || all[1].Digest != "sha256:ab" {
			t.Fatalf("list: %+v %v", all, err)
		}
		q := core.FactsQuery{Service: "pay", Environment: "production", Version: "1", AsOf: t0.Add(time.Minute), Evidence: true}
		f, err := db.GateFacts(ctx, q)
		if err != nil || len(f.Evidence) != 1 || f.Evidence[0].ID != "e1" {
			t.Fatalf("as of: %+v %v", f.Evidence, err)
		}
		q.Evidence = false
		if f, _ := db.GateFacts(ctx, q); f.Evidence != nil {
			t.Fatalf("evidence read unasked: %+v", f.Evidence)
		}
		var audit []core.AuditEntry
		if audit, err = db.ListAudit(ctx, core.AuditFilter{Subject: "release:" + rel.ID, Action: "evidence.add", Limit: 10}); err != nil || len(audit) != 2 {
			t.Fatalf("audit: %d %v", len(audit), err)
		}
	})
}

// TestProposals: one decision per proposal, with both names audited.
func TestProposals(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		p, err := db.CreateProposal(ctx, core.Proposal{ID: "p1", Kind: core.ProposalPolicy, Source: "environments: {}", ProposedBy: "alice", BaseVersion: 3})
		if err == nil && p.BaseVersion != 0 { // the store reads it: no policy stored yet
			t.Fatalf("base version %d, want 0 (the caller's 3 is not the store's)", p.BaseVersion)
		}
		if err != nil || p.Status != core.ProposalPending {
			t.Fatalf("create: %+v %v", p, err)
		}
		got, err := db.DecideProposal(ctx, "p1", core.ProposalConfirmed, "bob", time.Time{})
		if err != nil || got.DecidedBy != "bob" || got.ProposedBy != "alice" || got.Status != core.ProposalConfirmed {
			t.Fatalf("decide: %+v %v", got, err)
		}
		if _, err := db.DecideProposal(ctx, "p1", core.ProposalWithdrawn, "carol", time.Time{}); !core.IsKind(err, core.KindConflict) {
			t.Fatalf("decide twice: %v", err)
		}
		if _, err := db.DecideProposal(ctx, "p9", core.ProposalConfirmed, "bob", time.Time{}); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("unknown: %v", err)
		}
		if ps, _ := db.ListProposals(ctx, core.ProposalPending); len(ps) != 0 {
			t.Fatalf("pending: %+v", ps)
		}
		if got, _ := db.GetProposal(ctx, "p1"); got.Source != "environments: {}" || got.BaseVersion != 0 || got.DecidedAt == nil {
			t.Fatalf("get: %+v", got)
		}
	})
}

// TestConfirmProposal: a confirmation puts the change in force with the
// proposal's decision in one write, only while what it changes is still
// at the version it was made against; a refused one writes nothing.
func TestConfirmProposal(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		propose := func(id, kind, target, src string) core.Proposal {
			t.Helper()
			p, err := db.CreateProposal(ctx, core.Proposal{ID: id, Kind: kind, Target: target, Source: src, ProposedBy: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		if _, err := db.PutPolicy(ctx, "environments: {}", "system"); err != nil {
			t.Fatal(err)
		}
		p1, p2 := propose("p1", core.ProposalPolicy, "", "time_zone: UTC\n"), propose("p2", core.ProposalPolicy, "", "time_zone: Europe/Berlin\n")
		m1 := propose("m1", core.ProposalMapping, "custom", "name: custom\n")
		if p1.BaseVersion != 1 || p2.BaseVersion != 1 || m1.BaseVersion != 0 {
			t.Fatalf("base versions %d %d %d, want 1 1 0", p1.BaseVersion, p2.BaseVersion, m1.BaseVersion)
		}
		got, v, err := db.ConfirmProposal(ctx, "p1", "bob", time.Time{})
		if err != nil || v != 2 || got.Status != core.ProposalConfirmed || got.DecidedBy != "bob" {
			t.Fatalf("confirm p1: %+v %d %v", got, v, err)
		}
		if cur, _ := db.CurrentPolicy(ctx); cur.Version != 2 || cur.Source != "time_zone: UTC\n" || cur.CreatedBy != "bob" {
			t.Fatalf("policy in force: %+v", cur)
		}
		// p2 was made against version 1: confirming it would undo p1.
		if _, _, err := db.ConfirmProposal(ctx, "p2", "bob", time.Time{}); !core.IsKind(err, core.KindConflict) {
			t.Fatalf("confirm a stale proposal: %v", err)
		}
		if cur, _ := db.CurrentPolicy(ctx); cur.Version != 2 {
			t.Fatalf("a refused confirmation wrote version %d", cur.Version)
		}
		if p, _ := db.GetProposal(ctx, "p2"); p.Status != core.ProposalPending {
			t.Fatalf("a refused confirmation decided the proposal: %+v", p)
		}
		// A profile put meanwhile makes the mapping proposal stale too.
		if _, err := db.PutMapping(ctx, "custom", "name: custom\nkind: change\n", "carol"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.ConfirmProposal(ctx, "m1", "bob", time.Time{}); !core.IsKind(err, core.KindConflict) {
			t.Fatalf("confirm a stale mapping proposal: %v", err)
		}
		d1 := propose("d1", core.ProposalMappingDelete, "custom", "")
		if _, v, err := db.ConfirmProposal(ctx, "d1", "bob", time.Time{}); err != nil || v != 2 || d1.BaseVersion != 1 {
			t.Fatalf("confirm the delete: %d %v (base %d)", v, err, d1.BaseVersion)
		}
		if _, err := db.GetMapping(ctx, "custom"); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("the deleted profile: %v", err)
		}
		if _, _, err := db.ConfirmProposal(ctx, "d1", "bob", time.Time{}); !core.IsKind(err, core.KindConflict) {
			t.Fatalf("confirm twice: %v", err)
		}
		if _, err := db.DecideProposal(ctx, "p2", core.ProposalWithdrawn, "alice", time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.ConfirmProposal(ctx, "p2", "bob", time.Time{}); !core.IsKind(err, core.KindConflict) {
			t.Fatalf("confirm a withdrawn proposal: %v", err)
		}
	})
}

// TestHoldsCacheInvalidation: the gate's current holds come from the fact
// cache, which a hold placed or lifted invalidates at once; an expired hold
// drops out without any write.
func TestHoldsCacheInvalidation(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		if db.facts == nil {
			t.Fatal("the test store has no fact cache")
		}
		db.facts.Resume() // as the listener would on PostgreSQL
		current := func() int {
			f, err := db.GateFacts(ctx, core.FactsQuery{Service: "pay", Environment: "production", Version: "1"})
			if err != nil {
				t.Fatal(err)
			}
			return len(f.Holds)
		}
		if n := current(); n != 0 {
			t.Fatalf("no holds yet: %d", n)
		}
		until := clock.t.Add(time.Hour)
		if _, err := db.CreateHold(ctx, core.Hold{ID: "h1", Scope: core.HoldScopeTeam, Name: "payments", Reason: "r", CreatedAt: clock.t, Until: &until}, "cm"); err != nil {
			t.Fatal(err)
		}
		if n := current(); n != 1 {
			t.Fatalf("placed hold not seen: %d", n)
		}
		clock.t = clock.t.Add(2 * time.Hour)
		if n := current(); n != 0 {
			t.Fatalf("expired hold still seen: %d", n)
		}
		clock.t = clock.t.Add(-2 * time.Hour)
		if _, err := db.LiftHold(ctx, "h1", "cm", clock.t.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		clock.t = clock.t.Add(2 * time.Minute)
		if n := current(); n != 0 {
			t.Fatalf("lifted hold still seen: %d", n)
		}
	})
}
