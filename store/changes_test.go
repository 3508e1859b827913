package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

var t0 = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func testChange(key string, stamp time.Time, approval core.ApprovalState) core.Change {
	start := t0.Add(time.Hour)
	return core.Change{
		Source: "servicenow", Key: key, Title: "Upgrade payments", Type: core.ChangeNormal,
		State: core.ChangeStateScheduled, Approval: approval, Services: []string{"payments"},
		PlannedStart: &start, SourceUpdatedAt: stamp,
	}
}

func TestUpsertChangeSequence(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		local := time.FixedZone("CET", 3600)
		steps := []struct {
			name   string
			change core.Change
			want   core.UpsertResult
		}{
			{"first", testChange("CHG1", t0, core.ApprovalRequested), core.UpsertCreated},
			{"duplicate delivery", testChange("CHG1", t0, core.ApprovalRequested), core.UpsertUnchanged},
			{"same content newer stamp", testChange("CHG1", t0.Add(time.Minute), core.ApprovalRequested), core.UpsertUnchanged},
			{"approved", testChange("CHG1", t0.Add(2*time.Minute), core.ApprovalApproved), core.UpsertUpdated},
			{"older stamp kept in the history", testChange("CHG1", t0.Add(90*time.Second), core.ApprovalRejected), core.UpsertPast},
			{"older stamp again", testChange("CHG1", t0.Add(90*time.Second), core.ApprovalRejected), core.UpsertStale},
			{"older stamp, what the history says then", testChange("CHG1", t0.Add(30*time.Second), core.ApprovalRequested), core.UpsertStale},
			{"same instant other zone unchanged", func() core.Change {
				c := testChange("CHG1", t0.Add(2*time.Minute).In(local), core.ApprovalApproved)
				s := c.PlannedStart.In(local)
				c.PlannedStart = &s
				return c
			}(), core.UpsertUnchanged},
			{"same stamp new content", testChange("CHG1", t0.Add(2*time.Minute), core.ApprovalCanceled), core.UpsertUpdated},
		}
		for _, s := range steps {
			got, err := db.UpsertChange(ctx, s.change)
			if err != nil || got != s.want {
				t.Fatalf("%s: got %q, %v; want %q", s.name, got, err, s.want)
			}
		}
		c, err := db.GetChange(ctx, "CHG1")
		if err != nil {
			t.Fatal(err)
		}
		if c.Approval != core.ApprovalCanceled || !c.SourceUpdatedAt.Equal(t0.Add(2*time.Minute)) {
			t.Errorf("current = %+v", c)
		}
		h, err := db.ChangeHistory(ctx, "CHG1")
		if err != nil {
			t.Fatal(err)
		}
		// In the order they became true; the late one numbered as recorded.
		wantVersion := []int{1, 3, 2, 4}
		wantApproval := []core.ApprovalState{core.ApprovalRequested, core.ApprovalRejected, core.ApprovalApproved, core.ApprovalCanceled}
		wantFrom := []time.Time{t0, t0.Add(90 * time.Second), t0.Add(2 * time.Minute), t0.Add(2 * time.Minute)}
		if len(h) != len(wantApproval) {
			t.Fatalf("history has %d versions, want %d", len(h), len(wantApproval))
		}
		for n, v := range h {
			if v.Version != wantVersion[n] || v.Change.Approval != wantApproval[n] || !v.ValidFrom.Equal(wantFrom[n]) || !v.RecordedAt.Equal(clock.t) {
				t.Errorf("version %d = %d %s valid_from %s recorded %s", n, v.Version, v.Change.Approval, v.ValidFrom, v.RecordedAt)
			}
		}
	})
}

