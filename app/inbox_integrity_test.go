package app_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

const authoritySecret = "authority-webhook-secret-0123456789"

// authorityConfig has an ITSM connector, a generic connector as every CI
// pipeline may hold its secret, and a generic connector granted changes.
var authorityConfig = fmt.Sprintf(`
connectors:
  - {name: servicenow, type: servicenow, webhook_secret: %[1]s}
  - {name: pipelines, type: generic, webhook_secret: %[1]s}
  - {name: granted, type: generic, webhook_secret: %[1]s, records: [changes]}
inbox:
  poll_interval: 50ms
`, authoritySecret)

// hook posts body to a connector signed with X-Tollgate-Signature (the
// servicenow and generic scheme) and returns the status and event id.
func (s *server) hook(connector string, body []byte) (int, string) {
	s.t.Helper()
	mac := hmac.New(sha256.New, []byte(authoritySecret))
	mac.Write(body)
	req, _ := http.NewRequest("POST", s.url+"/webhooks/"+connector, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tollgate-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		EventID string `json:"event_id"`
	}
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out.EventID
}

// mustHook is hook that fails the test unless the delivery is accepted.
func (s *server) mustHook(connector string, body []byte) string {
	s.t.Helper()
	st, id := s.hook(connector, body)
	if st != http.StatusAccepted || id == "" {
		s.t.Fatalf("webhook %s: status %d", connector, st)
	}
	return id
}

// settled waits until the event is no longer pending and returns it.
func (s *server) settled(id string) core.Event {
	s.t.Helper()
	var e core.Event
	s.waitFor("event "+id+" to be settled", func() bool {
		// The event itself, or {"event": …, "body_text": …} when its body
		// is not valid JSON or UTF-8.
		var raw json.RawMessage
		if s.do("GET", "/api/v1/events/"+id, adminSecret, nil, &raw) != http.StatusOK {
			return false
		}
		var w struct {
			Event *core.Event `json:"event"`
		}
		e = core.Event{}
		if err := json.Unmarshal(raw, &w); err == nil && w.Event != nil {
			e = *w.Event
		} else if err := json.Unmarshal(raw, &e); err != nil {
			s.t.Fatalf("event %s: %v", id, err)
		}
		return e.Status != core.EventPending
	})
	return e
}

const snTime = "2006-01-02 15:04:05"

// snChange is a ServiceNow change_request webhook body (Table API shape)
// for service, in its planned window, with the given approval and
// sys_updated_on.
func snChange(key, service, approval string, updated time.Time) []byte {
	now := time.Now().UTC()
	b, _ := json.Marshal(map[string]any{"result": map[string]any{
		"sys_class_name": "change_request", "number": key, "type": "normal", "state": "-2", "approval": approval,
		"start_date": now.Add(-time.Hour).Format(snTime), "end_date": now.Add(3 * time.Hour).Format(snTime),
		"cmdb_ci": service, "risk_impact_analysis": "low", "backout_plan": "roll back",
		"sys_updated_on": updated.UTC().Format(snTime),
	}})
	return b
}

// genericChange is a canonical change as a generic connector receives it.
func genericChange(key, service string, approval core.ApprovalState, updated time.Time) []byte {
	rec := change(key, approval, updated)
	rec["kind"], rec["services"] = "change", []string{service}
	b, _ := json.Marshal(rec)
	return b
}

func gateReq(service, version string, changes ...string) map[string]any {
	return map[string]any{"service": service, "environment": "production", "version": version, "changes": changes}
}

