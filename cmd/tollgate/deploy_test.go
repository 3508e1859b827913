package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// composeFile is the part of docker-compose.yml the deployment rules
// below look at.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		MemLimit    string            `yaml:"mem_limit"`
		Secrets     []string          `yaml:"secrets"`
		Healthcheck struct {
			StartPeriod string `yaml:"start_period"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Secrets map[string]map[string]string `yaml:"secrets"`
}

// TestComposeFile holds docker-compose.yml to its rules (there is no
// Docker in the test environment, so they are checked by reading): images
// at an exact version, no password written in the file, the API published
// on loopback by default, a memory limit with GOMEMLIMIT below it, a start
// period on every health check, and the admin token as a secret file.
func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	exact := regexp.MustCompile(`^[a-z0-9./-]+(:[0-9]+\.[0-9]+(\.[0-9]+)?(-[a-z0-9.]+)?)?(@sha256:[0-9a-f]{64})?$`)
	required := regexp.MustCompile(`^\$\{[A-Z_]+:\?[^}]+\}$`)
	for name, s := range c.Services {
		if s.Image != "" && (!exact.MatchString(s.Image) || !strings.ContainsAny(s.Image, ":@")) {
			t.Errorf("%s: image %q is not pinned to an exact version or digest", name, s.Image)
		}
		if s.Healthcheck.StartPeriod == "" {
			t.Errorf("%s: health check without start_period", name)
		}
		for k, v := range s.Environment {
			if strings.Contains(k, "PASSWORD") && !strings.HasSuffix(k, "_FILE") && !required.MatchString(v) {
				t.Errorf("%s: %s = %q is not a required variable", name, k, v)
			}
			if strings.Contains(v, "://") && regexp.MustCompile(`://[^:/@]+:[^$@][^@]*@`).MatchString(v) {
				t.Errorf("%s: %s carries a literal password", name, k)
			}
		}
	}
	tg, ok := c.Services["tollgate"]
	if !ok {
		t.Fatal("no tollgate service")
	}
	for _, p := range tg.Ports {
		if !strings.Contains(p, "127.0.0.1:8080") {
			t.Errorf("port %q is not published on 127.0.0.1 by default", p)
		}
	}
	if _, ok := tg.Environment["TOLLGATE_ADMIN_TOKEN"]; ok {
		t.Error("the admin token is in the container's environment")
	}
	if tg.Environment["TOLLGATE_ADMIN_TOKEN_FILE"] != "/run/secrets/tollgate_admin_token" || len(tg.Secrets) != 1 || c.Secrets[tg.Secrets[0]] == nil {
		t.Errorf("admin token not given as a secret file: %+v %+v", tg.Environment, tg.Secrets)
	}
	if tg.MemLimit != "512m" || tg.Environment["GOMEMLIMIT"] != "400MiB" {
		t.Errorf("memory: limit %q, GOMEMLIMIT %q (want GOMEMLIMIT below the limit)", tg.MemLimit, tg.Environment["GOMEMLIMIT"])
	}
	if !strings.Contains(tg.Environment["TOLLGATE_DATABASE_URL"], "${POSTGRES_PASSWORD:?") {
		t.Errorf("database URL does not take the required password variable")
	}

	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^FROM golang:[0-9]+\.[0-9]+\.[0-9]+-`).Match(df) {
		t.Error("Dockerfile: the Go image is not at an exact version")
	}
}
