package store

import (
	"context"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

func TestMappingProfiles(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, _ *testClock) {
		ctx := context.Background()
		put := func(name, src string) int {
			t.Helper()
			v, err := db.PutMapping(ctx, name, src, "alice")
			if err != nil {
				t.Fatalf("put %s: %v", name, err)
			}
			return v
		}
		if v := put("servicenow", "a: 1\n"); v != 1 {
			t.Fatalf("first version %d", v)
		}
		if v := put("servicenow", "a: 2\n"); v != 2 {
			t.Fatalf("second version %d", v)
		}
		put("jira", "j: 1\n")
		put("old", "o: 1\n")
		if err := db.DeleteMapping(ctx, "old", "bob"); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteMapping(ctx, "old", "bob"); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
		if err := db.DeleteMapping(ctx, "never", "bob"); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("delete unknown: %v", err)
		}
		if _, err := db.GetMapping(ctx, "old"); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("get deleted: %v", err)
		}
		got, err := db.GetMapping(ctx, "servicenow")
		if err != nil || got.Version != 2 || got.Source != "a: 2\n" || got.UpdatedBy != "alice" {
			t.Fatalf("get: %+v %v", got, err)
		}
		list, err := db.ListMappings(ctx)
		if err != nil || len(list) != 2 || list[0].Name != "jira" || list[1].Name != "servicenow" || list[1].Version != 2 {
			t.Fatalf("list: %+v %v", list, err)
		}
		vs, err := db.MappingVersions(ctx, "old")
		if err != nil || len(vs) != 2 || vs[0].Deleted || !vs[1].Deleted || vs[1].UpdatedBy != "bob" {
			t.Fatalf("versions: %+v %v", vs, err)
		}
		if _, err := db.MappingVersions(ctx, "never"); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("versions of unknown: %v", err)
		}
		// A deleted profile can come back as a new version.
		if v := put("old", "o: 2\n"); v != 3 {
			t.Fatalf("recreated version %d", v)
		}
		for _, tc := range []struct{ name, src, field string }{
			{"", "a: 1", "name"}, {"has space", "a: 1", "name"}, {"ok", "", "source"},
		} {
			if _, err := db.PutMapping(ctx, tc.name, tc.src, "x"); !core.IsKind(err, core.KindInvalid) {
				t.Errorf("put %q/%q: %v", tc.name, tc.src, err)
			}
		}
		entries, err := db.ListAudit(ctx, core.AuditFilter{Subject: "mapping:old"})
		if err != nil || len(entries) != 3 || entries[1].Action != "mapping.delete" {
			t.Fatalf("audit: %+v %v", entries, err)
		}
		checkLinear(t, db, 6)
	})
}
