package service_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
)

// Sizes of the benchmark's store.
const (
	benchServices  = 50
	benchChanges   = 5000
	benchIncidents = 1000
	benchReleases  = 2000
)

// benchSeed fills the store with a modest canonical model in SQL: changes
// CHG0000001… that are approved, scheduled (window open now), complete and
// not self-approved, each in scope of svc-(n % 50) with a history of two
// versions; incidents INC… of which one in 50 is active (on svc-0 … svc-2;
// two of them major), the rest resolved; 2k releases, one in four with a
// PIR, a few pending (team-40).
var benchSeed = []string{
	`INSERT INTO changes (key, source, version, type, state, approval, doc, source_updated_at, updated_at)
	 SELECT 'CHG' || lpad(g::text, 7, '0'), 'servicenow', 2, 'normal', 'scheduled', 'approved',
	        jsonb_build_object('source', 'servicenow', 'key', 'CHG' || lpad(g::text, 7, '0'), 'type', 'normal',
	          'state', 'scheduled', 'approval', 'approved', 'risk', 'moderate',
	          'approvals', jsonb_build_array(jsonb_build_object('approver', 'cab-' || (g % 7), 'decision', 'approved', 'at', '2026-01-01T09:00:00Z')),
	          'planned_start', to_char((now() - interval '1 day') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
	          'planned_end', to_char((now() + interval '30 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
	          'services', jsonb_build_array('svc-' || (g % 50)), 'requested_by', 'dev-' || (g % 11),
	          'has_risk_assessment', true, 'has_backout_plan', true, 'source_updated_at', '2026-01-01T09:00:00Z'),
	        '2026-01-01T09:00:00Z', now()
	 FROM generate_series(1, 5000) g`,
	`INSERT INTO change_versions (key, version, valid_from, recorded_at, doc)
	 SELECT key, v, source_updated_at - (2 - v) * interval '1 hour', now(),
	        CASE WHEN v = 2 THEN doc ELSE doc || '{"approval": "requested", "state": "authorize"}' END
	 FROM changes, generate_series(1, 2) v`,
	`INSERT INTO incidents (key, source, version, priority, major, state, active, global, doc, source_updated_at, updated_at)
	 SELECT 'INC' || g, 'servicenow', 1, CASE WHEN g % 500 = 0 THEN 1 ELSE 3 END, g % 500 = 0,
	        CASE WHEN g % 50 = 0 THEN 'open' ELSE 'resolved' END, g % 50 = 0, false,
	        jsonb_build_object('source', 'servicenow', 'key', 'INC' || g, 'priority', CASE WHEN g % 500 = 0 THEN 1 ELSE 3 END,
	          'major', g % 500 = 0, 'state', CASE WHEN g % 50 = 0 THEN 'open' ELSE 'resolved' END,
	          'services', jsonb_build_array('svc-' || (g % 50 + g / 50 % 3)), 'source_updated_at', '2026-01-01T09:00:00Z'),
	        '2026-01-01T09:00:00Z', now()
	 FROM generate_series(1, 1000) g`,
	`INSERT INTO incident_services (incident_key, service) SELECT key, doc -> 'services' ->> 0 FROM incidents`,
	`INSERT INTO incident_versions (key, version, valid_from, recorded_at, doc) SELECT key, 1, source_updated_at, now(), doc FROM incidents`,
	`INSERT INTO releases (id, service, version, environment, team, created_at, updated_at)
	 SELECT 'rel' || g, 'svc-' || (g % 50), '1.' || g || '.0', 'production', 'team-' || (g % 50), now(), now()
	 FROM generate_series(1, 2000) g`,
	`INSERT INTO pirs (release_id, service, version, environment, team, status, required_at, signed_off_by, signed_off_at)
	 SELECT id, service, version, environment, team,
	        CASE WHEN g % 10 = 0 AND g % 50 >= 40 THEN 'pending' ELSE 'signed_off' END, now() - interval '1 day',
	        CASE WHEN g % 10 = 0 AND g % 50 >= 40 THEN '' ELSE 'cab-1' END,
	        CASE WHEN g % 10 = 0 AND g % 50 >= 40 THEN NULL ELSE now() END
	 FROM releases, LATERAL (SELECT substr(id, 4)::int AS g) x WHERE g % 4 = 0`,
	`ANALYZE`,
}

