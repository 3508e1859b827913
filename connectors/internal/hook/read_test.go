package hook_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
	"github.com/tollgate-dev/tollgate/core"
)

func TestLookupLastWins(t *testing.T) {
	obj, err := hook.ParseObject([]byte(`{"a":1,"b":"x","a":2,"\u0061":3,"A":4}`))
	if err != nil {
		t.Fatal(err)
	}
	var v [3]gjson.Result
	hook.Lookup(obj, v[:], "a", "b", "c")
	if v[0].Raw != "3" || hook.Text(v[1]) != "x" || v[2].Exists() {
		t.Fatalf("Lookup = %q %q %v", v[0].Raw, v[1].Raw, v[2].Exists())
	}
	if got := hook.LookupFold(obj, "a"); got.Raw != "4" {
		t.Fatalf("LookupFold = %q, want the last of a/A", got.Raw)
	}
}

// ParseLookup agrees with ParseObject then Lookup: what each refuses, with
// the same error, and the members each finds, on bodies past the depth
// check's threshold and nested past encoding/json's limit too.
func TestParseLookupAgrees(t *testing.T) {
	long := `{"pad":"` + strings.Repeat("x", 12000) + `","a":{"b":[1,{"c":2}]},"a":"last"}`
	deep := `{"a":1,"d":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`
	for _, body := range []string{
		`{}`, ` {"a":1} `, `{"a":1,}`, `{"a":1 "b":2}`, `{"a":}`, `{"a":1}x`, `{"a":1}{}`, `[1]`, `"a"`, ``,
		`{"\u0061":"esc","b":null}`, `{"a":"x\"y","b":true,"a":false}`, "{\"a\":\"\xff\"}",
		`{"a":{"x":1},"b":[{"a":2}]}`, `{"a":1,"b":{"c":}}`, long, deep, long[:len(long)-1],
	} {
		keys := []string{"a", "b"}
		var got, want [2]gjson.Result
		_, err := hook.ParseLookup([]byte(body), got[:], keys...)
		obj, werr := hook.ParseObject([]byte(body))
		sameErr(t, "ParseLookup", err, werr)
		if werr != nil {
			continue
		}
		hook.Lookup(obj, want[:], keys...)
		for k := range keys {
			if got[k].Raw != want[k].Raw || got[k].Type != want[k].Type || got[k].Str != want[k].Str {
				t.Errorf("%.40q: ParseLookup %q = %q, Lookup = %q", body, keys[k], got[k].Raw, want[k].Raw)
			}
		}
		sameLookupIn(t, []byte(body), obj)
	}
	// The member looked into: the last one wins, also when it is not an
	// object; keys inside arrays and deeper objects are not its members.
	for body, want := range map[string]string{
		`{"r":{"c":1}}`:                     "1",
		`{"r":{"c":1},"r":{"c":2}}`:         "2",
		`{"r":{"c":1},"r":{"d":2}}`:         "",
		`{"r":{"c":1},"r":[{"c":2}]}`:       "",
		`{"r":{"x":{"c":1},"c":[3]}}`:       "[3]",
		`{"r":{"x":{"c":1}}}`:               "",
		`{"c":0,"r":{"c":"v","c":"w"}}`:     `"w"`,
		`{"r":{"c":1},"r":"s","z":{"c":4}}`: "",
	} {
		var top [1]gjson.Result
		var in [1]gjson.Result
		if _, err := hook.ParseLookupIn([]byte(body), top[:], []string{"c"}, "r", in[:], []string{"c"}); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if in[0].Raw != want {
			t.Errorf("ParseLookupIn(%s) r.c = %q, want %q", body, in[0].Raw, want)
		}
	}
}

// sameLookupIn fails t unless ParseLookupIn, looking into member "a",
// finds what Lookup finds at the top and then in Get(obj, "a").
func sameLookupIn(t *testing.T, body []byte, obj gjson.Result) {
	t.Helper()
	keys := []string{"a", "b", "value", ""}
	var got, want, gotIn, wantIn [4]gjson.Result
	if _, err := hook.ParseLookupIn(body, got[:], keys, "a", gotIn[:], keys); err != nil {
		t.Fatalf("ParseLookupIn: %v after ParseObject accepted the body", err)
	}
	hook.Lookup(obj, want[:], keys...)
	hook.Lookup(hook.Get(obj, "a"), wantIn[:], keys...)
	for k := range keys {
		if got[k].Raw != want[k].Raw || got[k].Type != want[k].Type || got[k].Str != want[k].Str {
			t.Fatalf("%.40q: ParseLookupIn %q = %#v, Lookup = %#v", body, keys[k], got[k], want[k])
		}
		if gotIn[k].Raw != wantIn[k].Raw || gotIn[k].Type != wantIn[k].Type || gotIn[k].Str != wantIn[k].Str {
			t.Fatalf("%.40q: ParseLookupIn a.%q = %#v, Lookup = %#v", body, keys[k], gotIn[k], wantIn[k])
		}
	}
}

func TestParseObjectErrors(t *testing.T) {
	for _, body := range hooktest.FuzzBodies {
		_, got := hook.ParseObject([]byte(body))
		_, want := hook.Object([]byte(body))
		if (got == nil) != (want == nil) || got != nil && got.Error() != want.Error() {
			t.Errorf("ParseObject(%.40q) = %v; Object gives %v", body, got, want)
		}
	}
}

