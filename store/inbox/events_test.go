package inbox

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

// TestReplayableClaimsAndOutcomes: the normalizer's claims and a batch's
// outcomes, written under core.WithReplayableWrites, do what they do
// without it; on PostgreSQL they commit without waiting for their flush
// (a trigger records the setting each UPDATE of the inbox ran under),
// and the same calls without the flag keep the server's setting.
func TestReplayableClaimsAndOutcomes(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		pg := db.Dialect() == Postgres
		if pg {
			for _, stmt := range []string{
				`CREATE TABLE replay_seen (n serial, setting text)`,
				`CREATE FUNCTION replay_seen() RETURNS trigger LANGUAGE plpgsql AS $$
					BEGIN INSERT INTO replay_seen (setting) VALUES (current_setting('synchronous_commit')); RETURN NULL; END $$`,
				`CREATE TRIGGER replay_seen AFTER UPDATE ON inbox_events FOR EACH STATEMENT EXECUTE FUNCTION replay_seen()`,
			} {
				if _, err := db.SQLX().ExecContext(ctx, stmt); err != nil {
					t.Fatal(err)
				}
			}
		}
		seen := func() string { // the settings recorded since the last call
			if !pg {
				return ""
			}
			var s []string
			if err := db.SQLX().SelectContext(ctx, &s, `DELETE FROM replay_seen RETURNING setting`); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprint(s)
		}
		var server string
		if pg {
			if err := db.SQLX().GetContext(ctx, &server, "SHOW synchronous_commit"); err != nil || server == "off" {
				t.Fatalf("server's synchronous_commit = %q, %v: nothing to tell apart", server, err)
			}
		}
		for i, tt := range []struct {
			name string
			ctx  context.Context
			want string // the setting both UPDATEs ran under (PostgreSQL)
		}{
			{"replayable", core.WithReplayableWrites(ctx), "off"},
			{"plain", ctx, server},
		} {
			key := fmt.Sprintf("CHG%d", i)
			if _, _, err := db.InsertEvent(ctx, newEvent("servicenow", key, clock.T)); err != nil {
				t.Fatal(err)
			}
			seen()
			evs, err := db.ClaimEvents(tt.ctx, 10, time.Minute)
			if err != nil || len(evs) != 1 || evs[0].DedupeKey != key || evs[0].Attempts != 1 {
				t.Fatalf("%s: claimed %+v, %v; want %s with one attempt", tt.name, evs, err, key)
			}
			settled, err := db.FinishEvents(tt.ctx, []core.EventOutcome{{ID: evs[0].ID, Status: core.EventProcessed, Reason: "created", Record: key}})
			if err != nil || len(settled) != 1 || !settled[0] {
				t.Fatalf("%s: settled %v, %v", tt.name, settled, err)
			}
			if e, err := db.GetEvent(ctx, evs[0].ID); err != nil || e.Status != core.EventProcessed || e.Record != key {
				t.Fatalf("%s: event %+v, %v; want processed as %s", tt.name, e, err, key)
			}
			if pg {
				if got, want := seen(), fmt.Sprint([]string{tt.want, tt.want}); got != want {
					t.Errorf("%s: the claim and the outcomes ran under synchronous_commit %s, want %s", tt.name, got, want)
				}
			}
		}
	})
}

// TestStoredKeys: which delivery ids the inbox holds, per connector,
// whatever their status; keys that are not valid text and long lists
// (more than one query's worth) are answered too.
func TestStoredKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		for _, k := range []string{"d-1", "d-2"} {
			if _, _, err := db.InsertEvent(ctx, newEvent("github", k, clock.T)); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := db.InsertEvent(ctx, newEvent("other", "d-3", clock.T)); err != nil {
			t.Fatal(err)
		}
		keys := []string{"d-1", "d-3", "nope", "bad\x00key", "\xff"}
		for i := 0; i < 1200; i++ {
			keys = append(keys, fmt.Sprintf("absent-%d", i))
		}
		keys = append(keys, "d-2")
		got, err := db.StoredKeys(ctx, "github", keys)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || !got["d-1"] || !got["d-2"] {
			t.Errorf("stored %v, want d-1 and d-2 (d-3 is another connector's)", got)
		}
		if got, err := db.StoredKeys(ctx, "github", nil); err != nil || len(got) != 0 {
			t.Errorf("no keys: %v %v", got, err)
		}
	})
}

// TestDeleteSettledBefore: the events settled as processed or ignored
// before the cut-off are deleted, at most max a call; pending and
// quarantined ones, and those received since, are kept.
func TestDeleteSettledBefore(t *testing.T) {
	forEachStore(t, func(t *testing.T, in *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		old := clock.T
		add := func(key, status string) string {
			t.Helper()
			id, _, err := in.InsertEvent(ctx, newEvent("c", key, clock.T))
			if err != nil {
				t.Fatal(err)
			}
			if status != core.EventPending {
				if err := in.FinishEvent(ctx, id, status, "", ""); err != nil {
					t.Fatal(err)
				}
			}
			return id
		}
		var oldSettled []string
		for i := range 3 {
			oldSettled = append(oldSettled, add(fmt.Sprint("p", i), core.EventProcessed))
		}
		oldSettled = append(oldSettled, add("ign", core.EventIgnored))
		kept := []string{add("pend", core.EventPending), add("quar", core.EventQuarantined)}
		clock.T = old.Add(48 * time.Hour)
		kept = append(kept, add("new", core.EventProcessed))
		cut := old.Add(time.Hour)
		if n, err := in.DeleteSettledBefore(ctx, cut, 3); err != nil || n != 3 {
			t.Fatalf("first call: %d, %v; want 3 (its max)", n, err)
		}
		if n, err := in.DeleteSettledBefore(ctx, cut, 100); err != nil || n != 1 {
			t.Fatalf("second call: %d, %v; want the last old settled one", n, err)
		}
		for _, id := range oldSettled {
			if _, err := in.GetEvent(ctx, id); !core.IsKind(err, core.KindNotFound) {
				t.Errorf("old settled event %s: %v, want deleted", id, err)
			}
		}
		for _, id := range kept {
			if _, err := in.GetEvent(ctx, id); err != nil {
				t.Errorf("event %s: %v, want kept", id, err)
			}
		}
	})
}
