package migrations

import (
	"io/fs"
	"slices"
	"testing"
)

// TestVersions: both dialects hold the same numbered migrations, the
// additive ones among them, and the floor is one of them.
func TestVersions(t *testing.T) {
	vs, err := Versions()
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 || vs[0] != 1 {
		t.Fatalf("versions %v: want them from 1", vs)
	}
	for _, d := range []string{"postgres", "sqlite"} {
		entries, err := fs.ReadDir(files, d)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(vs) {
			t.Errorf("%s has %d migrations, postgres %d", d, len(entries), len(vs))
		}
	}
	for v := range additive {
		if !slices.Contains(vs, v) {
			t.Errorf("additive migration %d does not exist", v)
		}
	}
	if !slices.Contains(vs, FloorSince) {
		t.Errorf("FloorSince %d is no migration", FloorSince)
	}
	floor, err := OldestReader()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(vs, floor) || additive[floor] || floor < FloorSince-1 {
		t.Errorf("OldestReader %d: want the newest migration not additive", floor)
	}
}
