package sqldb

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/lib/pq"

	"github.com/tollgate-dev/tollgate/core"
)

// TestTranslateResourceFailures: a full disk, exhausted resources or a
// read-only database are "unavailable" (503, retry later), not internal
// errors: nothing was stored and the sender should come back.
func TestTranslateResourceFailures(t *testing.T) {
	tests := []struct {
		code pq.ErrorCode
		want core.ErrorKind
	}{
		{"53100", core.KindUnavailable}, // disk_full
		{"53200", core.KindUnavailable}, // out_of_memory
		{"53300", core.KindUnavailable}, // too_many_connections
		{"25006", core.KindUnavailable}, // read_only_sql_transaction
		{"57P01", core.KindUnavailable}, // admin_shutdown
		{"57014", core.KindUnavailable}, // query_canceled: statement_timeout
		{"23505", core.KindConflict},
		{"42P01", ""}, // undefined_table: a bug, stays internal
	}
	// Lost races between transactions are retried, and are not the
	// database being down: a shared transaction that loses one is made
	// again alone (service.Deployments.Store).
	for _, code := range []pq.ErrorCode{"40001", "40P01", "55P03"} { // serialization_failure, deadlock_detected, lock_not_available
		err := Translate(&pq.Error{Code: code})
		if core.KindOf(err) != core.KindUnavailable || core.IsStoreDown(err) {
			t.Errorf("SQLSTATE %s: kind %q, store down %v; want a retryable conflict", code, core.KindOf(err), core.IsStoreDown(err))
		}
	}
	for _, tt := range tests {
		err := Translate(&pq.Error{Code: tt.code})
		if got := core.KindOf(err); tt.want != "" && got != tt.want {
			t.Errorf("SQLSTATE %s: kind %q, want %q", tt.code, got, tt.want)
		}
		if tt.want == "" && core.KindOf(err) == core.KindUnavailable {
			t.Errorf("SQLSTATE %s: unavailable, want it left as is", tt.code)
		}
	}

	// SQLite opened read-only: a write fails with SQLITE_READONLY.
	path := filepath.Join(t.TempDir(), "ro.db")
	rw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rw.Exec("CREATE TABLE x (a int)"); err != nil {
		t.Fatal(err)
	}
	rw.Close()
	ro, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	_, err = ro.ExecContext(context.Background(), "INSERT INTO x VALUES (1)")
	if err == nil {
		t.Fatal("insert into a read-only SQLite database succeeded")
	}
	if k := core.KindOf(Translate(err)); k != core.KindUnavailable {
		t.Errorf("SQLite read-only write: kind %q (%v), want unavailable", k, err)
	}

	// SQLite out of room (max_page_count reached, as a full disk is):
	// SQLITE_FULL, unavailable, and a message that says so.
	full, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "full.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	full.SetMaxOpenConns(1) // max_page_count is the connection's
	for _, q := range []string{"CREATE TABLE x (a blob)", "PRAGMA max_page_count = 1"} {
		if _, err := full.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	_, err = full.Exec("INSERT INTO x VALUES (zeroblob(100000))")
	if err == nil {
		t.Fatal("insert past max_page_count succeeded")
	}
	if k, msg := core.KindOf(Translate(err)), Translate(err).(*core.Error).Message; k != core.KindUnavailable || msg != "database disk is full" {
		t.Errorf("SQLite full: kind %q message %q (%v), want unavailable, \"database disk is full\"", k, msg, err)
	}
	if msg := Translate(&pq.Error{Code: "53100"}).(*core.Error).Message; msg != "database disk is full" {
		t.Errorf("PostgreSQL disk_full: message %q", msg)
	}
}

// TestTranslateRejectedValues: a value the database refuses as malformed
// or out of its column's range is the client's mistake (400), never an
// internal error.
func TestTranslateRejectedValues(t *testing.T) {
	tests := []struct {
		code pq.ErrorCode
		what string
	}{
		{"23503", "foreign_key_violation"},
		{"23502", "not_null_violation"},
		{"23514", "check_violation"},
		{"22P02", "invalid_text_representation"},
		{"22001", "string_data_right_truncation"},
		{"22021", "character_not_in_repertoire"},
		{"22P05", "untranslatable_character"},
		{"22003", "numeric_value_out_of_range"},
		{"22008", "datetime_field_overflow"},
	}
	for _, tt := range tests {
		if k := core.KindOf(Translate(&pq.Error{Code: tt.code})); k != core.KindInvalid {
			t.Errorf("SQLSTATE %s (%s): kind %q, want invalid", tt.code, tt.what, k)
		}
	}
}
