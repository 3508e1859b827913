package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

func newEvent(connector, key string, at time.Time) core.Event {
	return core.Event{Connector: connector, Type: "push", DedupeKey: key, Headers: map[string]string{"X-Delivery": key},
		Body: json.RawMessage(`{"k":"` + key + `"}`), ReceivedAt: at}
}

func TestEventInsertDeduplicates(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		id, dup, err := db.InsertEvent(ctx, newEvent("github", "d1", clock.t))
		if err != nil || dup || id == "" {
			t.Fatalf("first: %q %v %v", id, dup, err)
		}
		id2, dup, err := db.InsertEvent(ctx, newEvent("github", "d1", clock.t.Add(time.Second)))
		if err != nil || !dup || id2 != id {
			t.Fatalf("duplicate: %q %v %v, want %q", id2, dup, err, id)
		}
		// The same key from another connector is another event.
		if _, dup, err := db.InsertEvent(ctx, newEvent("gitlab", "d1", clock.t)); err != nil || dup {
			t.Fatalf("other connector: %v %v", dup, err)
		}
		got, err := db.GetEvent(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != core.EventPending || string(got.Body) != `{"k":"d1"}` || got.Headers["X-Delivery"] != "d1" || !got.ReceivedAt.Equal(clock.t) || got.Type != "push" {
			t.Fatalf("read back %+v", got)
		}
		// Concurrent deliveries of one key store one event.
		var wg sync.WaitGroup
		ids := make(chan string, 20)
		dups := make(chan bool, 20)
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id, dup, err := db.InsertEvent(ctx, newEvent("github", "race", clock.t))
				if err != nil {
					t.Error(err)
				}
				ids <- id
				dups <- dup
			}()
		}
		wg.Wait()
		close(ids)
		close(dups)
		first, fresh := "", 0
		for id := range ids {
			if first == "" {
				first = id
			} else if id != first {
				t.Fatalf("ids differ: %s %s", first, id)
			}
		}
		for d := range dups {
			if !d {
				fresh++
			}
		}
		if fresh != 1 {
			t.Fatalf("%d inserts claimed to be new", fresh)
		}
		for _, tc := range []struct {
			e     core.Event
			field string
		}{{core.Event{DedupeKey: "x"}, "connector"}, {core.Event{Connector: "x"}, "dedupe_key"}} {
			if _, _, err := db.InsertEvent(ctx, tc.e); !core.IsKind(err, core.KindInvalid) {
				t.Errorf("%s missing: %v", tc.field, err)
			}
		}
		if _, err := db.GetEvent(ctx, "nope"); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("missing: %v", err)
		}
	})
}

