package itsm

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

func TestWatermark(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		if _, ok, err := db.Watermark(ctx, "sn"); err != nil || ok {
			t.Fatalf("before the first poll: %v %v", ok, err)
		}
		wm := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
		for _, w := range []time.Time{wm.Add(-time.Hour), wm} {
			if err := db.SetWatermark(ctx, "sn", w); err != nil {
				t.Fatal(err)
			}
		}
		got, ok, err := db.Watermark(ctx, "sn")
		if err != nil || !ok || !got.Equal(wm) {
			t.Errorf("watermark %v %v %v, want %v", got, ok, err, wm)
		}
		// A poll that ran past its lease finishes after the replica that
		// took it over polled further: the watermark stays where it is.
		if err := db.SetWatermark(ctx, "sn", wm.Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
		if got, _, err := db.Watermark(ctx, "sn"); err != nil || !got.Equal(wm) {
			t.Errorf("watermark after an older one was stored: %v %v, want %v (it only moves forward)", got, err, wm)
		}
	})
}

// TestClaimCreation: of concurrent claims for one release exactly one owns
// the attempt; a failed attempt or a stale pending one can be taken over;
// a created change is final.
func TestClaimCreation(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			owners int
		)
		for i := 0; i < 5; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, own, err := db.ClaimCreation(ctx, "rel-1", "sn", time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if own {
					mu.Lock()
					owners++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if owners != 1 {
			t.Fatalf("%d owners, want 1", owners)
		}
		// A pending attempt is not taken over before it is stale …
		if _, own, _ := db.ClaimCreation(ctx, "rel-1", "sn", time.Minute); own {
			t.Fatal("fresh pending attempt taken over")
		}
		// … and is after.
		clock.T = clock.T.Add(2 * time.Minute)
		c, own, err := db.ClaimCreation(ctx, "rel-1", "sn", time.Minute)
		if err != nil || !own || c.Attempts != 2 {
			t.Fatalf("stale take-over: %+v %v %v", c, own, err)
		}
		if err := db.FinishCreation(ctx, "rel-1", "", "Invalid template"); err != nil {
			t.Fatal(err)
		}
		c, own, err = db.ClaimCreation(ctx, "rel-1", "sn", time.Minute)
		if err != nil || !own || c.Status != core.CreationPending {
			t.Fatalf("retry after failure: %+v %v %v", c, own, err)
		}
		if err := db.FinishCreation(ctx, "rel-1", "CHG0000042", ""); err != nil {
			t.Fatal(err)
		}
		clock.T = clock.T.Add(time.Hour)
		c, own, err = db.ClaimCreation(ctx, "rel-1", "sn", time.Minute)
		if err != nil || own || c.Status != core.CreationCreated || c.ChangeKey != "CHG0000042" {
			t.Fatalf("created is final: %+v %v %v", c, own, err)
		}
		entries, err := db.ListAudit(ctx, core.AuditFilter{Subject: "release:rel-1", Limit: 10})
		if err != nil || len(entries) != 2 || entries[0].Action != "change.creation_failed" || entries[1].Action != "change.created" {
			t.Errorf("audit %+v %v", entries, err)
		}
	})
}

func TestOutbox(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		n := core.OutboxNote{DedupeKey: "d1", Connector: "sn", ChangeKey: "CHG1", Body: "started"}
		for i := 0; i < 2; i++ {
			if err := db.EnqueueNote(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.ClaimNotes(ctx, 10, time.Minute)
		if err != nil || len(got) != 1 {
			t.Fatalf("claim: %+v %v", got, err)
		}
		if again, _ := db.ClaimNotes(ctx, 10, time.Minute); len(again) != 0 {
			t.Fatal("a claimed note was claimed again within its lease")
		}
		if err := db.FinishNote(ctx, got[0], "HTTP 503", clock.T.Add(10*time.Second)); err != nil {
			t.Fatal(err)
		}
		clock.T = clock.T.Add(11 * time.Second)
		got, err = db.ClaimNotes(ctx, 10, time.Minute)
		if err != nil || len(got) != 1 || got[0].Attempts != 2 || got[0].LastError != "HTTP 503" {
			t.Fatalf("retry: %+v %v", got, err)
		}
		// The claim ran out while the replica wrote other notes, and
		// another replica took the note: the first can neither renew nor
		// finish it; the holder writes and finishes it.
		stale := got[0]
		clock.T = clock.T.Add(2 * time.Minute)
		taken, err := db.ClaimNotes(ctx, 10, time.Minute)
		if err != nil || len(taken) != 1 || taken[0].Attempts != 3 {
			t.Fatalf("taken over: %+v %v", taken, err)
		}
		if err := db.RenewNote(ctx, stale, time.Minute); !core.IsKind(err, core.KindConflict) {
			t.Errorf("renew of a claim taken over: %v, want a conflict", err)
		}
		if err := db.FinishNote(ctx, stale, "", time.Time{}); !core.IsKind(err, core.KindConflict) {
			t.Errorf("finish of a claim taken over: %v, want a conflict", err)
		}
		if err := db.RenewNote(ctx, taken[0], time.Minute); err != nil {
			t.Fatalf("the holder renews: %v", err)
		}
		if err := db.FinishNote(ctx, taken[0], "", time.Time{}); err != nil {
			t.Fatal(err)
		}
		clock.T = clock.T.Add(time.Hour)
		if again, _ := db.ClaimNotes(ctx, 10, time.Minute); len(again) != 0 {
			t.Fatal("a written note was claimed again")
		}
	})
}
