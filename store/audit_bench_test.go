package store

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"golang.org/x/sync/errgroup"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// newBenchDB opens and migrates a fresh PostgreSQL store for a benchmark.
func newBenchDB(b *testing.B) *DB {
	b.Helper()
	ctx := context.Background()
	db, err := Open(ctx, testpg.NewDatabase(b), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	return db
}

// BenchmarkAppendParallel measures gate-decision-shaped appends (one
// decision row plus its audit entry) from many goroutines on PostgreSQL:
// "group" through the group commit, "one_per_tx" the baseline of
// one transaction per append, each taking the chain lock and reading the
// head. Run: go test -run '^$' -bench AppendParallel -benchtime 3s ./store/
func BenchmarkAppendParallel(b *testing.B) {
	doc := mustJSON(core.GateDecision{Decision: core.Allow, Reasons: []core.Reason{{Code: core.CodeNoChange, Message: "standard change pre-approved"}},
		Request: core.GateRequest{Service: "payments", Environment: "production", Version: "1.2.3", Changes: []string{"CHG0000024"}}})
	// decision is a decision row written by a writer function, and its
	// gate decision entry.
	decision := func() (func(context.Context, *sqlx.Tx) error, []core.AuditEntry) {
		id := newID()
		return func(ctx context.Context, tx *sqlx.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO gate_decisions (id, release_id, decision, policy_version, evaluated_at, actor, doc)
				VALUES ($1, 'rel', 'allow', 1, $2, 'ci', $3)`, id, time.Now().UTC(), doc)
				return err
			}, []core.AuditEntry{{Actor: "ci", Action: "gate.decision", Subject: "release:rel",
				Data: json.RawMessage(`{"decision_id":"` + id + `","decision":"allow","reasons":["NO_CHANGE"],"policy_version":1}`)}}
	}
	entry := func() []core.AuditEntry {
		// Decision-shaped, but not a gate decision's entry: VerifyAudit
		// would hold it to a stored decision.
		return []core.AuditEntry{{Actor: "ci", Action: "bench.decision", Subject: "release:rel",
			Data: json.RawMessage(`{"decision":"allow","reasons":["NO_CHANGE"],"policy_version":1}`)}}
	}
	for _, bc := range []struct {
		name string
		op   func(ctx context.Context, db *DB) error
	}{
		{"group_entry_only", func(ctx context.Context, db *DB) error { return db.appendWith(ctx, entry(), nil) }},
		// The gate's write: SaveDecision, one statement per group.
		{"decision", func(ctx context.Context, db *DB) error {
			return db.SaveDecision(ctx, core.GateDecision{Decision: core.Allow, ReleaseID: "rel", Reasons: []core.Reason{{Code: core.CodeNoChange}},
				Request: core.GateRequest{Service: "payments", Environment: "production", Version: "1.2.3", Changes: []string{"CHG0000024"}}}, "ci")
		}},
		{"group", func(ctx context.Context, db *DB) error {
			write, entries := decision()
			return db.appendWith(ctx, entries, write)
		}},
		{"one_per_tx", func(ctx context.Context, db *DB) error {
			write, entries := decision()
			return db.tx(ctx, func(tx *sqlx.Tx) error {
				if err := write(ctx, tx); err != nil {
					return err
				}
				head, err := db.base.Commits().LockChain(ctx, tx)
				if err != nil {
					return err
				}
				return db.base.Commits().AppendLocked(ctx, tx, head, entries)
			})
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db := newBenchDB(b)
			ctx := context.Background()
			b.SetParallelism(16)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := bc.op(ctx, db); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
			b.StopTimer()
			if brk, _, err := db.VerifyAudit(ctx); err != nil || brk != nil {
				b.Fatalf("chain: %v %v", brk, err)
			}
		})
	}
}

// BenchmarkAuditVerify walks a chain of gate decisions (each with a
// decision document of the load run's size) as `tollgate audit verify`
// does, on PostgreSQL. Run: go test -run '^$' -bench AuditVerify ./store/
func BenchmarkAuditVerify(b *testing.B) {
	const decisions = 20000
	db := newBenchDB(b)
	ctx := context.Background()
	d := awkwardDecision("svc-042", time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), 3)
	for i := range 4 { // more changes and incidents, as in the load run's documents
		k := fmt.Sprintf("CHG%07d", i)
		d.Facts.Changes[k] = d.Facts.Changes["svc-042"]
		d.Facts.Incidents = append(d.Facts.Incidents, d.Facts.Incidents[0])
	}
	var g errgroup.Group
	g.SetLimit(16)
	for range decisions {
		g.Go(func() error {
			dec := d
			dec.ID = ""
			return db.SaveDecision(ctx, dec, "ci")
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if brk, rows, err := db.VerifyAudit(ctx); err != nil || brk != nil || rows < decisions {
			b.Fatalf("verify: %v %d %v", brk, rows, err)
		}
	}
	b.ReportMetric(float64(b.N)*decisions/time.Since(start).Seconds(), "rows/s")
}
