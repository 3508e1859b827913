package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestTeamHoldServices: the services recorded with a team (releases and
// deployments, the team in any case) are listed once each, sorted, and a
// hold keeps the services it was placed with.
func TestTeamHoldServices(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		mustRelease(t, db, core.Release{Service: "search-api", Version: "1", Environment: "production", Team: "Search"})
		mustRelease(t, db, core.Release{Service: "ledger", Version: "1", Environment: "production", Team: "ledger"})
		for i, svc := range []string{"indexer", "search-api"} {
			d := core.Deployment{Service: svc, Environment: "staging", Version: "2", Team: "SEARCH", Status: core.DeploySucceeded,
				StartedAt: time.Now().UTC(), Provider: "github", RunID: string(rune('a' + i))}
			d.ReleaseID = core.ReleaseID(d.Service, d.Version, d.Environment)
			if _, _, err := db.RecordDeployment(ctx, d, "test"); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.RecordedTeamServices(ctx, " search ")
		if err != nil || !slices.Equal(got, []string{"indexer", "search-api"}) {
			t.Fatalf("services of search: %v %v, want [indexer search-api]", got, err)
		}
		if got, err := db.RecordedTeamServices(ctx, "nobody"); err != nil || len(got) != 0 {
			t.Fatalf("services of an unknown team: %v %v", got, err)
		}
		h, err := db.CreateHold(ctx, core.Hold{ID: "h-team", Scope: core.HoldScopeTeam, Name: "search", Reason: "review", Services: got}, "cm")
		if err != nil {
			t.Fatal(err)
		}
		listed, err := db.ListHolds(ctx, false, time.Now())
		if err != nil || len(listed) != 1 || !slices.Equal(listed[0].Services, h.Services) {
			t.Fatalf("listed holds %+v %v, want the services kept", listed, err)
		}
		current, err := db.CurrentHolds(ctx)
		if err != nil || len(current) != 1 || !slices.Equal(current[0].Services, []string{"indexer", "search-api"}) {
			t.Fatalf("current holds %+v %v", current, err)
		}
	})
}
