package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
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
		// The entry covers the stored document by its SHA-256.
		var doc string
		if err := db.SQLX().GetContext(ctx, &doc, "SELECT doc FROM gate_decisions WHERE id = 'dec-1'"); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(doc))
		want := map[string]any{"decision_id": "dec-1", "decision": "deny", "policy_version": float64(3),
			"reasons": []any{core.CodeChangeNotApproved, core.CodeIncidentBlock}, "doc_sha256": hex.EncodeToString(sum[:])}
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

// TestDecisionsShareGroupStatements: concurrent decisions are merged into
// multi-row inserts; each new release is created once under its name-based
// id; a duplicate decision id fails only its own caller.
func TestDecisionsShareGroupStatements(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		const n = 60
		errs := make(chan error, n+1)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				svc := fmt.Sprintf("svc-%d", i%3) // three releases, twenty checks each
				req := core.GateRequest{Service: svc, Environment: "production", Version: "1.0.0", Team: "t", Changes: []string{"CHG1"}}
				errs <- db.SaveDecision(ctx, core.GateDecision{ID: fmt.Sprintf("d-%02d", i), ReleaseID: core.ReleaseID(svc, "1.0.0", "production"),
					Decision: core.Allow, Request: req, EvaluatedAt: clock.t}, "ci")
			}()
		}
		wg.Add(1)
		go func() { // a duplicate of one of the ids above, racing them
			defer wg.Done()
			errs <- db.SaveDecision(ctx, core.GateDecision{ID: "d-07", ReleaseID: "r", Decision: core.Deny}, "ci")
		}()
		wg.Wait()
		close(errs)
		var conflicts int
		for err := range errs {
			switch {
			case err == nil:
			case core.IsKind(err, core.KindConflict):
				conflicts++
			default:
				t.Errorf("save: %v", err)
			}
		}
		if conflicts != 1 {
			t.Fatalf("%d conflicts, want exactly 1", conflicts)
		}
		rels, err := db.ListReleases(ctx, core.ReleaseFilter{})
		if err != nil || len(rels) != 3 {
			t.Fatalf("releases: %d %v", len(rels), err)
		}
		for _, r := range rels {
			if r.ID != core.ReleaseID(r.Service, r.Version, r.Environment) || r.Team != "t" || len(r.Changes) != 1 {
				t.Errorf("release %+v", r)
			}
		}
		// Facts never hold a release back by its own PIR.
		if err := db.RequirePIR(ctx, core.PIR{ReleaseID: rels[0].ID, Team: "t", Status: core.PIRPending, RequiredAt: clock.t}); err != nil {
			t.Fatal(err)
		}
		f, err := db.GateFacts(ctx, core.FactsQuery{Service: rels[0].Service, Version: "1.0.0", Environment: "production", Team: "t"})
		if err != nil || len(f.PendingPIRs) != 0 {
			t.Fatalf("facts of the release itself: %+v %v", f, err)
		}
		f, err = db.GateFacts(ctx, core.FactsQuery{Service: rels[0].Service, Version: "2.0.0", Environment: "production", Team: "t"})
		if err != nil || len(f.PendingPIRs) != 1 {
			t.Fatalf("facts of the next release: %+v %v", f, err)
		}
		if brk, _, err := db.VerifyAudit(ctx); brk != nil || err != nil {
			t.Fatalf("chain: %+v %v", brk, err)
		}
	})
}

// TestDecisionSkipsAKnownRelease: once a release is known to exist, later
// decisions about it do not carry its insert (groupcommit.Row.Once); a release
// the process does not know is still created with the decision. A
// trigger refusing every insert into releases shows which is which.
func TestDecisionSkipsAKnownRelease(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		dec := func(version string) core.GateDecision {
			return core.GateDecision{ReleaseID: core.ReleaseID("svc", version, "production"), Decision: core.Wait,
				Request: core.GateRequest{Service: "svc", Version: version, Environment: "production"}}
		}
		if err := db.SaveDecision(ctx, dec("1.0"), "ci"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetRelease(ctx, dec("1.0").ReleaseID); err != nil {
			t.Fatalf("release not created: %v", err)
		}
		refuse := map[string][]string{
			Postgres: {`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'insert into releases'; END $$`,
				`CREATE TRIGGER refuse BEFORE INSERT ON releases FOR EACH ROW EXECUTE FUNCTION refuse()`},
			SQLite: {`CREATE TRIGGER refuse BEFORE INSERT ON releases BEGIN SELECT RAISE(ABORT, 'insert into releases'); END`},
		}
		for _, q := range refuse[db.Dialect()] {
			if _, err := db.SQLX().ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		for range 3 { // a pipeline asking again
			if err := db.SaveDecision(ctx, dec("1.0"), "ci"); err != nil {
				t.Fatalf("decision about a known release: %v", err)
			}
		}
		if err := db.SaveDecision(ctx, dec("2.0"), "ci"); err == nil || !strings.Contains(err.Error(), "insert into releases") {
			t.Fatalf("decision about a new release: err = %v, want the trigger's refusal", err)
		}
		var n int
		if err := db.SQLX().GetContext(ctx, &n, "SELECT count(*) FROM gate_decisions"); err != nil || n != 4 {
			t.Fatalf("%d decisions (%v), want 4", n, err)
		}
	})
}
