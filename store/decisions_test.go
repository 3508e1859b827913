package store

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

func TestDecisionSaveAndGet(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		dec := core.GateDecision{
			ID: "dec-1", ReleaseID: "rel-1", Decision: core.Deny, PolicyVersion: 3, EvaluatedAt: clock.t,
			Reasons: []core.Reason{{Code: core.CodeChangeNotApproved, Message: "CHG1 is not approved", Ref: "CHG1", Result: core.Deny},
				{Code: core.CodeIncidentBlock, Message: "INC1 is open", Ref: "INC1", Result: core.Wait}},
			Request: core.GateRequest{Service: "payments", Environment: "production", Version: "1.2.3", Changes: []string{"CHG1"}},
			Facts:   &core.Facts{Request: core.GateRequest{Service: "payments"}, Changes: map[string]core.Change{}},
		}
		if err := db.SaveDecision(ctx, dec, "ci-bot"); err != nil {
			t.Fatal(err)
		}
		got, err := db.GetDecision(ctx, "dec-1")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, dec) {
			t.Fatalf("read back\n%+v\nwant\n%+v", got, dec)
		}
		entries, err := db.ListAudit(ctx, core.AuditFilter{Action: "gate.decision"})
		if err != nil || len(entries) != 1 {
			t.Fatalf("audit: %v %v", entries, err)
		}
		e := entries[0]
		if e.Actor != "ci-bot" || e.Subject != "release:rel-1" {
			t.Fatalf("entry %+v", e)
		}
		var data map[string]any
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"decision_id": "dec-1", "decision": "deny", "policy_version": float64(3),
			"reasons": []any{core.CodeChangeNotApproved, core.CodeIncidentBlock}}
		if !reflect.DeepEqual(data, want) {
			t.Fatalf("audit data %v, want %v", data, want)
		}

		// An empty ID is assigned; saving the same ID twice conflicts.
		if err := db.SaveDecision(ctx, core.GateDecision{ReleaseID: "rel-2", Decision: core.Allow}, "ci-bot"); err != nil {
			t.Fatal(err)
		}
		if err := db.SaveDecision(ctx, dec, "ci-bot"); !core.IsKind(err, core.KindConflict) {
			t.Fatalf("duplicate id: %v", err)
		}
		if err := db.SaveDecision(ctx, core.GateDecision{Decision: "maybe"}, "x"); !core.IsKind(err, core.KindInvalid) {
			t.Fatalf("bad decision: %v", err)
		}
		if _, err := db.GetDecision(ctx, "nope"); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("missing: %v", err)
		}
		checkLinear(t, db, 2)
	})
}
