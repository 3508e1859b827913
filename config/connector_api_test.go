package config

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

const snSecret = "0123456789abcdef0123"

func snConfig(api string, extra ...string) string {
	return "connectors:\n  - name: servicenow\n    type: servicenow\n    webhook_secret: " + snSecret + "\n" +
		strings.Join(extra, "") + "    api:\n" + api
}

// TestConnectorAPI: a bad api block stops the start naming the key; a
// good one gets its defaults.
func TestConnectorAPI(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		wantErr []string
	}{
		{"good basic", snConfig("      url: https://acme.service-now.com\n      username: u\n      password: p\n      poll_interval: 5m\n"), nil},
		{"good oauth", snConfig("      url: https://acme.service-now.com\n      client_id: c\n      client_secret: s\n"), nil},
		{"bad url", snConfig("      url: not a url\n      username: u\n      password: p\n"), []string{"connectors[0].api.url"}},
		{"url with credentials", snConfig("      url: https://u:p@acme.service-now.com\n      username: u\n      password: p\n"), []string{"api.url", "must not carry credentials"}},
		{"no url", snConfig("      username: u\n      password: p\n"), []string{"api.url", "required"}},
		{"no credentials", snConfig("      url: https://acme.service-now.com\n"), []string{"api.username", "credentials are required"}},
		{"half basic", snConfig("      url: https://acme.service-now.com\n      username: u\n"), []string{"api.username", "password"}},
		{"half oauth", snConfig("      url: https://acme.service-now.com\n      client_id: c\n"), []string{"api.client_id"}},
		{"pat on servicenow", snConfig("      url: https://acme.service-now.com\n      token: t\n"), []string{"api.token"}},
		{"unknown key", snConfig("      url: https://acme.service-now.com\n      username: u\n      password: p\n      pol_interval: 1s\n"), []string{"pol_interval"}},
		{"tiny poll interval", snConfig("      url: https://acme.service-now.com\n      username: u\n      password: p\n      poll_interval: 10ms\n"), []string{"api.poll_interval"}},
		{"standard without template", snConfig("      url: https://acme.service-now.com\n      username: u\n      password: p\n",
			"    change_creation: {environments: [production], type: standard}\n"), []string{"change_creation.template"}},
		{"creation without environments", snConfig("      url: https://acme.service-now.com\n      username: u\n      password: p\n",
			"    change_creation: {type: normal}\n"), []string{"change_creation.environments"}},
		{"jira poller without projects", "connectors:\n  - name: jira\n    type: jira\n    webhook_secret: " + snSecret +
			"\n    api: {url: https://acme.atlassian.net, username: a@b.c, password: t, poll_interval: 1m}\n", []string{"connectors[0].projects"}},
		{"jira pat", "connectors:\n  - name: jira\n    type: jira\n    webhook_secret: " + snSecret +
			"\n    api: {url: https://jira.example.com, token: pat}\n    projects: [OPS]\n    change_creation: {environments: [production], project: OPS, issue_type: Change}\n", nil},
		{"api on generic", "connectors:\n  - name: ci\n    type: generic\n    webhook_secret: " + snSecret +
			"\n    api: {url: https://api.github.com, username: a, password: b}\n", []string{"connectors[0].api", "no API client"}},
		{"jenkins poller", "connectors:\n  - name: ci\n    type: jenkins\n    webhook_secret: " + snSecret +
			"\n    api: {url: https://ci.example.com, username: a, password: b, poll_interval: 1m}\n    jobs: [deploy-payments, team/deploy ledger]\n", nil},
		{"jenkins api without poller or jobs", "connectors:\n  - name: ci\n    type: jenkins\n    webhook_secret: " + snSecret +
			"\n    api: {url: https://ci.example.com, username: a, password: b}\n", []string{"api.poll_interval", "connectors[0].jobs"}},
		{"jenkins jobs without api", "connectors:\n  - name: ci\n    type: jenkins\n    webhook_secret: " + snSecret +
			"\n    jobs: [deploy]\n", []string{"connectors[0].jobs", "needs api"}},
		{"jenkins bad job, token, no password", "connectors:\n  - name: ci\n    type: jenkins\n    webhook_secret: " + snSecret +
			"\n    api: {url: https://ci.example.com, username: a, token: t, poll_interval: 1m}\n    jobs: [\"/lead\", \"a//b\", \"trail/\"]\n",
			[]string{"api.username", "url, username, password", "jobs[0]", "jobs[1]", "jobs[2]"}},
		{"jobs on servicenow", "connectors:\n  - name: sn\n    type: servicenow\n    webhook_secret: " + snSecret + "\n    jobs: [deploy]\n", []string{"connectors[0].jobs", "jenkins setting"}},
		{"write_back without api", "connectors:\n  - name: sn\n    type: servicenow\n    webhook_secret: " + snSecret + "\n    write_back: true\n", []string{"write_back"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.src), env(nil))
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if a := c.Connectors[0].API; a.Timeout.D() != DefaultAPITimeout || a.ReadBackTimeout.D() != DefaultReadBackTimeout {
					t.Errorf("defaults not applied: %+v", a)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error naming %v", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// TestConnectorAPISecretsMasked: the start-up log of the configuration
// carries no API password, client secret or token.
func TestConnectorAPISecretsMasked(t *testing.T) {
	secrets := map[string]string{"SN_PW": "sn-password-0xfeed", "SN_CS": "sn-client-secret-0xbeef", "JIRA_PAT": "jira-pat-0xcafe"}
	src := `connectors:
  - name: sn
    type: servicenow
    webhook_secret: ` + snSecret + `
    api: {url: https://acme.service-now.com, username: u, password: "${SN_PW}", poll_interval: 1m}
  - name: sn2
    type: servicenow
    webhook_secret: ` + snSecret + `
    api: {url: https://acme.service-now.com, client_id: c, client_secret: "${SN_CS}"}
  - name: jira
    type: jira
    webhook_secret: ` + snSecret + `
    api: {url: https://jira.example.com, token: "${JIRA_PAT}", timeout: 3s}
    projects: [OPS]
`
	c, err := Parse([]byte(src), env(secrets))
	if err != nil {
		t.Fatal(err)
	}
	if c.Connectors[2].API.Timeout.D() != 3*time.Second {
		t.Errorf("timeout: %v", c.Connectors[2].API.Timeout)
	}
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("config", "config", c)
		out := buf.String()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("log contains a secret: %s", out)
			}
		}
		if !strings.Contains(out, "acme.service-now.com") || !strings.Contains(out, "poll_interval") {
			t.Errorf("log lacks the api block: %s", out)
		}
	}
}