func TestEventClaimLeaseFinish(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		for i := range 3 {
			if _, _, err := db.InsertEvent(ctx, newEvent("github", fmt.Sprint("e", i), clock.t.Add(time.Duration(i)*time.Second))); err != nil {
				t.Fatal(err)
			}
		}
		oldest, pending, err := db.InboxLag(ctx)
		if err != nil || pending != 3 || !oldest.Equal(clock.t) {
			t.Fatalf("lag: %v %d %v", oldest, pending, err)
		}
		got, err := db.ClaimEvents(ctx, 2, time.Minute)
		if err != nil || len(got) != 2 || got[0].DedupeKey != "e0" || got[1].DedupeKey != "e1" || got[0].Attempts != 1 {
			t.Fatalf("claim: %+v %v", got, err)
		}
		// Claimed events are not handed out again while the lease runs.
		more, err := db.ClaimEvents(ctx, 10, time.Minute)
		if err != nil || len(more) != 1 || more[0].DedupeKey != "e2" {
			t.Fatalf("second claim: %+v %v", more, err)
		}
		if err := db.FinishEvent(ctx, got[0].ID, core.EventProcessed, "", "change:CHG1"); err != nil {
			t.Fatal(err)
		}
		if err := db.FinishEvent(ctx, got[0].ID, core.EventProcessed, "", ""); !core.IsKind(err, core.KindConflict) {
			t.Fatalf("finish twice: %v", err)
		}
		if err := db.FinishEvent(ctx, "nope", core.EventProcessed, "", ""); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("finish unknown: %v", err)
		}
		if err := db.FinishEvent(ctx, got[1].ID, "done", "", ""); !core.IsKind(err, core.KindInvalid) {
			t.Fatalf("bad status: %v", err)
		}
		// The worker holding e1 and e2 crashed: after the lease they are
		// claimable again, with a second attempt counted.
		none, err := db.ClaimEvents(ctx, 10, time.Minute)
		if err != nil || len(none) != 0 {
			t.Fatalf("claim during lease: %+v %v", none, err)
		}
		clock.t = clock.t.Add(61 * time.Second)
		again, err := db.ClaimEvents(ctx, 10, time.Minute)
		if err != nil || len(again) != 2 || again[0].ID != got[1].ID || again[0].Attempts != 2 {
			t.Fatalf("claim after lease: %+v %v", again, err)
		}
		p, err := db.GetEvent(ctx, got[0].ID)
		if err != nil || p.Status != core.EventProcessed || p.Record != "change:CHG1" || p.ProcessedAt == nil {
			t.Fatalf("processed event: %+v %v", p, err)
		}
		if _, err := db.ClaimEvents(ctx, 0, time.Minute); !core.IsKind(err, core.KindInvalid) {
			t.Fatalf("zero limit: %v", err)
		}
	})
}

// ExtendClaims moves the end of the claims still the caller's only: not
// one settled, postponed, or taken over by another worker after it ended.
func TestEventExtendClaims(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		for i := range 4 {
			if _, _, err := db.InsertEvent(ctx, newEvent("github", fmt.Sprint("x", i), clock.t.Add(time.Duration(i)*time.Second))); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.ClaimEvents(ctx, 4, time.Minute)
		if err != nil || len(got) != 4 || got[0].ClaimedUntil == nil {
			t.Fatalf("claim: %+v %v", got, err)
		}
		until := *got[0].ClaimedUntil
		ids := []string{got[0].ID, got[1].ID, got[2].ID, got[3].ID, "nope", "bad\x00id"}
		if err := db.FinishEvent(ctx, got[0].ID, core.EventProcessed, "", ""); err != nil {
			t.Fatal(err)
		}
		if err := db.PostponeEvent(ctx, got[1].ID, "", clock.t.Add(10*time.Second)); err != nil {
			t.Fatal(err)
		}
		next := until.Add(40 * time.Second)
		if n, err := db.ExtendClaims(ctx, ids, until, next); err != nil || n != 2 {
			t.Fatalf("extend: %d %v, want 2 (the two still claimed)", n, err)
		}
		// An extension from a claim's old end is not ours any more.
		if n, err := db.ExtendClaims(ctx, ids, until, next.Add(time.Minute)); err != nil || n != 0 {
			t.Fatalf("extend from the old end: %d %v, want 0", n, err)
		}
		// Past the first lease, within the extension: still not claimable.
		clock.t = clock.t.Add(61 * time.Second)
		if again, err := db.ClaimEvents(ctx, 10, time.Minute); err != nil || len(again) != 1 || again[0].ID != got[1].ID {
			t.Fatalf("claim past the first lease: %+v %v, want the postponed event only", again, err)
		}
		// Past the extension, another worker takes the claims over: the
		// first worker's next extension changes nothing.
		clock.t = clock.t.Add(time.Minute)
		taken, err := db.ClaimEvents(ctx, 10, time.Minute)
		if err != nil || len(taken) != 2 {
			t.Fatalf("claim past the extension: %+v %v", taken, err)
		}
		if n, err := db.ExtendClaims(ctx, ids, next, next.Add(time.Minute)); err != nil || n != 0 {
			t.Fatalf("extend claims taken over: %d %v, want 0", n, err)
		}
		if n, err := db.ExtendClaims(ctx, nil, next, next); err != nil || n != 0 {
			t.Fatalf("extend nothing: %d %v", n, err)
		}
	})
}

