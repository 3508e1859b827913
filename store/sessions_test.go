package store

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestUISessions: a session is found by its id hash with its token until
// it is ended or its token revoked; touching moves last_seen_at.
func TestUISessions(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		tok := core.Token{ID: "tok-ui", Name: "ana", Role: core.RoleChangeManager, Hash: "h-ui"}
		if err := db.CreateToken(ctx, tok, "admin"); err != nil {
			t.Fatal(err)
		}
		now := clock.t
		s := UISession{IDHash: "hash-1", Token: tok, CSRF: "csrf-1", CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := db.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		got, err := db.Session(ctx, "hash-1")
		if err != nil || got.Token.ID != "tok-ui" || got.Token.Role != core.RoleChangeManager || got.CSRF != "csrf-1" ||
			!got.ExpiresAt.Equal(now.Add(time.Hour)) || !got.CreatedAt.Equal(now) {
			t.Fatalf("session: %+v %v", got, err)
		}
		if err := db.TouchSession(ctx, "hash-1", now.Add(5*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.Session(ctx, "hash-1"); !got.LastSeenAt.Equal(now.Add(5 * time.Minute)) {
			t.Errorf("touched: last seen %v", got.LastSeenAt)
		}
		if _, err := db.Session(ctx, "hash-unknown"); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("unknown: %v", err)
		}
		if err := db.EndSession(ctx, "hash-1", now.Add(6*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Session(ctx, "hash-1"); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("ended session still found: %v", err)
		}
		s.IDHash = "hash-2"
		if err := db.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		if err := db.RevokeToken(ctx, tok.ID, "admin", now); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Session(ctx, "hash-2"); !core.IsKind(err, core.KindNotFound) {
			t.Errorf("session of a revoked token found: %v", err)
		}
	})
}
