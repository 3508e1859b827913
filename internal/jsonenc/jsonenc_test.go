package jsonenc

import (
	"encoding/json"
	"testing"
)

// TestMarshalMatchesEncodingJSON: Marshal and Append write what the
// build's encoding/json writes, for the strings where segmentio and a
// newer encoding/json differ and those that look like them.
func TestMarshalMatchesEncodingJSON(t *testing.T) {
	for name, s := range map[string]string{
		"plain":                   "svc-1",
		"invalid UTF-8":           "a\xffb\xc3(",
		"only invalid":            "\xff\xfe",
		"replacement character":   "a\uFFFDb",
		"escape as text":          `\ufffd`,
		"backslash then invalid":  "\\\xff",
		"escapes around invalid":  "\"\xff\n\u2028\x00<",
		"truncated multibyte end": "ok\xe2\x82",
	} {
		t.Run(name, func(t *testing.T) {
			v := map[string]any{"k" + s: []string{s, s}, "n": 1}
			want, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Marshal(v)
			if err != nil || string(got) != string(want) {
				t.Fatalf("Marshal: %s (%v)\nencoding/json: %s", got, err, want)
			}
			prefix := []byte(`x\ufffd`) // Append leaves what was before alone
			got, err = Append(prefix, v, MarshalFlags)
			if err != nil || string(got) != string(prefix)+string(want) {
				t.Fatalf("Append: %s (%v)\nwant: %s%s", got, err, prefix, want)
			}
		})
	}
}

func TestUnescapeReplacement(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`"a"`, `"a"`},
		{`"\ufffd"`, "\"\uFFFD\""},
		{`"a\ufffdb\ufffd"`, "\"a\uFFFDb\uFFFD\""},
		{`"\\ufffd"`, `"\\ufffd"`},
		{`"\\\ufffd"`, "\"\\\\\uFFFD\""},
		{`"\u2028\ufffd\n"`, "\"\\u2028\uFFFD\\n\""},
		{`["\ufffd",{"\ufffd":1}]`, "[\"\uFFFD\",{\"\uFFFD\":1}]"},
		{`"\ufff`, `"\ufff`},
		{`"\`, `"\`},
	} {
		if got := string(unescapeReplacement([]byte(tc.in), 0)); got != tc.want {
			t.Errorf("unescapeReplacement(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func FuzzMarshal(f *testing.F) {
	for _, s := range []string{"svc", "a\xff", `\ufffd`, "\\\xff\u2028", "\uFFFD\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := []any{s, map[string]string{s: s}}
		want, err := json.Marshal(v)
		if err != nil {
			t.Skip(err)
		}
		if got, err := Marshal(v); err != nil || string(got) != string(want) {
			t.Fatalf("Marshal: %s (%v)\nencoding/json: %s", got, err, want)
		}
	})
}

func BenchmarkMarshal(b *testing.B) {
	v := map[string]any{"service": "payments-api", "version": "1.4.2", "changes": []string{"CHG0030001", "CHG0030002"}, "n": 3}
	for b.Loop() {
		if _, err := Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}
