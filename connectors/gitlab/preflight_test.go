package gitlab

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
)

// reply is a fake's answer to one path.
type reply = hooktest.Reply

const hangUp = hooktest.HangUp

// fakeDoctor answers the preflight's reads from routes (by escaped path),
// and the rest as fakeBlocked does (acme/payments, id 30, and the
// PRIVATE-TOKEN check).
type fakeDoctor struct {
	fakeBlocked
	routes map[string]reply
}

func (f *fakeDoctor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.WriteHeader(http.StatusMethodNotAllowed) // the preflight only reads
		return
	}
	rep, ok := f.routes[r.URL.EscapedPath()]
	if !ok || r.Header.Get("PRIVATE-TOKEN") != "glpat-x" {
		f.fakeBlocked.ServeHTTP(w, r)
		return
	}
	rep.Write(w)
}

// doctorHook is a webhook of project 30 as GET /projects/:id/hooks lists it.
func doctorHook(id int, url, alert string, deployment, job, pipeline, ssl bool) string {
	return fmt.Sprintf(`{"id": %d, "url": %q, "alert_status": %q, "disabled_until": null, "push_events": false,
		"deployment_events": %v, "job_events": %v, "pipeline_events": %v, "enable_ssl_verification": %v}`, id, url, alert, deployment, job, pipeline, ssl)
}

const (
	ownURL     = "https://tollgate.example.com/webhooks/gitlab"
	selfPath   = "/api/v4/personal_access_tokens/self"
	hooksPath  = "/api/v4/projects/30/hooks"
	ledgerPath = "/api/v4/projects/acme%2Fledger"
)

// doctorCase is one preflight against a fake GitLab.
type doctorCase struct {
	name     string
	token    string // glpat-x when empty
	gate     bool
	events   []string
	projects []string // acme/payments when nil
	routes   map[string]reply
	want     []string // "check|status|part of the detail"
}

// expiresIn is the date days from now, as GitLab gives expires_at.
func expiresIn(days int) string { return time.Now().AddDate(0, 0, days).Format(time.DateOnly) }

// tokenReply is GET /personal_access_tokens/self's answer.
func tokenReply(scopes string, expires string) reply {
	return reply{Body: `{"id": 4, "name": "tollgate", "revoked": false, "active": true, "scopes": [` + scopes + `], "expires_at": ` + expires + `}`}
}

// goodRoutes are a token with the api scope, a year to go, and project
// 30's webhooks: one of the connector's, sending deployments and jobs.
func goodRoutes() map[string]reply {
	return map[string]reply{selfPath: tokenReply(`"api", "read_repository"`, `"`+expiresIn(365)+`"`),
		hooksPath: {Body: "[" + doctorHook(12, ownURL, "executable", true, true, false, true) + "," +
			doctorHook(13, "https://chat.example.com/hook", "disabled", false, false, false, false) + "]"}}
}

// goodWith is goodRoutes with over's answers in place of theirs.
func goodWith(over map[string]reply) map[string]reply {
	out := goodRoutes()
	for k, v := range over {
		out[k] = v
	}
	return out
}

var deploymentJob = []string{"Deployment Hook", "job hook"}

