package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

func mustRelease(t *testing.T, db *DB, r core.Release) core.Release {
	t.Helper()
	got, err := db.UpsertRelease(context.Background(), r)
	if err != nil {
		t.Fatalf("upsert release: %v", err)
	}
	return got
}

func TestUpsertReleaseIdempotent(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		created := clock.t
		first := mustRelease(t, db, core.Release{Service: "payments", Version: "1.4.2", Environment: "production",
			Team: "core", Commit: "abc", Changes: []string{"CHG1"}})
		if first.ID == "" || !first.CreatedAt.Equal(created) || first.Team != "core" {
			t.Fatalf("first = %+v", first)
		}
		clock.t = clock.t.Add(time.Minute)
		// A repeat without team/commit/links keeps them; new links replace.
		second := mustRelease(t, db, core.Release{Service: " payments ", Version: "1.4.2", Environment: "production"})
		if second.ID != first.ID || second.Team != "core" || second.Commit != "abc" || !slices.Equal(second.Changes, []string{"CHG1"}) {
			t.Errorf("repeat = %+v", second)
		}
		if !second.CreatedAt.Equal(created) || !second.UpdatedAt.Equal(clock.t) {
			t.Errorf("repeat times created %s updated %s", second.CreatedAt, second.UpdatedAt)
		}
		third := mustRelease(t, db, core.Release{Service: "payments", Version: "1.4.2", Environment: "production",
			Team: "platform", Changes: []string{"CHG2", "CHG3"}, FixesIncidents: []string{"INC1"}})
		if third.ID != first.ID || third.Team != "platform" || !slices.Equal(third.Changes, []string{"CHG2", "CHG3"}) || !slices.Equal(third.FixesIncidents, []string{"INC1"}) {
			t.Errorf("update = %+v", third)
		}
		got, err := db.GetRelease(ctx, first.ID)
		if err != nil || got.Team != "platform" || got.Commit != "abc" {
			t.Errorf("get = %+v, %v", got, err)
		}
		other := mustRelease(t, db, core.Release{Service: "payments", Version: "1.4.2", Environment: "staging"})
		if other.ID == first.ID {
			t.Error("another environment shares the release id")
		}
		if _, err := db.GetRelease(ctx, "nope"); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("missing release: %v", err)
		}
		for _, tc := range []struct {
			r     core.Release
			field string
		}{
			{core.Release{Version: "1", Environment: "prod"}, "service"},
			{core.Release{Service: "a", Environment: "prod"}, "version"},
			{core.Release{Service: "a", Version: "1", Environment: "  "}, "environment"},
		} {
			_, err := db.UpsertRelease(ctx, tc.r)
			var ce *core.Error
			if !errors.As(err, &ce) || ce.Kind != core.KindInvalid || ce.Field != tc.field {
				t.Errorf("want invalid %s, got %v", tc.field, err)
			}
		}
	})
}

func TestListReleasesPaging(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		var ids []string
		for n, svc := range []string{"a", "b", "a", "a", "b"} {
			clock.t = t0.Add(time.Duration(n) * time.Hour)
			ids = append(ids, mustRelease(t, db, core.Release{Service: svc, Version: string(rune('1' + n)), Environment: "prod", Team: "t-" + svc}).ID)
		}
		list := func(f core.ReleaseFilter) []string {
			t.Helper()
			rs, err := db.ListReleases(ctx, f)
			if err != nil {
				t.Fatalf("list %+v: %v", f, err)
			}
			var out []string
			for _, r := range rs {
				out = append(out, r.ID)
			}
			return out
		}
		tests := []struct {
			name string
			f    core.ReleaseFilter
			want []string
		}{
			{"all", core.ReleaseFilter{}, ids},
			{"service", core.ReleaseFilter{Service: "a"}, []string{ids[0], ids[2], ids[3]}},
			{"team", core.ReleaseFilter{Team: "t-b"}, []string{ids[1], ids[4]}},
			{"page 1", core.ReleaseFilter{Service: "a", Limit: 2}, []string{ids[0], ids[2]}},
			{"page 2", core.ReleaseFilter{Service: "a", Limit: 2, After: ids[2]}, []string{ids[3]}},
			{"past the last page", core.ReleaseFilter{Service: "a", After: ids[3]}, nil},
			{"time range", core.ReleaseFilter{From: t0.Add(time.Hour), To: t0.Add(3 * time.Hour)}, []string{ids[1], ids[2]}},
			{"no match", core.ReleaseFilter{Environment: "staging"}, nil},
		}
		for _, tc := range tests {
			if got := list(tc.f); !slices.Equal(got, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
			}
		}
		if _, err := db.ListReleases(ctx, core.ReleaseFilter{Limit: -1}); !core.IsKind(err, core.KindInvalid) {
			t.Errorf("negative limit: %v", err)
		}
		if _, err := db.ListReleases(ctx, core.ReleaseFilter{From: t0, To: t0}); !core.IsKind(err, core.KindInvalid) {
			t.Errorf("empty range: %v", err)
		}
		// An unknown cursor is a mistake, not the end of the listing.
		var ce *core.Error
		if _, err := db.ListReleases(ctx, core.ReleaseFilter{After: "no-such-release"}); !errors.As(err, &ce) || ce.Kind != core.KindInvalid || ce.Field != "after" {
			t.Errorf("unknown cursor: %v, want invalid after", err)
		}
	})
}

func testDeployment(status string, finished *time.Time) core.Deployment {
	return core.Deployment{Service: "payments", Environment: "production", Version: "1.4.2", Status: status,
		StartedAt: t0, FinishedAt: finished, Provider: "github", RunID: "42", Source: "api"}
}

