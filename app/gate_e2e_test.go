package app_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

const webhookSecret = "generic-webhook-secret-0123456789"

const e2eConfig = `
connectors:
  - name: itsm
    type: generic
    webhook_secret: ` + webhookSecret + `
    records: [changes, incidents, reviews]   # an ITSM speaking canonical JSON
inbox:
  poll_interval: 50ms
`

// sendWebhook posts a canonical record to the generic connector, signed.
func (s *server) sendWebhook(record any) {
	s.t.Helper()
	body, err := json.Marshal(record)
	if err != nil {
		s.t.Fatal(err)
	}
	if st, raw := s.sendRaw(body); st != http.StatusAccepted {
		s.t.Fatalf("webhook: %d %s", st, raw)
	}
}

// sendRaw posts body, signed, to the generic connector.
func (s *server) sendRaw(body []byte) (int, string) {
	s.t.Helper()
	mac := hmac.New(sha256.New, []byte(webhookSecret))
	mac.Write(body)
	req, _ := http.NewRequest("POST", s.url+"/webhooks/itsm", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tollgate-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(raw)
}

// waitFor polls cond until true or fails after a few seconds (the
// normalizer is asynchronous).
func (s *server) waitFor(what string, cond func() bool) {
	s.t.Helper()
	eventually(s.t, what, cond)
}

// eventually polls cond until true, failing t after 10 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) changeState(key string) (approval string) {
	var out struct {
		Change core.Change `json:"change"`
	}
	if s.do("GET", "/api/v1/changes/"+key, adminSecret, nil, &out) != http.StatusOK {
		return ""
	}
	return string(out.Change.Approval)
}

type gateAnswer struct {
	Decision   string        `json:"decision"`
	DecisionID string        `json:"decision_id"`
	ReleaseID  string        `json:"release_id"`
	Reasons    []core.Reason `json:"reasons"`
}

func (g gateAnswer) codes() string {
	var c []string
	for _, r := range g.Reasons {
		c = append(c, r.Code)
	}
	return strings.Join(c, ",")
}

func (s *server) check(token, query string, req map[string]any) gateAnswer {
	s.t.Helper()
	var a gateAnswer
	if st := s.do("POST", "/api/v1/gate/check"+query, token, req, &a); st != http.StatusOK {
		s.t.Fatalf("gate check: status %d", st)
	}
	return a
}

func change(key string, approval core.ApprovalState, updated time.Time) map[string]any {
	now := time.Now().UTC()
	return map[string]any{
		"key": key, "title": "Upgrade payments-api", "type": "normal", "state": "scheduled",
		"approval":  approval,
		"approvals": []map[string]any{{"approver": "ana.lima", "decision": approval}, {"approver": "bo.chen", "decision": approval}},
		"risk":      "moderate", "planned_start": now.Add(-time.Hour), "planned_end": now.Add(3 * time.Hour),
		"services": []string{"payments-api"}, "requested_by": "carla.diaz",
		"has_risk_assessment": true, "has_backout_plan": true, "source_updated_at": updated,
	}
}

