package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/store/audit"
)

// appendN appends n entries one call at a time.
func appendN(t *testing.T, db *DB, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		e := core.AuditEntry{Actor: "alice", Action: "test.append", Subject: fmt.Sprintf("thing:%d", i%3),
			Data: json.RawMessage(fmt.Sprintf(`{"i": %d}`, i))}
		if err := db.Append(context.Background(), e); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

func TestAuditChainVerifiesAndLists(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		brk, rows, err := db.VerifyAudit(ctx)
		if err != nil || brk != nil || rows != 0 {
			t.Fatalf("empty chain: brk %v rows %d err %v", brk, rows, err)
		}
		appendN(t, db, 25)
		// Several entries in one call land contiguously.
		if err := db.Append(ctx,
			core.AuditEntry{Actor: "bob", Action: "multi.a", Subject: "x"},
			core.AuditEntry{Actor: "bob", Action: "multi.b", Subject: "x"}); err != nil {
			t.Fatal(err)
		}
		brk, rows, err = db.VerifyAudit(ctx)
		if err != nil || brk != nil || rows != 27 {
			t.Fatalf("verify: brk %v rows %d err %v", brk, rows, err)
		}

		all, err := db.ListAudit(ctx, core.AuditFilter{Limit: 10})
		if err != nil || len(all) != 10 || all[0].Seq != 1 || all[9].Seq != 10 {
			t.Fatalf("first page: %d rows err %v", len(all), err)
		}
		if all[0].PrevHash != core.GenesisHash || all[1].PrevHash != all[0].Hash {
			t.Fatalf("chain links wrong: %+v", all[:2])
		}
		if string(all[0].Data) != `{"i": 1}` || all[0].At.IsZero() {
			t.Fatalf("row 1 read back as %+v", all[0])
		}
		next, err := db.ListAudit(ctx, core.AuditFilter{AfterSeq: 25})
		if err != nil || len(next) != 2 || next[0].Action != "multi.a" || next[1].Seq != 27 {
			t.Fatalf("after 25: %+v err %v", next, err)
		}
		bySubject, err := db.ListAudit(ctx, core.AuditFilter{Subject: "thing:0"})
		if err != nil || len(bySubject) != 8 {
			t.Fatalf("subject filter: %d rows err %v", len(bySubject), err)
		}
		byAction, err := db.ListAudit(ctx, core.AuditFilter{Action: "multi.b", Subject: "x"})
		if err != nil || len(byAction) != 1 || byAction[0].Seq != 27 {
			t.Fatalf("action filter: %+v err %v", byAction, err)
		}
		if _, err := db.ListAudit(ctx, core.AuditFilter{Limit: -1}); !core.IsKind(err, core.KindInvalid) {
			t.Fatalf("negative limit: %v", err)
		}
	})
}

func TestAuditAppendRejectsBadEntries(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		for _, tc := range []struct {
			name  string
			e     core.AuditEntry
			field string
		}{
			{"no action", core.AuditEntry{Actor: "a"}, "audit[0].action"},
			{"bad json", core.AuditEntry{Action: "x", Data: json.RawMessage(`{"a":`)}, "audit[0].data"},
			{"nul actor", core.AuditEntry{Action: "x", Actor: "a\x00b"}, "audit[0].actor"},
			{"bad utf8 subject", core.AuditEntry{Action: "x", Subject: "\xff"}, "audit[0].subject"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := db.Append(context.Background(), tc.e)
				var ce *core.Error
				if !errors.As(err, &ce) || ce.Kind != core.KindInvalid || ce.Field != tc.field {
					t.Fatalf("got %v, want invalid %s", err, tc.field)
				}
			})
		}
	})
}

