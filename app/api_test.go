package app_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

type errBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Field     string `json:"field"`
		RequestID string `json:"request_id"`
		Details   []struct{ Field, Message string }
	} `json:"error"`
}

// TestBadInputGetsClearErrors: every kind of bad input gets a 4xx with the
// one JSON error shape naming the field, never a 500.
func TestBadInputGetsClearErrors(t *testing.T) {
	s := boot(t, "sqlite", "max_body_bytes: 4096\n"+e2eConfig[1:])
	ci, _ := s.token(core.RoleCI)
	good := `{"service":"payments-api","environment":"production","version":"1.0.0","changes":["CHG1"]}`
	tests := []struct {
		name, method, path, token, body string
		status                          int
		code, field                     string
	}{
		{"malformed JSON", "POST", "/api/v1/gate/check", ci, `{"service":`, 400, "invalid", "body"},
		{"unknown field", "POST", "/api/v1/gate/check", ci, `{"service":"a","enviroment":"production","version":"1"}`, 400, "invalid", "enviroment"},
		{"wrong type", "POST", "/api/v1/gate/check", ci, `{"service":"a","environment":"production","version":"1","changes":"CHG1"}`, 400, "invalid", "changes"},
		{"missing service", "POST", "/api/v1/gate/check", ci, `{"environment":"production","version":"1"}`, 400, "invalid", "service"},
		{"unknown environment", "POST", "/api/v1/gate/check", ci, `{"service":"a","environment":"moon","version":"1"}`, 400, "invalid", "environment"},
		{"malformed key", "POST", "/api/v1/gate/check", ci, `{"service":"a","environment":"production","version":"1","changes":["CHG 1; drop"]}`, 400, "invalid", "changes[0]"},
		{"oversized list", "POST", "/api/v1/gate/check", ci, `{"service":"a","environment":"production","version":"1","changes":["` + strings.Repeat(`C1","`, 60) + `C2"]}`, 400, "invalid", "changes"},
		{"bad wait", "POST", "/api/v1/gate/check?wait=forever", ci, good, 400, "invalid", "wait"},
		{"oversized body", "POST", "/api/v1/gate/check", ci, `{"service":"` + strings.Repeat("a", 5000) + `"}`, 413, "too_large", ""},
		{"no token", "POST", "/api/v1/gate/check", "", good, 401, "unauthorized", ""},
		{"bad token", "POST", "/api/v1/gate/check", "nope", good, 401, "unauthorized", ""},
		{"wrong role", "GET", "/api/v1/tokens", ci, "", 403, "forbidden", ""},
		{"unknown route", "GET", "/api/v1/nothing", ci, "", 404, "not_found", ""},
		{"unknown decision", "GET", "/api/v1/gate/decisions/nope", ci, "", 404, "not_found", ""},
		{"bad deployment status", "POST", "/api/v1/deployments", ci, `{"service":"a","environment":"production","version":"1","status":"done","started_at":"2026-11-27T10:00:00Z","provider":"x","run_id":"1"}`, 400, "invalid", "status"},
		{"bad deployment time", "POST", "/api/v1/deployments", ci, `{"service":"a","environment":"production","version":"1","status":"started","started_at":"yesterday","provider":"x","run_id":"1"}`, 400, "invalid", ""},
		{"invalid policy", "PUT", "/api/v1/policy", adminSecret, "environments:\n  production:\n    rules: [NOPE]\n", 400, "invalid", "environments.production.rules[0]"},
		{"unparsable policy", "PUT", "/api/v1/policy", adminSecret, "environments: [", 400, "invalid", "policy"},
		{"bad token role", "POST", "/api/v1/tokens", adminSecret, `{"name":"x","role":"root"}`, 400, "invalid", "role"},
		{"unknown connector", "POST", "/webhooks/nope", "", `{}`, 404, "not_found", ""},
		{"unsigned webhook", "POST", "/webhooks/itsm", "", `{"key":"CHG1"}`, 401, "unauthorized", ""},
		{"bad event status", "GET", "/api/v1/events?status=lost", adminSecret, "", 400, "invalid", "status"},
		{"NUL in a review summary", "POST", "/api/v1/releases/r1/pir", adminSecret, `{"summary":"ok\u0000"}`, 400, "invalid", "summary"},
		{"review of an unknown release", "POST", "/api/v1/releases/r1/pir", adminSecret, `{"summary":"ok"}`, 404, "not_found", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e errBody
			var body any
			if tt.body != "" {
				body = tt.body
			}
			st := s.do(tt.method, tt.path, tt.token, body, &e)
			if st != tt.status {
				t.Fatalf("status %d, want %d (%+v)", st, tt.status, e)
			}
			if e.Error.Code != tt.code || e.Error.Message == "" || e.Error.RequestID == "" {
				t.Errorf("error body %+v, want code %s with a message and request id", e, tt.code)
			}
			if tt.field != "" && e.Error.Field != tt.field {
				t.Errorf("field %q, want %q (%s)", e.Error.Field, tt.field, e.Error.Message)
			}
		})
	}
	// The invalid policy was not stored.
	var pol struct{ Version int }
	if st := s.do("GET", "/api/v1/policy", adminSecret, nil, &pol); st != 200 || pol.Version != 1 {
		t.Errorf("policy after invalid PUTs: %d version %d, want 1", st, pol.Version)
	}
}

