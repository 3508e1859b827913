package store

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/store/records"
)

// listening runs db's notification listener until the test ends and waits
// until the fact cache is live (at once on SQLite).
func listening(t *testing.T, db *DB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = db.Listen(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the fact cache to go live", func() bool { return cacheLive(db) })
}

func cacheLive(db *DB) bool { return db.facts.Live() }

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func approvalOf(t *testing.T, db *DB, key string) core.ApprovalState {
	t.Helper()
	f, err := db.GateFacts(context.Background(), core.FactsQuery{Service: "payments", ChangeKeys: []string{key}})
	if err != nil {
		t.Fatal(err)
	}
	c, ok := f.Changes[key]
	if !ok {
		return "absent"
	}
	return c.Approval
}

// TestFactCacheMatchesDatabase: every TestGateFacts-like query answers
// the same from the cache (cold, then warm) as from the database.
func TestFactCacheMatchesDatabase(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		listening(t, db)
		for _, c := range []core.Change{testChange("CHG1", t0, core.ApprovalApproved), testChange("CHG2", t0, core.ApprovalRequested)} {
			if _, err := db.UpsertChange(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		for _, i := range []core.Incident{testIncident("INC-PAY", t0, core.IncidentOpen, " PayMents"), testIncident("INC-GLOBAL", t0, core.IncidentOpen),
			testIncident("INC-OTHER", t0, core.IncidentOpen, "checkout"), testIncident("INC-OLD", t0, core.IncidentResolved, "payments")} {
			if _, err := db.UpsertIncident(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		var rels []string
		for n, team := range []string{"core", "core", "core", "other"} {
			r := mustRelease(t, db, core.Release{Service: "payments", Version: fmt.Sprint(n), Environment: "production", Team: team})
			if err := db.RequirePIR(ctx, core.PIR{ReleaseID: r.ID, RequiredAt: t0.Add(time.Duration(3-n) * time.Minute)}); err != nil {
				t.Fatal(err)
			}
			rels = append(rels, r.ID)
		}
		if _, err := db.SignOffPIR(ctx, rels[1], "carol", "", t0.Add(3*time.Minute)); err != nil {
			t.Fatal(err)
		}
		for _, q := range []core.FactsQuery{
			{Service: "payments", Team: "core", Version: "2", Environment: "production", ChangeKeys: []string{"CHG1", "CHG2", "MISSING", "CHG1", ""}, ExcludeReleaseID: rels[2]},
			{Service: " PAYMENTS", Team: "core"},
			{Service: "checkout", AllIncidents: true, ChangeKeys: []string{"MISSING"}},
			{Service: "payments", Team: " core ", Version: "0", Environment: "production"},
			{},
		} {
			keys, err := factKeys(q.ChangeKeys)
			if err != nil {
				t.Fatal(err)
			}
			want, err := db.gateFactsDB(ctx, q, keys)
			if err != nil {
				t.Fatal(err)
			}
			for _, pass := range []string{"cold", "warm"} {
				got, ok, err := db.facts.Facts(ctx, q, keys, records.NormService(q.Service))
				if err != nil || !ok {
					t.Fatalf("%+v %s: cache answered %v, %v", q, pass, ok, err)
				}
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(want)
				if string(g) != string(w) {
					t.Errorf("%+v %s:\n cache    %s\n database %s", q, pass, g, w)
				}
			}
		}
	})
}

// TestFactCacheReadYourWrites: a write through this store is seen by the
// next check at once, on both dialects (PostgreSQL: before the NOTIFY
// comes back).
func TestFactCacheReadYourWrites(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		listening(t, db)
		q := core.FactsQuery{Service: "payments", Team: "core", ChangeKeys: []string{"CHG1", "CHG-LATER"}}
		facts := func() core.Facts {
			t.Helper()
			f, err := db.GateFacts(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
		must := func(_ core.UpsertResult, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(db.UpsertChange(ctx, testChange("CHG1", t0, core.ApprovalRequested)))
		if f := facts(); f.Changes["CHG1"].Approval != core.ApprovalRequested || len(f.Changes) != 1 {
			t.Fatalf("start: %+v", f.Changes)
		}
		must(db.UpsertChange(ctx, testChange("CHG1", t0.Add(time.Minute), core.ApprovalApproved)))
		must(db.UpsertChange(ctx, testChange("CHG-LATER", t0, core.ApprovalApproved))) // was cached as absent
		if f := facts(); f.Changes["CHG1"].Approval != core.ApprovalApproved || len(f.Changes) != 2 {
			t.Fatalf("after approval: %+v", f.Changes)
		}
		must(db.UpsertIncident(ctx, testIncident("INC1", t0, core.IncidentOpen, "payments")))
		if f := facts(); len(f.Incidents) != 1 {
			t.Fatalf("after incident opened: %+v", f.Incidents)
		}
		must(db.UpsertIncident(ctx, testIncident("INC1", t0.Add(time.Minute), core.IncidentResolved, "payments")))
		if f := facts(); len(f.Incidents) != 0 {
			t.Fatalf("after incident resolved: %+v", f.Incidents)
		}
		r := mustRelease(t, db, core.Release{Service: "payments", Version: "1", Environment: "production", Team: "core"})
		if err := db.RequirePIR(ctx, core.PIR{ReleaseID: r.ID}); err != nil {
			t.Fatal(err)
		}
		if f := facts(); len(f.PendingPIRs) != 1 {
			t.Fatalf("after PIR required: %+v", f.PendingPIRs)
		}
		if _, err := db.SignOffPIR(ctx, r.ID, "carol", "", time.Time{}); err != nil {
			t.Fatal(err)
		}
		if f := facts(); len(f.PendingPIRs) != 0 {
			t.Fatalf("after PIR signed off: %+v", f.PendingPIRs)
		}
	})
}

// TestFactCacheAcrossReplicas: a write on another replica reaches this
// replica's cache through NOTIFY.
func TestFactCacheAcrossReplicas(t *testing.T) {
	url := testpg.NewDatabase(t)
	ctx := context.Background()
	a := openTestDB(t, url, nil)
	if _, err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b := openTestDB(t, url, nil)
	listening(t, a)
	if _, err := b.UpsertChange(ctx, testChange("CHG1", t0, core.ApprovalRequested)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replica a to see CHG1", func() bool { return approvalOf(t, a, "CHG1") == core.ApprovalRequested })
	if _, err := b.UpsertChange(ctx, testChange("CHG1", t0.Add(time.Minute), core.ApprovalApproved)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replica a to see the approval", func() bool { return approvalOf(t, a, "CHG1") == core.ApprovalApproved })
	if _, err := b.UpsertIncident(ctx, testIncident("INC1", t0, core.IncidentOpen)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replica a to see the incident", func() bool {
		f, err := a.GateFacts(ctx, core.FactsQuery{Service: "payments"})
		return err == nil && len(f.Incidents) == 1
	})
}

// TestFactCacheFlushedWhenAReplicaStarts: a write whose notification was
// lost (its replica killed between the commit and the send; here an
// update that sends none) stays in another replica's cache only until a
// replica starts and announces it, not for the TTL (an hour here).
func TestFactCacheFlushedWhenAReplicaStarts(t *testing.T) {
	url := testpg.NewDatabase(t)
	ctx := context.Background()
	a, err := Open(ctx, url, Options{Logger: quietLog(), FactsCacheTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if _, err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	listening(t, a)
	// Written by another replica, whose notification must have reached a
	// before a fills its cache, or it would empty the entry itself.
	sub, unsubscribe := a.Subscribe()
	defer unsubscribe()
	w := openTestDB(t, url, nil)
	if _, err := w.UpsertChange(ctx, testChange("CHG1", t0, core.ApprovalApproved)); err != nil {
		t.Fatal(err)
	}
	for topic := ""; topic != "change:CHG1"; {
		select {
		case topic = <-sub:
		case <-time.After(10 * time.Second):
			t.Fatal("the write's notification never came")
		}
	}
	for range 3 { // filled, and kept (a fill that raced an invalidation is not)
		if approvalOf(t, a, "CHG1") != core.ApprovalApproved {
			t.Fatal("not approved")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := a.SQLX().ExecContext(ctx, `UPDATE changes SET doc = jsonb_set(doc, '{approval}', '"rejected"')`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := approvalOf(t, a, "CHG1"); got != core.ApprovalApproved {
		t.Fatalf("without an announcement: %q, want the cached approval", got)
	}
	b := openTestDB(t, url, nil)
	b.AnnounceStart()
	waitFor(t, "replica a to drop what it cached", func() bool { return approvalOf(t, a, "CHG1") == core.ApprovalRejected })
}

// TestFactCacheTTL: an update that bypasses the store (no notification)
// is seen once the entry's TTL has passed on the store's clock.
func TestFactCacheTTL(t *testing.T) {
	ctx := context.Background()
	clock := &testClock{t: t0}
	db, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "t.db"), Options{Logger: quietLog(), Clock: clock, FactsCacheTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpsertChange(ctx, testChange("CHG1", t0, core.ApprovalRequested)); err != nil {
		t.Fatal(err)
	}
	if got := approvalOf(t, db, "CHG1"); got != core.ApprovalRequested {
		t.Fatalf("got %q", got)
	}
	if _, err := db.SQLX().ExecContext(ctx, `UPDATE changes SET doc = json_set(doc, '$.approval', 'approved')`); err != nil {
		t.Fatal(err)
	}
	clock.t = t0.Add(time.Minute)
	if got := approvalOf(t, db, "CHG1"); got != core.ApprovalRequested {
		t.Fatalf("within the TTL: got %q, want the cached requested", got)
	}
	clock.t = t0.Add(time.Minute + time.Second)
	if got := approvalOf(t, db, "CHG1"); got != core.ApprovalApproved {
		t.Fatalf("past the TTL: got %q", got)
	}
}

// TestFactCacheNotLiveWithoutListener: on PostgreSQL the cache answers only
// while the listener runs; otherwise checks read the database.
func TestFactCacheNotLiveWithoutListener(t *testing.T) {
	ctx := context.Background()
	db := newTestDB(t, Postgres, nil)
	if _, err := db.UpsertChange(ctx, testChange("CHG1", t0, core.ApprovalRequested)); err != nil {
		t.Fatal(err)
	}
	if approvalOf(t, db, "CHG1") != core.ApprovalRequested || cacheLive(db) {
		t.Fatal("cache live without a listener")
	}
	if _, err := db.SQLX().ExecContext(ctx, `UPDATE changes SET doc = jsonb_set(doc, '{approval}', '"approved"')`); err != nil {
		t.Fatal(err)
	}
	if got := approvalOf(t, db, "CHG1"); got != core.ApprovalApproved {
		t.Fatalf("got %q: answered from a cache", got)
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = db.Listen(lctx) }()
	waitFor(t, "live", func() bool { return cacheLive(db) })
	cancel()
	<-done
	if cacheLive(db) {
		t.Fatal("cache still live after the listener stopped")
	}
}

// TestFactCacheListenerReconnect: when the listener's connection is cut,
// notifications sent meanwhile are lost; the cache is emptied, so an
// update made while it was down (here one that sends no notification at
// all) is seen once it is back, long before the TTL.
func TestFactCacheListenerReconnect(t *testing.T) {
	ctx := context.Background()
	db := newTestDB(t, Postgres, nil)
	listening(t, db)
	if _, err := db.UpsertChange(ctx, testChange("CHG1", t0, core.ApprovalRequested)); err != nil {
		t.Fatal(err)
	}
	if approvalOf(t, db, "CHG1") != core.ApprovalRequested {
		t.Fatal("not requested")
	}
	var n int
	if err := db.SQLX().GetContext(ctx, &n, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`); err != nil || n != 1 {
		t.Fatalf("terminated %d listeners: %v", n, err)
	}
	if _, err := db.SQLX().ExecContext(ctx, `UPDATE changes SET doc = jsonb_set(doc, '{approval}', '"approved"')`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the update to be seen", func() bool { return approvalOf(t, db, "CHG1") == core.ApprovalApproved })
	waitFor(t, "live again", func() bool { return cacheLive(db) })
}

// TestFactCacheOff: a negative TTL turns the cache off.
func TestFactCacheOff(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "t.db"), Options{Logger: quietLog(), FactsCacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.facts != nil {
		t.Fatal("cache on")
	}
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GateFacts(ctx, core.FactsQuery{Service: "x", ChangeKeys: []string{"CHG1"}}); err != nil {
		t.Fatal(err)
	}
}

// TestChangesByKeyEveryCount: the fact cache's reads of any number of keys
// (the prepared counts, the padded ones, beyond the prepared maximum) find
// exactly the changes that exist, absent and repeated keys included.
func TestChangesByKeyEveryCount(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		for n := range 300 {
			if _, err := db.UpsertChange(ctx, core.Change{Source: "servicenow", Key: fmt.Sprintf("CHG%d", n), Approval: core.ApprovalApproved}); err != nil {
				t.Fatal(err)
			}
		}
		src := factSource{db}
		for _, n := range []int{1, 2, 8, 9, 16, 17, 100, 256, 257, 400} {
			keys := make([]string, n)
			for i := range keys {
				keys[i] = fmt.Sprintf("CHG%d", i*3/4) // repeats, and absent keys past CHG299
			}
			got, err := src.ChangesByKey(ctx, keys)
			if err != nil {
				t.Fatalf("%d keys: %v", n, err)
			}
			want := map[string]bool{}
			for _, k := range keys {
				var i int
				if _, err := fmt.Sscanf(k, "CHG%d", &i); err == nil && i < 300 {
					want[k] = true
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%d keys: %d changes, want %d", n, len(got), len(want))
			}
			for k := range want {
				if got[k].Key != k {
					t.Fatalf("%d keys: %s missing", n, k)
				}
			}
		}
	})
}