// FinishEvents settles a claimed batch at once: each outcome is recorded
// as FinishEvent would, an event finished meanwhile by another worker is
// reported unsettled and left as it is, and a bad status records nothing.
func TestEventFinishBatch(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		for i := range 4 {
			if _, _, err := db.InsertEvent(ctx, newEvent("github", fmt.Sprint("e", i), clock.t.Add(time.Duration(i)*time.Second))); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.ClaimEvents(ctx, 10, time.Minute)
		if err != nil || len(got) != 4 {
			t.Fatalf("claim: %+v %v", got, err)
		}
		// Another worker finished e3 after this one's lease ended.
		if err := db.FinishEvent(ctx, got[3].ID, core.EventIgnored, "by the other worker", ""); err != nil {
			t.Fatal(err)
		}
		outcomes := []core.EventOutcome{
			{ID: got[0].ID, Status: core.EventProcessed, Reason: "created", Record: "change:CHG1"},
			{ID: got[1].ID, Status: core.EventQuarantined, Reason: "mapping failed"},
			{ID: got[2].ID, Status: core.EventIgnored, Reason: "no profile"},
			{ID: got[3].ID, Status: core.EventProcessed, Reason: "created", Record: "change:CHG3"},
		}
		if _, err := db.FinishEvents(ctx, append(slices.Clone(outcomes[:1]), core.EventOutcome{ID: got[1].ID, Status: "done"})); !core.IsKind(err, core.KindInvalid) {
			t.Fatalf("bad status: %v", err)
		}
		if e, _ := db.GetEvent(ctx, got[0].ID); e.Status != core.EventPending {
			t.Fatalf("a refused batch recorded %s", e.Status)
		}
		settled, err := db.FinishEvents(ctx, outcomes)
		if err != nil || !slices.Equal(settled, []bool{true, true, true, false}) {
			t.Fatalf("finish batch: %v %v", settled, err)
		}
		for i, want := range outcomes[:3] {
			e, err := db.GetEvent(ctx, got[i].ID)
			if err != nil || e.Status != want.Status || e.Reason != want.Reason || e.Record != want.Record || e.ProcessedAt == nil || e.ClaimedUntil != nil {
				t.Fatalf("event %d: %+v %v, want %+v", i, e, err, want)
			}
		}
		if e, _ := db.GetEvent(ctx, got[3].ID); e.Status != core.EventIgnored || e.Reason != "by the other worker" {
			t.Fatalf("the other worker's outcome was overwritten: %+v", e)
		}
		if _, pending, err := db.InboxLag(ctx); err != nil || pending != 0 {
			t.Fatalf("pending after the batch: %d %v", pending, err)
		}
	})
}

// TestEventClaimConcurrentWorkers: workers claiming at once on PostgreSQL
// never get the same event (FOR UPDATE SKIP LOCKED).
func TestEventClaimConcurrentWorkers(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		const n = 300
		for i := range n {
			if _, _, err := db.InsertEvent(ctx, newEvent("github", fmt.Sprint("e", i), clock.t)); err != nil {
				t.Fatal(err)
			}
		}
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					evs, err := db.ClaimEvents(ctx, 7, time.Hour)
					if err != nil {
						t.Error(err)
						return
					}
					if len(evs) == 0 {
						return
					}
					mu.Lock()
					for _, e := range evs {
						seen[e.ID]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(seen) != n {
			t.Fatalf("claimed %d distinct events, want %d", len(seen), n)
		}
		for id, c := range seen {
			if c != 1 {
				t.Fatalf("event %s claimed %d times", id, c)
			}
		}
	})
}

