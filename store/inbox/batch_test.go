package inbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

// pending is a delivery as InsertEvent hands it to the batcher.
func pending(connector, key string, at time.Time) pendingEvent {
	return pendingEvent{id: sqldb.NewID(), connector: connector, typ: "push", dedupeKey: key, headers: `{"X-Delivery":"` + key + `"}`,
		body: []byte(`{"k":"` + key + `"}`), receivedAt: sqldb.TS(at)}
}

// TestEventBatchDuplicates writes one group holding a key twice and a key
// stored before: each is stored once, and every caller gets the stored id.
func TestEventBatchDuplicates(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		old, dup, err := db.InsertEvent(ctx, newEvent("github", "old", clock.T))
		if err != nil || dup {
			t.Fatal(old, dup, err)
		}
		group := []pendingEvent{
			pending("github", "a", clock.T), pending("github", "old", clock.T), pending("github", "a", clock.T),
			pending("gitlab", "a", clock.T), pending("github", "b", clock.T),
		}
		res := db.events.write(ctx, group)
		want := []struct {
			id  string
			dup bool
		}{{group[0].id, false}, {old, true}, {group[0].id, true}, {group[3].id, false}, {group[4].id, false}}
		for i, w := range want {
			if res[i].err != nil || res[i].id != w.id || res[i].dup != w.dup {
				t.Errorf("delivery %d: %+v, want id %s dup %v", i, res[i], w.id, w.dup)
			}
		}
		var n int
		if err := db.SQLX().GetContext(ctx, &n, "SELECT count(*) FROM inbox_events"); err != nil || n != 4 {
			t.Fatalf("%d events stored (%v), want 4", n, err)
		}
		got, err := db.GetEvent(ctx, group[4].id)
		if err != nil || string(got.Body) != `{"k":"b"}` || got.Headers["X-Delivery"] != "b" || !got.ReceivedAt.Equal(clock.T) || got.Status != core.EventPending {
			t.Fatalf("read back %+v %v", got, err)
		}
	})
}

// TestEventBatchRowFailure: a row the database refuses fails its own
// caller (and its duplicates in the group) only.
func TestEventBatchRowFailure(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		poison := map[string]string{
			Postgres: `CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN IF NEW.dedupe_key = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$;
				CREATE TRIGGER poison BEFORE INSERT ON inbox_events FOR EACH ROW EXECUTE FUNCTION poison()`,
			SQLite: `CREATE TRIGGER poison BEFORE INSERT ON inbox_events WHEN NEW.dedupe_key = 'poison'
				BEGIN SELECT RAISE(ABORT, 'poisoned row'); END`,
		}[db.Dialect()]
		if _, err := db.SQLX().ExecContext(ctx, poison); err != nil {
			t.Fatal(err)
		}
		group := []pendingEvent{pending("github", "a", clock.T), pending("github", "poison", clock.T),
			pending("github", "b", clock.T), pending("github", "poison", clock.T)}
		res := db.events.write(ctx, group)
		for i, bad := range []bool{false, true, false, true} {
			if bad != (res[i].err != nil) {
				t.Errorf("delivery %d: %+v, want failed %v", i, res[i], bad)
			}
		}
		if res[0].id != group[0].id || res[2].id != group[2].id {
			t.Fatalf("results %+v", res)
		}
		var n int
		if err := db.SQLX().GetContext(ctx, &n, "SELECT count(*) FROM inbox_events"); err != nil || n != 2 {
			t.Fatalf("%d events stored (%v), want 2", n, err)
		}
	})
}

// TestEventBatchSameExplicitID: two keys given one explicit event id in
// one group: the first is stored, the second fails alone (as it would
// have one at a time), and neither caller is told the other's outcome.
func TestEventBatchSameExplicitID(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		group := []pendingEvent{pending("github", "a", clock.T), pending("github", "b", clock.T), pending("github", "c", clock.T)}
		group[1].id = group[0].id
		res := db.events.write(context.Background(), group)
		if res[0].err != nil || res[0].id != group[0].id || res[0].dup {
			t.Fatalf("first: %+v", res[0])
		}
		if res[1].err == nil {
			t.Fatalf("second, same id: %+v, want an error", res[1])
		}
		if res[2].err != nil || res[2].id != group[2].id {
			t.Fatalf("third: %+v", res[2])
		}
	})
}

