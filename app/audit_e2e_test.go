package app_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

// TestEditedDecisionFailsVerification: a deny flipped to allow in the
// database (column and document) fails GET /api/v1/audit/verify, which
// names the decision; GET /api/v1/audit/head gives auditors the anchor.
func TestEditedDecisionFailsVerification(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			s := boot(t, dialect, "")
			ci, _ := s.token(core.RoleCI)
			auditor, _ := s.token(core.RoleAuditor)
			a := s.check(ci, "", map[string]any{"service": "nochange-svc", "environment": "production", "version": "1.0.0"})
			if a.Decision != "deny" {
				t.Fatalf("decision %s, want deny", a.Decision)
			}
			type verify struct {
				OK    bool             `json:"ok"`
				Rows  int64            `json:"rows"`
				Break *core.AuditBreak `json:"break"`
			}
			var v verify
			if st := s.do("GET", "/api/v1/audit/verify", auditor, nil, &v); st != http.StatusOK || !v.OK {
				t.Fatalf("before the edit: %d %+v", st, v)
			}
			var head core.AuditHead
			if st := s.do("GET", "/api/v1/audit/head", auditor, nil, &head); st != http.StatusOK || head.Seq != v.Rows || len(head.Hash) != 64 {
				t.Fatalf("head: %d %+v (verify saw %d rows)", st, head, v.Rows)
			}
			if _, err := s.app.DB.SQLX().ExecContext(context.Background(), s.app.DB.SQLX().Rebind(
				`UPDATE gate_decisions SET decision = 'allow', doc = replace(doc, '"decision":"deny"', '"decision":"allow"') WHERE id = ?`), a.DecisionID); err != nil {
				t.Fatal(err)
			}
			v = verify{}
			if st := s.do("GET", "/api/v1/audit/verify", auditor, nil, &v); st != http.StatusOK || v.OK || v.Break == nil || v.Break.DecisionID != a.DecisionID {
				t.Fatalf("after the edit: %d %+v %+v", st, v, v.Break)
			}
		})
	}
}

// TestVerifyHeldToAHeadKeptOutside: the newest rows of the chain deleted
// with their decisions leave a chain that verifies on its own; held to the
// head an auditor kept (?expect_head=SEQ:HASH) it does not. A value that
// is no head is refused.
func TestVerifyHeldToAHeadKeptOutside(t *testing.T) {
	s := boot(t, "sqlite", "")
	ci, _ := s.token(core.RoleCI)
	auditor, _ := s.token(core.RoleAuditor)
	s.check(ci, "", map[string]any{"service": "nochange-svc", "environment": "production", "version": "1.0.0"})
	last := s.check(ci, "", map[string]any{"service": "nochange-svc", "environment": "production", "version": "1.0.1"})
	var head core.AuditHead
	if st := s.do("GET", "/api/v1/audit/head", auditor, nil, &head); st != http.StatusOK {
		t.Fatalf("head: %d", st)
	}
	type verify struct {
		OK    bool             `json:"ok"`
		Break *core.AuditBreak `json:"break"`
	}
	anchor := "/api/v1/audit/verify?expect_head=" + fmt.Sprintf("%d:%s", head.Seq, head.Hash)
	var v verify
	if st := s.do("GET", anchor, auditor, nil, &v); st != http.StatusOK || !v.OK {
		t.Fatalf("held to its own head: %d %+v", st, v)
	}
	ctx := context.Background()
	db := s.app.DB.SQLX()
	for _, q := range []string{`DELETE FROM audit_log WHERE seq = ?`, `DELETE FROM gate_decisions WHERE id = ?`} {
		arg := any(head.Seq)
		if q != `DELETE FROM audit_log WHERE seq = ?` {
			arg = last.DecisionID
		}
		if _, err := db.ExecContext(ctx, db.Rebind(q), arg); err != nil {
			t.Fatal(err)
		}
	}
	v = verify{}
	if st := s.do("GET", "/api/v1/audit/verify", auditor, nil, &v); st != http.StatusOK || !v.OK {
		t.Fatalf("the cut chain on its own: %d %+v (it verifies: nothing in it is broken)", st, v)
	}
	v = verify{}
	if st := s.do("GET", anchor, auditor, nil, &v); st != http.StatusOK || v.OK || v.Break == nil {
		t.Fatalf("the cut chain held to the head kept outside: %d %+v, want broken", st, v)
	}
	if st := s.do("GET", "/api/v1/audit/verify?expect_head=nothex", auditor, nil, nil); st != http.StatusBadRequest {
		t.Fatalf("a made-up head: %d, want 400", st)
	}
}
