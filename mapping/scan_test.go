package mapping

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// validCases are edge cases of JSON syntax; validJSON must agree with
// gjson.ValidBytes on each (and, by FuzzValidJSON, on anything else).
var validCases = []string{
	``, ` `, `{}`, ` {} `, `{`, `}`, `[]`, `[`, `[1,]`, `[,1]`, `[1 2]`, `{"a":1,}`, `{,"a":1}`, `{"a" 1}`, `{"a":}`,
	`{"a":1 "b":2}`, `{a:1}`, `{"a":1}x`, `{"a":1}{}`, `"x"`, `"x`, `"\"`, `"\\"`, `"\u00e9"`, `"\u00g9"`, `"\u00"`,
	`"\x"`, `"\/"`, "\"\x01\"", "\"\x7f\"", "\"\xff\xfe\"", "\"tab\there\"", `0`, `-0`, `-`, `01`, `1.`, `1.5`, `.5`,
	`1e5`, `1E+5`, `1e-5`, `1e`, `1e+`, `-1.5e10`, `- 1`, `+1`, `true`, `tru`, `truex`, `false`, `fals`, `null`,
	`nul`, `NaN`, `[true,false,null]`, "{\"a\":\t[1,\n2]\r}", `{"a":{"b":{"c":[{"d":"e"}]}}}`, `[[[[]]]]`,
	`{"result":{"number":"CHG1"}}`, `{"result":[{"number":"CHG1"}]}`, `{"res\u0075lt":{"number":"x"}}`,
	`{"a":"` + strings.Repeat("x", 40) + `\n` + strings.Repeat("y", 9) + `"}`,
	"{\"a\":\"" + strings.Repeat("x", 21) + "\x1f\"}",
	"\"        " + `\u12`,
	"{\"a\":1}        \n        ",
	"        ",
}

func TestValidJSONMatchesGJSON(t *testing.T) {
	cases := append([]string(nil), validCases...)
	_ = filepath.WalkDir(filepath.Join("testdata", "fixtures"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, ".json") {
			b, _ := os.ReadFile(p)
			cases = append(cases, string(b))
			for _, cut := range []int{1, 7, len(b) / 2, len(b) - 2} {
				if cut > 0 && cut < len(b) {
					cases = append(cases, string(b[:cut]))
				}
			}
		}
		return nil
	})
	for _, c := range cases {
		if got, want := validJSON([]byte(c)), gjson.ValidBytes([]byte(c)); got != want {
			t.Errorf("validJSON(%.80q) = %v, gjson.ValidBytes = %v", c, got, want)
		}
	}
}

// FuzzValidJSON checks the single-pass validator against gjson's.
func FuzzValidJSON(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), gjson.ValidBytes(b); got != want {
			t.Fatalf("validJSON(%q) = %v, gjson.ValidBytes = %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	payload, err := os.ReadFile(filepath.Join("testdata", "fixtures", "servicenow", "sn_chg_rest.get_change.response.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("scanner", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			validJSON(payload)
		}
	})
	b.Run("gjson", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			gjson.ValidBytes(payload)
		}
	})
}