func TestRecordDeploymentIdempotentAndMonotonic(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		at := func(m int) *time.Time { v := t0.Add(time.Duration(m) * time.Minute); return &v }
		type step struct {
			name        string
			dep         core.Deployment
			created     bool
			wantStatus  string
			wantFinish  *time.Time
			wantStarted time.Time
		}
		late := testDeployment(core.DeployStarted, nil)
		late.StartedAt = t0.Add(5 * time.Minute) // a repeat never moves the start later
		noStart := testDeployment(core.DeploySucceeded, at(20))
		noStart.StartedAt = time.Time{}
		steps := []step{
			{"started", testDeployment(core.DeployStarted, nil), true, core.DeployStarted, nil, t0},
			{"started again", testDeployment(core.DeployStarted, nil), false, core.DeployStarted, nil, t0},
			{"failed", testDeployment(core.DeployFailed, at(10)), false, core.DeployFailed, at(10), t0},
			{"late started keeps failed", late, false, core.DeployFailed, at(10), t0},
			{"re-run succeeded", noStart, false, core.DeploySucceeded, at(20), t0},
			{"stale failed keeps succeeded", testDeployment(core.DeployFailed, at(10)), false, core.DeploySucceeded, at(20), t0},
			{"rolled back", testDeployment(core.DeployRolledBack, at(30)), false, core.DeployRolledBack, at(30), t0},
			{"late succeeded keeps rolled back", testDeployment(core.DeploySucceeded, at(40)), false, core.DeployRolledBack, at(30), t0},
		}
		var id string
		for _, s := range steps {
			clock.t = clock.t.Add(time.Second)
			got, created, err := db.RecordDeployment(ctx, s.dep, "test")
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if id == "" {
				id = got.ID
			}
			if created != s.created || got.ID != id || got.Status != s.wantStatus || !got.StartedAt.Equal(s.wantStarted) ||
				(got.FinishedAt == nil) != (s.wantFinish == nil) || (got.FinishedAt != nil && !got.FinishedAt.Equal(*s.wantFinish)) {
				t.Errorf("%s: created %v, %+v", s.name, created, got)
			}
		}
		// Other fields: non-empty replaces, empty keeps.
		d := testDeployment(core.DeployStarted, nil)
		d.DecisionID, d.Changes, d.Actor = "dec-1", []string{"CHG1"}, "alice"
		got, _, err := db.RecordDeployment(ctx, d, "test")
		if err != nil || got.DecisionID != "dec-1" || got.Actor != "alice" || !slices.Equal(got.Changes, []string{"CHG1"}) {
			t.Fatalf("merge: %+v, %v", got, err)
		}
		got, _, err = db.RecordDeployment(ctx, testDeployment(core.DeployStarted, nil), "test")
		if err != nil || got.DecisionID != "dec-1" || !slices.Equal(got.Changes, []string{"CHG1"}) {
			t.Fatalf("empty repeat erased fields: %+v, %v", got, err)
		}
		if g, err := db.GetDeployment(ctx, id); err != nil || g.Status != core.DeployRolledBack || g.UpdatedAt.Before(g.CreatedAt) {
			t.Errorf("get = %+v, %v", g, err)
		}
		// Another environment of the same run is another deployment.
		other := testDeployment(core.DeployStarted, nil)
		other.Environment = "staging"
		if o, created, err := db.RecordDeployment(ctx, other, "test"); err != nil || !created || o.ID == id {
			t.Errorf("other environment: %+v created %v, %v", o, created, err)
		}
		if _, err := db.GetDeployment(ctx, "nope"); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("missing deployment: %v", err)
		}
	})
}