// TestEventBatchConcurrent: concurrent deliveries, many of one key, are
// grouped, stored once per key, and every caller learns the stored id.
func TestEventBatchConcurrent(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		const n = 200
		type answer struct {
			key, id string
			dup     bool
		}
		answers := make(chan answer, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("k%d", i%50)
				id, dup, err := db.InsertEvent(ctx, newEvent("github", key, clock.T))
				if err != nil {
					t.Error(err)
				}
				answers <- answer{key, id, dup}
			}()
		}
		wg.Wait()
		close(answers)
		ids, fresh := map[string]string{}, map[string]int{}
		for a := range answers {
			if prev, ok := ids[a.key]; ok && prev != a.id {
				t.Fatalf("key %s answered with %s and %s", a.key, prev, a.id)
			}
			ids[a.key] = a.id
			if !a.dup {
				fresh[a.key]++
			}
		}
		for k, c := range fresh {
			if c != 1 {
				t.Errorf("key %s: %d callers told it was new", k, c)
			}
		}
		if len(fresh) != 50 {
			t.Errorf("%d keys new, want 50", len(fresh))
		}
		if g, r := db.events.groups.Load(), db.events.rows.Load(); g >= r {
			t.Logf("%d groups for %d deliveries: none shared a group this run", g, r)
		}
	})
}

// TestEventBatchCancelWhileQueued: a caller whose context ends while its
// delivery waits for a writer gets ctx's error, and nothing is stored for
// it; the writers go on with the others.
func TestEventBatchCancelWhileQueued(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		b := db.events
		// Hold every connection of the writers' pool: each writer then
		// waits inside its group, and the next delivery stays queued.
		writers := 1
		if b.postgres {
			writers = eventWriters
		}
		var held []*sql.Conn
		for range writers {
			c, err := b.pool.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		var wg sync.WaitGroup
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, _, err := db.InsertEvent(ctx, newEvent("github", fmt.Sprintf("blocker%d", i), clock.T)); err != nil {
					t.Error(err)
				}
			}()
			// Until a writer has taken it: the next blocker goes to the next writer.
			for deadline := time.Now().Add(10 * time.Second); len(b.reqs) > 0 || b.rows.Load() < int64(i+1); {
				if time.Now().After(deadline) {
					t.Fatal("no writer took the delivery")
				}
				time.Sleep(time.Millisecond)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, _, err := db.InsertEvent(cctx, newEvent("github", "gave-up", clock.T))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the context's deadline", err)
		}
		for _, c := range held {
			c.Close()
		}
		wg.Wait()
		// A later delivery goes through, and the abandoned one was never written.
		if _, dup, err := db.InsertEvent(ctx, newEvent("github", "after", clock.T)); err != nil || dup {
			t.Fatal(dup, err)
		}
		var n int
		if err := db.SQLX().GetContext(ctx, &n, db.q("SELECT count(*) FROM inbox_events WHERE dedupe_key = ?"), "gave-up"); err != nil || n != 0 {
			t.Fatalf("abandoned delivery stored %d times (%v)", n, err)
		}
		// Already ended: refused before queueing.
		cancel()
		if _, _, err := db.InsertEvent(cctx, newEvent("github", "late", clock.T)); err == nil {
			t.Fatal("an ended context was queued")
		}
	})
}

// TestEventBatchKeepsArrivalOrder: versions of one record arriving out of
// order in one group keep their own received times, so the normalizer
// claims them in arrival order (it compares the source's version itself).
func TestEventBatchKeepsArrivalOrder(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		// Keys sort opposite to arrival: the group inserts in key order.
		group := []pendingEvent{pending("servicenow", "z-v2", clock.T), pending("servicenow", "y-v1", clock.T.Add(time.Millisecond)),
			pending("servicenow", "x-v3", clock.T.Add(2*time.Millisecond))}
		for i, r := range db.events.write(ctx, group) {
			if r.err != nil || r.dup {
				t.Fatalf("delivery %d: %+v", i, r)
			}
		}
		evs, err := db.ClaimEvents(ctx, 10, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, e := range evs {
			keys = append(keys, e.DedupeKey)
		}
		if fmt.Sprint(keys) != "[z-v2 y-v1 x-v3]" {
			t.Fatalf("claimed %v, want arrival order [z-v2 y-v1 x-v3]", keys)
		}
	})
}

// TestEventBatchWakesOncePerGroup: a group of new deliveries wakes the
// inbox's subscribers once, not once per delivery; a group of duplicates
// only does not wake them.
func TestEventBatchWakesOncePerGroup(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		ch, stop := db.inbox.Subscribe()
		defer stop()
		group := []pendingEvent{pending("github", "a", clock.T), pending("github", "b", clock.T), pending("github", "c", clock.T)}
		db.events.write(ctx, group)
		if len(ch) != 1 {
			t.Fatalf("%d wake-ups for one group, want 1", len(ch))
		}
		<-ch
		db.events.write(ctx, []pendingEvent{pending("github", "a", clock.T)})
		if len(ch) != 0 {
			t.Fatalf("%d wake-ups for a group of duplicates, want 0", len(ch))
		}
	})
}