// FuzzRead checks the in-place readers against encoding/json (the legacy
// readers in hooktest): ParseObject and ValidObject refuse exactly what
// Object and the legacy ValidObject refuse, with the same message, and on
// an accepted body Get, String, Member and LookupFold agree with the
// legacy readers for every key, at the top level and inside every member
// object one level down (where the connectors read build.phase,
// result.sys_class_name and a field's value member). The connectors'
// Classify functions are these readers and their own rules; the rules are
// pinned by each connector's table tests.
func FuzzRead(f *testing.F) {
	for _, b := range hooktest.FuzzBodies {
		f.Add([]byte(b))
		f.Add([]byte(`{"a":` + b + `}`))
		f.Add([]byte(`{"a":{"value":` + b + `},"a":{"b":` + b + `}}`))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) <= 20000 && strings.Count(string(body), "[")+strings.Count(string(body), "{") <= 10000 {
			if g, j := gjson.ValidBytes(body), json.Valid(body); g != j {
				t.Fatalf("gjson.ValidBytes = %v, json.Valid = %v", g, j)
			}
		}
		sameErr(t, "ValidObject", hook.ValidObject(body), hooktest.LegacyValidObject(body))
		obj, err := hook.ParseObject(body)
		m, merr := hook.Object(body)
		sameErr(t, "ParseObject", err, merr)
		if err != nil {
			return
		}
		sameReads(t, "", obj, body, m, 1)
		// ParseLookup finds in its one pass what Lookup finds after
		// ParseObject.
		keys := []string{"a", "b", "value", ""}
		var want, got [4]gjson.Result
		hook.Lookup(obj, want[:], keys...)
		if _, err := hook.ParseLookup(body, got[:], keys...); err != nil {
			t.Fatalf("ParseLookup: %v after ParseObject accepted the body", err)
		}
		for k := range keys {
			if got[k].Raw != want[k].Raw || got[k].Type != want[k].Type || got[k].Str != want[k].Str {
				t.Fatalf("ParseLookup %q = %#v, Lookup = %#v", keys[k], got[k], want[k])
			}
		}
		sameLookupIn(t, body, obj)
	})
}

// sameErr fails t unless two errors are alike in kind and message.
func sameErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if (got == nil) != (want == nil) || got != nil && (got.Error() != want.Error() || core.KindOf(got) != core.KindOf(want)) {
		t.Fatalf("%s: new %v; old %v", what, got, want)
	}
}

// sameReads compares the readers on obj with the legacy readers on raw, the
// same object's text, decoded as m, and recurses depth levels into member
// objects.
func sameReads(t *testing.T, at string, obj gjson.Result, raw []byte, m map[string]json.RawMessage, depth int) {
	t.Helper()
	keys := []string{"a", "A", "value", ""}
	for k := range m {
		if len(keys) == 64 { // each key is a pass over the body
			break
		}
		keys = append(keys, k)
	}
	for _, k := range keys {
		s, ok, err := hook.String(obj, k, "p")
		ws, wok, werr := hooktest.LegacyString(m, k, "p")
		sameErr(t, at+"String "+k, err, werr)
		if s != ws || ok != wok {
			t.Fatalf("%sString(%q) = %q, %v; old %q, %v", at, k, s, ok, ws, wok)
		}
		mo, ok, err := hook.Member(obj, k, "p")
		wm, wok, werr := hooktest.LegacyMember(m, k, "p")
		sameErr(t, at+"Member "+k, err, werr)
		if ok != wok || ok && countMembers(mo) != len(wm) {
			t.Fatalf("%sMember(%q) = %v; old %v (%d members)", at, k, ok, wok, len(wm))
		}
		if v := hook.Get(obj, k); v.Exists() != (m[k] != nil) || v.Exists() && hook.Kind(v) != hook.JSONKind(m[k]) {
			t.Fatalf("%sGet(%q) kind %s; old %s", at, k, hook.Kind(v), hook.JSONKind(m[k]))
		}
		if ok && depth > 0 {
			sameReads(t, at+k+".", mo, m[k], wm, depth-1)
		}
	}
	v, want := hook.LookupFold(obj, "value"), hooktest.LegacyValueMember(raw)
	if v.Exists() != (want != nil) || v.Exists() && hook.Kind(v) != hook.JSONKind(want) {
		t.Fatalf("%sLookupFold(value) = %s %q; old %s %q", at, hook.Kind(v), v.Raw, hook.JSONKind(want), want)
	}
	if v.Type == gjson.String {
		var ws string
		if err := json.Unmarshal(want, &ws); err != nil || hook.Text(v) != ws {
			t.Fatalf("%sText(%s) = %q; old %q (%v)", at, v.Raw, hook.Text(v), ws, err)
		}
	}
}

// countMembers counts the distinct keys of obj, as a decoded map has them.
func countMembers(obj gjson.Result) int {
	seen := map[string]bool{}
	obj.ForEach(func(k, _ gjson.Result) bool {
		var s string
		if err := json.Unmarshal([]byte(k.Raw), &s); err == nil {
			seen[s] = true
		}
		return true
	})
	return len(seen)
}
