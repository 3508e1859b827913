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
