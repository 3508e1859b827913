package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// TestWireGroupLinksInTheDatabase: a group of entries goes as one
// statement, and the entries PostgreSQL links (migration 00006) verify in
// Go, whatever their text holds.
func TestWireGroupLinksInTheDatabase(t *testing.T) {
	db := newTestDB(t, Postgres, nil)
	ctx := context.Background()
	texts := []string{"plain", `a "quoted" word`, `back\slash`, "it's", "ünïcode ✓", "line\nbreak", "{}", "NULL", `$$`}
	errs := inOneGroup(t, db, len(texts), func(i int) error {
		data, _ := json.Marshal(map[string]any{"text": texts[i], "n": i})
		e := core.AuditEntry{Actor: texts[i], Action: "test.wire", Subject: texts[i], Data: data}
		if i%2 == 0 {
			// A time of its own, with nanoseconds and a zone; the
			// others take the group's time. All must verify.
			e.At = time.Date(2026, 3, 29, 2, 30, 0, 123456789, time.FixedZone("CEST", 2*3600)).Add(time.Duration(i) * time.Second)
		}
		return db.Append(ctx, e)
	})
	// inOneGroup's appender is new: its holding group has a writer
	// function (interactive), the callers' group is the one statement.
	if st := db.AppenderStats(); st.OneStatement != 1 || st.Groups != 2 {
		t.Errorf("groups %d, as one statement %d: want 2 and 1", st.Groups, st.OneStatement)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	// Data with insignificant whitespace (compacted for the hash, stored
	// as given) and a decision with its release, through SaveDecision.
	if err := db.Append(ctx, core.AuditEntry{Action: "test.wire", Data: json.RawMessage("{ \"a\" :\n [1, 2] }")}); err != nil {
		t.Fatal(err)
	}
	dec := core.GateDecision{ReleaseID: core.ReleaseID("svc", "1.0", "production"), Decision: core.Allow,
		Request: core.GateRequest{Service: "svc", Version: "1.0", Environment: "production", Team: "t's"}}
	if err := db.SaveDecision(ctx, dec, "ci"); err != nil {
		t.Fatal(err)
	}
	// The same release again: its insert does nothing (ON CONFLICT), and
	// the entry is still linked.
	if err := db.SaveDecision(ctx, dec, "ci"); err != nil {
		t.Fatal(err)
	}
	checkLinear(t, db, int64(len(texts)+4))
	entries, err := db.ListAudit(ctx, core.AuditFilter{Action: "test.wire"})
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, e := range entries {
		if e.Actor != e.Subject {
			t.Errorf("entry %d: actor %q, subject %q", e.Seq, e.Actor, e.Subject)
		}
		subjects = append(subjects, e.Subject)
	}
	want := append(slices.Clone(texts), "")
	slices.Sort(want)
	slices.Sort(subjects)
	if !slices.Equal(subjects, want) {
		t.Errorf("subjects %q, want %q", subjects, want)
	}
	var raw string
	if err := db.SQLX().GetContext(ctx, &raw, "SELECT data FROM audit_log WHERE subject = '' AND action = 'test.wire'"); err != nil || raw != "{ \"a\" :\n [1, 2] }" {
		t.Errorf("stored data %q (%v)", raw, err)
	}
	rel, err := db.GetRelease(ctx, dec.ReleaseID)
	if err != nil || rel.Team != "t's" {
		t.Errorf("release %+v (%v)", rel, err)
	}
}

// TestWireGroupIsolatesFailingRows: when PostgreSQL refuses the one
// message (here a decision id that exists), the group is rerun caller by
// caller: only the failing caller gets the error.
func TestWireGroupIsolatesFailingRows(t *testing.T) {
	db := newTestDB(t, Postgres, nil)
	ctx := context.Background()
	taken := core.GateDecision{ID: "taken", ReleaseID: "r", Decision: core.Deny}
	if err := db.SaveDecision(ctx, taken, "ci"); err != nil {
		t.Fatal(err)
	}
	ids := []string{"d1", "taken", "d2", "d3"}
	errs := inOneGroup(t, db, len(ids), func(i int) error {
		return db.SaveDecision(ctx, core.GateDecision{ID: ids[i], ReleaseID: "r", Decision: core.Allow}, "ci")
	})
	for i, id := range ids {
		if want := id == "taken"; (errs[i] != nil) != want || (want && !core.IsKind(errs[i], core.KindConflict)) {
			t.Errorf("%s: %v", id, errs[i])
		}
	}
	var n int
	if err := db.SQLX().GetContext(ctx, &n, "SELECT count(*) FROM gate_decisions"); err != nil || n != 4 {
		t.Errorf("decisions %d (%v), want 4", n, err)
	}
	checkLinear(t, db, 5) // taken, the hold, d1, d2, d3
}

// TestWireConnectionLost: a group-commit connection that died while idle
// is pinged and replaced before a group is sent on it; one that dies
// with no idle time in between fails its group with an unknown outcome
// (KindUnavailable), and the next group gets a new connection.
func TestWireConnectionLost(t *testing.T) {
	db := newTestDB(t, Postgres, nil)
	ctx := context.Background()
	kill := func() {
		t.Helper()
		var n int
		if err := db.SQLX().GetContext(ctx, &n, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = $1`, wireAppName); err != nil || n == 0 {
			t.Fatalf("terminated %d: %v", n, err)
		}
	}
	appendOne := func(i int) error {
		return db.Append(ctx, core.AuditEntry{Action: "test.lost", Subject: fmt.Sprint(i)})
	}
	for _, tt := range []struct {
		name    string
		idle    time.Duration
		wantErr bool
	}{
		{"pinged after idle", 0, false},
		{"no idle time", time.Hour, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db.wireIdle = tt.idle
			// One worker, so that the next append uses the killed connection.
			db.audit.close()
			db.audit = startAppender(db, 1)
			if err := appendOne(0); err != nil {
				t.Fatal(err)
			}
			kill()
			err := appendOne(1)
			if tt.wantErr != (err != nil) || (err != nil && !core.IsKind(err, core.KindUnavailable)) {
				t.Fatalf("append after the loss: %v", err)
			}
			for i := 2; i < 4; i++ {
				if err := appendOne(i); err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
			}
		})
	}
	if brk, _, err := db.VerifyAudit(ctx); err != nil || brk != nil {
		t.Fatalf("verify: %v %v", brk, err)
	}
}

// TestWirePreparedStatementLost: a group whose prepared statement is gone
// from the session (DEALLOCATE, or a pooler that switched server
// connections) is committed caller by caller, and the next group prepares
// it again on a new connection.
func TestWirePreparedStatementLost(t *testing.T) {
	db := newTestDB(t, Postgres, nil)
	ctx := context.Background()
	db.audit.close()
	db.audit = startAppender(db, 1)
	save := func(id string) error {
		return db.SaveDecision(ctx, core.GateDecision{ID: id, ReleaseID: "r", Decision: core.Allow}, "ci")
	}
	if err := save("d1"); err != nil {
		t.Fatal(err)
	}
	// The worker waits for requests: its connection is free to use here
	// (the answer to save ordered its last use before this).
	w := db.audit.wires[0]
	if _, err := w.c.ExecContext(ctx, "DEALLOCATE ALL"); err != nil {
		t.Fatal(err)
	}
	before := db.AppenderStats()
	if err := save("d2"); err != nil {
		t.Fatalf("with the statement gone: %v", err)
	}
	if err := save("d3"); err != nil {
		t.Fatalf("after: %v", err)
	}
	if got := db.AppenderStats().OneStatement - before.OneStatement; got != 1 {
		t.Errorf("one-statement groups: %d, want 1 (d3 only)", got)
	}
	checkLinear(t, db, 3)
}

// TestWirePrepareFails: a group whose inserts cannot be prepared runs
// interactively, so its callers get the database's error, and the worker
// goes on once the cause is gone.
func TestWirePrepareFails(t *testing.T) {
	db := newTestDB(t, Postgres, nil)
	ctx := context.Background()
	exec := func(q string) {
		t.Helper()
		if _, err := db.SQLX().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	save := func() error {
		return db.SaveDecision(ctx, core.GateDecision{ReleaseID: "r", Decision: core.Allow}, "ci")
	}
	exec("ALTER TABLE gate_decisions RENAME TO gate_decisions_away")
	if err := save(); err == nil {
		t.Fatal("a decision was saved without its table")
	}
	exec("ALTER TABLE gate_decisions_away RENAME TO gate_decisions")
	if err := save(); err != nil {
		t.Fatal(err)
	}
	checkLinear(t, db, 1)
}

// TestWireFallsBackOffTheFastPath: groups the one statement cannot carry
// are committed interactively, and their entries still verify: a
// database not in UTF8 (the hash's byte lengths assume it), and rows
// that may conflict (written under the chain lock).
func TestWireFallsBackOffTheFastPath(t *testing.T) {
	ctx := context.Background()
	t.Run("database not in UTF8", func(t *testing.T) {
		db := openTestDB(t, testpg.NewDatabaseWith(t, "ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"), nil)
		if _, err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"plain", "ünïcode ✓"} {
			if err := db.Append(ctx, core.AuditEntry{Actor: s, Action: "test.encoding", Subject: s}); err != nil {
				t.Fatal(err)
			}
		}
		if st := db.AppenderStats(); st.Groups != 2 || st.OneStatement != 0 {
			t.Errorf("groups %d, as one statement %d: want 2 and 0", st.Groups, st.OneStatement)
		}
		checkLinear(t, db, 2)
	})
	t.Run("rows that may conflict", func(t *testing.T) {
		db := newTestDB(t, Postgres, nil)
		leases := newBatchInsert("leases", []string{"name", "holder", "expires_at"}, []string{"text", "text", "timestamptz"}, "")
		err := db.appendRows(ctx, []core.AuditEntry{{Action: "test.locked"}},
			batchRow{ins: leases, args: []any{"l1", "h", time.Now().UTC()}})
		if err != nil {
			t.Fatal(err)
		}
		if st := db.AppenderStats(); st.Groups != 1 || st.OneStatement != 0 {
			t.Errorf("groups %d, as one statement %d: want 1 and 0", st.Groups, st.OneStatement)
		}
		var n int
		if err := db.SQLX().GetContext(ctx, &n, "SELECT count(*) FROM leases WHERE name = 'l1'"); err != nil || n != 1 {
			t.Errorf("leases %d (%v)", n, err)
		}
		checkLinear(t, db, 1)
	})
}

// TestWireText: a group's statement text depends on its shape only (the
// inserts in order, entries or not), and is built once per shape.
func TestWireText(t *testing.T) {
	d := &DB{}
	both := d.wireText([]*batchInsert{releaseInsert, decisionInsert}, true)
	tests := []struct {
		name        string
		order       []*batchInsert
		withEntries bool
		want        []string // substrings, in order
	}{
		{"rows and entries", []*batchInsert{releaseInsert, decisionInsert}, true,
			[]string{"WITH i0 AS (INSERT INTO releases", "$1::text[]", "i1 AS (INSERT INTO gate_decisions", "$11::text[]", "tollgate_append_audit(", "$19::text[]", "$24::text[]", "(SELECT count(*) FROM i1) c1"}},
		{"other order", []*batchInsert{decisionInsert, releaseInsert}, true,
			[]string{"WITH i0 AS (INSERT INTO gate_decisions", "i1 AS (INSERT INTO releases", "$9::text[]", "tollgate_append_audit(", "$19::text[]"}},
		{"rows only", []*batchInsert{decisionInsert}, false, []string{"WITH i0 AS (INSERT INTO gate_decisions", "SELECT 1 FROM (SELECT count(*) FROM i0) c0"}},
		{"entries only", nil, true, []string{"SELECT tollgate_append_audit(", "$1::text[]", "$6::text[]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := d.wireText(tt.order, tt.withEntries)
			rest := got
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("%q not found in order in\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			if again := d.wireText(tt.order, tt.withEntries); again != got {
				t.Fatalf("second call differs:\n%s\n%s", got, again)
			}
		})
	}
	if d.wireText([]*batchInsert{releaseInsert, decisionInsert}, true) != both {
		t.Fatal("cached text changed")
	}
}

// TestWireBinaryArgs: the group's arguments become their binary
// renderings in one buffer the worker keeps for the next group, unless it
// grew past wireScratchMax.
func TestWireBinaryArgs(t *testing.T) {
	var w wireConn
	group := func(docs ...string) []textArray {
		return []textArray{docs, {"a"}, {}}
	}
	args, err := w.binaryArgs(group("one", `"two"`))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range group("one", `"two"`) {
		want, _ := a.BinaryValue()
		if got, ok := args[i].([]byte); !ok || string(got) != string(want) {
			t.Fatalf("argument %d: %x, want %x", i, args[i], want)
		}
	}
	kept := cap(w.scratch)
	first := &w.scratch[:1][0]
	if _, err := w.binaryArgs(group("x")); err != nil {
		t.Fatal(err)
	}
	if cap(w.scratch) != kept || &w.scratch[:1][0] != first {
		t.Fatal("a smaller group did not reuse the buffer")
	}
	if _, err := w.binaryArgs(group(strings.Repeat("d", wireScratchMax))); err != nil {
		t.Fatal(err)
	}
	if cap(w.scratch) > wireScratchMax {
		t.Fatalf("kept a %d-byte buffer", cap(w.scratch))
	}
}