// BenchmarkInsertEvent stores distinct deliveries from parallel callers
// (GOMAXPROCS×-cpu… goroutines, scaled with -benchtime): ns/op is the
// ingest's store cost per delivery at that concurrency.
func BenchmarkInsertEvent(b *testing.B) {
	for _, dialect := range []string{Postgres, SQLite} {
		b.Run(dialect, func(b *testing.B) {
			db := newTestDB(b, dialect, core.SystemClock)
			body := make([]byte, 2048)
			for i := range body {
				body[i] = 'a' + byte(i%26)
			}
			ctx := context.Background()
			var seq sync.Mutex
			next := 0
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					seq.Lock()
					next++
					key := fmt.Sprintf("bench-%d", next)
					seq.Unlock()
					_, _, err := db.InsertEvent(ctx, core.Event{Connector: "github", Type: "push", DedupeKey: key,
						Headers: map[string]string{"X-GitHub-Delivery": key}, Body: body})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestWritersPlanWithTheDedupeIndex: on PostgreSQL the writers' prepared
// statements find duplicates through the dedupe index at any table size:
// their sessions plan without sequential scans or hash and merge joins
// (a generic plan made on a near-empty inbox would otherwise scan the
// whole inbox for every group once it has grown).
func TestWritersPlanWithTheDedupeIndex(t *testing.T) {
	db := newTestDB(t, Postgres, nil)
	ctx := context.Background()
	conn, err := db.events.pool.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, name := range []string{"enable_seqscan", "enable_hashjoin", "enable_mergejoin", "jit"} {
		var v string
		if err := conn.QueryRowContext(ctx, "SHOW "+name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != "off" {
			t.Errorf("%s = %s on a writer's session, want off", name, v)
		}
	}
	var plan string
	if err := conn.QueryRowContext(ctx, "EXPLAIN (COSTS OFF) SELECT id FROM inbox_events WHERE connector = 'a' AND dedupe_key = 'b'").Scan(&plan); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "inbox_events_connector_dedupe_key_key") {
		t.Errorf("a lookup on the empty inbox plans %q, not the dedupe index", plan)
	}
}

// TestEventBatchStartsNoGoroutinePerGroup: on PostgreSQL the writer's
// statements run under a context that never ends (the session bounds
// them), so neither lib/pq nor database/sql starts a goroutine to watch
// each group's.
func TestEventBatchStartsNoGoroutinePerGroup(t *testing.T) {
	db := newTestDB(t, Postgres, core.SystemClock)
	ctx := context.Background()
	if _, _, err := db.InsertEvent(ctx, newEvent("github", "warm", time.Now())); err != nil {
		t.Fatal(err)
	}
	const groups = 200
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	for i := range groups {
		if _, _, err := db.InsertEvent(ctx, newEvent("github", fmt.Sprint("k", i), time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	metrics.Read(s)
	if created := s[0].Value.Uint64() - before; created > groups/10 {
		t.Errorf("%d goroutines started for %d groups", created, groups)
	}
}

// TestEventGroupCaps: a group takes the deliveries already queued up to
// maxEventGroup of them, and stops once their bodies reach
// maxEventGroupBytes (the next group takes the rest).
func TestEventGroupCaps(t *testing.T) {
	req := func(size int) *eventReq { return &eventReq{ev: pendingEvent{body: make([]byte, size)}} }
	for _, tc := range []struct {
		name        string
		queued, len int // queued after the first, of len bytes each
		want        int
	}{
		{"small bodies: the count caps", 1000, 1 << 10, maxEventGroup},
		{"large bodies: the bytes cap", 100, 8 << 20, maxEventGroupBytes / (8 << 20)},
		{"one body past the cap alone", 3, maxEventGroupBytes, 1},
		{"fewer queued than either cap", 5, 1 << 10, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs := make(chan *eventReq, tc.queued)
			for range tc.queued {
				reqs <- req(tc.len)
			}
			group := gather(nil, req(tc.len), reqs)
			if len(group) != tc.want {
				t.Errorf("group of %d, want %d", len(group), tc.want)
			}
			if left := len(reqs); left != tc.queued+1-len(group) {
				t.Errorf("%d left queued, want %d", left, tc.queued+1-len(group))
			}
		})
	}
}
