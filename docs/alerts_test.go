package docs_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestAlertRules checks the Prometheus rules of alerts.md: a rule file of
// the shape Prometheus reads (no key it would refuse), every alert named
// once, with a severity, a summary and a runbook that is a heading of the
// page; every tollgate metric an expression names is one the code
// registers, and every outcome or reason it selects is one that metric's
// help lists — so a renamed metric or outcome fails here, not in
// someone's silent alerting.
func TestAlertRules(t *testing.T) {
	block := testedBlocks(t, "alerts.md")["prometheus-rules"]
	if block == "" {
		t.Fatal("alerts.md lacks the prometheus-rules block")
	}
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(block)))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("the rules do not decode as a Prometheus rule file: %v", err)
	}
	page, err := os.ReadFile("alerts.md")
	if err != nil {
		t.Fatal(err)
	}
	helps := metricHelps(t)
	metric := regexp.MustCompile(`tollgate_[a-z_]+`)
	selector := regexp.MustCompile(`(tollgate_[a-z_]+)\{([^}]*)\}`)
	matcher := regexp.MustCompile(`(outcome|reason|status)=~?"([^"]+)"`)
	seen := map[string]bool{}
	n := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || seen[r.Alert] {
				t.Errorf("alert %q: unnamed or named twice", r.Alert)
			}
			seen[r.Alert] = true
			if s := r.Labels["severity"]; s != "page" && s != "ticket" {
				t.Errorf("%s: severity %q, want page or ticket", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["runbook"] != "docs/alerts.md#"+strings.ToLower(r.Alert) {
				t.Errorf("%s: summary %q, runbook %q", r.Alert, r.Annotations["summary"], r.Annotations["runbook"])
			}
			if !bytes.Contains(page, []byte("\n### "+r.Alert+"\n")) {
				t.Errorf("%s: no section explains it", r.Alert)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
			for _, name := range metric.FindAllString(r.Expr, -1) {
				if _, ok := helps[name]; !ok {
					t.Errorf("%s: %s is not a metric tollgate exports", r.Alert, name)
				}
			}
			for _, sel := range selector.FindAllStringSubmatch(r.Expr, -1) {
				for _, m := range matcher.FindAllStringSubmatch(sel[2], -1) {
					for _, v := range strings.Split(m[2], "|") {
						if !regexp.MustCompile(`\b` + regexp.QuoteMeta(v) + `\b`).MatchString(helps[sel[1]]) {
							t.Errorf("%s: %s{%s=%q}: not a value its help lists (%q)", r.Alert, sel[1], m[1], v, helps[sel[1]])
						}
					}
				}
			}
		}
	}
	if n < 10 {
		t.Errorf("%d rules, want the page's ten or more", n)
	}
}

// metricHelps returns the help text of every metric the code registers,
// by name, read from the Go sources (Name: "…", Help: "…").
func metricHelps(t *testing.T) map[string]string {
	t.Helper()
	def := regexp.MustCompile(`Name:\s*"(tollgate_[a-z_]+)",\s*Help:\s*"([^"]*)"`)
	out := map[string]string{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range def.FindAllStringSubmatch(string(src), -1) {
			out[m[1]] = m[2]
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 15 {
		t.Fatalf("found %d metric definitions in the sources: the pattern no longer matches them", len(out))
	}
	return out
}
