package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/app"
	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/itsmfake"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/store"
)

// TestDoctor: the doctor reads the database and every connector with an
// API against live (fake) systems: all is well; then a wrong ServiceNow
// password, a GitLab webhook disabled and the GitHub App's webhook pointing
// elsewhere each fail, with the secret in no detail; and nothing was
// written to any system.
func TestDoctor(t *testing.T) {
	eachDialect(t, func(t *testing.T, dialect string) {
		sn := itsmfake.New(snUser, snPassword)
		defer sn.Close()
		ci := newFakeCI(t)
		dbURL := "sqlite:" + filepath.Join(t.TempDir(), "tollgate.db")
		if dialect == "postgres" {
			dbURL = testpg.NewDatabase(t)
		}
		doctor := func(password string) map[string][]connectors.Finding {
			t.Helper()
			env := map[string]string{"TOLLGATE_DATABASE_URL": dbURL, "SN_PASSWORD": password}
			cfg, err := config.Parse([]byte(doctorConfig(sn.URL, ci)), func(k string) string { return env[k] })
			if err != nil {
				t.Fatalf("config: %v", err)
			}
			logs := &syncBuffer{}
			out := map[string][]connectors.Finding{}
			for _, s := range app.Doctor(context.Background(), cfg, logging.New(logs, slog.LevelInfo), app.DoctorOptions{Timeout: 20 * time.Second}) {
				out[s.Scope] = s.Findings
				for _, f := range s.Findings {
					for _, secret := range []string{snPassword, "wrong-password-123", ci.glToken, authoritySecret} {
						if strings.Contains(f.Detail, secret) {
							t.Errorf("%s %s shows a secret: %s", s.Scope, f.Check, f.Detail)
						}
					}
				}
			}
			return out
		}
		ci.glHooks = []map[string]any{{"id": 5, "url": "https://tollgate.example.com/webhooks/gitlab", "alert_status": "executable",
			"deployment_events": true, "job_events": true, "pipeline_events": true, "enable_ssl_verification": true}}

		sn.PutSN("change_request", snAPIChange("CHG0088001", "approved", time.Now()))
		sn.PutSN("incident", map[string]any{"number": snPair("INC0088001"), "state": snPair("2"), "priority": snPair("4")})
		// What sends the instance's deliveries here: a REST message and a
		// business rule on each table calling it.
		sn.PutSN("sys_rest_message", map[string]any{"name": "Tollgate", "rest_endpoint": "https://tollgate.example.com/webhooks/servicenow"})
		for _, tb := range []string{"change_request", "incident"} {
			sn.PutSN("sys_script", map[string]any{"name": "Tollgate " + tb, "collection": tb, "active": "true", "when": "after",
				"action_insert": "true", "action_update": "true", "script": "new sn_ws.RESTMessageV2('Tollgate', 'post').executeAsync();"})
		}

		// A database not yet migrated (an embedded store not yet created,
		// which the doctor does not create): a warning, and the profiles
		// are the files' alone.
		got := doctor(snPassword)
		unmigrated := "schema"
		if dialect == "sqlite" {
			unmigrated = "reachable"
		}
		if !hasFinding(got["database"], unmigrated, connectors.StatusWarn) || got["mappings"] != nil {
			t.Errorf("unmigrated database: %+v, mappings %+v", got["database"], got["mappings"])
		}
		if _, err := os.Stat(strings.TrimPrefix(dbURL, "sqlite:")); dialect == "sqlite" && err == nil {
			t.Error("the doctor created the embedded store")
		}
		db, err := store.Open(context.Background(), dbURL, store.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		db.Close()

		got = doctor(snPassword)
		dbChecks := "reachable schema replicas"
		if dialect == "postgres" {
			dbChecks = "reachable schema clock replicas" // SQLite's clock is this host's
		}
		want := map[string]string{ // scope → its checks, each ok
			"database":             dbChecks,
			"connector servicenow": "change_request incident sysapproval_approver outbound change_request outbound incident",
			"connector github":     "app events permissions webhook installations deliveries",
			"connector gitlab":     "token project acme/ledger",
			"connector jenkins":    "api",
		}
		for scope, checks := range want {
			var names []string
			for _, f := range got[scope] {
				names = append(names, f.Check)
				if f.Status != connectors.StatusOK {
					t.Errorf("%s: %s is %s: %s", scope, f.Check, f.Status, f.Detail)
				}
			}
			if strings.Join(names, " ") != checks {
				t.Errorf("%s checked %q, want %q", scope, names, checks)
			}
		}
		// No signing key, no anchor: said, as config validate says it.
		if !hasFinding(got["audit"], "evidence signing", connectors.StatusWarn) || !hasFinding(got["audit"], "audit anchor", connectors.StatusWarn) {
			t.Errorf("audit: %+v", got["audit"])
		}
		delete(got, "audit")
		if len(got) != len(want) {
			t.Errorf("sections %v, want %d", got, len(want))
		}

		ci.glHooks[0]["alert_status"] = "disabled"
		ci.setHook("https://old.example.com/hooks/github?token=s3cr3t")
		got = doctor("wrong-password-123")
		for scope, check := range map[string]string{"connector servicenow": "change_request", "connector gitlab": "project acme/ledger", "connector github": "webhook"} {
			if !hasFinding(got[scope], check, connectors.StatusFail) {
				t.Errorf("%s: no failed %s in %+v", scope, check, got[scope])
			}
		}
		for _, f := range got["connector github"] {
			if strings.Contains(f.Detail, "s3cr3t") {
				t.Errorf("the webhook URL's query is shown: %s", f.Detail)
			}
		}
		for _, c := range sn.Calls("") {
			if c.Method != "GET" {
				t.Errorf("the doctor wrote to ServiceNow: %s %s", c.Method, c.Path)
			}
		}
		ci.mu.Lock()
		defer ci.mu.Unlock()
		for _, c := range ci.calls {
			if !strings.HasPrefix(c, "GET ") {
				t.Errorf("the doctor wrote to the CI: %s", c)
			}
		}
	})
}

func hasFinding(fs []connectors.Finding, check string, st connectors.Status) bool {
	for _, f := range fs {
		if f.Check == check && f.Status == st {
			return true
		}
	}
	return false
}

func doctorConfig(snURL string, ci *fakeCI) string {
	return fmt.Sprintf(`
connectors:
  - name: servicenow
    type: servicenow
    webhook_secret: %[1]s
    api: {url: %[2]s, username: %[3]s, password: "${SN_PASSWORD}", poll_interval: 1m}
  - name: github
    type: github
    webhook_secret: %[1]s-github
    api: {url: %[4]s, app_id: "%[5]s", private_key_file: %[6]s}
    protection_rule: {deadline: 1h, webhook_secret: %[1]s-github-app}
  - name: gitlab
    type: gitlab
    webhook_secret: %[1]s-gitlab
    api: {url: %[4]s, token: %[7]s, poll_interval: 1m}
    projects: [acme/ledger]
    approvals: {deadline: 1h}
  - {name: jenkins, type: jenkins, webhook_secret: %[1]s-jenkins}
`, authoritySecret, snURL, snUser, ci.srv.URL, ci.appID, ci.keyFile, ci.glToken)
}

// TestDoctorAPI: GET /api/v1/doctor runs the same checks from the serving
// app, on its own store, for an admin; a run's findings answer the
// requests that follow within seconds, without calling the systems again.
func TestDoctorAPI(t *testing.T) {
	sn := itsmfake.New(snUser, snPassword)
	defer sn.Close()
	sn.PutSN("change_request", snAPIChange("CHG0088002", "approved", time.Now()))
	sn.PutSN("incident", map[string]any{"number": snPair("INC0088002"), "state": snPair("2"), "priority": snPair("4")})
	ci := newFakeCI(t)
	ci.glHooks = []map[string]any{{"id": 5, "url": "https://tollgate.example.com/webhooks/gitlab", "alert_status": "executable",
		"deployment_events": true, "job_events": true, "pipeline_events": true, "enable_ssl_verification": true}}
	env := map[string]string{"TOLLGATE_ADMIN_TOKEN": adminSecret, "TOLLGATE_DATABASE_URL": newDatabase(t, "sqlite"), "SN_PASSWORD": snPassword}
	s := serve(t, doctorConfig(sn.URL, ci), env, slog.New(slog.DiscardHandler))
	var rep struct {
		Sections []struct {
			Scope    string
			Findings []connectors.Finding
		}
		Failed, Warnings int
	}
	var reads []int // ServiceNow's preflight reads of the approvers (its poller reads them by change)
	for range 2 {
		if st := s.do("GET", "/api/v1/doctor", adminSecret, nil, &rep); st != 200 {
			t.Fatalf("GET /api/v1/doctor: %d", st)
		}
		n := 0
		for _, c := range sn.Calls("sysapproval_approver") {
			if strings.Contains(c.Query, "sysparm_limit=1") && !strings.Contains(c.Query, "sysparm_query") {
				n++
			}
		}
		reads = append(reads, n)
	}
	scopes := map[string]bool{}
	for _, sec := range rep.Sections {
		scopes[sec.Scope] = true
	}
	if rep.Failed != 0 || !scopes["database"] || !scopes["connector servicenow"] || !scopes["connector github"] || !scopes["connector gitlab"] {
		t.Errorf("report %+v", rep)
	}
	if reads[0] != reads[1] || reads[0] == 0 {
		t.Errorf("ServiceNow's approvers read %v after each request, want once in all (the run's findings reused)", reads)
	}
	auditor, _ := s.token(core.RoleAuditor)
	if st := s.do("GET", "/api/v1/doctor", auditor, nil, nil); st != 403 {
		t.Errorf("an auditor: %d, want 403", st)
	}

	// The scheduled run exports what did not pass, and drops it once it
	// passes again.
	ci.mu.Lock()
	ci.glHooks[0]["alert_status"] = "disabled"
	ci.mu.Unlock()
	s.app.RunDoctor(context.Background())
	failing := `tollgate_doctor_findings{check="project acme/ledger",scope="connector gitlab",status="fail"} 1`
	if m := s.metricsText(); !strings.Contains(m, failing) || strings.Contains(m, "tollgate_doctor_last_run_timestamp_seconds 0") {
		t.Errorf("metrics after a run with the webhook disabled:\n%s", grepLines(m, "tollgate_doctor"))
	}
	ci.mu.Lock()
	ci.glHooks[0]["alert_status"] = "executable"
	ci.mu.Unlock()
	s.app.RunDoctor(context.Background())
	if m := s.metricsText(); strings.Contains(m, `scope="connector gitlab"`) {
		t.Errorf("metrics after the webhook was enabled again:\n%s", grepLines(m, "tollgate_doctor"))
	}

	// The Connections page shows the same findings to an admin.
	admin, _ := s.token(core.RoleAdmin)
	c := s.uiClient()
	if st, _ := c.signIn(admin); st != 303 {
		t.Fatalf("sign-in: %d", st)
	}
	st, _, body := c.get("/ui/connections")
	for _, want := range []string{"connector github", "installations", "connector gitlab", "project acme/ledger", `<span class="badge ok">ok</span>`, "Nothing failed",
		"<h2>Replicas</h2>", `<span class="badge ok">live</span>`, app.Version} {
		if st != 200 || !strings.Contains(body, want) {
			t.Errorf("/ui/connections: %d, lacks %q", st, want)
		}
	}
}
