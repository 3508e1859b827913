package groupcommit

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// TestOneStatementConnectionLost: an own connection that died while idle
// is pinged and replaced before a group is sent on it; one that dies with
// no idle time in between fails its group with an unknown outcome, and
// the next group gets a new connection.
func TestOneStatementConnectionLost(t *testing.T) {
	for _, tt := range []struct {
		name    string
		idle    time.Duration
		wantErr bool
	}{
		{"pinged after idle", time.Nanosecond, false},
		{"no idle time", time.Hour, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, db := newTestCommitter(t, Config{IdlePing: tt.idle})
			ctx := context.Background()
			appendOne := func(i int) error {
				return c.Submit(ctx, Request{Entries: []core.AuditEntry{{Action: "test.lost", Subject: fmt.Sprint(i)}}})
			}
			if err := appendOne(0); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := db.GetContext(ctx, &n, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE datname = current_database() AND application_name = $1`, connAppName); err != nil || n == 0 {
				t.Fatalf("terminated %d: %v", n, err)
			}
			err := appendOne(1)
			if tt.wantErr != (err != nil) || (err != nil && !strings.Contains(err.Error(), "may or may not have committed")) {
				t.Fatalf("append after the loss: %v", err)
			}
			for i := 2; i < 4; i++ {
				if err := appendOne(i); err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
			}
			want := 4
			if tt.wantErr {
				want = 3
			}
			checkChain(t, db, want)
		})
	}
}

// TestOneStatementPreparedStatementLost: a group whose prepared statement
// is gone from the session (DEALLOCATE, or a pooler that switched server
// connections) is committed caller by caller, and the next group prepares
// it again on a new connection.
func TestOneStatementPreparedStatementLost(t *testing.T) {
	c, db := newTestCommitter(t, Config{})
	ctx := context.Background()
	if err := c.Submit(ctx, decision("d1")); err != nil {
		t.Fatal(err)
	}
	// The committer waits for requests: its connection is free to use here
	// (the answer to d1 ordered its last use before this).
	if _, err := c.conn.c.ExecContext(ctx, "DEALLOCATE ALL"); err != nil {
		t.Fatal(err)
	}
	before := c.Stats()
	if err := c.Submit(ctx, decision("d2")); err != nil {
		t.Fatalf("with the statement gone: %v", err)
	}
	if err := c.Submit(ctx, decision("d3")); err != nil {
		t.Fatalf("after: %v", err)
	}
	if got := c.Stats().OneStatement - before.OneStatement; got != 1 {
		t.Errorf("one-statement groups: %d, want 1 (d3 only)", got)
	}
	checkChain(t, db, 3)
}

// TestRowsThatMayConflictGoInteractively: rows not marked conflict-free
// are written under the chain lock, in an interactive transaction.
func TestRowsThatMayConflictGoInteractively(t *testing.T) {
	c, db := newTestCommitter(t, Config{})
	ctx := context.Background()
	leases := NewInsert("leases", []string{"name", "holder", "expires_at"}, []string{"text", "text", "timestamptz"}, "")
	err := c.Submit(ctx, Request{Entries: []core.AuditEntry{{Action: "test.locked"}},
		Rows: []Row{{Insert: leases, Args: []any{"l1", "h", time.Now().UTC()}}}})
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Groups != 1 || st.OneStatement != 0 {
		t.Errorf("groups %d, as one statement %d: want 1 and 0", st.Groups, st.OneStatement)
	}
	var n int
	if err := db.GetContext(ctx, &n, "SELECT count(*) FROM leases WHERE name = 'l1'"); err != nil || n != 1 {
		t.Errorf("leases %d (%v)", n, err)
	}
	checkChain(t, db, 1)
}

// TestOneStatementText: a group's statement text depends on its shape only
// (the inserts in order, entries or not), and is built once per shape.
func TestOneStatementText(t *testing.T) {
	c := &Committer{}
	both := c.oneStatementText([]*Insert{testReleases, testDecisions}, true)
	tests := []struct {
		name        string
		order       []*Insert
		withEntries bool
		want        []string // substrings, in order
	}{
		{"rows and entries", []*Insert{testReleases, testDecisions}, true,
			[]string{"WITH i0 AS (INSERT INTO releases", columnRef(0), "i1 AS (INSERT INTO gate_decisions", columnRef(10), "tollgate_append_audit(", columnRef(18), columnRef(23), "(SELECT count(*) FROM i1) c1"}},
		{"other order", []*Insert{testDecisions, testReleases}, true,
			[]string{"WITH i0 AS (INSERT INTO gate_decisions", "i1 AS (INSERT INTO releases", columnRef(8), "tollgate_append_audit(", columnRef(18)}},
		{"rows only", []*Insert{testDecisions}, false, []string{"WITH i0 AS (INSERT INTO gate_decisions", "SELECT 1 FROM (SELECT count(*) FROM i0) c0"}},
		{"entries only", nil, true, []string{"SELECT tollgate_append_audit(", columnRef(0), columnRef(5)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.oneStatementText(tt.order, tt.withEntries)
			rest := got
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("%q not found in order in\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			if again := c.oneStatementText(tt.order, tt.withEntries); again != got {
				t.Fatalf("second call differs:\n%s\n%s", got, again)
			}
		})
	}
	if c.oneStatementText([]*Insert{testReleases, testDecisions}, true) != both {
		t.Fatal("cached text changed")
	}
}

// TestBinaryArgs: a group's columns become two parameters in one buffer
// the connection keeps for the next group (unless it grew past
// scratchMax): each column's first and last subscript, and every element
// in turn in one text[].
func TestBinaryArgs(t *testing.T) {
	var w groupConn
	group := func(docs ...string) []textArray {
		return []textArray{docs, {"a"}, {}}
	}
	int4s := func(v ...int) []byte {
		b := binary.BigEndian.AppendUint32(nil, 1)
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint32(b, int4OID)
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = binary.BigEndian.AppendUint32(b, 1)
		for _, x := range v {
			b = binary.BigEndian.AppendUint32(b, 4)
			b = binary.BigEndian.AppendUint32(b, uint32(int32(x)))
		}
		return b
	}
	args, err := w.binaryArgs(group("one", `"two"`))
	if err != nil {
		t.Fatal(err)
	}
	wantText, _ := textArray{"one", `"two"`, "a"}.BinaryValue()
	if len(args) != 2 {
		t.Fatalf("%d arguments, want 2", len(args))
	}
	if got, ok := args[0].([]byte); !ok || string(got) != string(int4s(1, 2, 3, 3, 4, 3)) {
		t.Fatalf("bounds %x, want %x", args[0], int4s(1, 2, 3, 3, 4, 3))
	}
	if got, ok := args[1].([]byte); !ok || string(got) != string(wantText) {
		t.Fatalf("elements %x, want %x", args[1], wantText)
	}
	empty, err := w.binaryArgs([]textArray{{}, {}})
	if err != nil {
		t.Fatal(err)
	}
	wantEmpty, _ := textArray{}.BinaryValue()
	if string(empty[0].([]byte)) != string(int4s(1, 0, 1, 0)) || string(empty[1].([]byte)) != string(wantEmpty) {
		t.Fatalf("empty columns: %x %x", empty[0], empty[1])
	}
	kept := cap(w.scratch)
	first := &w.scratch[:1][0]
	if _, err := w.binaryArgs(group("x")); err != nil {
		t.Fatal(err)
	}
	if cap(w.scratch) != kept || &w.scratch[:1][0] != first {
		t.Fatal("a smaller group did not reuse the buffer")
	}
	if _, err := w.binaryArgs(group(strings.Repeat("d", scratchMax))); err != nil {
		t.Fatal(err)
	}
	if cap(w.scratch) > scratchMax {
		t.Fatalf("kept a %d-byte buffer", cap(w.scratch))
	}
}

// TestOnceRowsAreLeftOutOnceCommitted: a row with a Once key is sent until
// a commit carried it, then left out; the memo is bounded.
func TestOnceRowsAreLeftOutOnceCommitted(t *testing.T) {
	var m onceMemo
	rows := []Row{{Once: "a"}, {}, {Once: "b"}}
	if got := m.skipKnown(rows); len(got) != 3 {
		t.Fatalf("nothing known yet: %d rows", len(got))
	}
	m.remember(rows[:1])
	if got := m.skipKnown(rows); len(got) != 2 || got[0].Once != "" || got[1].Once != "b" {
		t.Fatalf("a known: %+v", got)
	}
	if len(rows) != 3 || rows[0].Once != "a" {
		t.Fatal("the caller's rows were changed")
	}
	for i := range onceMax + 1 {
		m.add(fmt.Sprintf("r%d", i))
	}
	if !m.hasLocked("r0") || !m.hasLocked(fmt.Sprintf("r%d", onceMax)) {
		t.Fatal("the previous generation is forgotten too early")
	}
	for i := range onceMax {
		m.add(fmt.Sprintf("s%d", i))
	}
	if m.hasLocked("r0") {
		t.Fatal("two generations later r0 is still known")
	}
	if n := len(m.cur) + len(m.prev); n > 2*onceMax {
		t.Fatalf("%d keys held", n)
	}
}

// TestOneStatementStartsNoGoroutinePerGroup: a one-statement group runs
// under a context that never ends, so lib/pq starts no goroutine to
// watch it; at thousands of groups a second that was a goroutine each.
func TestOneStatementStartsNoGoroutinePerGroup(t *testing.T) {
	c, db := newTestCommitter(t, Config{IdlePing: time.Hour})
	ctx := context.Background()
	if err := c.Submit(ctx, decision("warm")); err != nil {
		t.Fatal(err)
	}
	const groups = 200
	before := goroutinesCreated()
	for i := range groups {
		if err := c.Submit(ctx, decision(fmt.Sprint("d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if created := goroutinesCreated() - before; created > groups/10 {
		t.Errorf("%d goroutines started for %d groups", created, groups)
	}
	if got := c.Stats().OneStatement; got != groups+1 {
		t.Errorf("one-statement groups: %d, want %d", got, groups+1)
	}
	checkChain(t, db, groups+1)
}

// TestOneStatementTimesOut: the own connection's session bounds a group's
// statement (statement_timeout); a group held past it — here behind the
// chain lock — fails as timed out (sqldb.Translate makes it unavailable:
// TestTranslateResourceFailures), nothing of it stored,
// and is not retried caller by caller; the next group commits on the
// same connection.
func TestOneStatementTimesOut(t *testing.T) {
	url := testpg.NewMigratedDatabase(t)
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	c, err := New(Config{DB: db, URL: url + sep + "statement_timeout=300", Now: time.Now, IdlePing: time.Hour,
		Translate: func(err error) error { return err }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	if err := c.Submit(ctx, decision("d1")); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", LockKey); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c.Submit(ctx, decision("d2"))
	took := time.Since(start)
	_ = tx.Rollback()
	if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "57014") {
		t.Fatalf("a group held past statement_timeout: %v", err)
	}
	if took > 10*time.Second {
		t.Errorf("the timed-out group took %v", took)
	}
	if err := c.Submit(ctx, decision("d3")); err != nil {
		t.Fatalf("after the timeout: %v", err)
	}
	var ids []string
	if err := db.SelectContext(ctx, &ids, "SELECT id FROM gate_decisions ORDER BY id"); err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, ",") != "d1,d3" {
		t.Errorf("decisions stored: %v, want d1,d3", ids)
	}
	checkChain(t, db, 2)
}

// goroutinesCreated is the process's count of goroutines started so far.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
