package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// saveDecisions records a deny, an allow and a wait decision, with an
// audit entry between them, and returns the decisions' ids.
func saveDecisions(t *testing.T, db *DB) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for i, d := range []core.Decision{core.Deny, core.Allow, core.Wait} {
		dec := core.GateDecision{ID: newID(), ReleaseID: core.ReleaseID("svc", "1.0", "production"), Decision: d,
			EvaluatedAt: time.Date(2026, 12, 1, 10, i, 0, 0, time.UTC), Reasons: []core.Reason{{Code: "NO_CHANGE", Message: "no change"}},
			Request: core.GateRequest{Service: "svc", Version: "1.0", Environment: "production"}}
		if err := db.SaveDecision(ctx, dec, "ci"); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, dec.ID)
		if i == 0 {
			appendN(t, db, 1)
		}
	}
	return ids
}

// TestVerifyFindsAnEditedDecision: a decision changed in the database (its
// column, its document, or both, as one flipping deny to allow would) is
// named by VerifyAudit with its entry's row, as are a deleted decision and
// one inserted without an entry.
func TestVerifyFindsAnEditedDecision(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(id string) []string
		// entry is the row of the named decision's entry (0: none).
		entry  int64
		reason string
	}{
		{"deny flipped to allow, column and document", func(id string) []string {
			return []string{`UPDATE gate_decisions SET decision = 'allow', doc = replace(doc, '"decision":"deny"', '"decision":"allow"') WHERE id = '` + id + `'`}
		}, 1, "was edited"},
		{"column only", func(id string) []string {
			return []string{`UPDATE gate_decisions SET decision = 'allow' WHERE id = '` + id + `'`}
		}, 1, `says "allow", its audit entry recorded "deny"`},
		{"document only", func(id string) []string {
			return []string{`UPDATE gate_decisions SET doc = replace(doc, '"decision":"deny"', '"decision":"allow"') WHERE id = '` + id + `'`}
		}, 1, "document does not match"},
		{"moved to another release", func(id string) []string {
			return []string{`UPDATE gate_decisions SET release_id = 'other' WHERE id = '` + id + `'`}
		}, 1, "names release other"},
		// The columns reports read beside the document: a deny made to
		// look later than the deployment it refused, another actor or
		// policy version.
		{"time moved", func(id string) []string {
			return []string{`UPDATE gate_decisions SET evaluated_at = (SELECT max(evaluated_at) FROM gate_decisions) WHERE id = '` + id + `'`}
		}, 1, "the time was edited"},
		{"actor changed", func(id string) []string {
			return []string{`UPDATE gate_decisions SET actor = 'token:someone-else' WHERE id = '` + id + `'`}
		}, 1, "the actor was edited"},
		{"policy version changed", func(id string) []string {
			return []string{`UPDATE gate_decisions SET policy_version = policy_version + 7 WHERE id = '` + id + `'`}
		}, 1, "the version was edited"},
		{"deleted", func(id string) []string {
			return []string{`DELETE FROM gate_decisions WHERE id = '` + id + `'`}
		}, 1, "missing from gate_decisions"},
		{"inserted without an entry", func(id string) []string {
			return []string{`INSERT INTO gate_decisions (id, release_id, decision, emergency, policy_version, evaluated_at, actor, doc)
				SELECT 'zzzz-forged', release_id, 'allow', emergency, policy_version, evaluated_at, actor, doc FROM gate_decisions WHERE id = '` + id + `'`}
		}, 0, "has no audit entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
				ctx := context.Background()
				ids := saveDecisions(t, db)
				if brk, rows, err := db.VerifyAudit(ctx); err != nil || brk != nil || rows != 4 {
					t.Fatalf("before: brk %+v rows %d err %v", brk, rows, err)
				}
				for _, q := range tc.tamper(ids[0]) {
					if _, err := db.SQLX().ExecContext(ctx, q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				brk, rows, err := db.VerifyAudit(ctx)
				if err != nil || brk == nil {
					t.Fatalf("edit not detected: brk %+v err %v", brk, err)
				}
				wantID := ids[0]
				if tc.entry == 0 {
					wantID = "zzzz-forged"
				}
				if brk.Seq != tc.entry || brk.DecisionID != wantID || !strings.Contains(brk.Reason, tc.reason) {
					t.Fatalf("break %+v, want row %d, decision %s, %q", brk, tc.entry, wantID, tc.reason)
				}
				wantRows := int64(4) // the chain itself is intact
				if tc.entry > 0 {
					wantRows = tc.entry - 1
				}
				if rows != wantRows {
					t.Fatalf("rows verified %d, want %d", rows, wantRows)
				}
			})
		})
	}
}

