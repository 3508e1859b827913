package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

func factNames(f core.Facts) (changes, incidents, pirs []string) {
	for k := range f.Changes {
		changes = append(changes, k)
	}
	sort.Strings(changes)
	for _, i := range f.Incidents {
		incidents = append(incidents, i.Key)
	}
	for _, p := range f.PendingPIRs {
		pirs = append(pirs, p.ReleaseID)
	}
	return changes, incidents, pirs
}

func TestGateFacts(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		must := func(_ core.UpsertResult, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		// Timeline (source stamps): CHG1 requested at t0, approved at
		// t0+30m; the deployment started at t0+10m.
		must(db.UpsertChange(ctx, testChange("CHG1", t0, core.ApprovalRequested)))
		must(db.UpsertChange(ctx, testChange("CHG1", t0.Add(30*time.Minute), core.ApprovalApproved)))
		must(db.UpsertChange(ctx, testChange("CHG2", t0.Add(20*time.Minute), core.ApprovalApproved)))
		// Incidents: one on payments (any case), one elsewhere, one global,
		// one resolved at t0+15m, one major on ledger only.
		must(db.UpsertIncident(ctx, testIncident("INC-PAY", t0, core.IncidentOpen, "PayMents ")))
		must(db.UpsertIncident(ctx, testIncident("INC-OTHER", t0, core.IncidentOpen, "checkout")))
		must(db.UpsertIncident(ctx, testIncident("INC-GLOBAL", t0.Add(5*time.Minute), core.IncidentOpen)))
		must(db.UpsertIncident(ctx, testIncident("INC-OLD", t0, core.IncidentOpen, "payments")))
		must(db.UpsertIncident(ctx, testIncident("INC-OLD", t0.Add(15*time.Minute), core.IncidentResolved, "payments")))
		must(db.UpsertIncident(ctx, testIncident("INC-LATE", t0.Add(40*time.Minute), core.IncidentOpen, "payments")))
		// PIRs of team core on payments: r1 pending, r2 signed off at
		// clock+1h, r3 is the release asking; r4 another team's on ledger.
		rel := func(svc, v, team string) string {
			return mustRelease(t, db, core.Release{Service: svc, Version: v, Environment: "production", Team: team}).ID
		}
		sha3 := "abc1234def5678abc1234def5678abc1234def56"
		r1, r2, r3, r4 := rel("payments", "1", "core"), rel("payments", "2", "core"), rel("payments", "3", "core"), rel("ledger", "4", "other")
		for n, id := range []string{r1, r2, r3, r4} {
			commit := map[string]string{r3: " " + strings.ToUpper(sha3)}[id] // r3's review names the commit deployed
			if err := db.RequirePIR(ctx, core.PIR{ReleaseID: id, Commit: commit, RequiredAt: t0.Add(time.Duration(n) * time.Minute)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.SignOffPIR(ctx, r2, "carol", "", t0.Add(20*time.Minute)); err != nil {
			t.Fatal(err)
		}

		tests := []struct {
			name                       string
			q                          core.FactsQuery
			changes, incidents, pirs   []string
			wantApproval               core.ApprovalState
			wantPIRStatus, wantService string
		}{
			{name: "current", q: core.FactsQuery{Service: "payments", Team: "core", ChangeKeys: []string{"CHG1", "CHG2", "MISSING", "CHG1", ""}, ExcludeReleaseID: r3},
				changes: []string{"CHG1", "CHG2"}, incidents: []string{"INC-GLOBAL", "INC-LATE", "INC-PAY"}, pirs: []string{r1},
				wantApproval: core.ApprovalApproved, wantPIRStatus: core.PIRPending},
			// A review holds back its service's next release whatever team
			// the check names, or none (core.PIR.HoldsBack).
			{name: "service case-insensitive", q: core.FactsQuery{Service: " PAYMENTS"},
				incidents: []string{"INC-GLOBAL", "INC-LATE", "INC-PAY"}, pirs: []string{r1, r3}},
			{name: "the release itself in another case", q: core.FactsQuery{Service: "Payments", Version: "3", Environment: "production"},
				incidents: []string{"INC-GLOBAL", "INC-LATE", "INC-PAY"}, pirs: []string{r1}},
			// The release's own review holds back another commit under its
			// version label, not its own.
			{name: "the release itself, its own commit", q: core.FactsQuery{Service: "payments", Version: "3", Environment: "production", ExcludeReleaseID: r3, Commit: sha3},
				incidents: []string{"INC-GLOBAL", "INC-LATE", "INC-PAY"}, pirs: []string{r1}},
			{name: "the release itself, its own commit abbreviated", q: core.FactsQuery{Service: "payments", Version: "3", Environment: "production", ExcludeReleaseID: r3, Commit: strings.ToUpper(sha3[:7])},
				incidents: []string{"INC-GLOBAL", "INC-LATE", "INC-PAY"}, pirs: []string{r1}},
			{name: "the release itself, six characters are no abbreviation", q: core.FactsQuery{Service: "payments", Version: "3", Environment: "production", ExcludeReleaseID: r3, Commit: sha3[:6]},
				incidents: []string{"INC-GLOBAL", "INC-LATE", "INC-PAY"}, pirs: []string{r1, r3}},
			{name: "the release itself, another commit", q: core.FactsQuery{Service: "payments", Version: "3", Environment: "production", ExcludeReleaseID: r3, Commit: "DEF4567"},
				incidents: []string{"INC-GLOBAL", "INC-LATE", "INC-PAY"}, pirs: []string{r1, r3}},
			{name: "as of t0+35m, the release itself with another commit", q: core.FactsQuery{Service: "payments", Team: "core", ExcludeReleaseID: r3, Commit: "def456", AsOf: t0.Add(35 * time.Minute)},
				incidents: []string{"INC-GLOBAL", "INC-PAY"}, pirs: []string{r1, r3}},
			{name: "team in another case", q: core.FactsQuery{Service: "checkout", Team: " CORE"},
				incidents: []string{"INC-GLOBAL", "INC-OTHER"}, pirs: []string{r1, r3}},
			{name: "other service", q: core.FactsQuery{Service: "checkout"},
				incidents: []string{"INC-GLOBAL", "INC-OTHER"}},
			{name: "all incidents", q: core.FactsQuery{Service: "checkout", AllIncidents: true},
				incidents: []string{"INC-GLOBAL", "INC-LATE", "INC-OTHER", "INC-PAY"}},
			{name: "empty query: global only", q: core.FactsQuery{},
				incidents: []string{"INC-GLOBAL"}},
			{name: "no team: the service's PIRs", q: core.FactsQuery{Service: "ledger", ChangeKeys: []string{"CHG2"}},
				changes: []string{"CHG2"}, incidents: []string{"INC-GLOBAL"}, pirs: []string{r4}},
			{name: "team without exclusion", q: core.FactsQuery{Service: "ledger", Team: "core"},
				incidents: []string{"INC-GLOBAL"}, pirs: []string{r1, r3, r4}},
			// As of the deployment's start, CHG1 was not approved yet, CHG2
			// did not exist, INC-OLD was still open, INC-LATE not yet
			// opened, and r2's review was still pending.
			{name: "as of t0+10m", q: core.FactsQuery{Service: "payments", Team: "core", ChangeKeys: []string{"CHG1", "CHG2"}, ExcludeReleaseID: r3, AsOf: t0.Add(10 * time.Minute)},
				changes: []string{"CHG1"}, incidents: []string{"INC-GLOBAL", "INC-OLD", "INC-PAY"}, pirs: []string{r1, r2},
				wantApproval: core.ApprovalRequested, wantPIRStatus: core.PIRPending},
			{name: "as of t0+90s: before the global incident and r2's requirement", q: core.FactsQuery{Service: "Payments", Team: "core", AsOf: t0.Add(90 * time.Second)},
				incidents: []string{"INC-OLD", "INC-PAY"}, pirs: []string{r1, r2}},
			{name: "as of t0+35m", q: core.FactsQuery{Service: "payments", Team: "core", ChangeKeys: []string{"CHG1"}, AsOf: t0.Add(35 * time.Minute)},
				changes: []string{"CHG1"}, incidents: []string{"INC-GLOBAL", "INC-PAY"}, pirs: []string{r1, r3},
				wantApproval: core.ApprovalApproved},
			{name: "as of, all incidents", q: core.FactsQuery{Service: "ledger", AllIncidents: true, AsOf: t0.Add(10 * time.Minute)},
				incidents: []string{"INC-GLOBAL", "INC-OLD", "INC-OTHER", "INC-PAY"}, pirs: []string{r4}},
			{name: "as of before anything", q: core.FactsQuery{Service: "payments", Team: "core", ChangeKeys: []string{"CHG1"}, AsOf: t0.Add(-time.Hour)}},
		}
		for _, tc := range tests {
			f, err := db.GateFacts(ctx, tc.q)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if f.Changes == nil || f.Incidents == nil || f.PendingPIRs == nil {
				t.Errorf("%s: nil collections in %+v", tc.name, f)
			}
			changes, incidents, pirs := factNames(f)
			if !slices.Equal(changes, tc.changes) || !slices.Equal(incidents, tc.incidents) || !slices.Equal(pirs, tc.pirs) {
				t.Errorf("%s:\n changes %v want %v\n incidents %v want %v\n pirs %v want %v", tc.name, changes, tc.changes, incidents, tc.incidents, pirs, tc.pirs)
			}
			if tc.wantApproval != "" && f.Changes["CHG1"].Approval != tc.wantApproval {
				t.Errorf("%s: CHG1 approval %q, want %q", tc.name, f.Changes["CHG1"].Approval, tc.wantApproval)
			}
			for _, p := range f.PendingPIRs {
				ours := strings.EqualFold(p.Team, strings.TrimSpace(tc.q.Team)) || strings.EqualFold(p.Service, strings.TrimSpace(tc.q.Service))
				if p.Status != core.PIRPending || p.SignedOffAt != nil || !ours || p.RequiredAt.IsZero() {
					t.Errorf("%s: PIR %+v", tc.name, p)
				}
			}
		}
		if _, err := db.GateFacts(ctx, core.FactsQuery{ChangeKeys: make([]string, 0)}); err != nil {
			t.Errorf("empty keys: %v", err)
		}
	})
}

func TestGateFactsManyKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		var keys []string
		for n := range MaxFactKeys {
			keys = append(keys, fmt.Sprintf("CHG%05d", n))
		}
		for _, k := range keys[:50] {
			if _, err := db.UpsertChange(ctx, testChange(k, t0, core.ApprovalApproved)); err != nil {
				t.Fatal(err)
			}
		}
		f, err := db.GateFacts(ctx, core.FactsQuery{Service: "payments", ChangeKeys: keys})
		if err != nil || len(f.Changes) != 50 {
			t.Fatalf("got %d changes, %v", len(f.Changes), err)
		}
		f, err = db.GateFacts(ctx, core.FactsQuery{Service: "payments", ChangeKeys: keys, AsOf: t0})
		if err != nil || len(f.Changes) != 50 {
			t.Fatalf("as of: got %d changes, %v", len(f.Changes), err)
		}
		if _, err := db.GateFacts(ctx, core.FactsQuery{ChangeKeys: append(keys, "ONE-MORE")}); !core.IsKind(err, core.KindInvalid) {
			t.Errorf("too many keys: %v", err)
		}
	})
}

