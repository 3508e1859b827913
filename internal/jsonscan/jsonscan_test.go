package jsonscan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// validCases are edge cases of JSON syntax; Valid must agree with
// gjson.ValidBytes on each (and, by FuzzValid, on anything else).
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
	// Objects with the same members: flat remembers the text from a key to
	// its value and must still catch what differs after or inside it.
	`[{"a":1},{"a":2}]`, `[{"a": 1},{"a":  2},{"a":3},{"a"` + "\n:\t" + `4}]`, `[{"a":1},{"a":}]`, `[{"a":1},{"a":1,}]`,
	`[{"a":1},{"a" 1}]`, `[{"a":1},{"a":1 "b":2}]`, `[{"ab":1},{"a":1}]`, `[{"a":1},{"ab":1}]`, "[{\"ab\":1},{\"a\x01\":1}]",
	`[{"a\"b":1},{"a\"b":2}]`, `[{"a\"b":1},{"a\"b" 2}]`, `[{"a":1,"b":2},{"b":2,"a":1},{"a":1,"b":2,"c":3}]`,
	`[{"a":{"b":1},"c":2},{"a":{"b":[1,{"c":[]}]},"c":2},{"a":{},"c":[}]`, `[{"a":1,"b":{"c":[1,{"d":2}]},"e":3},{"a":1,"b":{"c":[]},"e":3}]`,
	`[{"` + strings.Repeat("k", 40) + `":1},{"` + strings.Repeat("k", 40) + `":1}]`, `{"a":{"b":1},"a":{"b":2},"a":{"b" 3}}`,
	`{"a":{"display_value":"x","value":"y"},"b":{"display_value":"","value":""},"c":{"display_value":"","value":}}`,
	`{"a":{"display_value":"x","value":"y"},"b":{"display_value":"","value":""}}`, `{"a":{"x":""},"b":{"x":"`,
	strings.Repeat(`[`, 100) + strings.Repeat(`]`, 100), strings.Repeat(`[`, 100) + strings.Repeat(`]`, 99),
	strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100), strings.Repeat(`{"a":[`, 50) + strings.Repeat(`]}`, 49) + `}]`,
	`[{]}`, `{"a":[}]`, `{"a":{"b":[1,2}}`, `[{"a":1}}`, `{"a":1]`, snSeed,
}

// snSeed has the shape of a ServiceNow Change Management API response.
const snSeed = `{"result": {"number": {"display_value": "CHG1", "value": "CHG1"}, "state": {"display_value": "New", "value": -5},
 "x": {"display_value": "", "value": ""}, "cmdb_ci": {"display_value": "a, b", "value": "c", "link": "d"}}}`

func TestValidMatchesGJSON(t *testing.T) {
	cases := append([]string(nil), validCases...)
	_ = filepath.WalkDir(filepath.Join("..", "..", "mapping", "testdata", "fixtures"), func(p string, d os.DirEntry, err error) error {
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
		for _, c := range []string{c, c + pad} {
			if got, want := Valid([]byte(c)), gjson.ValidBytes([]byte(c)); got != want {
				t.Errorf("Valid(%.80q) = %v, gjson.ValidBytes = %v", c, got, want)
			}
		}
	}
}

// pad is trailing whitespace that makes flat remember the keys of short
// payloads too (it remembers a key only when 32 bytes from its start are
// in the payload).
const pad = "                                        "

// FuzzValid checks the single-pass validator against gjson's's.
func FuzzValid(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, b := range [][]byte{b, append(b[:len(b):len(b)], pad...)} {
			if got, want := Valid(b), gjson.ValidBytes(b); got != want {
				t.Fatalf("Valid(%q) = %v, gjson.ValidBytes = %v", b, got, want)
			}
		}
	})
}

func BenchmarkValid(b *testing.B) {
	payload, err := os.ReadFile(filepath.Join("..", "..", "mapping", "testdata", "fixtures", "servicenow", "sn_chg_rest.get_change.response.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("scanner", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			Valid(payload)
		}
	})
	b.Run("gjson", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			gjson.ValidBytes(payload)
		}
	})
}
