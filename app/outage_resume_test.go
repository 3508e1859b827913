package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/itsmfake"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// TestOutageResumesPollerAndPendingAnswers stops a private PostgreSQL
// under a tollgate that polls ServiceNow (the itsm fake) and holds a GitHub
// deployment protection rule waiting for that change's approval. While the
// database is away the poller fails its intervals; the CAB approves the
// change in ServiceNow meanwhile (no webhook is sent). Once PostgreSQL is
// back, without a restart, the poller polls again and brings the approval,
// and the waiting protection rule is answered approved through the fake
// GitHub, within 5 s of the database answering again.
func TestOutageResumesPollerAndPendingAnswers(t *testing.T) {
	t.Parallel() // mostly waiting on its private server and the poller
	pg := testpg.NewPrivate(t)
	fake := itsmfake.New(snUser, snPassword)
	defer fake.Close()
	f := newFakeCI(t)
	cfg := fmt.Sprintf(`
inbox: {poll_interval: 50ms, lease: 2s}
connectors:
  - name: servicenow
    type: servicenow
    webhook_secret: %[1]s
    api: {url: %[2]s, username: %[3]s, password: %[4]s, poll_interval: 1s}
  - name: github
    type: github
    webhook_secret: %[1]s
    api: {url: %[5]s, app_id: "%[6]s", private_key_file: %[7]s}
    protection_rule: {deadline: 1h}
    services: {"acme/payments": payments-api}
    change_key_patterns: ['CHG\d{7}']
`, authoritySecret, fake.URL, snUser, snPassword, f.srv.URL, f.appID, f.keyFile)
	t0 := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	fake.PutSN("change_request", snAPIChange("CHG0098001", "requested", t0))
	s := bootURL(t, pg.URL, cfg)
	aud, _ := s.token(core.RoleAuditor)
	s.waitFor("the polled change", func() bool { _, ok := s.changeOf("CHG0098001"); return ok })

	sha := strings.Repeat("b", 40)
	f.commit("acme/payments", sha, "release\n\nChange: CHG0098001")
	if st := s.githubHook("github", "deployment_protection_rule", protectionRule(f.srv.URL, "acme/payments", "7200001", "920001", sha, "")); st != http.StatusAccepted {
		t.Fatalf("protection rule webhook: %d", st)
	}
	s.pendingFor(aud, "github", "runs/7200001", core.CodeChangeNotApproved)

	polls := func() int { return len(fake.Calls("/api/now/table/change_request")) }
	pollErrors := func() string {
		for _, l := range strings.Split(s.metricsText(), "\n") {
			if strings.HasPrefix(l, `tollgate_poll_errors_total{connector="servicenow"}`) {
				return strings.TrimSpace(strings.TrimPrefix(l, `tollgate_poll_errors_total{connector="servicenow"}`))
			}
		}
		return "0"
	}
	before := polls()
	pg.Stop()
	stopped := time.Now()
	// The CAB approves in ServiceNow while tollgate's database is away.
	fake.PutSN("change_request", snAPIChange("CHG0098001", "approved", time.Now().UTC().Truncate(time.Second)))
	time.Sleep(3500 * time.Millisecond) // a few poll intervals fail
	during := polls() - before
	errs := pollErrors()
	if n := f.answerCount("7200001"); n != 0 {
		t.Fatalf("answered during the outage")
	}
	starting := time.Now()
	pg.Start()
	back := time.Now()
	t.Logf("outage %v: %d change polls reached ServiceNow, poll errors %s; pg_ctl start took %v", back.Sub(stopped).Round(time.Millisecond), during, errs, back.Sub(starting).Round(time.Millisecond))
	if errs == "0" {
		t.Errorf("no poll failed during the outage")
	}

	a, ok := f.answer("7200001", 5*time.Second)
	if !ok || a.State != "approved" {
		t.Fatalf("protection rule not answered approved within 5 s of the database's return: %+v (ok %v)", a, ok)
	}
	t.Logf("pending protection rule answered approved %v after PostgreSQL was back", a.At.Sub(back).Round(time.Millisecond))
	// The poller may get in while pg_ctl start is still waiting for its
	// server: the first poll after the outage can come before back.
	var first time.Time
	for _, c := range fake.Calls("/api/now/table/change_request") {
		if c.At.After(stopped) {
			first = c.At
			break
		}
	}
	if first.IsZero() {
		t.Fatal("the poller did not poll again")
	}
	t.Logf("first poll %v after PostgreSQL was back", first.Sub(back).Round(time.Millisecond))
	if first.Sub(back) > 5*time.Second {
		t.Errorf("the poller polled again only %v after the database was back", first.Sub(back))
	}
	n := polls()
	time.Sleep(2200 * time.Millisecond)
	if polls()-n < 2 {
		t.Errorf("polls did not resume at the interval: %d in 2.2 s", polls()-n)
	}
	if c, _ := s.changeOf("CHG0098001"); c.Approval != core.ApprovalApproved {
		t.Errorf("change after the outage: %s", c.Approval)
	}
	if n := f.answerCount("7200001"); n != 1 {
		t.Errorf("answered %d times", n)
	}
}

// TestLongPollAcrossReplicasAfterOutage: a gate check long-polling on
// replica A across a long PostgreSQL outage is answered when the approval
// reaches replica B after the database is back, within 5 s of its return:
// A's notification listener must be listening again by then, however long
// the outage made its reconnect backoff.
func TestLongPollAcrossReplicasAfterOutage(t *testing.T) {
	t.Parallel() // mostly the outage's wait: it runs beside the package's other parallel tests
	pg := testpg.NewPrivate(t)
	a := bootURL(t, pg.URL, e2eConfig)
	b := bootURL(t, pg.URL, e2eConfig)
	ci, _ := a.token(core.RoleCI)
	t0 := time.Now().UTC().Add(-time.Minute)
	b.sendWebhook(change("CHG3101", core.ApprovalRequested, t0))
	b.waitFor("CHG3101 stored", func() bool { return b.changeState("CHG3101") == "requested" })
	req := map[string]any{"service": "payments-api", "environment": "production", "version": "3.1.0",
		"changes": []string{"CHG3101"}, "actor": "dave.deployer"}
	answered := make(chan gateAnswer, 1)
	go func() { answered <- a.check(ci, "?wait=50s", req) }()
	time.Sleep(300 * time.Millisecond)

	pg.Stop()
	time.Sleep(17 * time.Second) // long enough for a 30 s reconnect backoff cap to matter
	pg.Start()
	back := time.Now()
	body, _ := json.Marshal(change("CHG3101", core.ApprovalApproved, t0.Add(time.Second)))
	for {
		hreq, _ := http.NewRequest("POST", b.url+"/webhooks/itsm", bytes.NewReader(body))
		hreq.Header.Set("Content-Type", "application/json")
		hreq.Header.Set("X-Tollgate-Signature", signed(body))
		resp, err := b.http.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		st := resp.StatusCode
		if st == http.StatusAccepted {
			break
		}
		if time.Since(back) > 5*time.Second {
			t.Fatalf("replica B still refuses the approval 5 s after the database's return: %d", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	approved := time.Since(back)
	select {
	case ans := <-answered:
		if ans.Decision != "allow" {
			t.Fatalf("replica A answered %s %s", ans.Decision, ans.codes())
		}
		took := time.Since(back)
		t.Logf("approval accepted by B %v, A's long-poll answered allow %v after PostgreSQL was back", approved.Round(time.Millisecond), took.Round(time.Millisecond))
		if took > 5*time.Second {
			t.Errorf("replica A answered %v after the database's return, want within 5 s", took)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("replica A was not woken")
	}
}