func TestAuditVerifyFindsTampering(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tamper  []string // SQL run after 10 appends
		wantSeq int64
		reason  string
	}{
		{"edited data", []string{`UPDATE audit_log SET data = '{"i": 99}' WHERE seq = 4`}, 4, "hash does not match"},
		{"edited actor", []string{`UPDATE audit_log SET actor = 'mallory' WHERE seq = 7`}, 7, "hash does not match"},
		{"deleted middle row", []string{`DELETE FROM audit_log WHERE seq = 5`}, 6, "sequence gap"},
		{"swapped rows", []string{
			`UPDATE audit_log SET seq = -1 WHERE seq = 3`,
			`UPDATE audit_log SET seq = 3 WHERE seq = 5`,
			`UPDATE audit_log SET seq = 5 WHERE seq = -1`,
		}, 3, "prev_hash does not match"},
		{"deleted last row is not detectable, but the rest verifies", []string{`DELETE FROM audit_log WHERE seq = 10`}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
				ctx := context.Background()
				appendN(t, db, 10)
				for _, q := range tc.tamper {
					if _, err := db.SQLX().ExecContext(ctx, q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				brk, rows, err := db.VerifyAudit(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if tc.wantSeq == 0 {
					if brk != nil || rows != 9 {
						t.Fatalf("brk %+v rows %d", brk, rows)
					}
					return
				}
				if brk == nil || brk.Seq != tc.wantSeq || !strings.Contains(brk.Reason, tc.reason) {
					t.Fatalf("break %+v, want seq %d (%s)", brk, tc.wantSeq, tc.reason)
				}
				// The rows verified before the break: for a gap at row 6,
				// rows 1–4.
				want := tc.wantSeq - 1
				if tc.reason == "sequence gap" {
					want = tc.wantSeq - 2
				}
				if rows != want {
					t.Fatalf("rows verified before the break %d, want %d", rows, want)
				}
			})
		})
	}
}

// TestAuditVerifyPages crosses audit.VerifyPage boundaries.
func TestAuditVerifyPages(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		entries := make([]core.AuditEntry, 2*audit.VerifyPage+7)
		for i := range entries {
			entries[i] = core.AuditEntry{Actor: "bulk", Action: "bulk.append", Subject: fmt.Sprint(i)}
		}
		if err := db.Append(ctx, entries...); err != nil {
			t.Fatal(err)
		}
		brk, rows, err := db.VerifyAudit(ctx)
		if err != nil || brk != nil || rows != int64(len(entries)) {
			t.Fatalf("brk %v rows %d err %v", brk, rows, err)
		}
		if _, err := db.SQLX().ExecContext(ctx, db.q(`UPDATE audit_log SET subject = 'x' WHERE seq = ?`), audit.VerifyPage+3); err != nil {
			t.Fatal(err)
		}
		brk, rows, err = db.VerifyAudit(ctx)
		if err != nil || brk == nil || brk.Seq != audit.VerifyPage+3 || rows != audit.VerifyPage+2 {
			t.Fatalf("brk %v rows %d err %v", brk, rows, err)
		}
		// A break on the first page, while the pages after it are being
		// read ahead: the walk stops there, and its reader with it.
		if _, err := db.SQLX().ExecContext(ctx, db.q(`UPDATE audit_log SET subject = 'y' WHERE seq = 3`)); err != nil {
			t.Fatal(err)
		}
		brk, rows, err = db.VerifyAudit(ctx)
		if err != nil || brk == nil || brk.Seq != 3 || rows != 2 {
			t.Fatalf("brk %v rows %d err %v", brk, rows, err)
		}
		waitNoReader(t)

		// A walk whose context ends is an error, never a chain cut short:
		// held to a head, the rows not read would read as deleted.
		head, err := db.AuditHead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		gone, cancel := context.WithCancel(ctx)
		cancel()
		for range 20 {
			if brk, _, err := db.VerifyAuditTo(gone, head); err == nil || brk != nil {
				t.Fatalf("cancelled walk: brk %v err %v, want an error and no break", brk, err)
			}
		}
		waitNoReader(t)
	})
}

// waitNoReader fails t unless no audit verification's page reader is
// left running shortly after the verification returned.
func waitNoReader(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "(*verification).readPages") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a verification's page reader outlived it:\n%s", stacks)
		}
	}
}

// checkLinear verifies the chain and that seq runs 1..n without gaps.
func checkLinear(t *testing.T, db *DB, n int64) {
	t.Helper()
	ctx := context.Background()
	brk, rows, err := db.VerifyAudit(ctx)
	if err != nil || brk != nil || rows != n {
		t.Fatalf("verify: brk %+v rows %d (want %d) err %v", brk, rows, n, err)
	}
	var st struct {
		N   int64 `db:"n"`
		Min int64 `db:"lo"`
		Max int64 `db:"hi"`
	}
	if err := db.SQLX().GetContext(ctx, &st, "SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi FROM audit_log"); err != nil {
		t.Fatal(err)
	}
	if st.N != n || st.Min != 1 || st.Max != n {
		t.Fatalf("seq not 1..%d: %+v", n, st)
	}
}

func TestAuditConcurrentAppendsStayLinear(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		const workers, each = 50, 4
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					errs <- db.Append(context.Background(), core.AuditEntry{Actor: fmt.Sprint("w", w), Action: "test.concurrent", Subject: fmt.Sprint(i)})
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		checkLinear(t, db, workers*each)
	})
}

