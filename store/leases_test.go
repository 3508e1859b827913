package store

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

func TestLeases(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		acquire := func(holder string, want bool) {
			t.Helper()
			got, err := db.AcquireLease(ctx, "poll:servicenow", holder, time.Minute)
			if err != nil || got != want {
				t.Fatalf("%s acquire: %v %v, want %v", holder, got, err, want)
			}
		}
		acquire("a", true)
		acquire("b", false) // held by a
		acquire("a", true)  // renewal
		clock.t = clock.t.Add(59 * time.Second)
		acquire("b", false) // a's renewal still runs
		clock.t = clock.t.Add(2 * time.Second)
		acquire("b", true) // expired: b takes over
		acquire("a", false)
		if err := db.ReleaseLease(ctx, "poll:servicenow", "a"); err != nil { // not a's: no-op
			t.Fatal(err)
		}
		acquire("a", false)
		if err := db.ReleaseLease(ctx, "poll:servicenow", "b"); err != nil {
			t.Fatal(err)
		}
		acquire("a", true)
		if _, err := db.AcquireLease(ctx, "x", "a", 0); !core.IsKind(err, core.KindInvalid) {
			t.Fatalf("zero ttl: %v", err)
		}
	})
}

// TestLeaseRace: replicas racing for a free lease: exactly one wins.
func TestLeaseRace(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		wins := make(chan bool, 10)
		for i := range 10 {
			go func() {
				ok, err := db.AcquireLease(ctx, "report", string(rune('a'+i)), time.Minute)
				if err != nil {
					t.Error(err)
				}
				wins <- ok
			}()
		}
		n := 0
		for range 10 {
			if <-wins {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d holders", n)
		}
	})
}