// Source authority (both stores): the generic connector, whose secret every
// CI pipeline holds, cannot create or approve a change, nor overwrite an
// ITSM's; a connector granted changes can create its own, never another
// source's; a stamp far in the future is refused instead of freezing the
// record. Every refusal quarantines the event with its reason.
func TestSourceAuthority(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			s := boot(t, dialect, authorityConfig)
			ci, _ := s.token(core.RoleCI)
			now := time.Now().UTC()

			// A CI secret cannot approve a change: quarantined, not allowed.
			e := s.settled(s.mustHook("pipelines", genericChange("CHG0031337", "forge-svc", core.ApprovalApproved, now)))
			if e.Status != core.EventQuarantined || !strings.Contains(e.Reason, `connector "pipelines" (type generic) may not write changes`) {
				t.Fatalf("generic change: %s %q, want quarantined by source authority", e.Status, e.Reason)
			}
			if st := s.do("GET", "/api/v1/changes/CHG0031337", adminSecret, nil, nil); st != http.StatusNotFound {
				t.Fatalf("change from generic: status %d, want 404", st)
			}
			if a := s.check(ci, "", gateReq("forge-svc", "1.0.0", "CHG0031337")); a.Decision == "allow" {
				t.Fatalf("gate allowed a change only a CI secret vouched for: %+v", a)
			}

			// An ITSM change cannot be overwritten by another source.
			e = s.settled(s.mustHook("servicenow", snChange("CHG0040001", "pay-svc", "requested", now.Add(-30*time.Minute))))
			if e.Status != core.EventProcessed {
				t.Fatalf("servicenow change: %s %q", e.Status, e.Reason)
			}
			e = s.settled(s.mustHook("pipelines", genericChange("CHG0040001", "pay-svc", core.ApprovalApproved, now)))
			if e.Status != core.EventQuarantined || !strings.Contains(e.Reason, "may not write changes") {
				t.Fatalf("generic overwrite: %s %q", e.Status, e.Reason)
			}
			e = s.settled(s.mustHook("granted", genericChange("CHG0040001", "pay-svc", core.ApprovalApproved, now)))
			if e.Status != core.EventQuarantined || !strings.Contains(e.Reason, `belongs to source "servicenow"`) {
				t.Fatalf("granted overwrite of another source's change: %s %q", e.Status, e.Reason)
			}
			if got := s.changeState("CHG0040001"); got != string(core.ApprovalRequested) {
				t.Fatalf("servicenow change approval is %q after foreign writes, want requested", got)
			}

			// A stamp in 2099 is refused; the ITSM's later update still lands.
			e = s.settled(s.mustHook("servicenow", snChange("CHG0040001", "pay-svc", "approved", time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))))
			if e.Status != core.EventQuarantined || !strings.Contains(e.Reason, "in the future") {
				t.Fatalf("2099 stamp: %s %q, want quarantined", e.Status, e.Reason)
			}
			e = s.settled(s.mustHook("servicenow", snChange("CHG0040001", "pay-svc", "rejected", now.Add(-time.Minute))))
			if e.Status != core.EventProcessed || s.changeState("CHG0040001") != string(core.ApprovalRejected) {
				t.Fatalf("later ITSM update: %s %q, approval %q", e.Status, e.Reason, s.changeState("CHG0040001"))
			}

			// A granted connector writes its own changes.
			e = s.settled(s.mustHook("granted", genericChange("CHG0050001", "grant-svc", core.ApprovalApproved, now)))
			if e.Status != core.EventProcessed {
				t.Fatalf("granted change: %s %q", e.Status, e.Reason)
			}
			if a := s.check(ci, "", gateReq("grant-svc", "1.0.0", "CHG0050001")); a.Decision != "allow" {
				t.Fatalf("granted change: %s %s", a.Decision, a.codes())
			}
		})
	}
}