func TestEventListAndReplay(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		var ids []string
		for i := range 5 {
			conn := "github"
			if i == 4 {
				conn = "jira"
			}
			id, _, err := db.InsertEvent(ctx, newEvent(conn, fmt.Sprint("e", i), clock.t))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if _, err := db.ClaimEvents(ctx, 10, time.Minute); err != nil {
			t.Fatal(err)
		}
		for i, st := range []string{core.EventQuarantined, core.EventQuarantined, core.EventProcessed, core.EventIgnored, core.EventQuarantined} {
			if err := db.FinishEvent(ctx, ids[i], st, "reason "+st, ""); err != nil {
				t.Fatal(err)
			}
		}
		page1, err := db.ListEvents(ctx, core.EventFilter{Status: core.EventQuarantined, Connector: "github", Limit: 1})
		if err != nil || len(page1) != 1 || page1[0].ID != ids[0] {
			t.Fatalf("page 1: %+v %v", page1, err)
		}
		page2, err := db.ListEvents(ctx, core.EventFilter{Status: core.EventQuarantined, Connector: "github", Limit: 1, After: page1[0].ID})
		if err != nil || len(page2) != 1 || page2[0].ID != ids[1] {
			t.Fatalf("page 2: %+v %v", page2, err)
		}
		all, err := db.ListEvents(ctx, core.EventFilter{})
		if err != nil || len(all) != 5 {
			t.Fatalf("all: %d %v", len(all), err)
		}
		if _, err := db.ListEvents(ctx, core.EventFilter{Status: "weird"}); !core.IsKind(err, core.KindInvalid) {
			t.Fatalf("bad status filter: %v", err)
		}

		n, err := db.ReplayQuarantined(ctx, "github", "alice")
		if err != nil || n != 2 {
			t.Fatalf("replay quarantined: %d %v", n, err)
		}
		if err := db.ReplayEvent(ctx, ids[2], "alice"); err != nil {
			t.Fatal(err)
		}
		// A pending event can be replayed too (one the normalizer keeps
		// failing on): its claim ends and its attempts count afresh.
		if err := db.RetryEvent(ctx, ids[2], "database busy", clock.t.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if e, err := db.GetEvent(ctx, ids[2]); err != nil || e.LastError != "database busy" || e.ClaimedUntil == nil {
			t.Fatalf("retried event: %+v %v", e, err)
		}
		if err := db.ReplayEvent(ctx, ids[2], "alice"); err != nil {
			t.Fatalf("replay pending: %v", err)
		}
		if e, err := db.GetEvent(ctx, ids[2]); err != nil || e.Status != core.EventPending || e.Attempts != 0 || e.LastError != "" || e.ClaimedUntil != nil {
			t.Fatalf("replayed pending event: %+v %v", e, err)
		}
		if err := db.ReplayEvent(ctx, "nope", "alice"); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("replay unknown: %v", err)
		}
		_, pending, err := db.InboxLag(ctx)
		if err != nil || pending != 3 {
			t.Fatalf("pending after replay: %d %v", pending, err)
		}
		// Replayed events are claimable at once, though their lease runs.
		claimed, err := db.ClaimEvents(ctx, 10, time.Minute)
		if err != nil || len(claimed) != 3 || claimed[0].Reason != "" {
			t.Fatalf("claim replayed: %+v %v", claimed, err)
		}
		entries, err := db.ListAudit(ctx, core.AuditFilter{Action: "event.replay"})
		if err != nil || len(entries) != 3 || entries[0].Subject != "inbox:github" || entries[1].Subject != "event:"+ids[2] || entries[2].Subject != "event:"+ids[2] {
			t.Fatalf("audit: %+v %v", entries, err)
		}
		var data struct {
			Count int      `json:"count"`
			IDs   []string `json:"ids"`
		}
		if err := json.Unmarshal(entries[0].Data, &data); err != nil || data.Count != 2 || len(data.IDs) != 2 {
			t.Fatalf("bulk replay data %s: %v", entries[0].Data, err)
		}
		checkLinear(t, db, 3)
	})
}