// TestRecordDeploymentLinksAudited: a report that changes a recorded
// deployment's links — fills them after a CI webhook's report, replaces
// them — commits an audit entry with the links before and after and who
// reported; a repeat that leaves them as they are adds none.
func TestRecordDeploymentLinksAudited(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		type links = deploymentLinks
		report := func(changes, incidents []string, decision string) core.Deployment {
			d := testDeployment(core.DeployStarted, nil)
			d.Changes, d.Incidents, d.DecisionID = changes, incidents, decision
			return d
		}
		none := links{Changes: []string{}, Incidents: []string{}}
		var changedAt *time.Time // when the links last changed: the clock at the last audited step
		for _, s := range []struct {
			name   string
			dep    core.Deployment
			by     string
			before *links // nil with audited false: no entry
			after  links
			audit  bool
		}{
			{"webhook, no links", report(nil, nil, ""), "connector:github", nil, none, false},
			{"pipeline fills the links", report([]string{"CHG1"}, nil, "dec-1"), "token:ci(t1)",
				&none, links{Changes: []string{"CHG1"}, Incidents: []string{}, DecisionID: "dec-1"}, true},
			{"same links again", report([]string{"CHG1"}, nil, "dec-1"), "token:ci(t1)", nil,
				links{Changes: []string{"CHG1"}, Incidents: []string{}, DecisionID: "dec-1"}, false},
			{"a repeat naming none keeps them", report(nil, nil, ""), "connector:github", nil,
				links{Changes: []string{"CHG1"}, Incidents: []string{}, DecisionID: "dec-1"}, false},
			{"a later report replaces the change", report([]string{"CHG2"}, nil, ""), "token:other(t2)",
				&links{Changes: []string{"CHG1"}, Incidents: []string{}, DecisionID: "dec-1"},
				links{Changes: []string{"CHG2"}, Incidents: []string{}, DecisionID: "dec-1"}, true},
			{"and adds a fixed incident", report(nil, []string{"INC9"}, ""), "token:other(t2)",
				&links{Changes: []string{"CHG2"}, Incidents: []string{}, DecisionID: "dec-1"},
				links{Changes: []string{"CHG2"}, Incidents: []string{"INC9"}, DecisionID: "dec-1"}, true},
		} {
			clock.t = clock.t.Add(time.Second)
			before, err := db.ListAudit(ctx, core.AuditFilter{Action: ActionDeploymentLinks, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := db.RecordDeployment(ctx, s.dep, s.by)
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if l := linksOf(got); !slices.Equal(l.Changes, s.after.Changes) || !slices.Equal(l.Incidents, s.after.Incidents) || l.DecisionID != s.after.DecisionID {
				t.Errorf("%s: stored links %+v, want %+v", s.name, l, s.after)
			}
			if s.audit {
				at := clock.t
				changedAt = &at
			}
			if (got.LinksChangedAt == nil) != (changedAt == nil) || (changedAt != nil && !got.LinksChangedAt.Equal(*changedAt)) {
				t.Errorf("%s: links_changed_at %v, want %v", s.name, got.LinksChangedAt, changedAt)
			}
			entries, err := db.ListAudit(ctx, core.AuditFilter{Action: ActionDeploymentLinks, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if added := len(entries) - len(before); added != map[bool]int{false: 0, true: 1}[s.audit] {
				t.Fatalf("%s: %d audit entries added", s.name, added)
			}
			if !s.audit {
				continue
			}
			e := entries[len(entries)-1]
			var data struct {
				RunID  string `json:"run_id"`
				Source string `json:"source"`
				Before *links `json:"before"`
				After  links  `json:"after"`
			}
			if err := json.Unmarshal(e.Data, &data); err != nil {
				t.Fatal(err)
			}
			if e.Actor != s.by || e.Subject != "deployment:"+got.ID || data.RunID != "42" || data.Source != "api" ||
				data.Before == nil || !slices.Equal(data.Before.Changes, s.before.Changes) || data.Before.DecisionID != s.before.DecisionID ||
				!slices.Equal(data.Before.Incidents, s.before.Incidents) ||
				!slices.Equal(data.After.Changes, s.after.Changes) || !slices.Equal(data.After.Incidents, s.after.Incidents) {
				t.Errorf("%s: entry %s %s %s", s.name, e.Actor, e.Subject, e.Data)
			}
		}
		if brk, n, err := db.VerifyAudit(ctx); err != nil || brk != nil || n == 0 {
			t.Errorf("verify: %v %d %v", brk, n, err)
		}
	})
}

// TestRecordDeploymentRewritesAudited: a repeat may fill in what the first
// report left empty, silently; rewriting the version, commit, actor or
// team, or moving the start more than startGrace earlier, is a change of
// the record (audited, links_changed_at set); and a start more than
// maxBackdate before the run was first reported is not taken at all (a
// report cannot move a deployment out of the periods that cover it).
func TestRecordDeploymentRewritesAudited(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		clock.t = t0.Add(10 * time.Minute) // first reported 10 minutes after it started
		base := testDeployment(core.DeployStarted, nil)
		base.Actor = "octocat"
		first, _, err := db.RecordDeployment(ctx, base, "connector:github")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []struct {
			name    string
			edit    func(d *core.Deployment)
			audited bool
			start   time.Time // the stored start after it
		}{
			{"fills in the commit and team", func(d *core.Deployment) { d.Commit, d.Team = "abc", "payments" }, false, t0},
			{"starts half an hour earlier", func(d *core.Deployment) { d.StartedAt = t0.Add(-30 * time.Minute) }, false, t0.Add(-30 * time.Minute)},
			{"rewrites the actor", func(d *core.Deployment) { d.Actor = "mallory" }, true, t0.Add(-30 * time.Minute)},
			{"rewrites the version", func(d *core.Deployment) { d.Version = "9.9.9" }, true, t0.Add(-30 * time.Minute)},
			{"rewrites the commit", func(d *core.Deployment) { d.Commit = "def" }, true, t0.Add(-30 * time.Minute)},
			{"starts three hours earlier", func(d *core.Deployment) { d.StartedAt = t0.Add(-3 * time.Hour) }, true, t0.Add(-3 * time.Hour)},
			{"starts in 2000", func(d *core.Deployment) { d.StartedAt = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) }, true, t0.Add(-3 * time.Hour)},
		} {
			clock.t = clock.t.Add(time.Second)
			before, err := db.ListAudit(ctx, core.AuditFilter{Action: ActionDeploymentLinks, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			prev, err := db.GetDeployment(ctx, first.ID)
			if err != nil {
				t.Fatal(err)
			}
			d := base
			d.Version, d.Commit, d.Actor, d.Team, d.StartedAt = prev.Version, prev.Commit, prev.Actor, prev.Team, prev.StartedAt
			s.edit(&d)
			got, _, err := db.RecordDeployment(ctx, d, "token:ci(t9)")
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			after, err := db.ListAudit(ctx, core.AuditFilter{Action: ActionDeploymentLinks, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if added := len(after) - len(before); added != map[bool]int{false: 0, true: 1}[s.audited] {
				t.Errorf("%s: %d audit entries added", s.name, added)
			}
			changed := got.LinksChangedAt != nil && got.LinksChangedAt.Equal(clock.t)
			if s.audited && s.name != "starts in 2000" && !changed {
				t.Errorf("%s: links_changed_at %v, want %v", s.name, got.LinksChangedAt, clock.t)
			}
			if !got.StartedAt.Equal(s.start) {
				t.Errorf("%s: stored start %v, want %v", s.name, got.StartedAt, s.start)
			}
			if s.name == "starts in 2000" && !strings.Contains(string(after[len(after)-1].Data), `"start_refused":"2000-01-01T00:00:00Z"`) {
				t.Errorf("%s: the refused start is not in the audit entry: %s", s.name, after[len(after)-1].Data)
			}
		}
	})
}

// TestRecordDeploymentRelinkConcurrent: reports racing to relink one
// deployment each leave an entry whose "before" is the links the one
// before it left, so the entries replay to the stored row.
func TestRecordDeploymentRelinkConcurrent(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		first, _, err := db.RecordDeployment(ctx, testDeployment(core.DeployStarted, nil), "test")
		if err != nil {
			t.Fatal(err)
		}
		const n = 8
		errs := make(chan error, n)
		for i := range n {
			go func() {
				d := testDeployment(core.DeployStarted, nil)
				d.Changes = []string{fmt.Sprintf("CHG%d", i)}
				_, _, err := db.RecordDeployment(ctx, d, fmt.Sprintf("token:r%d", i))
				errs <- err
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		entries, err := db.ListAudit(ctx, core.AuditFilter{Subject: "deployment:" + first.ID, Action: ActionDeploymentLinks, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != n {
			t.Fatalf("%d entries for %d relinks", len(entries), n)
		}
		prev := []string{}
		for _, e := range entries {
			var data struct{ Before, After deploymentLinks }
			if err := json.Unmarshal(e.Data, &data); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(data.Before.Changes, prev) {
				t.Fatalf("entry %d: before %v, the one before left %v", e.Seq, data.Before.Changes, prev)
			}
			prev = data.After.Changes
		}
		stored, err := db.GetDeployment(ctx, first.ID)
		if err != nil || !slices.Equal(stored.Changes, prev) {
			t.Fatalf("stored %v, the last entry left %v (%v)", stored.Changes, prev, err)
		}
	})
}

// TestRecordDeploymentQueued: a run its CI held is judged from when it
// ran. The first report that it left the queue gives its start, later
// than the queued one's; a queued report after it moves nothing; a
// queued report of another attempt after the run finished is no
// re-run until that attempt starts.
func TestRecordDeploymentQueued(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
		report := func(status string, start int, finish *time.Time) core.Deployment {
			d := testDeployment(status, finish)
			d.StartedAt, d.Actor = at(start), "alice" // who ran the pipeline
			if status != core.DeployQueued {
				d.Actor = "bob" // who played the job
			}
			return d
		}
		fin := at(400)
		steps := []struct {
			name        string
			dep         core.Deployment
			wantStatus  string
			wantStarted time.Time
			rerun       bool
		}{
			{"created", report(core.DeployQueued, 0, nil), core.DeployQueued, at(0), false},
			{"manual, later", report(core.DeployQueued, 5, nil), core.DeployQueued, at(0), false},
			{"earlier queued report keeps the earliest", report(core.DeployQueued, -5, nil), core.DeployQueued, at(-5), false},
			{"played six hours on", report(core.DeployStarted, 360, nil), core.DeployStarted, at(360), false},
			{"late queued report moves nothing", report(core.DeployQueued, -5, nil), core.DeployStarted, at(360), false},
			{"succeeded", report(core.DeploySucceeded, 360, &fin), core.DeploySucceeded, at(360), false},
			{"a retry queued after the finish", report(core.DeployQueued, 500, nil), core.DeploySucceeded, at(360), false},
			{"the retry runs", report(core.DeployStarted, 520, nil), core.DeployStarted, at(520), true},
		}
		var id string
		for _, s := range steps {
			clock.t = clock.t.Add(time.Second)
			got, _, err := db.RecordDeployment(ctx, s.dep, "connector:gitlab")
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if id == "" {
				id = got.ID
			}
			if (got.ID != id) != s.rerun || got.Status != s.wantStatus || !got.StartedAt.Equal(s.wantStarted) {
				t.Errorf("%s: got %s %s started %v (first id %s); want %s started %v, a re-run of its own %v",
					s.name, got.ID, got.Status, got.StartedAt, id, s.wantStatus, s.wantStarted, s.rerun)
			}
			if s.name == "played six hours on" && (!got.CreatedAt.Equal(clock.t) || got.Actor != "bob") {
				t.Errorf("%s: recorded at %v by %q; want when it left the queue, %v, by bob", s.name, got.CreatedAt, got.Actor, clock.t)
			}
		}
		// Nothing judged had changed: no report rewrote what the run is
		// judged by (the player replacing the pipeline's creator as actor
		// while it was queued is no rewrite), and the stale queued reports
		// wrote nothing.
		if entries, err := db.ListAudit(ctx, core.AuditFilter{Subject: "deployment:" + id, Action: ActionDeploymentLinks, Limit: 10}); err != nil || len(entries) != 0 {
			t.Errorf("deployment.links entries of the run: %d (%v), want none", len(entries), err)
		}
		if stored, err := db.GetDeployment(ctx, id); err != nil || stored.LinksChangedAt != nil || stored.Actor != "bob" {
			t.Errorf("the run as stored: %+v %v", stored, err)
		}
		var n int
		if err := db.db.GetContext(ctx, &n, db.q(`SELECT COUNT(*) FROM deployments WHERE status = ?`), core.DeployQueued); err != nil || n != 0 {
			t.Errorf("%d deployments left queued (%v); the retry's queued report made a row of its own", n, err)
		}
		// Counted, not judged: a run never played.
		never := testDeployment(core.DeployQueued, nil)
		never.RunID = "43"
		if _, _, err := db.RecordDeployment(ctx, never, "connector:gitlab"); err != nil {
			t.Fatal(err)
		}
		q := core.ReconcileQuery{From: at(-60), To: at(1000), Cutoff: clock.t.Add(time.Hour)}
		if n, err := db.CountQueued(ctx, q); err != nil || n != 1 {
			t.Errorf("CountQueued = %d, %v; want 1", n, err)
		}
		ds, err := db.ListDeployments(ctx, core.ReleaseFilter{Status: core.DeployQueued})
		if err != nil || len(ds) != 1 || ds[0].RunID != "43" {
			t.Fatalf("ListDeployments(queued) = %+v, %v; want run 43", ds, err)
		}
		// After the last row, an empty page; after no row, a mistake
		// (an empty page would read as the end).
		if rest, err := db.ListDeployments(ctx, core.ReleaseFilter{Status: core.DeployQueued, After: ds[0].ID}); err != nil || len(rest) != 0 {
			t.Errorf("after the last deployment: %d, %v; want an empty page", len(rest), err)
		}
		var ce *core.Error
		if _, err := db.ListDeployments(ctx, core.ReleaseFilter{After: "zzzz-no-such-deployment"}); !errors.As(err, &ce) || ce.Field != "after" {
			t.Errorf("unknown cursor: %v, want invalid after", err)
		}
		var seen []string
		if err := db.ReconcileScan(ctx, q, func(core.Incident) bool { return false }, 0, func(page []core.DeploymentFacts) error {
			for _, df := range page {
				seen = append(seen, df.Deployment.RunID+"/"+df.Deployment.Status)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(seen, func(s string) bool { return strings.HasPrefix(s, "43/") }) || len(seen) != 2 {
			t.Errorf("the reconciler read %v; want the run and its retry, not the queued run", seen)
		}
	})
}

// TestRecordDeploymentEndedUnrun: a queued report with a finish says the
// run ended without its CI reporting it ran (rejected at its gate,
// canceled while waiting). Stored as having run, the run failed then;
// else it stays queued and unfinished.
func TestRecordDeploymentEndedUnrun(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
		report := func(run, status string, start int, finish *time.Time) core.Deployment {
			d := testDeployment(status, finish)
			d.RunID, d.StartedAt = run, at(start)
			return d
		}
		end := at(30)
		for _, tc := range []struct {
			name       string
			before     []core.Deployment
			wantStatus string
			wantFinish bool
		}{
			{"never reported before", nil, core.DeployQueued, false},
			{"queued before", []core.Deployment{report("b", core.DeployQueued, -10, nil)}, core.DeployQueued, false},
			{"reported running before", []core.Deployment{report("c", core.DeployStarted, 10, nil)}, core.DeployFailed, true},
		} {
			run := tc.name
			for _, d := range tc.before {
				d.RunID = run
				if _, _, err := db.RecordDeployment(ctx, d, "connector:github"); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
			}
			clock.t = clock.t.Add(time.Second)
			got, _, err := db.RecordDeployment(ctx, report(run, core.DeployQueued, 0, &end), "connector:github")
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if got.Status != tc.wantStatus || (got.FinishedAt != nil) != tc.wantFinish || (tc.wantFinish && !got.FinishedAt.Equal(end)) {
				t.Errorf("%s: %s finished %v; want %s, finished %v", tc.name, got.Status, got.FinishedAt, tc.wantStatus, tc.wantFinish)
			}
		}
	})
}

// TestRecordDeploymentSubMicrosecond: a run reported to have started
// when it finished, to the nanosecond (tollgate takes a final report's
// finish as its start when it names none), is stored: the two compare as
// they are stored, to the microsecond.
func TestRecordDeploymentSubMicrosecond(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		at := t0.Add(1500 * time.Nanosecond)
		d := testDeployment(core.DeploySucceeded, &at)
		d.StartedAt = at
		if got, _, err := db.RecordDeployment(context.Background(), d, "test"); err != nil || !got.StartedAt.Equal(*got.FinishedAt) {
			t.Fatalf("%+v, %v", got, err)
		}
	})
}

// statusRank and its SQL form agree with the table the tests exercise.
func TestStatusRank(t *testing.T) {
	if !(statusRank(core.DeployQueued) < statusRank(core.DeployStarted) &&
		statusRank(core.DeployStarted) < statusRank(core.DeployFailed) &&
		statusRank(core.DeployFailed) == statusRank(core.DeploySucceeded) &&
		statusRank(core.DeploySucceeded) < statusRank(core.DeployRolledBack)) {
		t.Error("status ranks out of order")
	}
}

func TestRecordDeploymentInvalid(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		before := t0.Add(-time.Minute)
		for _, tc := range []struct {
			edit  func(*core.Deployment)
			field string
		}{
			{func(d *core.Deployment) { d.Service = "" }, "service"},
			{func(d *core.Deployment) { d.Environment = "" }, "environment"},
			{func(d *core.Deployment) { d.Version = "" }, "version"},
			{func(d *core.Deployment) { d.Provider = "" }, "provider"},
			{func(d *core.Deployment) { d.RunID = " " }, "run_id"},
			{func(d *core.Deployment) { d.Status = "" }, "status"},
			{func(d *core.Deployment) { d.Status = "done" }, "status"},
			{func(d *core.Deployment) { d.FinishedAt = &before }, "finished_at"},
		} {
			d := testDeployment(core.DeploySucceeded, nil)
			tc.edit(&d)
			_, _, err := db.RecordDeployment(context.Background(), d, "test")
			var ce *core.Error
			if !errors.As(err, &ce) || ce.Kind != core.KindInvalid || ce.Field != tc.field {
				t.Errorf("want invalid %s, got %v", tc.field, err)
			}
		}
	})
}

