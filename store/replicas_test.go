package store

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestReplicas: a replica's heartbeat is its row, updated in place; those
// not seen lately are listed as not live, a graceful stop removes one, and
// one not seen for a day is forgotten by the next heartbeat.
func TestReplicas(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		start := clock.t
		skew := int64(-12)
		a := core.Replica{ID: "host-a/1/aa", Version: "v1.2.0", SchemaKnown: 29, StartedAt: start, ClockSkewMS: &skew}
		b := core.Replica{ID: "host-b/1/bb", Version: "v1.3.0", SchemaKnown: 30, StartedAt: start.Add(time.Second)}
		for _, r := range []core.Replica{a, b} {
			if err := db.Heartbeat(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		clock.t = start.Add(40 * time.Second)
		if err := db.Heartbeat(ctx, b); err != nil {
			t.Fatal(err)
		}
		got, err := db.Replicas(ctx, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].ID != a.ID || got[0].Live || got[0].ClockSkewMS == nil || *got[0].ClockSkewMS != -12 ||
			got[1].ID != b.ID || !got[1].Live || got[1].ClockSkewMS != nil || got[1].Version != "v1.3.0" || got[1].SchemaKnown != 30 ||
			!got[1].SeenAt.Equal(clock.t) || !got[1].StartedAt.Equal(b.StartedAt) {
			t.Fatalf("replicas %+v", got)
		}
		if err := db.RemoveReplica(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		clock.t = start.Add(25 * time.Hour)
		if err := db.Heartbeat(ctx, core.Replica{ID: "host-c/1/cc", Version: "v1.3.0", SchemaKnown: 30, StartedAt: clock.t}); err != nil {
			t.Fatal(err)
		}
		if got, _ = db.Replicas(ctx, 30*time.Second); len(got) != 1 || got[0].ID != "host-c/1/cc" || !got[0].Live {
			t.Errorf("after a stop and a day: %+v, want only the new replica", got)
		}
	})
}