// TestUpsertChangeLateDeliveries: deliveries processed out of order never
// change the current state to an older one, and the history says what was
// true when, whatever the order: a delivery with the stored content and a
// newer stamp moves the stamp (so one from between the two arriving late
// is not taken for newer), and a late one is kept in the history from its
// stamp.
func TestUpsertChangeLateDeliveries(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
		steps := []struct {
			name   string
			change core.Change
			want   core.UpsertResult
		}{
			{"approved at 10", testChange("CHG4", at(10), core.ApprovalApproved), core.UpsertCreated},
			{"approved still at 30", testChange("CHG4", at(30), core.ApprovalApproved), core.UpsertUnchanged},
			{"withdrawn at 20, late", testChange("CHG4", at(20), core.ApprovalRequested), core.UpsertPast},
			{"withdrawn at 20 again", testChange("CHG4", at(20), core.ApprovalRequested), core.UpsertStale},
			{"requested at 5, before the first", testChange("CHG4", at(5), core.ApprovalRequested), core.UpsertPast},
			{"rejected at 40", testChange("CHG4", at(40), core.ApprovalRejected), core.UpsertUpdated},
		}
		for _, s := range steps {
			got, err := db.UpsertChange(ctx, s.change)
			if err != nil || got != s.want {
				t.Fatalf("%s: got %q, %v; want %q", s.name, got, err, s.want)
			}
			if s.name == "withdrawn at 20, late" {
				if c, err := db.GetChange(ctx, "CHG4"); err != nil || c.Approval != core.ApprovalApproved || !c.SourceUpdatedAt.Equal(at(30)) {
					t.Fatalf("after the late delivery the current change is %+v, %v; want approved at 30", c, err)
				}
			}
		}
		h, err := db.ChangeHistory(ctx, "CHG4")
		if err != nil {
			t.Fatal(err)
		}
		type row struct {
			version  int
			from     time.Time
			approval core.ApprovalState
		}
		want := []row{
			{4, at(5), core.ApprovalRequested},
			{1, at(10), core.ApprovalApproved},
			{2, at(20), core.ApprovalRequested},
			{3, at(30), core.ApprovalApproved}, // the current content recorded again at its stamp
			{5, at(40), core.ApprovalRejected},
		}
		var got []row
		for _, v := range h {
			got = append(got, row{v.Version, v.ValidFrom, v.Change.Approval})
		}
		if !slices.EqualFunc(got, want, func(a, b row) bool { return a.version == b.version && a.from.Equal(b.from) && a.approval == b.approval }) {
			t.Fatalf("history\n%+v\nwant\n%+v", got, want)
		}
		// The facts as of a moment and the reconciler's choice agree with it.
		for _, tc := range []struct {
			at   time.Time
			want core.ApprovalState
		}{
			{at(7), core.ApprovalRequested}, {at(15), core.ApprovalApproved}, {at(25), core.ApprovalRequested},
			{at(35), core.ApprovalApproved}, {at(45), core.ApprovalRejected},
		} {
			f, err := db.GateFacts(ctx, core.FactsQuery{Service: "payments", ChangeKeys: []string{"CHG4"}, AsOf: tc.at})
			if err != nil || len(f.Changes) != 1 || f.Changes["CHG4"].Approval != tc.want {
				t.Errorf("facts as of %s: %+v, %v; want %s", tc.at, f.Changes, err, tc.want)
			}
			if v, ok := core.ChangeAsOf(h, tc.at); !ok || v.Change.Approval != tc.want {
				t.Errorf("ChangeAsOf %s: %+v; want %s", tc.at, v, tc.want)
			}
		}
		if c, err := db.GetChange(ctx, "CHG4"); err != nil || c.Approval != core.ApprovalRejected {
			t.Errorf("current %+v, %v", c, err)
		}
	})
}

func TestUpsertChangeZeroStampIsNow(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		events, cancel := db.hub.Subscribe()
		defer cancel()
		for range 2 { // created, then unchanged
			if _, err := db.UpsertChange(ctx, testChange("CHG2", time.Time{}, core.ApprovalApproved)); err != nil {
				t.Fatal(err)
			}
		}
		// SQLite announces in process; PostgreSQL with NOTIFY on commit.
		if db.Dialect() == SQLite && (len(events) != 1 || <-events != "change:CHG2") {
			t.Errorf("want exactly one change:CHG2 notification")
		}
		h, err := db.ChangeHistory(ctx, "CHG2")
		if err != nil || len(h) != 1 || !h[0].ValidFrom.Equal(clock.t) || !h[0].Change.SourceUpdatedAt.Equal(clock.t) {
			t.Fatalf("history %+v, %v", h, err)
		}
	})
}

func TestUpsertChangeInvalid(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		for _, tc := range []struct {
			name  string
			edit  func(*core.Change)
			field string
		}{
			{"no key", func(c *core.Change) { c.Key = " " }, "key"},
			{"long key", func(c *core.Change) { c.Key = string(make([]byte, 300)) }, "key"},
			{"no source", func(c *core.Change) { c.Source = "" }, "source"},
			{"bad type", func(c *core.Change) { c.Type = "urgent" }, "type"},
		} {
			c := testChange("CHG3", t0, core.ApprovalApproved)
			tc.edit(&c)
			_, err := db.UpsertChange(context.Background(), c)
			var ce *core.Error
			if !core.IsKind(err, core.KindInvalid) || !errors.As(err, &ce) || ce.Field != tc.field {
				t.Errorf("%s: err %v, want invalid %s", tc.name, err, tc.field)
			}
		}
	})
}

func TestChangeNotFound(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		if _, err := db.GetChange(ctx, "NOPE"); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("GetChange: %v", err)
		}
		if _, err := db.ChangeHistory(ctx, "NOPE"); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("ChangeHistory: %v", err)
		}
		if _, err := db.GetIncident(ctx, "NOPE"); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("GetIncident: %v", err)
		}
		if _, err := db.IncidentHistory(ctx, "NOPE"); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("IncidentHistory: %v", err)
		}
	})
}

