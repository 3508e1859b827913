package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

func TestTokens(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		tok := core.Token{ID: "tok-1", Name: "ci", Role: core.RoleCI, Hash: "h1"}
		if err := db.CreateToken(ctx, tok, "admin@example.com"); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			tok  core.Token
			kind core.ErrorKind
		}{
			{"same hash", core.Token{ID: "tok-2", Name: "x", Role: core.RoleCI, Hash: "h1"}, core.KindConflict},
			{"same id", core.Token{ID: "tok-1", Name: "x", Role: core.RoleCI, Hash: "h2"}, core.KindConflict},
			{"bad role", core.Token{ID: "tok-3", Name: "x", Role: "root", Hash: "h3"}, core.KindInvalid},
			{"no hash", core.Token{ID: "tok-4", Name: "x", Role: core.RoleAdmin}, core.KindInvalid},
			{"no name", core.Token{ID: "tok-5", Role: core.RoleAdmin, Hash: "h5"}, core.KindInvalid},
		} {
			if err := db.CreateToken(ctx, tc.tok, "a"); !core.IsKind(err, tc.kind) {
				t.Errorf("%s: got %v, want %s", tc.name, err, tc.kind)
			}
		}
		got, err := db.TokenByHash(ctx, "h1")
		if err != nil || got.ID != "tok-1" || got.Role != core.RoleCI || got.CreatedBy != "admin@example.com" || !got.CreatedAt.Equal(clock.t) || got.RevokedAt != nil {
			t.Fatalf("by hash: %+v %v", got, err)
		}
		if _, err := db.TokenByHash(ctx, "nope"); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("unknown hash: %v", err)
		}
		at := clock.t.Add(time.Hour)
		if err := db.RevokeToken(ctx, "tok-1", "admin@example.com", at); err != nil {
			t.Fatal(err)
		}
		if err := db.RevokeToken(ctx, "tok-1", "admin@example.com", at); !core.IsKind(err, core.KindConflict) {
			t.Fatalf("second revoke: %v", err)
		}
		if err := db.RevokeToken(ctx, "tok-9", "admin@example.com", at); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("unknown revoke: %v", err)
		}
		list, err := db.ListTokens(ctx)
		if err != nil || len(list) != 1 || list[0].RevokedAt == nil || !list[0].RevokedAt.Equal(at) {
			t.Fatalf("list: %+v %v", list, err)
		}
		entries, err := db.ListAudit(ctx, core.AuditFilter{Subject: "token:tok-1"})
		if err != nil || len(entries) != 2 || entries[0].Action != "token.create" || entries[1].Action != "token.revoke" {
			t.Fatalf("audit: %+v %v", entries, err)
		}
		for _, e := range entries {
			if strings.Contains(string(e.Data), "h1") || !strings.Contains(string(e.Data), `"role":"ci"`) {
				t.Errorf("audit data %s", e.Data)
			}
		}
		checkLinear(t, db, 2)
	})
}