func TestListDeployments(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		var ids []string
		for n, env := range []string{"production", "staging", "production"} {
			d := testDeployment(core.DeployStarted, nil)
			d.Environment, d.RunID, d.StartedAt = env, string(rune('a'+n)), t0.Add(time.Duration(n)*time.Hour)
			got, _, err := db.RecordDeployment(ctx, d, "test")
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, got.ID)
		}
		for _, tc := range []struct {
			f    core.ReleaseFilter
			want []string
		}{
			{core.ReleaseFilter{}, ids},
			{core.ReleaseFilter{Environment: "production"}, []string{ids[0], ids[2]}},
			{core.ReleaseFilter{From: t0.Add(time.Hour)}, []string{ids[1], ids[2]}},
			{core.ReleaseFilter{Limit: 1, After: ids[0]}, []string{ids[1]}},
		} {
			ds, err := db.ListDeployments(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range ds {
				got = append(got, d.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("%+v: got %v, want %v", tc.f, got, tc.want)
			}
		}
	})
}

func TestPIRLifecycle(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		rel := mustRelease(t, db, core.Release{Service: "payments", Version: "1.4.2", Environment: "production", Team: "core"})
		if err := db.RequirePIR(ctx, core.PIR{ReleaseID: "nope"}); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("require for a missing release: %v", err)
		}
		if _, err := db.SignOffPIR(ctx, rel.ID, "carol", "", time.Time{}); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("sign off before required: %v", err)
		}
		if _, err := db.GetPIR(ctx, rel.ID); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("get before required: %v", err)
		}
		events, cancel := db.hub.Subscribe()
		defer cancel()
		if err := db.RequirePIR(ctx, core.PIR{ReleaseID: rel.ID}); err != nil {
			t.Fatal(err)
		}
		clock.t = clock.t.Add(time.Hour)
		if err := db.RequirePIR(ctx, core.PIR{ReleaseID: rel.ID, Team: "other"}); err != nil {
			t.Fatalf("repeat: %v", err)
		}
		p, err := db.GetPIR(ctx, rel.ID)
		if err != nil || p.Status != core.PIRPending || p.Team != "core" || p.Service != "payments" || !p.RequiredAt.Equal(clock.t.Add(-time.Hour)) {
			t.Fatalf("pending = %+v, %v", p, err)
		}
		if _, err := db.SignOffPIR(ctx, rel.ID, "", "", time.Time{}); !core.IsKind(err, core.KindInvalid) {
			t.Errorf("no signer: %v", err)
		}
		signed, err := db.SignOffPIR(ctx, rel.ID, "carol", "went fine", time.Time{})
		if err != nil || signed.Status != core.PIRSignedOff || signed.SignedOffBy != "carol" || signed.SignedOffAt == nil ||
			!signed.SignedOffAt.Equal(clock.t) || signed.Summary != "went fine" {
			t.Fatalf("signed = %+v, %v", signed, err)
		}
		if _, err := db.SignOffPIR(ctx, rel.ID, "dave", "", time.Time{}); !core.IsKind(err, core.KindConflict) {
			t.Errorf("second sign-off: %v", err)
		}
		if p, _ := db.GetPIR(ctx, rel.ID); p.SignedOffBy != "carol" {
			t.Errorf("second sign-off changed the PIR: %+v", p)
		}
		// Exactly one audit row, for the successful sign-off.
		var rows []struct {
			Actor   string `db:"actor"`
			Action  string `db:"action"`
			Subject string `db:"subject"`
			Data    string `db:"data"`
		}
		if err := db.db.SelectContext(ctx, &rows, `SELECT actor, action, subject, data FROM audit_log ORDER BY seq`); err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].Actor != "carol" || rows[0].Action != "pir.sign_off" || rows[0].Subject != "release:"+rel.ID {
			t.Fatalf("audit rows %+v", rows)
		}
		var data map[string]any
		if err := json.Unmarshal([]byte(rows[0].Data), &data); err != nil || data["summary"] != "went fine" {
			t.Errorf("audit data %s (%v)", rows[0].Data, err)
		}
		// SQLite broadcasts in process; PostgreSQL notifies on commit.
		if db.Dialect() == SQLite {
			var topics []string
			for len(events) > 0 {
				topics = append(topics, <-events)
			}
			if !slices.Equal(topics, []string{"pir:" + rel.ID, "pir:" + rel.ID}) {
				t.Errorf("notifications %v, want require and sign-off", topics)
			}
		}
	})
}

