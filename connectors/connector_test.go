package connectors_test

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/all"
	"github.com/tollgate-dev/tollgate/core"
)

func TestRegistryTypes(t *testing.T) {
	got := all.Registry().Types()
	want := []string{"generic", "github", "gitlab", "jenkins", "jira", "servicenow"}
	if !slices.Equal(got, want) {
		t.Fatalf("Types() = %v, want %v", got, want)
	}
}

func TestRegistryNew(t *testing.T) {
	ok := func(typ string) connectors.Config {
		return connectors.Config{Name: typ + "-prod", Type: typ, WebhookSecret: "s3cret"}
	}
	tests := []struct {
		name      string
		cfg       connectors.Config
		wantField string // "" = success
		wantMsg   string
	}{
		{"github", ok("github"), "", ""},
		{"gitlab", ok("gitlab"), "", ""},
		{"jira", ok("jira"), "", ""},
		{"servicenow", ok("servicenow"), "", ""},
		{"jenkins", ok("jenkins"), "", ""},
		{"generic", ok("generic"), "", ""},
		{"no name", connectors.Config{Type: "github", WebhookSecret: "x"}, "name", "is required"},
		{"name with slash", connectors.Config{Name: "a/b", Type: "github", WebhookSecret: "x"}, "name", "not a valid name"},
		{"no type", connectors.Config{Name: "a", WebhookSecret: "x"}, "type", "one of generic, github"},
		{"unknown type", connectors.Config{Name: "a", Type: "bitbucket", WebhookSecret: "x"}, "type", `unknown connector type "bitbucket"`},
		{"empty mapping name", connectors.Config{Name: "a", Type: "github", WebhookSecret: "x", Mappings: []string{"ok", " "}}, "mappings[1]", "is empty"},
		{"no secret", connectors.Config{Name: "a", Type: "jira"}, "webhook_secret", "is required"},
	}
	r := all.Registry()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := r.New(tc.cfg)
			if tc.wantField == "" {
				if err != nil || w == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			var ce *core.Error
			if !errors.As(err, &ce) || ce.Kind != core.KindInvalid || ce.Field != tc.wantField || !strings.Contains(ce.Message, tc.wantMsg) {
				t.Fatalf("New: got %#v, want invalid %s containing %q", err, tc.wantField, tc.wantMsg)
			}
		})
	}
}

// TestRegistryWiring checks every registered type verifies and classifies
// through the interface, end to end on a minimal delivery.
func TestRegistryWiring(t *testing.T) {
	r := all.Registry()
	for _, typ := range r.Types() {
		w, err := r.New(connectors.Config{Name: "c", Type: typ, WebhookSecret: "s3cret"})
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if err := w.Verify(http.Header{}, url.Values{}, []byte(`{}`)); !core.IsKind(err, core.KindUnauthorized) {
			t.Errorf("%s: Verify without credentials = %v, want unauthorized", typ, err)
		}
		if _, err := w.Classify(http.Header{}, []byte(`not json`)); !core.IsKind(err, core.KindInvalid) {
			t.Errorf("%s: Classify of garbage = %v, want invalid", typ, err)
		}
	}
}

func TestRegisterPanics(t *testing.T) {
	f := func(connectors.Config) (connectors.Webhook, error) { return nil, nil }
	tests := []struct {
		name string
		do   func(r *connectors.Registry)
	}{
		{"duplicate", func(r *connectors.Registry) { r.Register("x", f); r.Register("x", f) }},
		{"empty type", func(r *connectors.Registry) { r.Register("", f) }},
		{"nil factory", func(r *connectors.Registry) { r.Register("x", nil) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tc.do(connectors.NewRegistry())
		})
	}
}

func TestRegistryIsFresh(t *testing.T) {
	a, b := all.Registry(), all.Registry()
	a.Register("extra", func(connectors.Config) (connectors.Webhook, error) { return nil, nil })
	if slices.Contains(b.Types(), "extra") {
		t.Fatal("registries share state")
	}
}

