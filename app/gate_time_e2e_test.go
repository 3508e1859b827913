package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestLongPollSeesWindowOpen: on the real clock, through the HTTP API, a
// check waiting on an approved change whose window opens ~2 s later is
// answered allow when it opens, well before its 10 s deadline, evaluated
// at that moment.
func TestLongPollSeesWindowOpen(t *testing.T) {
	s := boot(t, "postgres", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	rec := change("CHG7001", core.ApprovalApproved, time.Now().UTC())
	opens := time.Now().UTC().Add(2 * time.Second)
	rec["planned_start"] = opens
	s.sendWebhook(rec)
	s.waitFor("the change", func() bool { return s.changeState("CHG7001") == "approved" })

	began := time.Now()
	var a struct {
		gateAnswer
		EvaluatedAt time.Time `json:"evaluated_at"`
	}
	req := map[string]any{"service": "payments-api", "environment": "production", "version": "7.0.0", "changes": []string{"CHG7001"}}
	if st := s.do("POST", "/api/v1/gate/check?wait=10s", ci, req, &a); st != http.StatusOK {
		t.Fatalf("status %d", st)
	}
	took := time.Since(began)
	if a.Decision != "allow" || took > 6*time.Second || a.EvaluatedAt.Before(opens.Truncate(time.Microsecond)) {
		t.Fatalf("answered %s (%s) after %v, evaluated at %v; the window opened at %v", a.Decision, a.codes(), took, a.EvaluatedAt, opens)
	}
}
