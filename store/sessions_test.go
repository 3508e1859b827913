package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/auth"
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
		s := auth.UISession{IDHash: "hash-1", Token: tok, CSRF: "csrf-1", CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}
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
		if err := db.EndSession(ctx, "hash-1", auth.SessionSignedOut, now.Add(6*time.Minute)); err != nil {
			t.Fatal(err)
		}
		// Ended twice (two tabs signing out, or a replica seeing it
		// expire): audited once.
		if err := db.EndSession(ctx, "hash-1", auth.SessionExpired, now.Add(7*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := db.EndSession(ctx, "hash-1", "ui.other", now); !core.IsKind(err, core.KindInvalid) {
			t.Errorf("unknown action: %v", err)
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
		// Sign-ins and endings are in the audit trail, by the person, with
		// no session id or hash in them.
		var audited []string
		for _, action := range []string{"ui.signin", auth.SessionSignedOut, auth.SessionExpired} {
			es, err := db.ListAudit(ctx, core.AuditFilter{Action: action, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				if e.Actor != "token:ana(tok-ui) via ui" || e.Subject != "token:tok-ui" || strings.Contains(string(e.Data), "hash-") {
					t.Errorf("entry %+v", e)
				}
				audited = append(audited, e.Action)
			}
		}
		if want := []string{"ui.signin", "ui.signin", auth.SessionSignedOut}; !slices.Equal(audited, want) {
			t.Errorf("audited %v, want %v", audited, want)
		}
		if brk, _, err := db.VerifyAudit(ctx); err != nil || brk != nil {
			t.Errorf("verify: %+v %v", brk, err)
		}
	})
}

// TestUIReads: the UI's reads — decisions of a release and the latest
// decisions (newest first, without facts), active incidents only.
func TestUIReads(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		req := core.GateRequest{Service: "pay", Environment: "prod", Version: "1"}
		var ids []string
		for i, d := range []core.Decision{core.Wait, core.Allow} {
			dec := core.GateDecision{ID: newID(), ReleaseID: "rel-1", Decision: d, Request: req,
				EvaluatedAt: clock.t.Add(time.Duration(i) * time.Minute), Facts: &core.Facts{}}
			if err := db.SaveDecision(ctx, dec, "ci"); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, dec.ID)
		}
		recent, err := db.RecentDecisions(ctx, 10)
		if err != nil || len(recent) != 2 || recent[0].ID != ids[1] || recent[0].Decision != core.Allow || recent[0].Facts != nil {
			t.Fatalf("recent: %+v %v", recent, err)
		}
		of, err := db.DecisionsForRelease(ctx, "rel-1", 10)
		if err != nil || len(of) != 2 || of[0].ID != ids[1] {
			t.Fatalf("of release: %+v %v", of, err)
		}
		for _, in := range []core.Incident{
			{Source: "itsm", Key: "INC1", Priority: 1, State: core.IncidentOpen, SourceUpdatedAt: clock.t},
			{Source: "itsm", Key: "INC2", Priority: 1, State: core.IncidentResolved, SourceUpdatedAt: clock.t},
		} {
			if _, err := db.UpsertIncident(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
		active, err := db.ActiveIncidents(ctx)
		if err != nil || len(active) != 1 || active[0].Key != "INC1" {
			t.Fatalf("active: %+v %v", active, err)
		}
	})
}