// TestVerifyHoldsTheChainToItsHead: rows deleted from the chain's end pass
// a chain check alone, but not one held to a head kept outside.
func TestVerifyHoldsTheChainToItsHead(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		head, err := db.AuditHead(ctx)
		if err != nil || head.Seq != 0 || head.Hash != core.GenesisHash {
			t.Fatalf("empty chain's head %+v %v", head, err)
		}
		if brk, _, err := db.VerifyAuditTo(ctx, head); brk != nil || err != nil {
			t.Fatalf("empty chain against the genesis head: %+v %v", brk, err)
		}
		appendN(t, db, 5)
		head, err = db.AuditHead(ctx)
		if err != nil || head.Seq != 5 || len(head.Hash) != 64 || head.At.IsZero() {
			t.Fatalf("head %+v %v", head, err)
		}
		all, _ := db.ListAudit(ctx, core.AuditFilter{})
		if all[4].Hash != head.Hash {
			t.Fatalf("head %s, row 5 %s", head.Hash, all[4].Hash)
		}
		appendN(t, db, 2) // the chain grows past the anchor
		for _, h := range []core.AuditHead{head, {Hash: head.Hash}} {
			if brk, rows, err := db.VerifyAuditTo(ctx, h); brk != nil || err != nil || rows != 7 {
				t.Fatalf("anchor %+v: brk %+v rows %d %v", h, brk, rows, err)
			}
		}
		if _, err := db.SQLX().ExecContext(ctx, "DELETE FROM audit_log WHERE seq >= 5"); err != nil {
			t.Fatal(err)
		}
		if brk, _, err := db.VerifyAudit(ctx); brk != nil || err != nil {
			t.Fatalf("without an anchor the cut is invisible: %+v %v", brk, err)
		}
		brk, rows, err := db.VerifyAuditTo(ctx, head)
		if err != nil || brk == nil || !strings.Contains(brk.Reason, "ends at row 4, before the expected head at row 5") || rows != 4 {
			t.Fatalf("cut chain: brk %+v rows %d %v", brk, rows, err)
		}
		if brk, _, _ := db.VerifyAuditTo(ctx, core.AuditHead{Hash: head.Hash}); brk == nil || !strings.Contains(brk.Reason, "no row has the expected head hash") {
			t.Fatalf("cut chain, hash only: %+v", brk)
		}
		// A row at the anchor's seq with another hash: the chain was rewritten.
		brk, _, _ = db.VerifyAuditTo(ctx, core.AuditHead{Seq: 3, Hash: head.Hash})
		if brk == nil || brk.Seq != 3 || !strings.Contains(brk.Reason, "not the expected head") {
			t.Fatalf("rewritten chain: %+v", brk)
		}
	})
}

