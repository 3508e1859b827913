package store

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// The store's side of the group commit (store/groupcommit): gate decisions
// and entries committed as one statement on PostgreSQL.

// TestOneStatementGroupLinksInTheDatabase: a group of entries goes as one
// statement, and the entries PostgreSQL links (migration 00006) verify in
// Go, whatever their text holds.
func TestOneStatementGroupLinksInTheDatabase(t *testing.T) {
	db := newTestDB(t, Postgres, nil)
	ctx := context.Background()
	texts := []string{"plain", `a "quoted" word`, `back\slash`, "it's", "ünïcode ✓", "line\nbreak", "{}", "NULL", `$$`}
	errs := inOneGroup(t, db, len(texts), func(i int) error {
		data, _ := json.Marshal(map[string]any{"text": texts[i], "n": i})
		e := core.AuditEntry{Actor: texts[i], Action: "test.onestatement", Subject: texts[i], Data: data}
		if i%2 == 0 {
			// A time of its own, with nanoseconds and a zone; the
			// others take the group's time. All must verify.
			e.At = time.Date(2026, 3, 29, 2, 30, 0, 123456789, time.FixedZone("CEST", 2*3600)).Add(time.Duration(i) * time.Second)
		}
		return db.Append(ctx, e)
	})
	// inOneGroup's holding group has a writer function (interactive), the
	// callers' group is the one statement.
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
	if err := db.Append(ctx, core.AuditEntry{Action: "test.onestatement", Data: json.RawMessage("{ \"a\" :\n [1, 2] }")}); err != nil {
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
	entries, err := db.ListAudit(ctx, core.AuditFilter{Action: "test.onestatement"})
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
	if err := db.SQLX().GetContext(ctx, &raw, "SELECT data FROM audit_log WHERE subject = '' AND action = 'test.onestatement'"); err != nil || raw != "{ \"a\" :\n [1, 2] }" {
		t.Errorf("stored data %q (%v)", raw, err)
	}
	rel, err := db.GetRelease(ctx, dec.ReleaseID)
	if err != nil || rel.Team != "t's" {
		t.Errorf("release %+v (%v)", rel, err)
	}
}

// TestOneStatementGroupIsolatesFailingRows: when PostgreSQL refuses the one
// statement (here a decision id that exists), the group is rerun caller by
// caller: only the failing caller gets the error.
func TestOneStatementGroupIsolatesFailingRows(t *testing.T) {
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

// TestOneStatementPrepareFails: a group whose inserts cannot be prepared runs
// interactively, so its callers get the database's error, and the worker
// goes on once the cause is gone.
func TestOneStatementPrepareFails(t *testing.T) {
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

// TestGroupCommitOffTheOneStatementPath: on a database not in UTF8 (the
// hash's byte lengths assume it) groups are committed interactively, and
// their entries still verify.
func TestGroupCommitOffTheOneStatementPath(t *testing.T) {
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
}
