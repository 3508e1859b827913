package config

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"bytes"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParse(t *testing.T) {
	const good = `
addr: ":9090"
database_url: ${DB_URL}
connectors:
  - name: github
    type: github
    webhook_secret: ${GH_SECRET}
  - name: jenkins-main
    type: jenkins
    webhook_secret: ${JENKINS_SECRET:-a-long-default-secret}
    default_environment: production
`
	tests := []struct {
		name    string
		src     string
		env     map[string]string
		wantErr []string // substrings that must all appear
		check   func(t *testing.T, c *Config)
	}{
		{
			name: "empty file gives defaults",
			src:  "",
			check: func(t *testing.T, c *Config) {
				if c.Gate.MaxWaiting != 2000 || c.Gate.MaxWaitingPerToken != 500 {
					t.Errorf("waiting caps %d / %d, want 2000 / 500", c.Gate.MaxWaiting, c.Gate.MaxWaitingPerToken)
				}
				if c.Addr != ":8080" || c.DatabaseURL != "" || c.Gate.MaxWait.D() != 15*time.Minute || c.MaxBodyBytes != 1<<20 {
					t.Errorf("defaults: %+v", c)
				}
			},
		},
		{
			name: "expansion and default values",
			src:  good,
			env:  map[string]string{"DB_URL": "postgres://u:pw@db:5432/tollgate", "GH_SECRET": "0123456789abcdef0123"},
			check: func(t *testing.T, c *Config) {
				if c.Addr != ":9090" || c.DatabaseURL != "postgres://u:pw@db:5432/tollgate" {
					t.Errorf("got %+v", c)
				}
				if c.Connectors[1].WebhookSecret != "a-long-default-secret" {
					t.Errorf("default not applied: %q", c.Connectors[1].WebhookSecret)
				}
			},
		},
		{
			name: "environment overrides the file",
			src:  good,
			env: map[string]string{"DB_URL": "postgres://db/x", "GH_SECRET": "0123456789abcdef0123",
				"TOLLGATE_ADDR": ":7000", "TOLLGATE_DATABASE_URL": "sqlite:/tmp/x.db", "TOLLGATE_ADMIN_TOKEN": "bootstrap-admin-token-123"},
			check: func(t *testing.T, c *Config) {
				if c.Addr != ":7000" || c.DatabaseURL != "sqlite:/tmp/x.db" || c.AdminToken != "bootstrap-admin-token-123" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "values with YAML syntax stay values",
			src:  "admin_token: ${TOK}\nmax_body_bytes: ${MAX:-2048}\nconnectors:\n  - {name: a, type: generic, webhook_secret: \"${SECRET}\"}\n",
			env:  map[string]string{"TOK": "x: y # not a comment [z]", "SECRET": "'quoted' \"and\" {braced}"},
			check: func(t *testing.T, c *Config) {
				if c.AdminToken != "x: y # not a comment [z]" || c.MaxBodyBytes != 2048 || c.Connectors[0].WebhookSecret != `'quoted' "and" {braced}` {
					t.Errorf("got %q %d %q", c.AdminToken, c.MaxBodyBytes, c.Connectors[0].WebhookSecret)
				}
			},
		},
		{name: "unset variable is named", src: good, env: map[string]string{"DB_URL": "postgres://db/x"}, wantErr: []string{"GH_SECRET"}},
		{name: "unknown key", src: "adress: :80\n", wantErr: []string{"adress"}},
		{name: "bad duration", src: "gate:\n  max_wait: soon\n", wantErr: []string{"not a duration"}},
		{name: "waiting caps", src: "gate:\n  max_waiting: 10\n  max_waiting_per_token: 11\n", wantErr: []string{"gate.max_waiting_per_token", "between 1 and gate.max_waiting (10)"}},
		{name: "waiting caps defaults", src: "gate: {max_waiting: 100}\n", check: func(t *testing.T, c *Config) {
			if c.Gate.MaxWaiting != 100 || c.Gate.MaxWaitingPerToken != 100 {
				t.Errorf("max_waiting %d, per token %d: want 100 and 100", c.Gate.MaxWaiting, c.Gate.MaxWaitingPerToken)
			}
		}},
		{name: "clock skew limit too small", src: "gate: {max_clock_skew: 500ms}\n", wantErr: []string{"gate.max_clock_skew", "between 1s and 1h"}},
		{name: "inbox retention too short", src: "inbox: {retention: 7d}\n", wantErr: []string{"inbox.retention", "between 30d"}},
		{name: "inbox retention off", src: "inbox: {retention: 0d}\n", check: func(t *testing.T, c *Config) {
			if c.Inbox.RetentionD() != 0 {
				t.Errorf("retention %v, want 0 (keep every delivery)", c.Inbox.RetentionD())
			}
		}},
		{name: "inbox retention default", src: "", check: func(t *testing.T, c *Config) {
			if c.Inbox.RetentionD() != 400*24*time.Hour {
				t.Errorf("retention %v, want 400d", c.Inbox.RetentionD())
			}
		}},
		{name: "waiting cap negative", src: "gate: {max_waiting: -1, max_waiting_per_token: 1}\n", wantErr: []string{"gate.max_waiting"}},
		{name: "bad database url", src: "database_url: mysql://x\n", wantErr: []string{"database_url"}},
		{
			name:    "connector problems are all named",
			src:     "connectors:\n  - name: Bad Name\n    type: svn\n  - name: ok\n    type: github\n    webhook_secret: short\n",
			wantErr: []string{"connectors[0].name", "connectors[0].type", "connectors[0].webhook_secret", "connectors[1].webhook_secret"},
		},
		{
			name: "previous webhook secret too short, or the current one again",
			src: "connectors:\n  - {name: a, type: generic, webhook_secret: 0123456789abcdef, webhook_secret_previous: short}\n" +
				"  - {name: b, type: generic, webhook_secret: 0123456789abcdef, webhook_secret_previous: 0123456789abcdef}\n",
			wantErr: []string{"connectors[0].webhook_secret_previous: must be at least 16", "connectors[1].webhook_secret_previous: is the same as webhook_secret"},
		},
		{name: "doctor interval too short", src: "doctor_interval: 1m\n", wantErr: []string{"doctor_interval", "between 5m and 7d"}},
		{name: "duplicate connector", src: "connectors:\n  - {name: a, type: generic, webhook_secret: 0123456789abcdef}\n  - {name: a, type: generic, webhook_secret: 0123456789abcdef}\n", wantErr: []string{"declared twice"}},
		{name: "short admin token", src: "", env: map[string]string{"TOLLGATE_ADMIN_TOKEN": "short"}, wantErr: []string{"admin_token"}},
		{name: "bad log level", src: "log_level: loud\n", wantErr: []string{"log_level"}},
		{name: "negative shutdown delay", src: "shutdown_delay: -1s\n", wantErr: []string{"shutdown_delay"}},
		{name: "shutdown delay over 5m", src: "shutdown_delay: 10m\n", wantErr: []string{"shutdown_delay", "between 0 and 5m"}},
		{name: "negative facts cache ttl", src: "gate:\n  facts_cache_ttl: -1s\n", wantErr: []string{"gate.facts_cache_ttl"}},
		{name: "facts cache ttl over an hour", src: "gate:\n  facts_cache_ttl: 2h\n", wantErr: []string{"gate.facts_cache_ttl"}},
		{name: "facts cache default", src: "", check: func(t *testing.T, c *Config) {
			if c.Gate.CacheTTL() != 0 { // the store's default
				t.Errorf("CacheTTL %v", c.Gate.CacheTTL())
			}
		}},
		{name: "facts cache off", src: "gate:\n  facts_cache_ttl: 0s\n", check: func(t *testing.T, c *Config) {
			if c.Gate.CacheTTL() >= 0 {
				t.Errorf("CacheTTL %v, want negative (off)", c.Gate.CacheTTL())
			}
		}},
		{name: "http and rate limit defaults", src: "", check: func(t *testing.T, c *Config) {
			if c.HTTP.ReadHeaderTimeout.D() != 10*time.Second || c.HTTP.MaxHeaderBytes != 64<<10 ||
				c.RateLimit.PerToken.PerSecond() != 10_000 || c.RateLimit.PerConnector.Burst != 20_000 {
				t.Errorf("defaults: %+v %+v", c.HTTP, c.RateLimit)
			}
		}},
		{name: "rate limit off and set", src: "rate_limit:\n  per_token: {off: true}\n  per_connector: {rate: 50}\n", check: func(t *testing.T, c *Config) {
			if c.RateLimit.PerToken.PerSecond() != 0 || c.RateLimit.PerConnector.PerSecond() != 50 || c.RateLimit.PerConnector.Burst != 20_000 {
				t.Errorf("rate limits: %+v", c.RateLimit)
			}
		}},
		{name: "auth failure limit", src: "", check: func(t *testing.T, c *Config) {
			if l := c.RateLimit.AuthFailuresPerClient; l.PerSecond() != 10 || l.Burst != 50 {
				t.Errorf("auth_failures_per_client default: %+v, want 10/s burst 50", l)
			}
		}},
		{name: "auth failure limit set", src: "rate_limit:\n  auth_failures_per_client: {rate: 2}\n", check: func(t *testing.T, c *Config) {
			if l := c.RateLimit.AuthFailuresPerClient; l.PerSecond() != 2 || l.Burst != 10 {
				t.Errorf("auth_failures_per_client: %+v, want 2/s burst 10", l)
			}
		}},
		{
			name: "bad http and rate limit values",
			src:  "http:\n  read_header_timeout: 1ms\n  max_header_bytes: 10\nrate_limit:\n  per_token: {rate: -1}\n  per_connector: {burst: -5}\n  auth_failures_per_client: {rate: 1, burst: -1}\n",
			wantErr: []string{"http.read_header_timeout", "http.max_header_bytes", "rate_limit.per_token.rate", "rate_limit.per_connector.burst",
				"rate_limit.auth_failures_per_client.burst"},
		},
		{name: "no trusted proxy by default", src: "", check: func(t *testing.T, c *Config) {
			if ps, err := c.HTTP.TrustedProxyPrefixes(); err != nil || len(ps) != 0 {
				t.Errorf("trusted proxies by default: %v %v", ps, err)
			}
		}},
		{name: "trusted proxies: CIDRs and addresses", src: "http:\n  trusted_proxies: [\"10.0.0.0/8\", \"127.0.0.1\", \"2001:db8::/32\", \"::ffff:192.0.2.7\", \" 192.0.2.0/24 \"]\n",
			check: func(t *testing.T, c *Config) {
				ps, err := c.HTTP.TrustedProxyPrefixes()
				got := fmt.Sprint(ps)
				if err != nil || got != "[10.0.0.0/8 127.0.0.1/32 2001:db8::/32 192.0.2.7/32 192.0.2.0/24]" {
					t.Errorf("trusted proxies: %s %v", got, err)
				}
			}},
		{
			name: "bad trusted proxies are each named with the reason",
			src:  "http:\n  trusted_proxies: [\"10.0.0.0/8\", \"10.0.0.0/33\", proxy.example.com, \"\", \"0.0.0.0/0\", \"::/0\", \"10.1.2.3/8\", \"fe80::1%eth0\"]\n",
			wantErr: []string{`http.trusted_proxies[1]: "10.0.0.0/33" is not an IP address or CIDR`,
				`http.trusted_proxies[2]: "proxy.example.com" is not an IP address or CIDR`, `http.trusted_proxies[3]: "" is not`,
				`http.trusted_proxies[4]: "0.0.0.0/0" trusts every address`, `http.trusted_proxies[5]: "::/0" trusts every address`,
				`http.trusted_proxies[6]: "10.1.2.3/8" has address bits set past its /8: write 10.0.0.0/8 for the network or 10.1.2.3/32 for the one address`,
				`http.trusted_proxies[7]`},
		},
		{name: "the profiler on loopback", src: "debug_addr: 127.0.0.1:6060\n", check: func(t *testing.T, c *Config) {
			if c.DebugAddr != "127.0.0.1:6060" {
				t.Errorf("debug_addr %q", c.DebugAddr)
			}
		}},
		{name: "the profiler from the environment", env: map[string]string{"TOLLGATE_DEBUG_ADDR": "127.0.0.1:6061"}, check: func(t *testing.T, c *Config) {
			if c.DebugAddr != "127.0.0.1:6061" {
				t.Errorf("debug_addr %q", c.DebugAddr)
			}
		}},
		{name: "the profiler on [::1]", src: "debug_addr: \"[::1]:0\"\n"},
		{name: "the profiler on localhost", src: "debug_addr: localhost:6060\n"},
		{name: "the profiler on every interface is refused", src: "debug_addr: \":6060\"\n",
			wantErr: []string{`debug_addr: ":6060": the profiler has no authentication, so it listens on loopback only`}},
		{name: "the profiler on a public address is refused", src: "debug_addr: 192.0.2.7:6060\n",
			wantErr: []string{`debug_addr: "192.0.2.7:6060": the profiler has no authentication`}},
		{name: "the profiler's address must be host:port", src: "debug_addr: 127.0.0.1\n",
			wantErr: []string{`debug_addr: "127.0.0.1" is not host:port`}},
		{name: "the profiler's port must be a number", src: "debug_addr: localhost:http\n",
			wantErr: []string{`debug_addr: "localhost:http": the port must be a number`}},
		{name: "facts cache ttl", src: "gate:\n  facts_cache_ttl: 10s\n", check: func(t *testing.T, c *Config) {
			if c.Gate.CacheTTL() != 10*time.Second {
				t.Errorf("CacheTTL %v", c.Gate.CacheTTL())
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.src), env(tt.env))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("want error containing %v, got none", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestLogValueMasksSecrets(t *testing.T) {
	c, err := Parse([]byte(`
database_url: postgres://tollgate:dbpassword@db:5432/tollgate
admin_token: admin-token-value-1234
connectors:
  - name: sn
    type: servicenow
    webhook_secret: webhook-secret-value-1234
    options: {base_url: "https://x.service-now.com", password: api-password-value}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c)
	out := buf.String()
	for _, secret := range []string{"dbpassword", "admin-token-value-1234", "webhook-secret-value-1234", "api-password-value"} {
		if strings.Contains(out, secret) {
			t.Errorf("log shows secret %q: %s", secret, out)
		}
	}
	if !strings.Contains(out, "x.service-now.com") {
		t.Errorf("log lost a non-secret option: %s", out)
	}
}

// The shipped files must load: the default config and the full example
// (with its variables set).
func TestShippedConfigFilesLoad(t *testing.T) {
	vars := map[string]string{}
	for _, v := range []string{"SERVICENOW", "JIRA", "GITHUB", "GITLAB", "JENKINS", "GENERIC"} {
		vars[v+"_WEBHOOK_SECRET"] = "a-webhook-secret-of-some-length"
	}
	for _, f := range []string{"tollgate.yaml", "tollgate.example.yaml"} {
		c, _, err := Load(f, env(vars))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if f == "tollgate.example.yaml" && (len(c.Connectors) != 6 || c.Policy == nil || c.Policy.TimeZone != "Europe/Berlin" || c.Policy.Emergency.ReviewBusinessHours != 24 || c.Policy.Emergency.ValidationHours != 4) {
			t.Errorf("%s: connectors %d, policy %+v", f, len(c.Connectors), c.Policy)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, src := range []string{
		"environments:\n  production:\n    preset: strict\n",
		"---\nenvironments:\n  production:\n    preset: strict\n",      // a document start marker
		"---\nenvironments:\n  production:\n    preset: strict\n...\n", // and end marker
		"environments:\n  production:\n    preset: strict\n---\n",      // a trailing marker: an empty document
		`{"environments": {"production": {"preset": "strict"}}}`,
	} {
		if _, err := ParsePolicy([]byte(src)); err != nil {
			t.Fatalf("valid policy %q: %v", src, err)
		}
	}
	for _, tt := range []struct{ src, want string }{
		{"", "empty"},
		{"environments: [", "not a valid policy"},
		{"enviroments: {}", "enviroments"},
		{"environments:\n  production:\n    rules: [NO_SUCH_RULE]\n", "environments.production.rules[0]"},
		{"time_zone: Mars/Olympus\n", "time_zone"},
		// A second document would be stored and never enforced.
		{"environments:\n  production:\n    preset: strict\n---\nenvironments:\n  production:\n    preset: open\n", "more than one YAML document"},
		{"environments:\n  production:\n    preset: strict\n---\nnot: [closed\n", "more than one YAML document"},
		{"environments:\n  production:\n    preset: strict\n---\n# only a comment after\nfreeze_windows: []\n", "more than one YAML document"},
	} {
		_, err := ParsePolicy([]byte(tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParsePolicy(%q) = %v, want error mentioning %q", tt.src, err, tt.want)
		}
	}
}
