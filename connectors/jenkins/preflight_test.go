package jenkins

import (
	"context"
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

// Paths the preflight reads, and the tree each asks for.
const (
	whoAmIPath  = "/whoAmI/api/json"
	paymentsJob = "/job/deploy-payments/api/json"
	ledgerJob   = "/job/team/job/deploy%20ledger/api/json"
	pluginsPath = "/pluginManager/api/json"
)

var trees = map[string]string{paymentsJob: "name,buildable", ledgerJob: "name,buildable", pluginsPath: "plugins[shortName,active,version]"}

// fakeDoctor is Jenkins answering the preflight's reads from routes (by
// escaped path), with Basic auth checked as fakeJenkins checks it.
func fakeDoctor(routes map[string]reply) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "tollgate" || p != "api-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		rep, ok := routes[r.URL.EscapedPath()]
		switch {
		case r.Method != http.MethodGet:
			w.WriteHeader(http.StatusMethodNotAllowed) // the preflight only reads
			return
		case !ok:
			w.WriteHeader(http.StatusNotFound)
			return
		case r.URL.Query().Get("tree") != trees[r.URL.EscapedPath()]:
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rep.Write(w)
	}))
}

// TestPreflight: the credentials first (refused: the only finding), then
// each job, then the Notification plugin.
func TestPreflight(t *testing.T) {
	good := map[string]reply{
		whoAmIPath:  {Body: `{"_class": "hudson.security.WhoAmI", "anonymous": false, "authenticated": true, "authorities": ["authenticated"], "name": "tollgate"}`},
		paymentsJob: {Body: `{"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob", "buildable": true, "name": "deploy-payments"}`},
		ledgerJob:   {Body: `{"_class": "hudson.model.FreeStyleProject", "buildable": true, "name": "deploy ledger"}`},
		pluginsPath: {Body: `{"_class": "hudson.LocalPluginManager", "plugins": [{"active": true, "shortName": "git", "version": "5.2.1"},
			{"active": true, "shortName": "notification", "version": "1.17"}]}`},
	}
	with := func(over map[string]reply) map[string]reply {
		out := map[string]reply{}
		for k, v := range good {
			out[k] = v
		}
		for k, v := range over {
			out[k] = v
		}
		return out
	}
	allJobsOK := []string{"job deploy-payments|ok|readable and buildable", "job team/deploy ledger|ok|readable and buildable"}
	okThen := func(jobs []string, plugin string) []string {
		return append(append([]string{"credentials|ok|as tollgate"}, jobs...), plugin)
	}
	const pluginOK = "plugin|ok|Notification plugin 1.17 is installed and active"
	for _, c := range []struct {
		name     string
		password string // api-token when empty
		routes   map[string]reply
		want     []string // "check|status|part of the detail"
	}{
		{name: "all good", routes: good, want: okThen(allJobsOK, pluginOK)},
		{name: "token refused", password: "wrong", routes: good, want: []string{"credentials|fail|Jenkins refused user tollgate or its API token (HTTP 401)"}},
		{name: "user forbidden", routes: with(map[string]reply{whoAmIPath: {Status: 403}}), want: []string{"credentials|fail|(HTTP 403)"}},
		{name: "first check unanswered", routes: with(map[string]reply{whoAmIPath: {Status: hangUp}}), want: []string{"credentials|fail|Jenkins jenkins: who am I: no answer from"}},
		{name: "anonymous", routes: with(map[string]reply{whoAmIPath: {Body: `{"anonymous": true, "authenticated": true, "name": "anonymous"}`}}),
			want: append(append([]string{"credentials|warn|as anonymous: jobs anonymous may not read are hidden"}, allJobsOK...), pluginOK)},
		{name: "not authenticated", routes: with(map[string]reply{whoAmIPath: {Body: `{"anonymous": false, "authenticated": false, "name": "anonymous"}`}}),
			want: append(append([]string{"credentials|warn|as anonymous"}, allJobsOK...), pluginOK)},
		{name: "job missing", routes: with(map[string]reply{paymentsJob: {Status: 404}}), want: okThen(
			[]string{"job deploy-payments|fail|no job deploy-payments, or the user may not read it", allJobsOK[1]}, pluginOK)},
		{name: "job disabled", routes: with(map[string]reply{ledgerJob: {Body: `{"buildable": false, "name": "deploy ledger"}`}}), want: okThen(
			[]string{allJobsOK[0], "job team/deploy ledger|warn|team/deploy ledger is disabled"}, pluginOK)},
		{name: "a folder", routes: with(map[string]reply{ledgerJob: {Body: `{"_class": "com.cloudbees.hudson.plugins.folder.Folder", "name": "deploy ledger"}`}}),
			want: okThen([]string{allJobsOK[0], "job team/deploy ledger|warn|is not a job that builds (a folder?)"}, pluginOK)},
		{name: "a later check's 500", routes: with(map[string]reply{paymentsJob: {Status: 500}}), want: okThen(
			[]string{"job deploy-payments|fail|Jenkins jenkins: job deploy-payments: HTTP 500", allJobsOK[1]}, pluginOK)},
		{name: "a job unanswered", routes: with(map[string]reply{ledgerJob: {Status: hangUp}}), want: okThen(
			[]string{allJobsOK[0], "job team/deploy ledger|fail|Jenkins jenkins: job team/deploy ledger: no answer from"}, pluginOK)},
		{name: "plugins forbidden", routes: with(map[string]reply{pluginsPath: {Status: 403}}), want: okThen(allJobsOK,
			"plugin|warn|cannot list plugins (needs Overall/SystemRead or Administer): whether the Notification plugin is installed is not checked")},
		{name: "plugins 502", routes: with(map[string]reply{pluginsPath: {Status: 502}}), want: okThen(allJobsOK,
			"plugin|warn|whether the Notification plugin is installed is not checked: Jenkins jenkins: plugins: HTTP 502")},
		{name: "no plugin", routes: with(map[string]reply{pluginsPath: {Body: `{"plugins": [{"active": true, "shortName": "git", "version": "5.2.1"}]}`}}),
			want: okThen(allJobsOK, "plugin|warn|the Notification plugin is not installed: builds reach tollgate only by polling every poll_interval")},
		{name: "plugin inactive", routes: with(map[string]reply{pluginsPath: {Body: `{"plugins": [{"active": false, "shortName": "notification", "version": "1.17"}]}`}}),
			want: okThen(allJobsOK, "plugin|warn|the Notification plugin 1.17 is installed but not active: builds reach tollgate only by polling")},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := fakeDoctor(c.routes)
			defer srv.Close()
			password := "api-token"
			if c.password != "" {
				password = c.password
			}
			w, err := newWebhook(connectors.Config{Name: "jenkins", Type: Type, WebhookSecret: "0123456789abcdef", Jobs: []string{"deploy-payments", "team/deploy ledger"},
				API: &connectors.API{URL: srv.URL + "/", Username: "tollgate", Password: password}},
				apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer w.CloseIdleConnections()
			got := w.Preflight(context.Background(), connectors.PreflightInput{Name: "jenkins", Events: []string{PhaseStarted, PhaseCompleted}})
			checkFindings(t, got, c.want, password)
		})
	}

	noAPI, err := New(connectors.Config{Name: "jenkins", Type: Type, WebhookSecret: "0123456789abcdef", Jobs: []string{"deploy-payments"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := noAPI.Preflight(context.Background(), connectors.PreflightInput{Name: "jenkins"}); got != nil {
		t.Errorf("without an API: %+v, want nil", got)
	}
}

// checkFindings compares findings with want ("check|status|part of the
// detail"), in order, and looks for the secret in every detail.
func checkFindings(t *testing.T, got []connectors.Finding, want []string, secret string) {
	t.Helper()
	hooktest.CheckFindings(t, got, hooktest.Wants(want...), secret, "tree=")
}