// TestPIRPerCommit: a review signed off for one commit does not cover
// other code deployed later under the same version: that deployment
// requires a review of its own, which holds the team's next release until
// it is signed off; a repeat for reviewed code (or an abbreviation of its
// commit) requires nothing, and the first review's pending period stays in
// the history the reconciler reads.
func TestPIRPerCommit(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		rel := mustRelease(t, db, core.Release{Service: "payments", Version: "2.0.0", Environment: "production", Team: "core"})
		aaa, bbb := "aaaaaaa1111111111111111111111111111111111", "bbbbbbb2222222222222222222222222222222222"
		start := clock.t
		if err := db.RequirePIR(ctx, core.PIR{ReleaseID: rel.ID, Commit: aaa}); err != nil {
			t.Fatal(err)
		}
		clock.t = clock.t.Add(time.Hour)
		if _, err := db.SignOffPIR(ctx, rel.ID, "carol", "", time.Time{}); err != nil {
			t.Fatal(err)
		}
		clock.t = clock.t.Add(time.Hour)
		for _, again := range []string{aaa, aaa[:7], strings.ToUpper(aaa)} {
			if err := db.RequirePIR(ctx, core.PIR{ReleaseID: rel.ID, Commit: again}); err != nil {
				t.Fatal(err)
			}
		}
		if p, err := db.GetPIR(ctx, rel.ID); err != nil || p.Status != core.PIRSignedOff {
			t.Fatalf("after the reviewed code again: %+v, %v", p, err)
		}
		next := core.FactsQuery{Service: "payments", Team: "core", Environment: "production", Version: "2.1.0", ExcludeReleaseID: core.ReleaseID("payments", "2.1.0", "production")}
		if f, err := db.GateFacts(ctx, next); err != nil || len(f.PendingPIRs) != 0 {
			t.Fatalf("the team's next release before other code shipped: %+v, %v", f.PendingPIRs, err)
		}
		if err := db.RequirePIR(ctx, core.PIR{ReleaseID: rel.ID, Commit: bbb}); err != nil {
			t.Fatal(err)
		}
		p, err := db.GetPIR(ctx, rel.ID)
		if err != nil || p.Status != core.PIRPending || p.Commit != bbb || !p.RequiredAt.Equal(clock.t) {
			t.Fatalf("other code under the same version: %+v, %v; want its own pending review", p, err)
		}
		if f, err := db.GateFacts(ctx, next); err != nil || len(f.PendingPIRs) != 1 || f.PendingPIRs[0].Commit != bbb {
			t.Fatalf("the team's next release: %+v, %v; want held by the new code's review", f.PendingPIRs, err)
		}
		// As of the first review's pending hour, it held the team; the
		// reconciler reads both reviews of the release over the whole span.
		asOf := next
		asOf.AsOf = start.Add(30 * time.Minute)
		if f, err := db.GateFacts(ctx, asOf); err != nil || len(f.PendingPIRs) != 1 || f.PendingPIRs[0].Commit != aaa {
			t.Fatalf("as of the first review's pending hour: %+v, %v", f.PendingPIRs, err)
		}
		if ps, err := db.pirsSpanning(ctx, []string{"core"}, []string{"payments"}, start, clock.t); err != nil || len(ps) != 2 {
			t.Fatalf("the reconciler's reviews of the span: %+v, %v; want both", ps, err)
		}
		// The source's sign-off of the first code, delivered again, does
		// not sign off the review required after it.
		if _, err := db.SignOffPIR(ctx, rel.ID, "carol", "", start.Add(time.Hour)); !core.IsKind(err, core.KindConflict) {
			t.Fatalf("the first sign-off again: %v, want a conflict", err)
		}
		if p, _ := db.GetPIR(ctx, rel.ID); p.Status != core.PIRPending || p.Commit != bbb {
			t.Fatalf("after the first sign-off again: %+v", p)
		}
		clock.t = clock.t.Add(time.Hour)
		if signed, err := db.SignOffPIR(ctx, rel.ID, "dave", "", time.Time{}); err != nil || signed.Commit != bbb {
			t.Fatalf("sign-off of the new code's review: %+v, %v", signed, err)
		}
		if _, err := db.SignOffPIR(ctx, rel.ID, "erin", "", time.Time{}); !core.IsKind(err, core.KindConflict) {
			t.Errorf("a third sign-off: %v, want a conflict", err)
		}
		if f, err := db.GateFacts(ctx, next); err != nil || len(f.PendingPIRs) != 0 {
			t.Fatalf("after both sign-offs: %+v, %v", f.PendingPIRs, err)
		}
	})
}

