package groupcommit

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestTextArrayRoundTrip: textArray reaches PostgreSQL as the exact
// strings, whatever they hold, as a text literal and in binary.
func TestTextArrayRoundTrip(t *testing.T) {
	c, db := newTestCommitter(t, Config{})
	awkward := textArray{"", "plain", `a "quoted" word`, `back\slash\`, `{"json": ["x", 1]}`, "a,b", "{}", "NULL", " spaced ", "ünï\tcode\n", `\"`}
	// The store's pool sends the text literal (Value), the committer's
	// own pool PostgreSQL's binary format (BinaryValue).
	pools := map[string]interface {
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	}{"text": db, "binary": c.pool}
	for name, pool := range pools {
		for _, in := range []textArray{awkward, {}, {"one"}} {
			t.Run(fmt.Sprintf("%s/%d", name, len(in)), func(t *testing.T) {
				var out []string
				rows, err := pool.QueryContext(context.Background(), `SELECT u FROM unnest($1::text[]) AS u`, in)
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
			})
		}
	}
	if v, _ := (textArray{}).Value(); string(v.([]byte)) != "{}" {
		t.Fatalf("empty: %s", v)
	}
	// Text that is not valid UTF-8 is refused by the server, not stored
	// altered.
	_, err := c.pool.ExecContext(context.Background(), `SELECT $1::text[]`, textArray{"ok", "bad \xff byte"})
	if err == nil || !strings.Contains(err.Error(), "UTF8") {
		t.Fatalf("invalid UTF-8 in binary: err = %v, want the server's encoding error", err)
	}
}

// TestTextArrayBinaryFormat pins the binary encoding byte for byte: one
// dimension, no nulls, element type text (oid 25), its length and lower
// bound 1, then each element's length and bytes; no dimension when empty.
func TestTextArrayBinaryFormat(t *testing.T) {
	tests := []struct {
		name string
		in   textArray
		want string
	}{
		{"empty", textArray{}, "00000000" + "00000000" + "00000019"},
		{"two", textArray{"ab", ""}, "00000001" + "00000000" + "00000019" + "00000002" + "00000001" + "00000002" + "6162" + "00000000"},
		{"quotes travel as they are", textArray{`"\`}, "00000001" + "00000000" + "00000019" + "00000001" + "00000001" + "00000002" + "225c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.BinaryValue()
			if err != nil {
				t.Fatal(err)
			}
			if h := hex.EncodeToString(got); h != tt.want {
				t.Fatalf("got  %s\nwant %s", h, tt.want)
			}
		})
	}
}

// BenchmarkTextArray renders a group's decision documents as a text[]
// literal (the escaping the interactive path does for every row).
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
	b.Run("text", func(b *testing.B) {
		for b.Loop() {
			if _, err := a.Value(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("binary", func(b *testing.B) {
		for b.Loop() {
			if _, err := a.BinaryValue(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