// tokenCases check the token, then one project.
func tokenCases() []doctorCase {
	good := goodRoutes()
	return []doctorCase{
		{name: "all good", gate: true, events: deploymentJob, routes: good, want: []string{
			`token|ok|token "tollgate" with scopes api, read_repository`, "project acme/payments|ok|hook 12 sends Deployment Hook, Job Hook"}},
		{name: "token refused", token: "glpat-wrong", gate: true, projects: []string{"acme/payments", "acme/ledger"}, routes: good, want: []string{
			"token|fail|refused the token"}},
		{name: "first check's 500", routes: goodWith(map[string]reply{selfPath: {Status: 500, Body: `{"message":"boom"}`}}), want: []string{
			"token|fail|HTTP 500: boom"}},
		{name: "older GitLab", routes: goodWith(map[string]reply{selfPath: {Status: 404}, "/api/v4/user": {Body: `{"id": 9, "username": "tollgate-bot"}`}}), want: []string{
			"token|ok|as tollgate-bot; scopes not readable", "project acme/payments|ok|hook 12 sends Deployment Hook, Job Hook"}},
		{name: "older GitLab, no API scope", routes: goodWith(map[string]reply{selfPath: {Status: 404}, "/api/v4/user": {Status: 403, Body: `{"error":"insufficient_scope"}`}}),
			want: []string{"token|fail|needs the read_api or api scope"}},
		{name: "read_api without a gate", routes: goodWith(map[string]reply{selfPath: tokenReply(`"read_api"`, "null")}), want: []string{
			`token|ok|token "tollgate" with scopes read_api`, "project acme/payments|ok|hook 12"}},
		{name: "read_api with a gate", gate: true, routes: goodWith(map[string]reply{selfPath: tokenReply(`"read_api"`, "null")}), want: []string{
			"token|fail|has read_api but not api", "project acme/payments|ok|hook 12"}},
		{name: "no API scope", projects: []string{"acme/payments", "acme/ledger"}, routes: goodWith(map[string]reply{selfPath: tokenReply(`"read_repository"`, "null")}),
			want: []string{"token|fail|neither the read_api nor the api scope (it has read_repository)"}},
		{name: "token expiring", routes: goodWith(map[string]reply{selfPath: tokenReply(`"api"`, `"`+expiresIn(10)+`"`)}), want: []string{
			"token|warn|expires on " + expiresIn(10), "project acme/payments|ok|hook 12"}},
	}
}

// projectCases check the projects and their webhooks.
func projectCases() []doctorCase {
	good := goodRoutes()
	return []doctorCase{
		{name: "project unreadable", projects: []string{"acme/gone", "acme/payments"}, routes: good, want: []string{
			"token|ok|", "project acme/gone|fail|no project acme/gone, or the token may not read it", "project acme/payments|ok|hook 12"}},
		{name: "a later check's 500", projects: []string{"acme/payments", "acme/ledger"},
			routes: goodWith(map[string]reply{ledgerPath: {Status: 502, Body: `{"message":"bad gateway"}`}}), want: []string{
				"token|ok|", "project acme/payments|ok|hook 12", "project acme/ledger|fail|project acme/ledger: HTTP 502: bad gateway"}},
		{name: "webhooks 500", routes: goodWith(map[string]reply{hooksPath: {Status: 500}}), want: []string{
			"token|ok|", "project acme/payments|warn|the webhooks were not checked: GitLab gitlab: project acme/payments webhooks: HTTP 500"}},
		{name: "webhooks unanswered", routes: goodWith(map[string]reply{hooksPath: {Status: hangUp}}), want: []string{
			"token|ok|", "project acme/payments|warn|the webhooks were not checked: GitLab gitlab: project acme/payments webhooks: no answer from"}},
		{name: "webhooks forbidden", routes: goodWith(map[string]reply{hooksPath: {Status: 403, Body: `{"message":"403 Forbidden"}`}}), want: []string{
			"token|ok|", "project acme/payments|warn|Maintainer role"}},
		{name: "no own webhook", routes: goodWith(map[string]reply{hooksPath: {Body: "[" + doctorHook(13, "https://chat.example.com/hook", "executable", true, true, true, true) + "]"}}),
			want: []string{"token|ok|", "project acme/payments|warn|no webhook of the project points at …/webhooks/gitlab; a group's webhook is seen when the group is in the connector's groups"}},
		{name: "webhook disabled", routes: goodWith(map[string]reply{hooksPath: {Body: "[" + doctorHook(12, ownURL, "disabled", true, true, false, true) + "]"}}),
			want: []string{"token|ok|", "project acme/payments|fail|hook 12 is disabled: GitLab sends nothing"}},
		{name: "webhook temporarily disabled", routes: goodWith(map[string]reply{hooksPath: {Body: `[{"id": 12, "url": "` + ownURL +
			`", "alert_status": "temporarily_disabled", "disabled_until": "2026-12-06T12:30:00.000Z", "deployment_events": true, "enable_ssl_verification": true}]`}}),
			want: []string{"token|ok|", "project acme/payments|warn|hook 12 is temporarily disabled until 2026-12-06T12:30:00Z"}},
		{name: "wanted events off", events: []string{"Deployment Hook", "Job Hook", "Pipeline Hook"},
			routes: goodWith(map[string]reply{hooksPath: {Body: "[" + doctorHook(12, ownURL, "executable", true, false, false, true) + "]"}}),
			want:   []string{"token|ok|", "project acme/payments|warn|hook 12 does not send Job Hook, Pipeline Hook, which the connector consumes"}},
		{name: "gate without deployment events, SSL off", gate: true, events: deploymentJob,
			routes: goodWith(map[string]reply{hooksPath: {Body: "[" + doctorHook(12, ownURL, "executable", false, false, true, false) + "," +
				doctorHook(14, "https://tollgate-b.example.com/webhooks/gitlab/", "executable", true, true, false, true) + "]"}}),
			want: []string{"token|ok|", "project acme/payments|fail|hook 12 does not send Deployment Hook (deployment events): deployments blocked",
				"project acme/payments|warn|hook 12 does not send Job Hook, which", "project acme/payments|warn|hook 12 does not verify the TLS certificate"}},
		{name: "two good webhooks, one plain http", events: deploymentJob,
			routes: goodWith(map[string]reply{hooksPath: {Body: "[" + doctorHook(12, ownURL, "executable", true, true, false, true) + "," +
				doctorHook(14, "http://tollgate-b.internal/webhooks/gitlab", "executable", true, true, true, false) + "]"}}),
			want: []string{"token|ok|", "project acme/payments|ok|hook 12 sends Deployment Hook, Job Hook; hook 14 sends Deployment Hook, Job Hook, Pipeline Hook"}},
	}
}

