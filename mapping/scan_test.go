package mapping

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/tollgate-dev/tollgate/internal/jsonscan"
)

// snSeed has the shape of a ServiceNow Change Management API response.
const snSeed = `{"result": {"number": {"display_value": "CHG1", "value": "CHG1"}, "state": {"display_value": "New", "value": -5},
 "x": {"display_value": "", "value": ""}, "cmdb_ci": {"display_value": "a, b", "value": "c", "link": "d"}}}`

// pad is trailing whitespace that makes flat remember the keys of short
// payloads too (it remembers a key only when 32 bytes from its start are
// in the payload).
const pad = "                                        "

// TestScanMutations breaks the ServiceNow fixture, whose objects repeat the
// same members, in many ways: the scan must reject exactly what gjson
// rejects and otherwise index it as the general way reads it.
func TestScanMutations(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "fixtures", "servicenow", "sn_chg_rest.get_change.response.json"))
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		t.Fatal(err)
	}
	ps, err := LoadDir(os.DirFS(filepath.Join("..", "config", "mappings")))
	if err != nil {
		t.Fatal(err)
	}
	var sn *Compiled
	for _, c := range ps {
		if c.Name() == "servicenow-change" {
			sn = c
		}
	}
	if sn == nil {
		t.Fatal("no servicenow-change profile")
	}
	const alphabet = "\"{}[]:, \n\t\\ae0.-\x01\x7f\xff"
	r := rand.New(rand.NewPCG(1, 2))
	for _, base := range [][]byte{b, compact.Bytes()} {
		for n := range 1500 {
			m := append([]byte(nil), base...)
			for range 1 + r.IntN(2) {
				at := r.IntN(len(m))
				switch r.IntN(4) {
				case 0: // replace a byte
					m[at] = alphabet[r.IntN(len(alphabet))]
				case 1: // delete one
					m = append(m[:at], m[at+1:]...)
				case 2: // insert one
					m = append(m[:at], append([]byte{alphabet[r.IntN(len(alphabet))]}, m[at:]...)...)
				case 3: // cut the payload short
					m = m[:at]
				}
			}
			if got, want := jsonscan.Valid(m), gjson.ValidBytes(m); got != want {
				t.Fatalf("mutation %d: jsonscan.Valid = %v, gjson.ValidBytes = %v for\n%s", n, got, want, m)
			}
			if n%5 == 0 {
				checkSameDoc(t, sn, m)
			}
		}
	}
}

// FuzzObjectGet checks the direct member lookup against gjson's Get.
func FuzzObjectGet(f *testing.F) {
	for _, c := range []string{
		`{"display_value":"Standard","value":"standard"}`, `{"value":1.50,"value":2}`, `{"a":{"value":[1,{"b":"}"}]},"value":null}`,
		`{"v\u0061lue":1,"value":2}`, `{"name":"x\"y","value":"z"}`, `{}`, `[1]`, `"value"`, ` { "value" : true } `, `{"value":"a\\"}`,
	} {
		f.Add(c, "value")
		f.Add(c, "name")
	}
	f.Fuzz(func(t *testing.T, raw, key string) {
		if !gjson.Valid(raw) || !simpleKey(key) || strings.Contains(key, ".") {
			return
		}
		r := gjson.Parse(raw)
		got, want := objectGet(r, key), r.Get(key)
		if got.Type != want.Type || got.Raw != want.Raw || got.Str != want.Str || got.Num != want.Num {
			t.Fatalf("objectGet(%q, %q) = %#v, gjson = %#v", raw, key, got, want)
		}
	})
}

// generalDoc finds the record the general way (gjson.Get of the envelope,
// then one ForEach over the record), as Apply does when scanRecord cannot.
func generalDoc(c *Compiled, payload []byte) (doc, error) {
	r, err := record(string(payload), c.unwrap)
	if err != nil {
		return doc{}, err
	}
	d := doc{raw: r.Raw, slots: make([]gjson.Result, c.topCount)}
	r.ForEach(func(k, v gjson.Result) bool {
		if i, ok := c.topKeys[k.Str]; ok && !d.slots[i].Exists() {
			d.slots[i] = v
		}
		return true
	})
	return d, nil
}

