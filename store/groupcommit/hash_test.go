package groupcommit

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestAppendFunctionHashesAsCore holds the PL/pgSQL function that links
// one-statement groups (tollgate_append_audit, migrations 00006/00007) to
// core.HashAuditEntry, the one definition of the audit hash: generated
// entries (empty fields, non-ASCII text, JSON with and without
// insignificant whitespace, large data, times in other zones) are linked
// by the database, and every stored hash must be the one Go computes from
// the stored row. Changing either hash without the other fails here.
func TestAppendFunctionHashesAsCore(t *testing.T) {
	c, db := newTestCommitter(t, Config{})
	ctx := context.Background()
	entries := generatedEntries(rand.New(rand.NewPCG(11, 2026)), 300)
	if err := c.Submit(ctx, Request{Entries: entries}); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.OneStatement != 1 {
		t.Fatalf("%d groups, %d as one statement: the function did not link them", st.Groups, st.OneStatement)
	}
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
	if err := db.SelectContext(ctx, &rows, "SELECT seq, at, actor, action, subject, data, prev_hash, hash FROM audit_log ORDER BY seq"); err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(entries) {
		t.Fatalf("%d rows, want %d", len(rows), len(entries))
	}
	prev := core.GenesisHash
	for i, r := range rows {
		want := entries[i]
		if r.Actor != want.Actor || r.Subject != want.Subject || r.Data != string(want.Data) {
			t.Fatalf("row %d stored altered: %q %q %.40q", r.Seq, r.Actor, r.Subject, r.Data)
		}
		e := core.AuditEntry{Seq: r.Seq, At: r.At, Actor: r.Actor, Action: r.Action, Subject: r.Subject, Data: json.RawMessage(r.Data)}
		if r.PrevHash != prev {
			t.Fatalf("row %d links to %s, want %s", r.Seq, r.PrevHash, prev)
		}
		if got := core.HashAuditEntry(prev, e); got != r.Hash {
			t.Fatalf("row %d (actor %q, %d bytes of data): the database hashed %s, core.HashAuditEntry %s", r.Seq, r.Actor, len(r.Data), r.Hash, got)
		}
		prev = r.Hash
	}
}

// generatedEntries returns n entries: a fixed set of edge cases, then
// random ones.
func generatedEntries(rnd *rand.Rand, n int) []core.AuditEntry {
	large, _ := json.Marshal(map[string]string{"doc": strings.Repeat("ü\"\\x", 1<<18)}) // ~1.5 MB
	zone := time.FixedZone("UTC+05:45", 5*3600+45*60)
	out := []core.AuditEntry{
		{Action: "empty"},
		{Actor: "", Action: "empty.data", Subject: "", Data: nil},
		{Actor: "ünïcödé ✓", Action: "non.ascii", Subject: "日本語 🚀 e\u0301", Data: json.RawMessage(`{"text":"ünï 🚀"}`)},
		{Actor: "a", Action: "whitespace", Data: json.RawMessage("{ \"a\" :\n [1,\t2] ,\r\n \"b\": \"x y\" }")},
		{Actor: "q", Action: "quotes", Subject: `it's "quoted" \ back`, Data: json.RawMessage(`{"s":"it's \"q\" \\ b"}`)},
		{Actor: "big", Action: "large", Data: large},
		{Actor: "t", Action: "zoned.time", At: time.Date(2026, 3, 29, 2, 30, 0, 123456789, zone)},
		{Actor: "t", Action: "json.scalar", Data: json.RawMessage(`"just a string"`)},
	}
	runes := []rune("abcXYZ019 _-:;,.\"'\\/\n\tüéßø€日本語🚀\u0301{}[]")
	text := func(max int) string {
		var b strings.Builder
		for range rnd.IntN(max + 1) {
			b.WriteRune(runes[rnd.IntN(len(runes))])
		}
		return b.String()
	}
	for len(out) < n {
		e := core.AuditEntry{Actor: text(20), Action: "gen." + text(8), Subject: text(40)}
		if rnd.IntN(4) > 0 {
			var v any = map[string]any{"s": text(300), "n": rnd.IntN(1000), "l": []string{text(5), text(5)}}
			if rnd.IntN(5) == 0 {
				v = text(50)
			}
			b, _ := json.Marshal(v)
			if rnd.IntN(3) == 0 {
				b, _ = json.MarshalIndent(v, " ", "  ") // whitespace the hash compacts
			}
			e.Data = b
		}
		if rnd.IntN(2) == 0 {
			e.At = time.Unix(rnd.Int64N(4e9), rnd.Int64N(1e9)).In(zone)
		}
		out = append(out, e)
	}
	return out
}