// holdAppender occupies the group commit with a writer that blocks until
// the returned release is called, and waits until it runs; requests
// submitted meanwhile queue up and form the next group together.
func holdAppender(t *testing.T, db *DB) (release func() error) {
	t.Helper()
	started, gate := make(chan struct{}), make(chan struct{})
	res := make(chan error, 1)
	go func() {
		res <- db.appendWith(context.Background(), []core.AuditEntry{{Actor: "t", Action: "test.hold"}}, func(context.Context, *sqlx.Tx) error {
			close(started)
			<-gate
			return nil
		})
	}()
	<-started
	var once sync.Once
	return func() error {
		once.Do(func() { close(gate) })
		return <-res
	}
}

// waitQueued waits until n requests wait for the group commit.
func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for db.base.Commits().Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests queued", db.base.Commits().Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// inOneGroup runs call(0) … call(n-1) concurrently as callers of one
// group (holdAppender, waitQueued) and returns their results in order.
func inOneGroup(t *testing.T, db *DB, n int, call func(i int) error) []error {
	t.Helper()
	release := holdAppender(t, db)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = call(i)
		}()
	}
	waitQueued(t, db, n)
	if err := release(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	return errs
}

func insertLease(name string) func(ctx context.Context, tx *sqlx.Tx) error {
	return func(ctx context.Context, tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, tx.Rebind("INSERT INTO leases (name, holder, expires_at) VALUES (?, 'h', ?)"), name, time.Now().UTC())
		return err
	}
}

func TestAuditGroupIsolatesFailingWriters(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		if err := db.appendWith(ctx, []core.AuditEntry{{Action: "seed"}}, insertLease("taken")); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		type caller struct {
			name    string
			fn      func(ctx context.Context, tx *sqlx.Tx) error
			wantErr func(error) bool
		}
		callers := []caller{
			{"ok1", insertLease("ok1"), func(err error) bool { return err == nil }},
			{"returns error after writing", func(ctx context.Context, tx *sqlx.Tx) error {
				if err := insertLease("bad1")(ctx, tx); err != nil {
					return err
				}
				return boom
			}, func(err error) bool { return errors.Is(err, boom) }},
			{"ok2", insertLease("ok2"), func(err error) bool { return err == nil }},
			// A failed statement aborts a PostgreSQL transaction: only the
			// savepoint lets the others commit.
			{"duplicate key", insertLease("taken"), func(err error) bool { return core.IsKind(err, core.KindConflict) }},
			{"swallows a failed statement", func(ctx context.Context, tx *sqlx.Tx) error {
				if err := insertLease("bad2")(ctx, tx); err != nil {
					return err
				}
				_ = insertLease("taken")(ctx, tx)
				return nil
			}, func(err error) bool { return err != nil || db.Dialect() == SQLite }},
			{"panics", func(context.Context, *sqlx.Tx) error { panic("writer bug") }, func(err error) bool { return core.IsKind(err, core.KindInternal) }},
			{"ok3", insertLease("ok3"), func(err error) bool { return err == nil }},
		}
		errs := inOneGroup(t, db, len(callers), func(i int) error {
			c := callers[i]
			return db.appendWith(ctx, []core.AuditEntry{{Actor: "t", Action: "test.group", Subject: c.name}}, c.fn)
		})
		var okSubjects []string
		for i, c := range callers {
			if !c.wantErr(errs[i]) {
				t.Errorf("%s: unexpected result %v", c.name, errs[i])
			}
			if errs[i] == nil {
				okSubjects = append(okSubjects, c.name)
			}
		}
		var leases []string
		if err := db.SQLX().SelectContext(ctx, &leases, "SELECT name FROM leases ORDER BY name"); err != nil {
			t.Fatal(err)
		}
		want := "ok1,ok2,ok3,taken"
		if db.Dialect() == SQLite { // a failed SQLite statement does not abort the transaction
			want = "bad2,ok1,ok2,ok3,taken"
		}
		if got := strings.Join(leases, ","); got != want {
			t.Errorf("leases %s, want %s", got, want)
		}
		entries, err := db.ListAudit(ctx, core.AuditFilter{Action: "test.group"})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Subject)
		}
		slices.Sort(got)
		slices.Sort(okSubjects)
		if !slices.Equal(got, okSubjects) {
			t.Errorf("audit subjects %v, want %v", got, okSubjects)
		}
		checkLinear(t, db, int64(2+len(okSubjects)))
	})
}

