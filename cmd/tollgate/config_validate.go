package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/config/mappings"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/all"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
)

// newConfigCmd is `tollgate config`, with `validate`: the offline check of
// a configuration file, for review before a change is deployed.
func newConfigCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with configuration files"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate [--config FILE]",
		Short: "Check a configuration file offline; list every problem and exit 1 if there is any",
		Long: `Check a configuration file without starting anything: YAML syntax, unknown
keys, environment variables the file references that are not set, values
the server would refuse (secrets missing or too short, addresses, limits),
URLs that are not absolute http(s) URLs, connector settings each connector
type refuses, mapping profiles that do not exist or do not compile, and a
policy that does not compile. Every problem is listed, each with its key.
What the connectors let a sender do beyond their configuration (a webhook
secret shared by an ITSM and a CI connector, current or previous; a Jira
connector without projects), and what the audit evidence leaves unproved
(evidence bundles unsigned, the audit chain's head anchored nowhere), is
printed as warnings, as serve logs them.
The file is --config, else TOLLGATE_CONFIG, else config/tollgate.yaml. The
environment is read as "serve" would read it.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			path := c.cfgPath
			if path == "" {
				path = c.getenv("TOLLGATE_CONFIG")
			}
			if path == "" {
				path = config.DefaultPath
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("read config: %w", err)
			}
			problems, warnings := validateConfig(raw, c.getenv)
			for _, w := range warnings {
				fmt.Fprintf(c.stdout, "%s: warning: %s\n", path, w)
			}
			if len(problems) == 0 {
				fmt.Fprintf(c.stdout, "%s: valid\n", path)
				return nil
			}
			fmt.Fprintf(c.stdout, "%s: %d problems\n", path, len(problems))
			for _, p := range problems {
				fmt.Fprintf(c.stdout, "  - %v\n", p)
			}
			return &exitError{code: 1, err: fmt.Errorf("%s is not a valid configuration", path)}
		},
	})
	return cmd
}

// validateConfig runs config.Check and the checks that need the connector
// registry and the mapping profiles, and returns every problem once, and
// the warnings about what the connectors let a sender do
// (connectors.TrustFindings) and what the audit evidence leaves unproved
// (config.AuditFindings), both also logged by serve.
func validateConfig(raw []byte, getenv func(string) string) (problems []error, warnings []string) {
	cfg, problems := config.Check(raw, getenv)
	if cfg == nil {
		return problems, nil
	}
	reg := all.Registry()
	var trust []connectors.Config
	for i, cc := range cfg.Connectors {
		_, err := reg.New(connectors.Config{
			Name: cc.Name, Type: cc.Type, WebhookSecret: cc.WebhookSecret,
			DefaultEnvironment: cc.DefaultEnvironment, Mappings: cc.Mappings, Options: cc.Options,
		})
		if err != nil {
			problems = append(problems, prefixed(fmt.Sprintf("connectors[%d]", i), err)...)
		}
		tc := connectors.Config{Name: cc.Name, Type: cc.Type, WebhookSecret: cc.WebhookSecret,
			WebhookSecretPrevious: cc.WebhookSecretPrevious, Records: cc.Records, Projects: cc.Projects}
		if g := cc.CIGate(); g != nil {
			tc.CIGate = &connectors.CIGate{WebhookSecret: g.WebhookSecret, WebhookSecretPrevious: g.WebhookSecretPrevious}
		}
		trust = append(trust, tc)
	}
	for _, f := range append(connectors.TrustFindings(trust), cfg.AuditFindings()...) {
		if f.Status != connectors.StatusOK {
			warnings = append(warnings, f.Check+": "+f.Detail)
		}
	}
	sources := []fs.FS{mappings.FS}
	if dir := cfg.MappingsDir; dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			problems = append(problems, core.Invalid("mappings_dir", "%s is not a readable directory", dir))
		} else {
			sources = append(sources, os.DirFS(dir))
		}
	}
	ms, err := service.NewMappings(nil, slog.New(slog.DiscardHandler), sources...)
	if err != nil {
		problems = append(problems, fmt.Errorf("mappings_dir: %w", err))
	} else {
		for i, cc := range cfg.Connectors {
			for j, name := range cc.Mappings {
				if _, ok := ms.Set().Get(name); !ok && name != "" {
					problems = append(problems, core.Invalid(fmt.Sprintf("connectors[%d].mappings[%d]", i, j),
						"no mapping profile named %q (built-in or in mappings_dir)", name))
				}
			}
		}
	}
	return dedupe(problems), warnings
}

// prefixed puts a connector's path in front of the fields its type's
// factory names relative to the connector.
func prefixed(prefix string, err error) []error {
	var out []error
	for _, e := range flattenJoined(err) {
		var ce *core.Error
		if errors.As(e, &ce) && ce.Field != "" {
			out = append(out, core.Invalid(prefix+"."+ce.Field, "%s", ce.Message))
			continue
		}
		out = append(out, fmt.Errorf("%s: %w", prefix, e))
	}
	return out
}

func flattenJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // this level's join only
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenJoined(e)...)
		}
		return out
	}
	return []error{err}
}

// dedupe drops a problem reported twice (the config's own validation and a
// connector type may both refuse a short secret).
func dedupe(errs []error) []error {
	seen := map[string]bool{}
	var out []error
	for _, e := range errs {
		if k := e.Error(); !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}
