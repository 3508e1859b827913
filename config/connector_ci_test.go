package config

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// appKey writes a throwaway RSA key (PKCS#1 PEM, as GitHub hands out App
// keys) and returns its path and text.
func appKey(t *testing.T) (string, []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemText := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	path := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(path, pemText, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, pemText
}

func ghConfig(body string) string {
	return "connectors:\n  - name: github\n    type: github\n    webhook_secret: " + snSecret + "\n" + body
}

func glConfig(body string) string {
	return "connectors:\n  - name: gitlab\n    type: gitlab\n    webhook_secret: " + snSecret + "\n" + body
}

// TestCIGateConfig: the keys of the gates where the CI waits are checked
// at start, each problem naming its key.
func TestCIGateConfig(t *testing.T) {
	testAppKey, pemText := appKey(t)
	inline := "      private_key: |\n        " + strings.ReplaceAll(strings.TrimSpace(string(pemText)), "\n", "\n        ") + "\n"
	tests := []struct {
		name    string
		src     string
		wantErr []string
	}{
		{"github full", ghConfig("    api:\n      url: https://api.github.com\n      app_id: \"123456\"\n      private_key_file: " + testAppKey +
			"\n    protection_rule:\n      deadline: 4h\n    services: {\"acme/payments\": payments-api}\n    change_key_patterns: ['CHG\\d{7}', '[A-Z][A-Z0-9]+-\\d+']\n"), nil},
		{"github inline key", ghConfig("    api:\n      url: https://ghe.example.com/api/v3\n      app_id: \"7\"\n" + inline + "    protection_rule: {deadline: 10s}\n"), nil},
		{"gitlab full", glConfig("    api:\n      url: https://gitlab.example.com\n      token: glpat-x\n    approvals: {deadline: 2m}\n"), nil},
		{"github no app id", ghConfig("    api:\n      url: https://api.github.com\n      private_key_file: " + testAppKey + "\n"), []string{"api.app_id"}},
		{"github key missing", ghConfig("    api:\n      url: https://api.github.com\n      app_id: \"1\"\n      private_key_file: /nonexistent/app.pem\n"), []string{"api.private_key_file", "cannot read"}},
		{"github key not rsa", ghConfig("    api:\n      url: https://api.github.com\n      app_id: \"1\"\n      private_key: not-a-key\n"), []string{"api.private_key_file", "not an RSA private key"}},
		{"github both keys", ghConfig("    api:\n      url: https://api.github.com\n      app_id: \"1\"\n      private_key: x\n      private_key_file: " + testAppKey + "\n"), []string{"not both"}},
		{"github token", ghConfig("    api:\n      url: https://api.github.com\n      app_id: \"1\"\n      private_key_file: " + testAppKey + "\n      token: t\n"), []string{"api.token"}},
		{"github app, no rule, redelivery off", ghConfig("    api:\n      url: https://api.github.com\n      app_id: \"1\"\n      private_key_file: " + testAppKey + "\n      redeliver_interval: 0s\n"), nil},
		{"github redelivery too often", ghConfig("    api:\n      url: https://api.github.com\n      app_id: \"1\"\n      private_key_file: " + testAppKey + "\n      redeliver_interval: 10s\n"), []string{"api.redeliver_interval", "30s and 24h"}},
		{"github redelivery negative", ghConfig("    api:\n      url: https://api.github.com\n      app_id: \"1\"\n      private_key_file: " + testAppKey + "\n      redeliver_interval: -5m\n"), []string{"api.redeliver_interval"}},
		{"github repositories and organizations, no rule", ghConfig("    api:\n      url: https://api.github.com\n      app_id: \"1\"\n      private_key_file: " + testAppKey +
			"\n    repositories: [acme/payments, acme/ledger.api]\n    organizations: [acme]\n"), nil},
		{"github repositories without the App", ghConfig("    repositories: [acme/payments]\n"), []string{"connectors[0].repositories", "through the GitHub App"}},
		{"github malformed repository and organization", ghConfig("    api:\n      url: https://api.github.com\n      app_id: \"1\"\n      private_key_file: " + testAppKey +
			"\n    repositories: [payments]\n    organizations: [acme/x]\n"), []string{"repositories[0]", "owner/name", "organizations[0]"}},
		{"gitlab organizations", glConfig("    organizations: [acme]\n"), []string{"organizations", "is a github setting"}},
		{"gitlab groups, no poller", glConfig("    api: {url: https://gitlab.example.com, token: t, redeliver_interval: 5m}\n    groups: [acme, acme/platform, \"77\"]\n    approvals: {deadline: 1h}\n"), nil},
		{"gitlab groups watched, no projects", glConfig("    api: {url: https://gitlab.example.com, token: t, poll_interval: 2m}\n    groups: [acme]\n    approvals: {deadline: 1h}\n"), nil},
		{"gitlab groups without api", glConfig("    groups: [acme]\n"), []string{"connectors[0].groups", "set api"}},
		{"gitlab malformed group", glConfig("    api: {url: https://gitlab.example.com, token: t}\n    groups: [\"acme platform\"]\n"), []string{"groups[0]", "GitLab group"}},
		{"github groups", ghConfig("    groups: [acme]\n"), []string{"groups", "is a gitlab setting"}},
		{"gitlab redelivery without projects", glConfig("    api: {url: https://gitlab.example.com, token: t, redeliver_interval: 5m}\n"), []string{"api.redeliver_interval", "set projects"}},
		{"gitlab redelivery off without projects", glConfig("    api: {url: https://gitlab.example.com, token: t, redeliver_interval: 0s}\n    approvals: {deadline: 1h}\n"), nil},
		{"gitlab redelivery too often", glConfig("    api: {url: https://gitlab.example.com, token: t, poll_interval: 1m, redeliver_interval: 5s}\n    projects: [acme/payments]\n"), []string{"api.redeliver_interval", "30s and 24h"}},
		{"gitlab redelivery with projects", glConfig("    api: {url: https://gitlab.example.com, token: t, poll_interval: 1m, redeliver_interval: 2m}\n    approvals: {deadline: 1h}\n    projects: [acme/payments]\n"), nil},
		{"gitlab poller", glConfig("    api: {url: https://gitlab.example.com, token: t, poll_interval: 2m}\n    approvals: {deadline: 1h}\n    projects: [acme/payments, \"42\", group/sub/app.x]\n"), nil},
		{"gitlab poller without projects", glConfig("    api: {url: https://gitlab.example.com, token: t, poll_interval: 2m}\n    approvals: {deadline: 1h}\n"), []string{"projects", "needs the projects"}},
		{"gitlab projects without poller", glConfig("    api: {url: https://gitlab.example.com, token: t}\n    approvals: {deadline: 1h}\n    projects: [acme/payments]\n"), []string{"projects", "poll_interval"}},
		{"gitlab projects without api", glConfig("    projects: [acme/payments]\n"), []string{"projects", "needs api"}},
		{"gitlab poller, no approvals: it records the deployments", glConfig("    api: {url: https://gitlab.example.com, token: t, poll_interval: 2m}\n    projects: [acme/payments]\n"), nil},
		{"gitlab poller too often", glConfig("    api: {url: https://gitlab.example.com, token: t, poll_interval: 1s}\n    approvals: {deadline: 1h}\n    projects: [acme/payments]\n"), []string{"api.poll_interval", "10s and 24h"}},
		{"gitlab bad project", glConfig("    api: {url: https://gitlab.example.com, token: t, poll_interval: 2m}\n    approvals: {deadline: 1h}\n    projects: [\"not a path\", /lead]\n"), []string{"projects[0]", "projects[1]"}},
		{"github projects", ghConfig("    projects: [acme/payments]\n"), []string{"projects", "jira/gitlab setting"}},
		{"github poll interval", ghConfig("    api:\n      url: https://api.github.com\n      app_id: \"1\"\n      private_key_file: " + testAppKey + "\n      poll_interval: 1m\n"), []string{"api.poll_interval", "servicenow/jira/gitlab setting"}},
		{"gitlab no token", glConfig("    api:\n      url: https://gitlab.example.com\n    approvals: {deadline: 2m}\n"), []string{"api.token", "required"}},
		{"rule without api", ghConfig("    protection_rule: {deadline: 1h}\n"), []string{"connectors[0].api", "required"}},
		{"approvals on github", ghConfig("    approvals: {deadline: 1h}\n"), []string{"approvals", "gitlab setting"}},
		{"protection_rule on gitlab", glConfig("    protection_rule: {deadline: 1h}\n"), []string{"protection_rule", "github setting"}},
		{"deadline too long", glConfig("    api: {url: https://gitlab.example.com, token: t}\n    approvals: {deadline: 800h}\n"), []string{"approvals.deadline"}},
		{"max_open set", glConfig("    api: {url: https://gitlab.example.com, token: t}\n    approvals: {deadline: 1h, max_open: 50}\n"), nil},
		{"max_open negative", glConfig("    api: {url: https://gitlab.example.com, token: t}\n    approvals: {max_open: -1}\n"), []string{"connectors[0].approvals.max_open", "between 1 and 100000"}},
		{"max_open too large", ghConfig("    api:\n      url: https://api.github.com\n      app_id: \"1\"\n      private_key_file: " + testAppKey + "\n    protection_rule: {max_open: 200000}\n"), []string{"connectors[0].protection_rule.max_open"}},
		{"bad pattern", glConfig("    change_key_patterns: ['CHG(']\n"), []string{"change_key_patterns[0]"}},
		{"bad service", glConfig("    services: {\"acme/x\": \"no spaces allowed\"}\n"), []string{"services"}},
		{"unknown key", glConfig("    approvals: {dedline: 2m}\n"), []string{"dedline"}},
		{"the App's secret too short", ghConfig("    protection_rule: {webhook_secret: short}\n"), []string{"protection_rule.webhook_secret", "at least 16"}},
		{"the App's secret is the repositories'", ghConfig("    protection_rule: {webhook_secret: " + snSecret + "}\n"), []string{"protection_rule.webhook_secret", "repository webhooks carry"}},
		{"the App's previous secret alone", ghConfig("    protection_rule: {webhook_secret_previous: 0123456789abcdefOLD}\n"), []string{"protection_rule.webhook_secret_previous", "needs webhook_secret"}},
		{"the App's previous secret is its current", ghConfig("    protection_rule: {webhook_secret: 0123456789abcdefAPP, webhook_secret_previous: 0123456789abcdefAPP}\n"), []string{"protection_rule.webhook_secret_previous", "is the same as webhook_secret"}},
		{"a secret on gitlab approvals", glConfig("    approvals: {webhook_secret: 0123456789abcdefXYZ}\n"), []string{"approvals.webhook_secret", "protection_rule setting"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.src), func(string) string { return "" })
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if g := c.Connectors[0].CIGate(); g == nil && !strings.Contains(tt.name, "no") {
					t.Fatal("CIGate() is nil for a configured gate")
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; want one naming %v", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// TestCIGateDefaultsAndMasking: the deadline defaults to 4h, max_open to
// 200; the App key
// and the GitLab token never reach the logged configuration.
func TestCIGateDefaultsAndMasking(t *testing.T) {
	_, pemText := appKey(t)
	src := "connectors:\n  - name: github\n    type: github\n    webhook_secret: " + snSecret +
		"\n    api:\n      url: https://api.github.com\n      app_id: \"42\"\n      private_key: ${APP_KEY}\n    protection_rule: {}\n" +
		"  - name: gitlab\n    type: gitlab\n    webhook_secret: " + snSecret + "\n    api: {url: https://gitlab.example.com, token: glpat-secret-approver}\n    approvals: {}\n"
	c, err := Parse([]byte(src), func(k string) string {
		if k == "APP_KEY" {
			return string(pemText)
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Connectors {
		if g := c.Connectors[i].CIGate(); g == nil || g.Deadline.D() != 4*time.Hour || g.MaxOpen != 200 {
			t.Fatalf("connector %d: gate %+v, want a 4h deadline and 200 open requests per repository", i, g)
		}
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c)
	out := buf.String()
	for _, secret := range []string{"glpat-secret-approver", "PRIVATE KEY", strings.Split(string(pemText), "\n")[1]} {
		if strings.Contains(out, secret) {
			t.Errorf("logged configuration shows a secret (%q)", secret[:10])
		}
	}
	if !strings.Contains(out, `"app_id":"42"`) || !strings.Contains(out, `"deadline":"4h0m0s"`) {
		t.Errorf("logged configuration lacks app_id or deadline: %s", out)
	}
}

// TestRedeliverInterval: a GitHub App's failed deliveries are asked for
// again every 5 minutes unless redeliver_interval says otherwise (0s:
// never); the ITSMs have pollers instead and refuse the key.
func TestRedeliverInterval(t *testing.T) {
	testAppKey, _ := appKey(t)
	for _, tt := range []struct {
		set  string
		want time.Duration
	}{{"", DefaultRedeliverInterval}, {"      redeliver_interval: 0s\n", 0}, {"      redeliver_interval: 1h\n", time.Hour}} {
		c, err := Parse([]byte(ghConfig("    api:\n      url: https://api.github.com\n      app_id: \"1\"\n      private_key_file: "+testAppKey+"\n"+tt.set)),
			func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Connectors[0].API.Redeliver(); got != tt.want {
			t.Errorf("%q: every %v, want %v", tt.set, got, tt.want)
		}
	}
	_, err := Parse([]byte("connectors:\n  - name: sn\n    type: servicenow\n    webhook_secret: "+snSecret+
		"\n    api: {url: https://acme.service-now.com, username: u, password: p, redeliver_interval: 5m}\n"), func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "redeliver_interval") || !strings.Contains(err.Error(), "github/gitlab setting") {
		t.Errorf("redeliver_interval on servicenow: %v", err)
	}
}