// TestVerifyHoldsTheChainToEveryAnchor: a chain recomputed from an edited
// row onwards verifies by itself, and so against its own new head, but
// not against the anchors taken before the edit; one cut short fails at
// the newest anchor it no longer reaches.
func TestVerifyHoldsTheChainToEveryAnchor(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		var anchors []core.AuditHead
		anchor := func() {
			h, err := db.AuditHead(ctx)
			if err != nil {
				t.Fatal(err)
			}
			anchors = append(anchors, h, h) // an idle chain is anchored at one row again and again
		}
		anchor() // the empty chain's
		appendN(t, db, 3)
		anchor()
		appendN(t, db, 3)
		anchor()
		appendN(t, db, 2) // the chain grows past the newest anchor
		if brk, n, err := db.VerifyAuditAnchors(ctx, anchors); brk != nil || err != nil || n != 8 {
			t.Fatalf("intact: brk %+v rows %d %v", brk, n, err)
		}

		// Recompute the chain from row 2 with row 2's subject changed, as
		// someone with write access to the database could.
		rows, err := db.ListAudit(ctx, core.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		prev := rows[0].Hash
		for _, e := range rows[1:] {
			if e.Seq == 2 {
				e.Subject = "thing:forged"
			}
			e.PrevHash = prev
			e.Hash = core.HashAuditEntry(prev, e)
			prev = e.Hash
			if _, err := db.SQLX().ExecContext(ctx, db.q("UPDATE audit_log SET subject = ?, prev_hash = ?, hash = ? WHERE seq = ?"), e.Subject, e.PrevHash, e.Hash, e.Seq); err != nil {
				t.Fatal(err)
			}
		}
		if brk, _, err := db.VerifyAudit(ctx); brk != nil || err != nil {
			t.Fatalf("a recomputed chain verifies by itself: %+v %v", brk, err)
		}
		brk, n, err := db.VerifyAuditAnchors(ctx, anchors)
		if err != nil || brk == nil || brk.Seq != 3 || n != 2 || !strings.Contains(brk.Reason, "row 3 has hash") || !strings.Contains(brk.Reason, "as anchored") {
			t.Fatalf("recomputed chain: brk %+v rows %d %v", brk, n, err)
		}

		// Anchored again after the rewrite, idle at row 6: the file's two
		// anchors of that row disagree.
		again, err := db.ListAudit(ctx, core.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		reanchored := append(slices.Clone(anchors), core.AuditHead{Seq: 6, Hash: again[5].Hash})
		if brk, _, _ := db.VerifyAuditAnchors(ctx, reanchored); brk == nil || !strings.Contains(brk.Reason, "two anchors of row 6 disagree") {
			t.Fatalf("anchored again after the rewrite: %+v", brk)
		}

		if _, err := db.SQLX().ExecContext(ctx, "DELETE FROM audit_log WHERE seq >= 5"); err != nil {
			t.Fatal(err)
		}
		brk, _, err = db.VerifyAuditAnchors(ctx, []core.AuditHead{{Seq: 3, Hash: again[2].Hash}, {Seq: 6, Hash: again[5].Hash}})
		if err != nil || brk == nil || brk.Seq != 5 || !strings.Contains(brk.Reason, "the chain ends at row 4, before the anchored row 6: 2 rows were deleted") {
			t.Fatalf("cut chain: %+v %v", brk, err)
		}
	})
}

// TestConcurrentDecisionsKeepTheirDocuments: decisions saved at once —
// some by callers that give up (their context cancelled) while their
// group may still be committing — are each stored with their own
// document: the pooled buffer a document is encoded in is reused only
// after its group committed, so every stored document matches the hash
// its audit entry recorded, and a decision an abandoned caller left to
// the committer is whole or absent.
func TestConcurrentDecisionsKeepTheirDocuments(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		const callers, each = 16, 25
		var wg sync.WaitGroup
		for c := range callers {
			wg.Go(func() {
				for i := range each {
					ctx, cancel := context.WithCancel(context.Background())
					if i%5 == 4 {
						cancel() // gives up at once: Submit may return before the group commits
					}
					svc := fmt.Sprintf("svc-%d-%d", c, i)
					dec := core.GateDecision{ReleaseID: core.ReleaseID(svc, "1.0", "production"), Decision: core.Deny,
						Reasons: []core.Reason{{Code: "NO_CHANGE", Message: strings.Repeat(svc+" ", 40+i)}},
						Request: core.GateRequest{Service: svc, Version: "1.0", Environment: "production"}}
					err := db.SaveDecision(ctx, dec, "ci")
					cancel()
					if err != nil && i%5 != 4 {
						t.Errorf("%s: %v", svc, err)
					}
				}
			})
		}
		wg.Wait()
		if brk, rows, err := db.VerifyAudit(context.Background()); err != nil || brk != nil || rows == 0 {
			t.Fatalf("verify: break %+v after %d rows, err %v", brk, rows, err)
		}
	})
}
