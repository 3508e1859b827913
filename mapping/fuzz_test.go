package mapping_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/mapping"
)

// FuzzApply feeds arbitrary payloads through every default profile and
// through a profile built from fuzzed paths, transforms and maps. Nothing
// may panic (Apply recovers, so an "internal mapping error" also fails).
func FuzzApply(f *testing.F) {
	_ = filepath.WalkDir(filepath.Join("testdata", "fixtures"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, ".json") {
			b, _ := os.ReadFile(p)
			f.Add(b, "result.state", "number", uint8(3), ",", "([0-9]+)", "3")
		}
		return nil
	})
	f.Add([]byte(`{"a":{"value":{"value":{"value":{"value":{"value":1}}}}}}`), "a", "a.#", uint8(7), "", "(", "")
	f.Add([]byte(`{"a":[[1],[2]]}`), "a|@flatten", "a.#(b==1)", uint8(12), ".", "x", "y")
	set := defaultSet(f)
	transforms := []string{"trim", "lower", "upper", "split", "join", "first", "regex", "time", "unix_seconds", "unix_ms", "minus_ms", "bool", "int", "present", "nope"}
	kinds := []struct{ kind, field string }{
		{"change", "state"}, {"change", "services"}, {"change", "planned_start"}, {"change", "has_backout_plan"},
		{"incident", "priority"}, {"incident", "major"}, {"deployment", "started_at"}, {"deployment", "changes"},
		{"pir", "status"}, {"change", "approvals"},
	}
	f.Fuzz(func(t *testing.T, payload []byte, path1, path2 string, sel uint8, sep, pattern, mapKey string) {
		check := func(res mapping.Result) {
			for _, e := range res.Errors {
				if strings.Contains(e.Message, "internal mapping error") {
					t.Fatalf("panic recovered: %s", e.Message)
				}
			}
			if res.Record == nil {
				t.Fatal("nil record")
			}
		}
		for _, c := range set.Profiles() {
			_ = c.Matches("github", "deployment", payload)
			check(c.Apply(payload))
			sameAsApply(t, c, payload)
		}
		k := kinds[int(sel)%len(kinds)]
		tr := mapping.Transform{Name: transforms[int(sel/8)%len(transforms)], Sep: sep, Pattern: pattern, Layouts: []string{pattern}}
		if tr.Name != "split" && tr.Name != "join" {
			tr.Sep = ""
		}
		if tr.Name != "regex" {
			tr.Pattern = ""
		}
		if tr.Name != "time" {
			tr.Layouts = nil
		}
		chain := []mapping.Transform{tr}
		if tr.Name == "minus_ms" { // takes a time: the duration at path2 off the one at path1
			tr.Path = path2
			chain = []mapping.Transform{{Name: "unix_ms"}, tr}
		}
		spec := &mapping.FieldSpec{Paths: []string{path1, path2}, Transform: chain}
		if sel%2 == 0 {
			spec.Map = map[string]string{mapKey: "closed"}
			spec.Unmapped = "keep"
		}
		if k.field == "approvals" {
			spec = &mapping.FieldSpec{Path: path1, Each: map[string]*mapping.FieldSpec{"approver": {Path: path2}, "at": {Path: "at", Transform: []mapping.Transform{{Name: "unix_ms"}}}}}
		}
		p := &mapping.Profile{
			Name:   "fuzz",
			Kind:   k.kind,
			Unwrap: "result",
			Match:  mapping.Match{When: []mapping.Condition{{Path: path2, Matches: pattern}}},
			Fields: map[string]*mapping.FieldSpec{k.field: spec},
		}
		c, err := mapping.Compile(p)
		if err != nil {
			return
		}
		_ = c.Matches("", "", payload)
		check(c.Apply(payload))
		sameAsApply(t, c, payload)
	})
}

// sameAsApply fails when ApplyFast's result differs from Apply's other than
// by the traces.
func sameAsApply(t *testing.T, c *mapping.Compiled, payload []byte) {
	t.Helper()
	full, fast := c.Apply(payload), c.ApplyFast(payload)
	if fast.Fields != nil {
		t.Fatal("ApplyFast kept traces")
	}
	full.Fields = nil
	if !reflect.DeepEqual(full, fast) {
		t.Fatalf("%s: ApplyFast differs from Apply:\nApply:     %+v\nApplyFast: %+v", c.Name(), full, fast)
	}
}

// TestApplyFastMatchesApply maps every fixture through every default
// profile both ways.
func TestApplyFastMatchesApply(t *testing.T) {
	set := defaultSet(t)
	n := 0
	err := filepath.WalkDir(filepath.Join("testdata", "fixtures"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(p, ".json") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, c := range set.Profiles() {
			sameAsApply(t, c, b)
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no fixtures")
	}
}