func TestAnyTimeScan(t *testing.T) {
	want := time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.UTC)
	for _, v := range []any{
		want, want.In(time.FixedZone("X", 3600)), want.String(), []byte(want.String()),
		"2026-01-02 03:04:05.12 +0000 UTC m=+0.000001", "2026-01-02T03:04:05.12Z", "2026-01-02 03:04:05.12+00:00",
	} {
		var at anyTime
		if err := at.Scan(v); err != nil || !at.Valid || !at.Time.Equal(want) {
			t.Errorf("scan %v: %+v, %v", v, at, err)
		}
	}
	var at anyTime
	if err := at.Scan(nil); err != nil || at.Valid {
		t.Errorf("scan nil: %+v, %v", at, err)
	}
	if err := at.Scan("yesterday"); err == nil {
		t.Error("scan garbage: no error")
	}
	if err := at.Scan(42); err == nil {
		t.Error("scan int: no error")
	}
}

// BenchmarkGateFacts measures the gate's query on PostgreSQL with 20k
// changes, 5k incidents (1k active) and 2k PIRs.
func BenchmarkGateFacts(b *testing.B) {
	url := testpg.NewDatabase(b)
	ctx := context.Background()
	db, err := Open(ctx, url, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	seed := []string{
		`INSERT INTO changes (key, source, version, type, state, approval, doc, source_updated_at, updated_at)
		 SELECT 'CHG' || g, 'servicenow', 1, 'normal', 'scheduled', 'approved',
		        jsonb_build_object('source', 'servicenow', 'key', 'CHG' || g, 'type', 'normal', 'state', 'scheduled',
		                           'approval', 'approved', 'services', jsonb_build_array('svc' || (g % 200)),
		                           'source_updated_at', '2026-11-27T09:00:00Z'),
		        '2026-11-27T09:00:00Z', now()
		 FROM generate_series(1, 20000) g`,
		`INSERT INTO change_versions (key, version, valid_from, recorded_at, doc)
		 SELECT key, 1, source_updated_at, updated_at, doc FROM changes`,
		`INSERT INTO incidents (key, source, version, priority, major, state, active, global, doc, source_updated_at, updated_at)
		 SELECT 'INC' || g, 'servicenow', 1, 1 + g % 4, g % 10 = 0, CASE WHEN g % 5 = 0 THEN 'open' ELSE 'resolved' END,
		        g % 5 = 0, g % 500 = 0,
		        jsonb_build_object('source', 'servicenow', 'key', 'INC' || g, 'priority', 1 + g % 4, 'major', g % 10 = 0,
		                           'state', CASE WHEN g % 5 = 0 THEN 'open' ELSE 'resolved' END,
		                           'services', CASE WHEN g % 500 = 0 THEN '[]'::jsonb ELSE jsonb_build_array('svc' || (g % 200)) END,
		                           'source_updated_at', '2026-11-27T09:00:00Z'),
		        '2026-11-27T09:00:00Z', now()
		 FROM generate_series(1, 5000) g`,
		`INSERT INTO incident_services (incident_key, service)
		 SELECT 'INC' || g, 'svc' || (g % 200) FROM generate_series(1, 5000) g WHERE g % 500 <> 0`,
		`INSERT INTO incident_versions (key, version, valid_from, recorded_at, doc)
		 SELECT key, 1, source_updated_at, updated_at, doc FROM incidents`,
		`INSERT INTO releases (id, service, version, environment, team, created_at, updated_at)
		 SELECT 'rel' || g, 'svc' || (g % 200), 'v' || g, 'production', 'team' || (g % 50), now(), now()
		 FROM generate_series(1, 2000) g`,
		`INSERT INTO pirs (release_id, service, version, environment, team, status, required_at, signed_off_by, signed_off_at)
		 SELECT 'rel' || g, 'svc' || (g % 200), 'v' || g, 'production', 'team' || (g % 50),
		        CASE WHEN g % 4 = 0 THEN 'pending' ELSE 'signed_off' END, '2026-11-27T08:00:00Z',
		        CASE WHEN g % 4 = 0 THEN '' ELSE 'carol' END, CASE WHEN g % 4 = 0 THEN NULL ELSE '2026-11-27T08:30:00Z'::timestamptz END
		 FROM generate_series(1, 2000) g`,
		`ANALYZE`,
	}
	for _, s := range seed {
		if _, err := db.SQLX().ExecContext(ctx, s); err != nil {
			b.Fatalf("seed: %v\n%s", err, s)
		}
	}
	for _, bc := range []struct {
		name string
		q    core.FactsQuery
	}{
		{"current", core.FactsQuery{Service: "svc10", Team: "team10", ChangeKeys: []string{"CHG10", "CHG210", "CHG99999"}, ExcludeReleaseID: "rel10"}},
		{"as_of", core.FactsQuery{Service: "svc10", Team: "team10", ChangeKeys: []string{"CHG10", "CHG210", "CHG99999"}, ExcludeReleaseID: "rel10",
			AsOf: time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)}},
	} {
		if testing.Verbose() {
			keys, err := factKeys(bc.q.ChangeKeys)
			if err != nil {
				b.Fatal(err)
			}
			query, args := db.factsQuery(bc.q, keys)
			var plan []string
			if err := db.db.SelectContext(ctx, &plan, "EXPLAIN ANALYZE "+query, args...); err != nil {
				b.Fatal(err)
			}
			b.Logf("%s:\n%s", bc.name, strings.Join(plan, "\n"))
		}
		b.Run(bc.name, func(b *testing.B) {
			f, err := db.GateFacts(ctx, bc.q)
			if err != nil || len(f.Changes) != 2 || len(f.Incidents) == 0 || len(f.PendingPIRs) == 0 {
				b.Fatalf("facts: %d changes, %d incidents, %d PIRs, %v", len(f.Changes), len(f.Incidents), len(f.PendingPIRs), err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := db.GateFacts(ctx, bc.q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