// TestRequirePIRConcurrent: deployments of one commit reported at once,
// some naming it short and some in full, require one review between them.
func TestRequirePIRConcurrent(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		rel := mustRelease(t, db, core.Release{Service: "payments", Version: "3.0.0", Environment: "production", Team: "core"})
		full := "cccccccddddddddddddddddddddddddddddddddd"
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 {
			commit := full
			if i%2 == 1 {
				commit = full[:7]
			}
			wg.Go(func() { errs <- db.RequirePIR(ctx, core.PIR{ReleaseID: rel.ID, Commit: commit}) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if err := db.db.GetContext(ctx, &n, db.q(`SELECT COUNT(*) FROM pirs WHERE release_id = ?`), rel.ID); err != nil || n != 1 {
			t.Fatalf("%d reviews for one commit (%v), want 1", n, err)
		}
	})
}

// Concurrent first writers of one release — deployment events of a new
// release normalized by several workers at once — all succeed and share
// its one row. The release's id is derived from the key the upsert's
// conflict target names, so both are unique: a race lost on the id must
// not surface as a conflict (it quarantined deliveries).
func TestUpsertReleaseConcurrentFirstInsert(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		const releases, writers = 40, 6
		for r := range releases {
			version := fmt.Sprintf("9.%d.0", r)
			var start sync.WaitGroup
			start.Add(1)
			errs := make(chan error, writers)
			for w := range writers {
				go func() {
					start.Wait()
					_, err := db.UpsertRelease(ctx, core.Release{Service: "race-svc", Version: version, Environment: "production",
						Team: fmt.Sprintf("team-%d", w)})
					errs <- err
				}()
			}
			start.Done()
			for range writers {
				if err := <-errs; err != nil {
					t.Fatalf("release %s: %v", version, err)
				}
			}
		}
		got, err := db.ListReleases(ctx, core.ReleaseFilter{Service: "race-svc", Limit: 100})
		if err != nil || len(got) != releases {
			t.Fatalf("%d releases stored for %d written (%v)", len(got), releases, err)
		}
	})
}