// TestInboxQuarantineAndReplay: an unmappable event is quarantined with its
// reason, visible in the inbox, and processed on replay after the mapping
// is fixed; duplicates are stored once; invalid JSON is refused.
func TestInboxQuarantineAndReplay(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, e2eConfig)
			// A deployment that names no environment: the generic profile
			// requires one.
			dep := map[string]any{"service": "payments-api", "version": "2.0.0", "status": "succeeded",
				"started_at": time.Now().UTC(), "provider": "acme-ci", "run_id": "77"}
			s.sendWebhook(dep)
			s.sendWebhook(dep) // duplicate delivery: stored once

			type eventList struct {
				Items []core.Event `json:"items"`
			}
			var q eventList
			s.waitFor("quarantine", func() bool {
				s.do("GET", "/api/v1/events?status=quarantined", adminSecret, nil, &q)
				return len(q.Items) == 1
			})
			ev := q.Items[0]
			if !strings.Contains(ev.Reason, "environment") || ev.Connector != "itsm" {
				t.Fatalf("quarantined event: %+v", ev)
			}
			var full core.Event
			if st := s.do("GET", "/api/v1/events/"+ev.ID, adminSecret, nil, &full); st != 200 || !strings.Contains(string(full.Body), "payments-api") {
				t.Fatalf("get event: %d %s", st, full.Body)
			}

			// Fix the mapping: default the environment to production.
			fixed := `name: generic-deployment
kind: deployment
match:
  connector_type: generic
  when:
    - {path: service, exists: true}
    - {path: run_id, exists: true}
    - {path: provider, exists: true}
fields:
  service: {path: service, required: true}
  environment: {path: environment, default: production}
  version: {path: version, required: true}
  status: {path: status, required: true}
  started_at: {path: started_at, required: true}
  provider: {path: provider, required: true}
  run_id: {path: run_id, required: true}
`
			if st := s.do("PUT", "/api/v1/mappings/generic-deployment", adminSecret, fixed, nil); st != 200 {
				t.Fatalf("put mapping: %d", st)
			}
			var rep struct{ Replayed int }
			if st := s.do("POST", "/api/v1/events/replay", adminSecret, map[string]string{"connector": "itsm"}, &rep); st != 202 || rep.Replayed != 1 {
				t.Fatalf("replay: %d %+v", st, rep)
			}
			var done eventList
			s.waitFor("processed", func() bool {
				s.do("GET", "/api/v1/events?status=processed", adminSecret, nil, &done)
				return len(done.Items) == 1
			})
			var deps struct {
				Items []core.Deployment `json:"items"`
			}
			if s.do("GET", "/api/v1/deployments?environment=production", adminSecret, nil, &deps); len(deps.Items) != 1 || deps.Items[0].RunID != "77" {
				t.Fatalf("deployments after replay: %+v", deps.Items)
			}

			// The pipeline's own report of the same run fills in the change
			// the webhook did not name: the deployment keeps one record,
			// and the change of its links is audited with who made it.
			ci, ciID := s.token(core.RoleCI)
			dep["environment"], dep["changes"] = "production", []string{"CHG0000077"}
			var reported core.Deployment
			if st := s.do("POST", "/api/v1/deployments", ci, dep, &reported); st != http.StatusOK || reported.ID != deps.Items[0].ID ||
				len(reported.Changes) != 1 {
				t.Fatalf("pipeline report: %d %+v", st, reported)
			}
			var relinks struct {
				Items []core.AuditEntry `json:"items"`
			}
			s.do("GET", "/api/v1/audit?action=deployment.links", adminSecret, nil, &relinks)
			if len(relinks.Items) != 1 || relinks.Items[0].Actor != "token:test-ci("+ciID+")" ||
				relinks.Items[0].Subject != "deployment:"+reported.ID || !strings.Contains(string(relinks.Items[0].Data), `"before":{"changes":[]`) {
				t.Fatalf("relink audit: %+v", relinks.Items)
			}

			// Invalid JSON, even correctly signed, is refused at the door
			// with a reason; nothing is stored.
			if st, body := s.sendRaw([]byte("{not json")); st != http.StatusBadRequest || !strings.Contains(body, "JSON") {
				t.Fatalf("invalid JSON webhook: %d %s", st, body)
			}
			var all eventList
			s.do("GET", "/api/v1/events", adminSecret, nil, &all)
			if len(all.Items) != 1 {
				t.Fatalf("%d events stored, want 1", len(all.Items))
			}
		})
	}
}