// TestPreflight: the token first (refused: the only finding), then each
// project and the webhooks of it that point at the connector.
func TestPreflight(t *testing.T) {
	for _, c := range append(tokenCases(), projectCases()...) {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeDoctor{routes: map[string]reply{
				ledgerPath:                  {Body: `{"id": 31, "path_with_namespace": "acme/ledger"}`},
				"/api/v4/projects/31/hooks": {Body: "[" + doctorHook(20, ownURL, "executable", true, true, true, true) + "]"},
			}}
			for k, v := range c.routes {
				f.routes[k] = v
			}
			srv := httptest.NewServer(f)
			defer srv.Close()
			cfg := connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef", Projects: c.projects,
				API: &connectors.API{URL: srv.URL + "/", Token: "glpat-x"}}
			if cfg.Projects == nil {
				cfg.Projects = []string{"acme/payments"}
			}
			if c.token != "" {
				cfg.API.Token = c.token
			}
			if c.gate {
				cfg.CIGate = &connectors.CIGate{Deadline: time.Hour}
			}
			w, err := newWebhook(cfg, apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer w.CloseIdleConnections()
			got := w.Preflight(context.Background(), connectors.PreflightInput{Name: "gitlab", Events: c.events})
			checkFindings(t, got, c.want, cfg.API.Token)
		})
	}

	noAPI, err := New(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef", Projects: []string{"acme/payments"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := noAPI.Preflight(context.Background(), connectors.PreflightInput{Name: "gitlab"}); got != nil {
		t.Errorf("without an API: %+v, want nil", got)
	}
}

// checkFindings compares findings with want ("check|status|part of the
// detail"), in order, and looks for the secret in every detail.
func checkFindings(t *testing.T, got []connectors.Finding, want []string, secret string) {
	t.Helper()
	hooktest.CheckFindings(t, got, hooktest.Wants(want...), secret)
}