// TestGateEndToEnd drives releases through the real server on real
// PostgreSQL: wait → allow when the change is approved (long-poll woken by
// the webhook), deny when rejected, wait during a major incident, allow as
// the incident's fix, wait on a pending PIR until it is signed off.
func TestGateEndToEnd(t *testing.T) {
	s := boot(t, "postgres", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	cm, _ := s.token(core.RoleChangeManager)
	t0 := time.Now().UTC().Add(-time.Minute)

	req := map[string]any{"service": "payments-api", "environment": "production", "version": "1.4.2",
		"team": "payments", "changes": []string{"CHG1001"}, "actor": "dave.deployer"}

	// No such change yet: deny.
	if a := s.check(ci, "", req); a.Decision != "deny" || a.codes() != core.CodeChangeNotFound {
		t.Fatalf("unknown change: %s %s", a.Decision, a.codes())
	}

	// Approval requested: wait.
	s.sendWebhook(change("CHG1001", core.ApprovalRequested, t0))
	s.waitFor("CHG1001 stored", func() bool { return s.changeState("CHG1001") == "requested" })
	if a := s.check(ci, "", req); a.Decision != "wait" || a.codes() != core.CodeChangeNotApproved {
		t.Fatalf("requested change: %s %s", a.Decision, a.codes())
	}

	// Long-poll: the approval landing answers the waiting pipeline.
	answered := make(chan gateAnswer, 1)
	var waited time.Duration
	go func() {
		start := time.Now()
		a := s.check(ci, "?wait=30s", req)
		waited = time.Since(start)
		answered <- a
	}()
	time.Sleep(300 * time.Millisecond) // let it start waiting
	approvedAt := time.Now()
	s.sendWebhook(change("CHG1001", core.ApprovalApproved, t0.Add(time.Second)))
	select {
	case a := <-answered:
		if a.Decision != "allow" {
			t.Fatalf("after approval: %s %s", a.Decision, a.codes())
		}
		lag := time.Since(approvedAt)
		t.Logf("long-poll answered %v after the approval webhook (waited %v in all)", lag, waited)
		if lag > 5*time.Second {
			t.Errorf("long-poll took %v to see the approval", lag)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("long-poll did not answer after the approval")
	}

	// An older delivery of the change does not overwrite the approval.
	s.sendWebhook(change("CHG1001", core.ApprovalRequested, t0.Add(-time.Hour)))
	time.Sleep(300 * time.Millisecond)
	if got := s.changeState("CHG1001"); got != "approved" {
		t.Fatalf("stale delivery overwrote the change: %s", got)
	}

	// Rejected change: deny.
	s.sendWebhook(change("CHG1002", core.ApprovalRejected, t0))
	s.waitFor("CHG1002 stored", func() bool { return s.changeState("CHG1002") == "rejected" })
	rej := map[string]any{"service": "payments-api", "environment": "production", "version": "1.4.3", "team": "payments", "changes": []string{"CHG1002"}}
	if a := s.check(ci, "", rej); a.Decision != "deny" || !strings.Contains(a.codes(), core.CodeChangeNotApproved) {
		t.Fatalf("rejected change: %s %s", a.Decision, a.codes())
	}

	// Major incident on the service: wait; the release that fixes it: allow.
	s.sendWebhook(map[string]any{"key": "INC2001", "title": "payments down", "priority": 1, "major": true,
		"state": "open", "services": []string{"payments-api"}, "source_updated_at": t0})
	s.waitFor("INC2001 stored", func() bool {
		return s.do("GET", "/api/v1/incidents/INC2001", adminSecret, nil, nil) == http.StatusOK
	})
	if a := s.check(ci, "", req); a.Decision != "wait" || a.codes() != core.CodeIncidentBlock {
		t.Fatalf("during incident: %s %s", a.Decision, a.codes())
	}
	fix := map[string]any{"service": "payments-api", "environment": "production", "version": "1.4.2",
		"team": "payments", "changes": []string{"CHG1001"}, "incidents": []string{"INC2001"}, "actor": "dave.deployer"}
	a := s.check(ci, "", fix)
	if a.Decision != "allow" {
		t.Fatalf("incident fix: %s %s", a.Decision, a.codes())
	}
	s.sendWebhook(map[string]any{"key": "INC2001", "title": "payments down", "priority": 1, "major": true,
		"state": "resolved", "services": []string{"payments-api"}, "source_updated_at": t0.Add(time.Minute)})

	// The fix is deployed: its PIR is now required, and the team's next
	// release waits for it until a change manager signs it off.
	var dep core.Deployment
	st := s.do("POST", "/api/v1/deployments", ci, map[string]any{"service": "payments-api", "environment": "production",
		"version": "1.4.2", "team": "payments", "status": "succeeded", "started_at": time.Now().UTC().Add(-time.Minute),
		"finished_at": time.Now().UTC(), "changes": []string{"CHG1001"}, "incidents": []string{"INC2001"},
		"decision_id": a.DecisionID, "provider": "github", "run_id": "9001"}, &dep)
	if st != http.StatusCreated || dep.ReleaseID != a.ReleaseID {
		t.Fatalf("deployment: status %d, release %q (want %q)", st, dep.ReleaseID, a.ReleaseID)
	}
	next := map[string]any{"service": "payments-api", "environment": "production", "version": "1.5.0",
		"team": "payments", "changes": []string{"CHG1001"}, "actor": "dave.deployer"}
	s.waitFor("incident resolved", func() bool { return s.check(ci, "", next).codes() != core.CodeIncidentBlock+","+core.CodePIRPending })
	if a := s.check(ci, "", next); a.Decision != "wait" || a.codes() != core.CodePIRPending {
		t.Fatalf("pending PIR: %s %s", a.Decision, a.codes())
	}
	if st := s.do("POST", "/api/v1/releases/"+dep.ReleaseID+"/pir", ci, map[string]any{"summary": "ok"}, nil); st != http.StatusForbidden {
		t.Fatalf("ci signing off a PIR: %d, want 403", st)
	}
	if st := s.do("POST", "/api/v1/releases/"+dep.ReleaseID+"/pir", cm, map[string]any{"summary": "went fine"}, nil); st != http.StatusOK {
		t.Fatalf("sign off PIR: %d", st)
	}
	if a := s.check(ci, "", next); a.Decision != "allow" {
		t.Fatalf("after PIR sign-off: %s %s", a.Decision, a.codes())
	}

	// The decision is recorded with its inputs and in the audit chain.
	var d core.GateDecision
	if st := s.do("GET", "/api/v1/gate/decisions/"+a.DecisionID, ci, nil, &d); st != http.StatusOK || d.Facts == nil || d.Request.Service != "payments-api" {
		t.Fatalf("get decision: %d %+v", st, d)
	}
	var v struct {
		OK   bool  `json:"ok"`
		Rows int64 `json:"rows"`
	}
	if st := s.do("GET", "/api/v1/audit/verify", adminSecret, nil, &v); st != http.StatusOK || !v.OK || v.Rows < 5 {
		t.Fatalf("audit verify: %d %+v", st, v)
	}
}

// TestLongPollAcrossReplicas: a pipeline waits on replica A; the approval
// lands on replica B; PostgreSQL LISTEN/NOTIFY wakes A.
func TestLongPollAcrossReplicas(t *testing.T) {
	dbURL := testpg.NewDatabase(t)
	a := bootURL(t, dbURL, e2eConfig)
	b := bootURL(t, dbURL, e2eConfig)
	ci, _ := a.token(core.RoleCI)
	t0 := time.Now().UTC().Add(-time.Minute)
	b.sendWebhook(change("CHG3001", core.ApprovalRequested, t0))
	b.waitFor("CHG3001 stored", func() bool { return b.changeState("CHG3001") == "requested" })

	req := map[string]any{"service": "payments-api", "environment": "production", "version": "3.0.0",
		"changes": []string{"CHG3001"}, "actor": "dave.deployer"}
	answered := make(chan gateAnswer, 1)
	go func() { answered <- a.check(ci, "?wait=30s", req) }()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	b.sendWebhook(change("CHG3001", core.ApprovalApproved, t0.Add(time.Second)))
	select {
	case ans := <-answered:
		if ans.Decision != "allow" {
			t.Fatalf("replica A answered %s %s", ans.Decision, ans.codes())
		}
		t.Logf("replica A answered %v after the approval reached replica B", time.Since(start))
	case <-time.After(20 * time.Second):
		t.Fatal("replica A was not woken")
	}
}

// TestShutdownAnswersWaitingChecks: a graceful shutdown answers in-flight
// long-polls with their current decision instead of cutting them off.
func TestShutdownAnswersWaitingChecks(t *testing.T) {
	s := boot(t, "sqlite", e2eConfig)
	ci, _ := s.token(core.RoleCI)
	s.sendWebhook(change("CHG4001", core.ApprovalRequested, time.Now().UTC()))
	s.waitFor("CHG4001 stored", func() bool { return s.changeState("CHG4001") == "requested" })
	answered := make(chan gateAnswer, 1)
	go func() {
		answered <- s.check(ci, "?wait=10m", map[string]any{"service": "payments-api", "environment": "production",
			"version": "4.0.0", "changes": []string{"CHG4001"}})
	}()
	time.Sleep(300 * time.Millisecond)
	go s.stop()
	select {
	case ans := <-answered:
		if ans.Decision != "wait" || ans.DecisionID == "" {
			t.Fatalf("in-flight check answered %+v", ans)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not answer the waiting check")
	}
}

// TestShutdownDelayDrains: with shutdown_delay, SIGTERM first makes the
// replica unready — /readyz 503 "shutting down" — while it still answers
// every request, each with Connection: close so its clients reconnect
// through the load balancer; the listener closes only after the delay.
// The draining probes are logged at info: a rolling restart is no fault
// to alert on.
func TestShutdownDelayDrains(t *testing.T) {
	const delay = time.Second
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	env := map[string]string{"TOLLGATE_ADMIN_TOKEN": adminSecret, "TOLLGATE_DATABASE_URL": newDatabase(t, "sqlite")}
	s := serve(t, e2eConfig+"shutdown_delay: 1s\n", env, log)
	ci, _ := s.token(core.RoleCI)
	if st := s.do("GET", "/readyz", "", nil, nil); st != http.StatusOK {
		t.Fatalf("readyz before the shutdown: %d", st)
	}
	start := time.Now()
	stopped := make(chan time.Duration, 1)
	go func() { s.stop(); stopped <- time.Since(start) }()

	raw := &http.Client{Timeout: 5 * time.Second}
	var ready *http.Response
	s.waitFor("/readyz 503 while draining", func() bool {
		resp, err := raw.Get(s.url + "/readyz")
		if err != nil {
			t.Fatalf("readyz during the delay: %v (the listener closed early)", err)
		}
		resp.Body.Close()
		ready = resp
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if !ready.Close {
		t.Error("a draining replica's answer keeps its connection open")
	}
	var body struct{ Status, Reason string }
	if st := s.do("GET", "/readyz", "", nil, &body); st != http.StatusServiceUnavailable || body.Reason != "shutting down" {
		t.Errorf("readyz while draining: %d %+v, want 503 shutting down", st, body)
	}
	if ans := s.check(ci, "", map[string]any{"service": "payments-api", "environment": "staging", "version": "4.0.1"}); ans.Decision == "" {
		t.Errorf("a gate check while draining: %+v, want an answer", ans)
	}
	select {
	case took := <-stopped:
		if took < delay {
			t.Errorf("stopped %v after SIGTERM, before the %v delay", took, delay)
		}
	case <-time.After(delay + 15*time.Second):
		t.Fatal("not stopped after the delay")
	}
	if _, err := raw.Get(s.url + "/readyz"); err == nil {
		t.Error("the listener still answers after the shutdown")
	}
	draining := 0
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Level, Msg, Path, Error string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.Level == "ERROR" || rec.Level == "WARN" {
			t.Errorf("logged while draining: %s", line)
		}
		if rec.Msg == "not ready" && rec.Error == "shutting down" {
			draining++
		}
	}
	if draining == 0 {
		t.Error("the draining probes are not logged")
	}
}