// Under Together a release, its deployment and its review requirement are
// written in the shared transaction (one commit, or none when it rolls
// back). A repeat that changes the deployment's links needs the audit
// chain's group commit: under Together it is refused with
// core.ErrOwnCommit, nothing of it stays once the transaction rolls back,
// and made again outside it, it is recorded and audited.
func TestDeploymentWritesTogether(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		write := func(ctx context.Context, d core.Deployment) (core.Deployment, error) {
			rel, err := db.UpsertRelease(ctx, core.Release{Service: d.Service, Version: d.Version, Environment: d.Environment, Team: "payments-team"})
			if err != nil {
				return core.Deployment{}, err
			}
			d.ReleaseID = rel.ID
			stored, _, err := db.RecordDeployment(ctx, d, "connector:github")
			if err != nil {
				return core.Deployment{}, err
			}
			return stored, db.RequirePIR(ctx, core.PIR{ReleaseID: rel.ID, Team: "payments-team"})
		}

		var first core.Deployment
		if err := db.Together(ctx, func(ctx context.Context) (err error) {
			first, err = write(ctx, testDeployment(core.DeploySucceeded, nil))
			return err
		}); err != nil {
			t.Fatalf("together: %v", err)
		}
		if _, err := db.GetDeployment(ctx, first.ID); err != nil {
			t.Fatalf("the deployment written together: %v", err)
		}
		if _, err := db.GetPIR(ctx, first.ReleaseID); err != nil {
			t.Fatalf("the review written together: %v", err)
		}
		if db.SharesCommits() {
			if n := testpg.Transactions(t, db.SQLX(), "releases", "deployments", "pirs"); n != 1 {
				t.Errorf("release, deployment and review written by %d transactions, want 1", n)
			}
		}

		// A rolled-back Together leaves nothing.
		other := testDeployment(core.DeploySucceeded, nil)
		other.Version, other.RunID = "1.4.3", "43"
		boom := errors.New("boom")
		if err := db.Together(ctx, func(ctx context.Context) error {
			if _, err := write(ctx, other); err != nil {
				return err
			}
			return boom
		}); !errors.Is(err, boom) {
			t.Fatalf("together: %v, want boom", err)
		}
		if got, err := db.ListDeployments(ctx, core.ReleaseFilter{Limit: 10}); err != nil || len(got) != 1 {
			t.Fatalf("deployments after the rollback: %d (%v), want the first only", len(got), err)
		}

		relinked := testDeployment(core.DeploySucceeded, nil)
		relinked.Changes = []string{"CHG9"}
		clock.t = clock.t.Add(time.Second)
		err := db.Together(ctx, func(ctx context.Context) error {
			_, err := write(ctx, relinked)
			return err
		})
		if !errors.Is(err, core.ErrOwnCommit) {
			t.Fatalf("a relink under Together: %v, want ErrOwnCommit", err)
		}
		if got, err := db.GetDeployment(ctx, first.ID); err != nil || len(got.Changes) != 0 {
			t.Fatalf("after the refused relink: %+v %v, want no links", got, err)
		}
		if _, err := write(ctx, relinked); err != nil {
			t.Fatalf("the relink alone: %v", err)
		}
		got, err := db.GetDeployment(ctx, first.ID)
		if err != nil || !slices.Equal(got.Changes, []string{"CHG9"}) {
			t.Fatalf("after the relink: %+v %v", got, err)
		}
		entries, err := db.ListAudit(ctx, core.AuditFilter{Action: ActionDeploymentLinks, Limit: 10})
		if err != nil || len(entries) != 1 || entries[0].Subject != "deployment:"+first.ID {
			t.Fatalf("audit of the relink: %+v %v", entries, err)
		}
	})
}

