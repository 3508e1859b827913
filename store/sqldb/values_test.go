package sqldb

import (
	"encoding/json"
	"fmt"
	"testing"
)

// TestParseListMatchesEncodingJSON holds ParseList's fast path to
// encoding/json's answer: the same list, or an error for both.
func TestParseListMatchesEncodingJSON(t *testing.T) {
	for _, s := range listShapes {
		checkParseList(t, s)
	}
}

var listShapes = []string{
	`["CHG-1"]`, `["a", "b"]`, `["a","b"]`, `[ "a" , "b" ]`, `[""]`, "[\n\"a\"\t]", `[ ]`,
	`["a\"b"]`, `["\u00e9"]`, `["é"]`, `["a",]`, `[,"a"]`, `["a" "b"]`, `["a"`, `"a"]`, `[1]`,
	`["a", 1]`, `[null]`, `["a"]]`, `[["a"]]`, "[\"a\x01\"]", `{"a":1}`, ` ["a"]`, `["a"] `,
}

func checkParseList(t *testing.T, s string) {
	t.Helper()
	if s == "" { // an empty column is an empty list, by design
		return
	}
	got, err := ParseList(s)
	var want []string
	werr := json.Unmarshal([]byte(s), &want)
	if (err != nil) != (werr != nil) {
		t.Fatalf("ParseList(%q) error %v; encoding/json %v", s, err, werr)
	}
	if err == nil && (fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(want)) {
		t.Fatalf("ParseList(%q) = %q; encoding/json %q", s, got, want)
	}
}

func FuzzParseList(f *testing.F) {
	for _, s := range listShapes {
		f.Add(s)
	}
	f.Fuzz(checkParseList)
}