// checkSameDoc fails when the single pass reads any of the profile's paths
// differently from the general way.
func checkSameDoc(t *testing.T, c *Compiled, payload []byte) {
	t.Helper()
	var fast doc
	valid, handled := c.scanRecord(payload, &fast)
	if valid != gjson.ValidBytes(payload) {
		t.Fatalf("%s: valid = %v", c.Name(), valid)
	}
	if !valid || !handled {
		return
	}
	slow, err := generalDoc(c, payload)
	if err != nil {
		t.Fatalf("%s: scanRecord handled a payload the general way rejects: %v", c.Name(), err)
	}
	var paths []cpath
	for _, f := range c.fields {
		paths = append(paths, f.paths...)
		for _, w := range f.when {
			paths = append(paths, w.path)
		}
	}
	for _, p := range paths {
		got, want := fast.get(p), slow.get(p)
		if got.Type != want.Type || got.Raw != want.Raw || got.Str != want.Str || got.Num != want.Num {
			t.Fatalf("%s: path %s: single pass %#v, general %#v", c.Name(), p.raw, got, want)
		}
	}
}

func fuzzProfiles(t testing.TB) []*Compiled {
	t.Helper()
	var out []*Compiled
	for _, unwrap := range []string{"", "result", "result.x"} {
		// Only plain first keys (the record's text is not kept), and not.
		for _, extra := range [][]string{nil, {"a.#", "x\\.y"}} {
			c, err := Compile(&Profile{Name: "scan", Kind: KindChange, Unwrap: unwrap, Fields: map[string]*FieldSpec{
				"key":      {Paths: append([]string{"number", "number.value", "a.b"}, extra...)},
				"title":    {Path: "short_description.display_value", When: []Condition{{Path: "state", Exists: ptr(true)}}},
				"services": {Paths: []string{"cmdb_ci.display_value", "cmdb_ci", "result"}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func TestScanRecordMatchesGeneral(t *testing.T) {
	var payloads [][]byte
	_ = filepath.WalkDir(filepath.Join("testdata", "fixtures"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, ".json") {
			b, _ := os.ReadFile(p)
			payloads = append(payloads, b)
		}
		return nil
	})
	for _, s := range []string{`{"result":{"number":"1","number":"2"}}`, `{"number":1,"result":"x"}`, `{"res\u0075lt":{"n\u0075mber":"x"},"result":{"number":"y"}}`,
		`{"number":{"value":3.0}}`, `  {"number":"1"}  `, `[{"number":1}]`, `{"result":[{"number":1}]}`, `{"result":[]}`, `{"result":{}}`} {
		payloads = append(payloads, []byte(s))
	}
	profiles := fuzzProfiles(t)
	ps, err := LoadDir(os.DirFS(filepath.Join("..", "config", "mappings")))
	if err != nil {
		t.Fatal(err)
	}
	profiles = append(profiles, ps...)
	for _, b := range payloads {
		for _, c := range profiles {
			checkSameDoc(t, c, b)
		}
	}
}

// FuzzScanRecord checks the single pass against the general way.
func FuzzScanRecord(f *testing.F) {
	for _, s := range []string{`{"result":{"number":"1","cmdb_ci":{"display_value":"a","value":"b"}}}`, `{"number":{"value":3.0},"a":{"b":1}}`, `{"result":[{"number":1}]}`,
		"{\n        \"result\": {\n          \"number\" :\t\"1\"\r\n   ,\"state\":\n\n 3.0 \n}\n}\n", "{\n  \"number\":   \n\t\"2\"\n        \n}        "} {
		f.Add([]byte(s))
	}
	profiles := fuzzProfiles(f)
	f.Add([]byte(snSeed))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, c := range profiles {
			checkSameDoc(t, c, b)
			checkSameDoc(t, c, append(b[:len(b):len(b)], pad...))
		}
	})
}