func TestApplyDefaultEnvironment(t *testing.T) {
	tests := []struct {
		name, def, env, want, wantErr string
	}{
		{"event names one", "staging", "production", "production", ""},
		{"event names one, no default", "", "production", "production", ""},
		{"default used", "staging", "", "staging", ""},
		{"blank event env uses default", "staging", "  ", "staging", ""},
		{"neither", "", "", "", `event names no environment and connector "jenkins-main" has no default_environment`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := connectors.Config{Name: "jenkins-main", Type: "jenkins", DefaultEnvironment: tc.def}
			got, err := connectors.ApplyDefaultEnvironment(cfg, tc.env)
			if tc.wantErr != "" {
				if !core.IsKind(err, core.KindInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestConfigStringHidesSecret(t *testing.T) {
	s := connectors.Config{Name: "sn", Type: "servicenow", WebhookSecret: "hunter2"}.String()
	if strings.Contains(s, "hunter2") {
		t.Fatalf("String() leaks the secret: %s", s)
	}
}

// TestOwnsKey: a Jira connector with projects owns its projects' issue
// keys only (project keys in any case); without projects, and for other
// types, any key.
func TestOwnsKey(t *testing.T) {
	jira := connectors.Config{Name: "jira", Type: "jira", Projects: []string{"OPS", " chg "}}
	for _, tc := range []struct {
		c    connectors.Config
		key  string
		want bool
	}{
		{jira, "OPS-12", true}, {jira, "CHG-1", true}, {jira, "ops-3", true},
		{jira, "DEV-12", false}, {jira, "OPSX-1", false}, {jira, "OPS", false}, {jira, "", false},
		{connectors.Config{Type: "jira"}, "DEV-12", true},
		{connectors.Config{Type: "servicenow", Projects: []string{"OPS"}}, "CHG0001234", true},
	} {
		if got := tc.c.OwnsKey(tc.key); got != tc.want {
			t.Errorf("%s %v OwnsKey(%q) = %v, want %v", tc.c.Type, tc.c.Projects, tc.key, got, tc.want)
		}
	}
}

// TestTrustFindings: a webhook secret shared by connectors that may write
// different records, and a Jira connector writing changes from every
// project, are warned about; secrets shared by alike connectors, and a
// Jira connector with projects, are not.
func TestTrustFindings(t *testing.T) {
	for _, tc := range []struct {
		name string
		cs   []connectors.Config
		want []string
	}{
		{"a CI secret that signs change approvals",
			[]connectors.Config{{Name: "servicenow", Type: "servicenow", WebhookSecret: "s1"}, {Name: "github", Type: "github", WebhookSecret: "s1"}},
			[]string{"secrets: connectors servicenow (writes changes, incidents, reviews) and github (writes deployments) share a webhook secret"}},
		{"a CI secret that was ServiceNow's", []connectors.Config{{Name: "servicenow", Type: "servicenow", WebhookSecret: "s2", WebhookSecretPrevious: "s1"}, {Name: "github", Type: "github", WebhookSecret: "s1"}},
			[]string{"secrets: connectors servicenow (writes changes, incidents, reviews) and github (writes deployments) share a webhook secret"}},
		{"a previous CI secret that is ServiceNow's", []connectors.Config{{Name: "servicenow", Type: "servicenow", WebhookSecret: "s1"}, {Name: "jenkins", Type: "jenkins", WebhookSecret: "s2", WebhookSecretPrevious: "s1"}},
			[]string{"secrets: connectors servicenow (writes changes, incidents, reviews) and jenkins (writes deployments) share a webhook secret"}},
		{"alike connectors sharing one", []connectors.Config{{Name: "gh", Type: "github", WebhookSecret: "s1"}, {Name: "gl", Type: "gitlab", WebhookSecret: "s1"}}, nil},
		{"own secrets", []connectors.Config{{Name: "servicenow", Type: "servicenow", WebhookSecret: "s1"}, {Name: "github", Type: "github", WebhookSecret: "s2"}}, nil},
		{"jira without projects", []connectors.Config{{Name: "jira", Type: "jira", WebhookSecret: "s1"}},
			[]string{"projects: connector jira takes changes and incidents from every project"}},
		{"jira with projects", []connectors.Config{{Name: "jira", Type: "jira", WebhookSecret: "s1", Projects: []string{"OPS"}}}, nil},
		{"two ServiceNow instances", []connectors.Config{{Name: "sn-prod", Type: "servicenow", WebhookSecret: "s1"}, {Name: "sn-test", Type: "servicenow", WebhookSecret: "s2"}},
			[]string{"keys: connectors sn-prod and sn-test may both write changes of the same keys"}},
		{"a generic connector granted changes beside ServiceNow", []connectors.Config{{Name: "sn", Type: "servicenow", WebhookSecret: "s1"}, {Name: "itsm", Type: "generic", WebhookSecret: "s2", Records: []string{"changes"}}},
			[]string{"keys: connectors sn and itsm"}},
		{"ServiceNow and Jira", []connectors.Config{{Name: "sn", Type: "servicenow", WebhookSecret: "s1"}, {Name: "jira", Type: "jira", WebhookSecret: "s2", Projects: []string{"OPS"}}}, nil},
		{"Jira sites with disjoint projects", []connectors.Config{{Name: "j1", Type: "jira", WebhookSecret: "s1", Projects: []string{"OPS"}}, {Name: "j2", Type: "jira", WebhookSecret: "s2", Projects: []string{"CHG"}}}, nil},
		{"a protection rule verified with the repositories' secret", []connectors.Config{{Name: "github", Type: "github", WebhookSecret: "s1", CIGate: &connectors.CIGate{}}},
			[]string{"secrets: connector github answers GitHub deployment protection rules but verifies them with its webhook_secret"}},
		{"the App's own secret", []connectors.Config{{Name: "github", Type: "github", WebhookSecret: "s1", CIGate: &connectors.CIGate{WebhookSecret: "app"}}}, nil},
		{"the App's secret held by another connector", []connectors.Config{{Name: "github", Type: "github", WebhookSecret: "s1", CIGate: &connectors.CIGate{WebhookSecret: "app"}}, {Name: "jenkins", Type: "jenkins", WebhookSecret: "app"}},
			[]string{"secrets: connector github's protection_rule.webhook_secret is connector jenkins's webhook secret"}},
		{"a gated GitLab connector recording every pipeline", []connectors.Config{{Name: "gitlab", Type: "gitlab", WebhookSecret: "s1", DefaultEnvironment: "production", CIGate: &connectors.CIGate{}}},
			[]string{`default_environment: connector gitlab answers its CI's gate for jobs that name their environment, and has default_environment "production"`}},
		{"an ungated CI with a default environment", []connectors.Config{{Name: "github", Type: "github", WebhookSecret: "s1", DefaultEnvironment: "production"}}, nil},
		{"Jira sites sharing a project", []connectors.Config{{Name: "j1", Type: "jira", WebhookSecret: "s1", Projects: []string{"OPS"}}, {Name: "j2", Type: "jira", WebhookSecret: "s2", Projects: []string{"ops", "CHG"}}},
			[]string{"keys: connectors j1 and j2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := connectors.TrustFindings(tc.cs)
			if len(got) != len(tc.want) {
				t.Fatalf("findings %+v, want %d", got, len(tc.want))
			}
			for i, f := range got {
				if f.Status != connectors.StatusWarn || !strings.HasPrefix(f.Check+": "+f.Detail, tc.want[i]) {
					t.Errorf("finding %+v, want a warning starting %q", f, tc.want[i])
				}
			}
		})
	}
}