// Concurrent deliveries of one key, each with a distinct content and
// stamp, never fail, and whatever order they commit in, the history is a
// gap-free sequence with non-decreasing valid_from.
func TestUpsertChangeConcurrent(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		const n = 20
		results := make([]core.UpsertResult, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range n {
			wg.Go(func() {
				<-start
				c := testChange("CHG-RACE", t0.Add(time.Duration(g)*time.Second), core.ApprovalRequested)
				c.Title = fmt.Sprintf("delivery %d", g)
				results[g], errs[g] = db.UpsertChange(ctx, c)
			})
		}
		close(start)
		wg.Wait()
		stored := 0
		for g := range n {
			if errs[g] != nil {
				t.Fatalf("goroutine %d: %v", g, errs[g])
			}
			// Every delivery differs: each is stored, as the newest or,
			// when a newer one came first, in the history.
			if results[g] == core.UpsertCreated || results[g] == core.UpsertUpdated || results[g] == core.UpsertPast {
				stored++
			}
		}
		if c := countOf(results, core.UpsertCreated); c != 1 {
			t.Errorf("%d creates, want 1 (results %v)", c, results)
		}
		h, err := db.ChangeHistory(ctx, "CHG-RACE")
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != n || stored != n {
			t.Errorf("history has %d versions, %d upserts stored one; want %d", len(h), stored, n)
		}
		seen := map[int]bool{}
		for i, v := range h {
			if seen[v.Version] || v.Version < 1 || v.Version > len(h) {
				t.Errorf("version %d at position %d: numbers are 1..%d, each once", v.Version, i, len(h))
			}
			seen[v.Version] = true
			if i > 0 && !v.ValidFrom.After(h[i-1].ValidFrom) {
				t.Errorf("version %d valid_from %s not after the previous %s", v.Version, v.ValidFrom, h[i-1].ValidFrom)
			}
		}
		cur, err := db.GetChange(ctx, "CHG-RACE")
		if err != nil || cur.Title != h[len(h)-1].Change.Title || cur.Title != fmt.Sprintf("delivery %d", n-1) {
			t.Errorf("current %q is not the newest version %q (%v)", cur.Title, h[len(h)-1].Change.Title, err)
		}
	})
}

func countOf(rs []core.UpsertResult, r core.UpsertResult) int {
	n := 0
	for _, x := range rs {
		if x == r {
			n++
		}
	}
	return n
}

func testIncident(key string, stamp time.Time, state string, services ...string) core.Incident {
	return core.Incident{Source: "servicenow", Key: key, Title: "Payments down", Priority: 1, Major: true,
		State: state, Services: services, SourceUpdatedAt: stamp}
}

func TestUpsertIncidentMaintainsServices(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		type row struct {
			Active, Global bool
		}
		steps := []struct {
			name     string
			inc      core.Incident
			want     core.UpsertResult
			row      row
			services []string
		}{
			{"opened on two services", testIncident("INC1", t0, core.IncidentOpen, " Payments", "checkout", "payments"), core.UpsertCreated, row{true, false}, []string{"checkout", "payments"}},
			{"scope narrowed", testIncident("INC1", t0.Add(time.Minute), core.IncidentOpen, "CHECKOUT"), core.UpsertUpdated, row{true, false}, []string{"checkout"}},
			{"scope unknown: global", testIncident("INC1", t0.Add(2*time.Minute), core.IncidentOpen), core.UpsertUpdated, row{true, true}, nil},
			{"late reopening: history only", testIncident("INC1", t0.Add(time.Minute), core.IncidentOpen, "ledger"), core.UpsertPast, row{true, true}, nil},
			{"resolved", testIncident("INC1", t0.Add(3*time.Minute), core.IncidentResolved, "ledger"), core.UpsertUpdated, row{false, false}, []string{"ledger"}},
		}
		for _, s := range steps {
			got, err := db.UpsertIncident(ctx, s.inc)
			if err != nil || got != s.want {
				t.Fatalf("%s: got %q, %v; want %q", s.name, got, err, s.want)
			}
			var r row
			if err := db.db.QueryRowxContext(ctx, db.q(`SELECT active, global FROM incidents WHERE key = ?`), "INC1").Scan(&r.Active, &r.Global); err != nil {
				t.Fatal(err)
			}
			if r != s.row {
				t.Errorf("%s: row %+v, want %+v", s.name, r, s.row)
			}
			var services []string
			if err := db.db.SelectContext(ctx, &services, db.q(`SELECT service FROM incident_services WHERE incident_key = ? ORDER BY service`), "INC1"); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(services, s.services) {
				t.Errorf("%s: services %q, want %q", s.name, services, s.services)
			}
		}
		h, err := db.IncidentHistory(ctx, "INC1")
		if err != nil || len(h) != 5 || h[4].Incident.State != core.IncidentResolved || !h[4].ValidFrom.Equal(t0.Add(3*time.Minute)) ||
			h[2].Version != 4 || h[2].Incident.Services[0] != "ledger" {
			t.Fatalf("history %+v, %v", h, err)
		}
		if got, _ := db.GetIncident(ctx, "INC1"); got.State != core.IncidentResolved {
			t.Errorf("current state %q", got.State)
		}
		if _, err := db.UpsertIncident(ctx, core.Incident{Key: "INC2", Source: "x", Priority: -1}); !core.IsKind(err, core.KindInvalid) {
			t.Errorf("negative priority: %v", err)
		}
	})
}
