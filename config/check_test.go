package config

import (
	"fmt"
	"strings"
	"testing"
)

// TestCheckReportsEveryProblem: one file with many mistakes gets each of
// them reported, with lines for what the YAML locates, and a good file
// gets none.
func TestCheckReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		src  string
		env  map[string]string
		want []string // each must appear in exactly one problem
	}{
		{
			name: "valid",
			src:  "connectors:\n  - name: gh\n    type: github\n    webhook_secret: ${GH_SECRET}\n",
			env:  map[string]string{"GH_SECRET": "0123456789abcdef0123"},
		},
		{
			name: "empty file",
			src:  "",
		},
		{
			name: "optional variable unset",
			src:  "database_url: ${DB_URL:-}\n",
		},
		{
			name: "many mistakes",
			src: `adress: ":8080"
log_level: loud
gate:
  max_wait: forever
connectors:
  - name: gh
    type: gihtub
    webhook_secret: ${GH_SECRET}
    secret_header: x
  - name: jira
    type: jira
    webhook_secret: short
    options:
      url: jira.example.com
      api_url: https://jira.example.com/rest
policy:
  environments:
    production:
      rules: [NOPE]
      preset: strict
      typo: 1
`,
			want: []string{
				"line 1: adress: unknown key",
				"log_level",
				"line 4:", // max_wait is not a duration
				"connectors[0].type",
				"line 8: environment variable GH_SECRET is not set",
				"line 9: connectors[0].secret_header: unknown key",
				"connectors[1].webhook_secret: must be at least 16 characters",
				`line 14: connectors[1].options.url: "jira.example.com" is not an absolute http(s) URL`,
				"line 21: policy.environments.production.typo: unknown key",
				`unknown rule code "NOPE"`,
			},
		},
		{
			name: "not YAML",
			src:  "connectors: [",
			want: []string{"not valid YAML"},
		},
		{
			name: "policy that does not compile",
			src:  "policy:\n  time_zone: Mars/Olympus\n  environments:\n    production: {preset: strict}\n",
			want: []string{"Mars/Olympus"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, problems := Check([]byte(tt.src), env(tt.env))
			var msgs []string
			for _, p := range problems {
				msgs = append(msgs, p.Error())
			}
			all := strings.Join(msgs, "\n")
			if len(tt.want) == 0 && len(problems) > 0 {
				t.Fatalf("problems in a valid file:\n%s", all)
			}
			for _, w := range tt.want {
				n := 0
				for _, m := range msgs {
					if strings.Contains(m, w) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%q appears in %d problems, want 1:\n%s", w, n, all)
				}
			}
			if len(tt.want) > 0 && len(problems) != len(tt.want) {
				t.Errorf("%d problems, want %d:\n%s", len(problems), len(tt.want), all)
			}
		})
	}
}

// TestCheckAgreesWithParse: every file Parse accepts, Check accepts, and
// every file Parse refuses, Check refuses.
func TestCheckAgreesWithParse(t *testing.T) {
	srcs := []string{
		"",
		"addr: \":9090\"\n",
		"addr: nowhere\n",
		"bogus: 1\n",
		"connectors:\n  - {name: gh, type: github}\n",
		"connectors:\n  - {name: gh, type: github, webhook_secret: 0123456789abcdef0123}\n",
		"gate: {max_list_items: 0}\n",
		"inbox: {workers: 100}\n",
	}
	for i, src := range srcs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			_, perr := Parse([]byte(src), env(nil))
			_, problems := Check([]byte(src), env(nil))
			if (perr == nil) != (len(problems) == 0) {
				t.Errorf("Parse: %v; Check: %v", perr, problems)
			}
		})
	}
}
