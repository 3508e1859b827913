package groupcommit

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // the store's driver

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// newTestCommitter starts a committer on a fresh migrated PostgreSQL
// database (closed when t ends), with cfg's fields where set.
func newTestCommitter(t testing.TB, cfg Config) (*Committer, *sqlx.DB) {
	t.Helper()
	url := testpg.NewMigratedDatabase(t)
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg.DB, cfg.URL = db, url
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Translate == nil {
		cfg.Translate = func(err error) error { return err }
	}
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, db
}

// checkChain verifies the chain in Go and that it has n rows.
func checkChain(t testing.TB, db *sqlx.DB, n int) {
	t.Helper()
	var rows []struct {
		Seq      int64     `db:"seq"`
		At       time.Time `db:"at"`
		Actor    string    `db:"actor"`
		Action   string    `db:"action"`
		Subject  string    `db:"subject"`
		Data     string    `db:"data"`
		PrevHash string    `db:"prev_hash"`
		Hash     string    `db:"hash"`
	}
	if err := db.Select(&rows, "SELECT seq, at, actor, action, subject, data, prev_hash, hash FROM audit_log ORDER BY seq"); err != nil {
		t.Fatal(err)
	}
	entries := make([]core.AuditEntry, len(rows))
	for i, r := range rows {
		entries[i] = core.AuditEntry{Seq: r.Seq, At: r.At, Actor: r.Actor, Action: r.Action, Subject: r.Subject,
			Data: []byte(r.Data), PrevHash: r.PrevHash, Hash: r.Hash}
	}
	if brk, _, _ := core.VerifyAuditChain(entries, core.GenesisHash, 1); brk != nil || len(rows) != n {
		t.Fatalf("chain of %d rows (want %d): %+v", len(rows), n, brk)
	}
}

// Inserts shaped as the store's decision and release rows.
var (
	testDecisions = NewInsert("gate_decisions",
		[]string{"id", "release_id", "decision", "emergency", "policy_version", "evaluated_at", "actor", "doc"},
		[]string{"text", "text", "text", "boolean", "integer", "timestamptz", "text", "text"}, "").ConflictFree(-1)
	testReleases = NewInsert("releases",
		[]string{"id", "service", "version", "environment", "team", "commit_sha", "changes", "fixes_incidents", "created_at", "updated_at"},
		[]string{"text", "text", "text", "text", "text", "text", "jsonb", "jsonb", "timestamptz", "timestamptz"},
		" ON CONFLICT DO NOTHING").ConflictFree(0)
)

// decision is a request saving a decision row with id and its entry.
func decision(id string) Request {
	return Request{
		Entries: []core.AuditEntry{{Actor: "ci", Action: "gate.decision", Subject: "release:r", Data: []byte(`{"decision_id":"` + id + `"}`)}},
		Rows:    []Row{{Insert: testDecisions, Args: []any{id, "r", "allow", false, 1, time.Now().UTC(), "ci", `{}`}}},
	}
}