// TestPolicyAndMappingAdmin: policy and mapping changes are validated,
// versioned and audited with who did them; preview shows where each field
// came from.
func TestPolicyAndMappingAdmin(t *testing.T) {
	s := boot(t, "postgres", e2eConfig)
	ci, _ := s.token(core.RoleCI)

	pol := "time_zone: Europe/Berlin\nenvironments:\n  production:\n    aliases: [prod]\n    preset: strict\n  qa:\n    preset: open\n"
	var put struct{ Version int }
	if st := s.do("PUT", "/api/v1/policy", adminSecret, pol, &put); st != 200 || put.Version != 2 {
		t.Fatalf("put policy: %d %+v", st, put)
	}
	// The new environment is in force at once.
	if a := s.check(ci, "", map[string]any{"service": "svc", "environment": "qa", "version": "1"}); a.Decision != "allow" {
		t.Fatalf("qa after policy put: %s %s", a.Decision, a.codes())
	}
	var e0 errBody
	if st := s.do("POST", "/api/v1/gate/check", ci, map[string]any{"service": "svc", "environment": "staging", "version": "1"}, &e0); st != 400 || !strings.Contains(e0.Error.Message, "qa") {
		t.Fatalf("staging after the policy dropped it: %d %+v", st, e0)
	}

	// Preview the built-in ServiceNow change profile on the vendor fixture.
	body, err := os.ReadFile("../connectors/servicenow/testdata/sn_chg_rest.get_change.response.json")
	if err != nil {
		t.Fatal(err)
	}
	var prev struct {
		OK     bool                      `json:"ok"`
		Record core.Change               `json:"record"`
		Fields map[string]map[string]any `json:"fields"`
	}
	if st := s.do("POST", "/api/v1/mappings/servicenow-change/preview", adminSecret, body, &prev); st != 200 || !prev.OK || prev.Record.Key != "CHG0000024" || prev.Fields["key"]["source"] == "" {
		t.Fatalf("preview: %d %+v", st, prev)
	}
	// A bad profile is rejected with the field named, and not stored.
	bad := "name: broken\nkind: change\nfields:\n  key: {path: number}\n  planned_start: {path: start_date, transform: [{time: {layout: \"2006\", zone: Mars/Base}}]}\n"
	var e errBody
	if st := s.do("PUT", "/api/v1/mappings/broken", adminSecret, bad, &e); st != 400 || len(e.Error.Details) != 2 ||
		e.Error.Details[1].Field != "fields.planned_start.transform[0].time.zone" {
		t.Fatalf("bad profile: %d %+v", st, e)
	}
	if st := s.do("GET", "/api/v1/mappings/broken", adminSecret, nil, nil); st != 404 {
		t.Fatalf("bad profile was stored: %d", st)
	}

	var audit struct {
		Items []core.AuditEntry `json:"items"`
	}
	s.do("GET", "/api/v1/audit?limit=1000", adminSecret, nil, &audit)
	actions := map[string]string{}
	for _, e := range audit.Items {
		actions[e.Action] = e.Actor
	}
	for _, a := range []string{"token.create", "policy.put", "gate.decision"} {
		if actions[a] == "" {
			t.Errorf("audit has no %s entry (has %v)", a, actions)
		}
	}
	if !strings.HasPrefix(actions["policy.put"], "token:bootstrap-admin") {
		t.Errorf("policy.put actor %q", actions["policy.put"])
	}
}

// TestInboxMetrics: per-connector counters, the lag gauge and the audit
// group-commit counters are exported.
func TestInboxMetrics(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig)
	s.sendWebhook(map[string]any{"key": "INC1", "major": true, "state": "open", "source_updated_at": time.Now().UTC()})
	s.waitFor("processed counter", func() bool {
		resp, err := s.http.Get(s.url + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		m := string(raw)
		return strings.Contains(m, `tollgate_inbox_events_total{connector="itsm",outcome="received"} 1`) &&
			strings.Contains(m, `tollgate_inbox_events_total{connector="itsm",outcome="processed"} 1`) &&
			strings.Contains(m, "tollgate_inbox_lag_seconds") &&
			strings.Contains(m, "tollgate_audit_group_busy_seconds_total") &&
			!strings.Contains(m, "tollgate_audit_group_appends_total 0\n")
	})
}