func TestAuditCallerGivingUpBeforeItsGroupWritesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		release := holdAppender(t, db)
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan error, 1)
		go func() {
			res <- db.appendWith(ctx, []core.AuditEntry{{Action: "test.cancelled"}}, insertLease("cancelled"))
		}()
		waitQueued(t, db, 1)
		cancel()
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled caller got %v", err)
		}
		if err := release(); err != nil {
			t.Fatal(err)
		}
		if err := db.Append(context.Background(), core.AuditEntry{Action: "test.after"}); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.SQLX().Get(&n, "SELECT count(*) FROM leases"); err != nil || n != 0 {
			t.Fatalf("leases %d err %v", n, err)
		}
		checkLinear(t, db, 2)
		// An already-ended context never queues.
		if err := db.Append(ctx, core.AuditEntry{Action: "x"}); !errors.Is(err, context.Canceled) {
			t.Fatalf("dead ctx: %v", err)
		}
	})
}

func TestAuditCloseDrainsQueue(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		release := holdAppender(t, db)
		const n = 5
		res := make(chan error, n)
		for i := range n {
			go func() {
				res <- db.Append(context.Background(), core.AuditEntry{Action: "test.drain", Subject: fmt.Sprint(i)})
			}()
		}
		waitQueued(t, db, n)
		closed := make(chan struct{})
		go func() {
			db.base.Commits().Close() // the pool stays open so the test can look
			close(closed)
		}()
		if err := release(); err != nil {
			t.Fatal(err)
		}
		<-closed
		for range n {
			if err := <-res; err != nil {
				t.Fatal(err)
			}
		}
		checkLinear(t, db, n+1)
		if err := db.Append(context.Background(), core.AuditEntry{Action: "late"}); !core.IsKind(err, core.KindUnavailable) {
			t.Fatalf("append after close: %v", err)
		}
	})
}

// TestAuditChainLockHolderNeedsNoSecondConnection: a transaction holding
// the chain lock never waits for another pool connection (preparing a
// statement would), so a pool full of transactions waiting for that lock
// cannot hang.
func TestAuditChainLockHolderNeedsNoSecondConnection(t *testing.T) {
	url := testpg.NewDatabase(t)
	ctx := context.Background()
	db, err := Open(ctx, url, Options{Logger: quietLog(), MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 12
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- db.tx(ctx, func(tx *sqlx.Tx) error {
				head, err := db.base.Commits().LockChain(ctx, tx)
				if err != nil {
					return err
				}
				return db.base.Commits().AppendLocked(ctx, tx, head, []core.AuditEntry{{Action: "test.pool", Subject: fmt.Sprint(i)}})
			})
		}()
	}
	timeout := time.After(30 * time.Second)
	for range n {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			t.Fatal("appends hang: the chain lock holder waits for a pool connection")
		}
	}
	checkLinear(t, db, n)
}

// TestAuditHeadPlanIsTheIndex: the chain functions read the head with a
// plan cached for the session (migration 00007), planned with
// enable_seqscan off, so that even a plan made while audit_log is empty
// is the backward scan of its primary key, never a sequential scan that
// would stay cached while the table grows.
func TestAuditHeadPlanIsTheIndex(t *testing.T) {
	db := newTestDB(t, Postgres, nil)
	ctx := context.Background()
	for _, fn := range []string{"tollgate_append_audit", "tollgate_lock_audit_chain"} {
		var config []string
		if err := db.SQLX().QueryRowContext(ctx, "SELECT coalesce(proconfig, '{}') FROM pg_proc WHERE proname = $1", fn).Scan(pq.Array(&config)); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(config, "enable_seqscan=off") {
			t.Errorf("%s runs with %q, want enable_seqscan=off", fn, config)
		}
	}
	// The empty table, never analyzed, then analyzed.
	for _, analyze := range []bool{false, true} {
		if analyze {
			if _, err := db.SQLX().ExecContext(ctx, "ANALYZE audit_log"); err != nil {
				t.Fatal(err)
			}
		}
		tx, err := db.SQLX().BeginTxx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		if _, err := tx.ExecContext(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
			t.Fatal(err)
		}
		if err := tx.SelectContext(ctx, &plan, "EXPLAIN (COSTS OFF) SELECT a.seq, a.hash FROM audit_log a ORDER BY a.seq DESC LIMIT 1"); err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback()
		if !strings.Contains(strings.Join(plan, "\n"), "Index Scan Backward using audit_log_pkey") {
			t.Errorf("analyzed %v: plan\n%s", analyze, strings.Join(plan, "\n"))
		}
	}
	// And the functions still link: one append each way.
	if err := db.Append(ctx, core.AuditEntry{Action: "test.plan"}); err != nil {
		t.Fatal(err)
	}
	if err := db.appendWith(ctx, []core.AuditEntry{{Action: "test.plan"}}, func(context.Context, *sqlx.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	checkLinear(t, db, 2)
}