// TestRecordDeploymentRerun: a report of a run id whose deployment had
// finished, starting more than a minute after it finished, is another
// attempt (a re-run): a deployment of its own, judged at its own start,
// under the run id and that start, with an audit entry naming the first;
// its later reports land on it; a report starting within the minute is
// still the first run.
func TestRecordDeploymentRerun(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		clock.t = t0.Add(10 * time.Minute)
		done := t0.Add(5 * time.Minute)
		first, created, err := db.RecordDeployment(ctx, testDeployment(core.DeploySucceeded, &done), "connector:github")
		if err != nil || !created {
			t.Fatal(created, err)
		}
		late := testDeployment(core.DeployStarted, nil) // within the minute: the same run
		late.StartedAt = done.Add(30 * time.Second)
		if got, created, err := db.RecordDeployment(ctx, late, "connector:github"); err != nil || created || got.ID != first.ID || !got.StartedAt.Equal(t0) {
			t.Fatalf("a report starting 30s after the finish: %+v created %v, %v; want the first run", got, created, err)
		}
		clock.t = t0.Add(4 * 24 * time.Hour)
		rerunStart := t0.Add(4 * 24 * time.Hour)
		rerun := testDeployment(core.DeployStarted, nil)
		rerun.StartedAt = rerunStart
		got, created, err := db.RecordDeployment(ctx, rerun, "connector:github")
		if err != nil || !created || got.ID == first.ID || got.RunID != "42@"+rerunStart.UTC().Format(time.RFC3339) || !got.StartedAt.Equal(rerunStart) {
			t.Fatalf("the re-run: %+v created %v, %v; want a deployment of its own at its start", got, created, err)
		}
		// The pipeline's own report of the re-run gives its deploy step's
		// start, minutes after the job's: the same attempt, not a third.
		step := rerun
		step.StartedAt, step.Source = rerunStart.Add(2*time.Minute), core.SourceAPI
		if same, created, err := db.RecordDeployment(ctx, step, "token:ci"); err != nil || created || same.ID != got.ID {
			t.Fatalf("the pipeline's report of the re-run: %+v created %v, %v; want the re-run's deployment", same, created, err)
		}
		fin := rerunStart.Add(3 * time.Minute)
		rerun.Status, rerun.FinishedAt = core.DeploySucceeded, &fin
		again, created, err := db.RecordDeployment(ctx, rerun, "connector:github")
		if err != nil || created || again.ID != got.ID || again.Status != core.DeploySucceeded {
			t.Fatalf("the re-run's completion: %+v created %v, %v; want it on the re-run", again, created, err)
		}
		if stored, err := db.GetDeployment(ctx, first.ID); err != nil || !stored.StartedAt.Equal(t0) || stored.FinishedAt == nil || !stored.FinishedAt.Equal(done) {
			t.Fatalf("the first run after the re-run: %+v %v", stored, err)
		}
		// A third attempt, a day after the second finished: its own.
		third := testDeployment(core.DeployStarted, nil)
		third.StartedAt = rerunStart.Add(24 * time.Hour)
		if next, created, err := db.RecordDeployment(ctx, third, "connector:github"); err != nil || !created || next.ID == got.ID {
			t.Fatalf("a third attempt: %+v created %v, %v; want a deployment of its own", next, created, err)
		}
		entries, err := db.ListAudit(ctx, core.AuditFilter{Subject: "deployment:" + got.ID, Limit: 10})
		if err != nil || len(entries) == 0 || !strings.Contains(string(entries[len(entries)-1].Data), `"rerun_of":"`+first.ID+`"`) {
			t.Fatalf("audit of the re-run: %+v %v", entries, err)
		}
	})
}

// TestRESTVersionStandsOverWebhooks: the pipeline reports the version it
// gated (v1.4.2); the CI's webhooks of the same run name what their
// payload has (GitHub's deployment sha). They fill in what the report
// left empty but do not move the deployment to the sha's release — nobody
// gated that one, so the reconciler would find GATE_BYPASSED — nor write
// a links entry; a REST report still sets what a webhook wrote first.
func TestRESTVersionStandsOverWebhooks(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		rest := testDeployment(core.DeployStarted, nil)
		rest.Version = "v1.4.2"
		first, _, err := db.RecordDeployment(ctx, rest, "token:ci")
		if err != nil {
			t.Fatal(err)
		}
		sha := "9fceb02d0ae598e95dc970b74767f19372d61af8"
		for i, status := range []string{core.DeployStarted, core.DeploySucceeded} {
			clock.t = clock.t.Add(time.Minute)
			hook := testDeployment(status, nil)
			hook.Version, hook.Commit, hook.Source, hook.Actor = sha, sha, "github", "octocat"
			if status == core.DeploySucceeded {
				fin := t0.Add(5 * time.Minute)
				hook.FinishedAt = &fin
			}
			got, _, err := db.RecordDeployment(ctx, hook, "connector:github")
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != first.ID || got.Version != "v1.4.2" || got.ReleaseID != first.ReleaseID || got.Commit != sha || got.Actor != "octocat" || got.Status != status {
				t.Fatalf("webhook %d: %+v; want the REST report's version and release, the webhook's commit, actor and status", i, got)
			}
		}
		if es, err := db.ListAudit(ctx, core.AuditFilter{Action: ActionDeploymentLinks, Limit: 10}); err != nil || len(es) != 0 {
			t.Fatalf("links entries %d (%v), want none", len(es), err)
		}
		// The other way round: a webhook first, then the pipeline's report.
		hook := testDeployment(core.DeployStarted, nil)
		hook.RunID, hook.Version, hook.Source = "43", sha, "github"
		if _, _, err := db.RecordDeployment(ctx, hook, "connector:github"); err != nil {
			t.Fatal(err)
		}
		rest.RunID = "43"
		got, _, err := db.RecordDeployment(ctx, rest, "token:ci")
		if err != nil || got.Version != "v1.4.2" {
			t.Fatalf("the REST report after a webhook: %+v, %v; want its version", got, err)
		}
	})
}