// TestReplayWithoutStampIsOrderedByReceipt: a change from a profile that
// maps no source stamp is stamped when its delivery was received, so an
// old delivery replayed (an approval, after the change was canceled) is
// older than the stored change and re-approves nothing.
func TestReplayWithoutStampIsOrderedByReceipt(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig)
	unstamped := `name: generic-change
kind: change
match:
  connector_type: generic
  when:
    - {path: key, exists: true}
    - {path: approval, exists: true}
fields:
  key: {path: key, required: true}
  state: {path: state, required: true}
  approval: {path: approval, required: true}
  services: {path: services}
`
	if st := s.do("PUT", "/api/v1/mappings/generic-change", adminSecret, unstamped, nil); st != 200 {
		t.Fatalf("put mapping: %d", st)
	}
	type eventList struct {
		Items []core.Event `json:"items"`
	}
	processed := func(n int) []core.Event {
		var l eventList
		s.waitFor(fmt.Sprintf("%d processed", n), func() bool {
			s.do("GET", "/api/v1/events?status=processed", adminSecret, nil, &l)
			return len(l.Items) == n
		})
		return l.Items
	}
	s.sendWebhook(map[string]any{"key": "CHG-R1", "state": "scheduled", "approval": "approved", "services": []string{"payments"}})
	approvedEvent := processed(1)[0]
	time.Sleep(20 * time.Millisecond) // a later receipt
	s.sendWebhook(map[string]any{"key": "CHG-R1", "state": "canceled", "approval": "canceled", "services": []string{"payments"}})
	processed(2)
	if st := s.do("POST", "/api/v1/events/"+approvedEvent.ID+"/replay", adminSecret, nil, nil); st != http.StatusAccepted {
		t.Fatalf("replay: %d", st)
	}
	s.waitFor("the replayed approval processed", func() bool {
		var e core.Event
		s.do("GET", "/api/v1/events/"+approvedEvent.ID, adminSecret, nil, &e)
		return e.Status == core.EventProcessed && strings.HasPrefix(e.Reason, "stale")
	})
	if c, _ := s.changeOf("CHG-R1"); c.Approval != core.ApprovalCanceled {
		t.Fatalf("after the old approval was replayed the change is %s, want canceled", c.Approval)
	}
}

// TestDeploymentStartInTheFutureRefused: a deployment reported to start
// (or finish) more than inbox.max_future_skew from now is refused with that
// field named — judged as of its start, it would stay out of every report
// until then — and one within the skew is recorded; so is one started
// more than five years ago (no report reaches it: it would never be
// judged).
func TestDeploymentStartInTheFutureRefused(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	now := time.Now().UTC()
	for _, tc := range []struct {
		name            string
		start, finished time.Time
		want            int
		field           string
	}{
		{"starts next year", now.AddDate(1, 0, 0), time.Time{}, http.StatusBadRequest, "started_at"},
		{"finishes in an hour", now.Add(-time.Minute), now.Add(time.Hour), http.StatusBadRequest, "finished_at"},
		{"a clock a minute ahead", now.Add(time.Minute), time.Time{}, http.StatusCreated, ""},
		{"a clock reset to 1970", time.Unix(0, 0).UTC(), time.Time{}, http.StatusBadRequest, "started_at"},
		{"four years ago", now.AddDate(-4, 0, 0), time.Time{}, http.StatusCreated, ""},
	} {
		d := map[string]any{"service": "payments-api", "environment": "production", "version": "9.9.9", "status": "started",
			"started_at": tc.start, "provider": "acme-ci", "run_id": tc.name}
		if !tc.finished.IsZero() {
			d["status"], d["finished_at"] = "succeeded", tc.finished
		}
		var body struct {
			Error struct {
				Field   string `json:"field"`
				Message string `json:"message"`
			} `json:"error"`
		}
		st := s.do("POST", "/api/v1/deployments", ci, d, &body)
		if st != tc.want {
			t.Fatalf("%s: %d %+v, want %d", tc.name, st, body, tc.want)
		}
		if st == http.StatusBadRequest && (body.Error.Field != tc.field || !strings.Contains(body.Error.Message, "in the future") && !strings.Contains(body.Error.Message, "more than five years ago")) {
			t.Errorf("%s: refusal %+v, want %s named", tc.name, body.Error, tc.field)
		}
	}
}
