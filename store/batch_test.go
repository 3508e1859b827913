package store

import (
	"context"
	"slices"
	"testing"
)

// TestTextArrayRoundTrip: textArray's literal reaches PostgreSQL as the
// exact strings, whatever they hold.
func TestTextArrayRoundTrip(t *testing.T) {
	db := newTestDB(t, Postgres, nil)
	in := textArray{"", "plain", `a "quoted" word`, `back\slash\`, `{"json": ["x", 1]}`, "a,b", "{}", "NULL", " spaced ", "ünï\tcode\n", `\"`}
	var out []string
	rows, err := db.SQLX().QueryContext(context.Background(), `SELECT u FROM unnest($1::text[]) AS u`, in)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out, in) {
		t.Fatalf("got  %q\nwant %q", out, []string(in))
	}
	if v, _ := (textArray{}).Value(); string(v.([]byte)) != "{}" {
		t.Fatalf("empty: %s", v)
	}
}

// BenchmarkTextArray renders a group's decision documents as a text[]
// literal (the escaping group commit does for every row).
func BenchmarkTextArray(b *testing.B) {
	doc := `{"decision_id":"0197","release_id":"x","decision":"allow","reasons":[],"facts":{"changes":{"CHG1":{"key":"CHG1","state":"scheduled","services":["svc-1"],"note":"a \"quoted\" word"}}}}`
	for len(doc) < 4000 {
		doc += `,{"key":"k","value":"v"}`
	}
	a := make(textArray, 16)
	for i := range a {
		a[i] = doc
	}
	b.SetBytes(int64(16 * len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Value(); err != nil {
			b.Fatal(err)
		}
	}
}