// newBenchGate opens, migrates and seeds a PostgreSQL store and wires the
// real gate on it with the default policy (production strict). With cache
// the store's notification listener runs, so the gate's fact cache is live
// (as in tollgate serve); without, the cache is off and every check reads
// its facts in one query.
func newBenchGate(b *testing.B, cache bool) (*service.Gate, *store.DB) {
	b.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := store.Options{Logger: log}
	if !cache {
		opts.FactsCacheTTL = -1
	}
	db, err := store.Open(ctx, testpg.NewDatabase(b)+os.Getenv("BENCH_DSN_EXTRA"), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	for _, s := range benchSeed {
		if _, err := db.SQLX().ExecContext(ctx, s); err != nil {
			b.Fatalf("seed: %v\n%s", err, s)
		}
	}
	if cache {
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = db.Listen(lctx) }()
		b.Cleanup(func() { cancel(); <-done })
		time.Sleep(200 * time.Millisecond) // the listener connects
	}
	policies := service.NewPolicies(db, log)
	if err := policies.Load(ctx, nil); err != nil {
		b.Fatal(err)
	}
	return service.NewGate(db, policies, db, core.SystemClock, log, service.GateConfig{}), db
}

// benchRequest is the n-th request of a benchmark: a production release of
// svc-(n % 50) with a new version, linking one approved change of that
// service (and, every fourth, a second one), from the service's team. With
// missing, it also links a key no connector knows (CHANGE_NOT_FOUND).
func benchRequest(n int64, missing bool) core.GateRequest {
	svc := n % benchServices
	changes := []string{fmt.Sprintf("CHG%07d", (n*benchServices)%benchChanges+svc)}
	if changes[0] == "CHG0000000" {
		changes[0] = fmt.Sprintf("CHG%07d", benchChanges)
	}
	if n%4 == 0 {
		changes = append(changes, fmt.Sprintf("CHG%07d", ((n+7)*benchServices)%(benchChanges-benchServices)+svc+benchServices))
	}
	if missing {
		changes = append(changes, fmt.Sprintf("CHG9%06d", n%1_000_000))
	}
	return core.GateRequest{
		Service: fmt.Sprintf("svc-%d", svc), Environment: "production", Version: fmt.Sprintf("2.%d.0", n),
		Team: fmt.Sprintf("team-%d", svc), Changes: changes, Actor: "ci-bot",
		Pipeline: &core.Pipeline{Provider: "github", RunID: fmt.Sprint(n)},
	}
}

// BenchmarkGateCheck measures whole gate checks — validate, gather the
// facts (fact cache, or one query), evaluate, record the decision and its
// release durably in the audit chain through the group-commit appender — on a real
// PostgreSQL store of 5k changes (10k versions), 1k incidents (20 active)
// and 2k releases with 500 PIRs, with the default policy (production:
// every rule). No HTTP: see scripts/load.sh for the whole request.
//
//   - parallel: 32 goroutines per GOMAXPROCS issuing checks; checks/s is
//     the throughput of the gate and PostgreSQL on this machine;
//   - parallel_nocache: the same with the fact cache off;
//   - serial: one check at a time; ns/op is the latency of one check
//     without queueing (a group commit of one);
//   - not_found: parallel, each request also linking an unknown key.
//
// cpu-ns/op is this process's CPU (user + system) per check, PostgreSQL's
// not included: on a shared machine it moves less than ns/op.
//
// Without PostgreSQL it is skipped (benchmarks run only with -bench):
//
//	go test ./service -run '^$' -bench GateCheck -benchtime 5s
func BenchmarkGateCheck(b *testing.B) {
	if err := testpg.Available(); err != nil {
		b.Skipf("PostgreSQL not available: %v", err)
	}
	ctx := context.Background()
	g, db := newBenchGate(b, true)
	uncached, udb := newBenchGate(b, false)
	for _, g := range []*service.Gate{g, uncached} {
		if d, err := g.Check(ctx, benchRequest(3, false), "token:bench", 0); err != nil || d.Decision != core.Allow {
			b.Fatalf("first check: %s %+v %v", d.Decision, d.Reasons, err)
		}
	}
	var seq atomic.Int64
	seq.Store(1_000_000) // new versions: every check first inserts its release
	run := func(b *testing.B, g *service.Gate, db *store.DB, parallel, missing bool) {
		b.ReportAllocs()
		cpu0 := processCPU()
		start, before := time.Now(), db.AppenderStats()
		if parallel {
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := g.Check(ctx, benchRequest(seq.Add(1), missing), "token:bench", 0); err != nil {
						b.Error(err)
						return
					}
				}
			})
		} else {
			for b.Loop() {
				if _, err := g.Check(ctx, benchRequest(seq.Add(1), missing), "token:bench", 0); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		after := db.AppenderStats()
		b.ReportMetric(float64(after.Busy-before.Busy)/float64(time.Since(start)), "workers-busy")
		b.ReportMetric(float64(after.Requests-before.Requests)/float64(max(after.Groups-before.Groups, 1)), "group-size")
	}
	b.Run("parallel", func(b *testing.B) { run(b, g, db, true, false) })
	b.Run("parallel_nocache", func(b *testing.B) { run(b, uncached, udb, true, false) })
	b.Run("serial", func(b *testing.B) { run(b, g, db, false, false) })
	b.Run("not_found", func(b *testing.B) { run(b, g, db, true, true) })
}

// processCPU is the CPU time (user + system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