// A poisoned delivery (a record key holding NUL or a raw 0xFF) stalls
// nothing: it is quarantined with the reason, the good deliveries behind
// it are normalized, no event is left pending; the same bytes in a URL
// path answer 404. Before, on PostgreSQL, the poisoned event could be
// neither stored nor quarantined, the normalizer's batch aborted, and every
// event claimed with it stayed pending.
func TestPoisonedDeliveryStallsNothing(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			s := boot(t, dialect, authorityConfig)
			poison := []string{
				`{"result":{"sys_class_name":"change_request","number":"PZQ\u000000040","state":"-5","sys_updated_on":"2026-11-24 10:00:00"}}`,
				"{\"result\":{\"sys_class_name\":\"change_request\",\"number\":\"PZQ\xff\xfe00041\",\"state\":\"-5\",\"sys_updated_on\":\"2026-11-24 10:00:00\"}}",
				`{"result":{"sys_class_name":"change_request","number":"CHG0041009","short_description":"nul\u0000inside","state":"-5","sys_updated_on":"2026-11-24 10:00:00"}}`,
			}
			var bad []string
			for _, p := range poison {
				bad = append(bad, s.mustHook("servicenow", []byte(p)))
			}
			for i := 1; i <= 3; i++ {
				s.mustHook("servicenow", []byte(fmt.Sprintf(`{"result":{"sys_class_name":"change_request","number":"CHG004100%d","state":"-5","sys_updated_on":"2026-11-24 10:00:00"}}`, i)))
			}
			// An event type the inbox cannot index is refused at the door.
			if st, _ := s.hook("servicenow", []byte(`{"result":{"sys_class_name":"change\u0000request","number":"CHG0041008"}}`)); st != http.StatusBadRequest {
				t.Errorf("NUL in the event type: status %d, want 400", st)
			}
			s.waitFor("the good changes behind the poison", func() bool {
				return s.do("GET", "/api/v1/changes/CHG0041001", adminSecret, nil, nil) == 200 &&
					s.do("GET", "/api/v1/changes/CHG0041003", adminSecret, nil, nil) == 200
			})
			for i, id := range bad[:2] {
				if e := s.settled(id); e.Status != core.EventQuarantined || !strings.Contains(e.Reason, "NUL byte or invalid UTF-8") {
					t.Errorf("poison %d: %s %q, want quarantined naming the bytes", i, e.Status, e.Reason)
				}
			}
			// The raw body is kept byte for byte; the API shows a body that is
			// not UTF-8 as base64, in a response that stays valid JSON.
			var raw struct {
				Event      core.Event `json:"event"`
				BodyBase64 string     `json:"body_base64"`
			}
			if st := s.do("GET", "/api/v1/events/"+bad[1], adminSecret, nil, &raw); st != 200 || raw.Event.ID != bad[1] {
				t.Fatalf("event with a 0xFF body: %d %+v", st, raw.Event)
			}
			if b, err := base64.StdEncoding.DecodeString(raw.BodyBase64); err != nil || string(b) != poison[1] {
				t.Errorf("body_base64 %q (%v), want the exact bytes sent", raw.BodyBase64, err)
			}
			// Free text with a NUL is stored, made valid.
			if e := s.settled(bad[2]); e.Status != core.EventProcessed {
				t.Errorf("NUL in a title: %s %q, want processed", e.Status, e.Reason)
			}
			var pending struct{ Items []core.Event }
			s.waitFor("no pending event", func() bool {
				return s.do("GET", "/api/v1/events?status=pending", adminSecret, nil, &pending) == 200 && len(pending.Items) == 0
			})
			for _, path := range []string{"/api/v1/changes/%FF%FE", "/api/v1/changes/%00", "/api/v1/incidents/%00", "/api/v1/incidents/%FF",
				"/api/v1/events/%FF%FE", "/api/v1/events/%00"} {
				if st := s.do("GET", path, adminSecret, nil, nil); st != http.StatusNotFound {
					t.Errorf("GET %s: %d, want 404", path, st)
				}
			}
			for _, path := range []string{"/api/v1/events?connector=%FF", "/api/v1/events?after=%00"} {
				if st := s.do("GET", path, adminSecret, nil, nil); st != http.StatusBadRequest {
					t.Errorf("GET %s: %d, want 400", path, st)
				}
			}
			// Elsewhere too, such bytes are a client error (or, in a list
			// filter, match nothing), never a 500.
			for _, r := range []struct {
				method, path string
				list         bool
			}{
				{"GET", "/api/v1/gate/decisions/%FF%FE", false}, {"GET", "/api/v1/mappings/%00", false}, {"DELETE", "/api/v1/tokens/%FF", false},
				{"POST", "/api/v1/events/%FF/replay", false}, {"POST", "/webhooks/%FF", false},
				{"GET", "/api/v1/releases?service=%FF", true}, {"GET", "/api/v1/deployments?environment=%00", true}, {"GET", "/api/v1/audit?subject=%FF", true},
			} {
				st := s.do(r.method, r.path, adminSecret, nil, nil)
				if st >= 500 || (!r.list && st < 400) {
					t.Errorf("%s %s: %d, want 4xx", r.method, r.path, st)
				}
			}
		})
	}
}

// TestGenericDeliveryNoProfileMatches: every generic delivery is sent for
// tollgate to record, so one that no profile matches (a canonical
// deployment without its provider or run_id) is quarantined with a reason
// naming what the profiles recognize — not ignored as a GitHub push is.
func TestGenericDeliveryNoProfileMatches(t *testing.T) {
	s := boot(t, "sqlite", authorityConfig)
	body := []byte(`{"service":"payments","environment":"production","version":"1.4.2","status":"succeeded","started_at":"2026-01-05T09:12:00Z","run_id":"88"}`)
	e := s.settled(s.mustHook("pipelines", body))
	if e.Status != core.EventQuarantined || !strings.Contains(e.Reason, "every generic delivery is meant to be recorded") ||
		!strings.Contains(e.Reason, "generic-deployment (service present, run_id present, provider present)") {
		t.Fatalf("generic delivery no profile matches: %s %q, want quarantined naming what generic-deployment needs", e.Status, e.Reason)
	}
}
