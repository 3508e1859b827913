package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestConfigValidate: a bad file exits 1 listing every problem (including
// the connector type's and the mapping profiles'); the shipped example
// passes once the variables it references are set, and fails naming each
// one while they are not.
func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	src := `connectors:
  - name: sn
    type: servicenow
    webhook_secret: short
    bogus_key: 1
    mappings: [servicenow-change, no-such-profile]
mappings_dir: ` + filepath.Join(dir, "missing") + `
`
	if err := writeFile(bad, src); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, nil, "config", "validate", "--config", bad)
	if code != 1 {
		t.Fatalf("bad config: exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{
		"4 problems",
		"line 5: connectors[0].bogus_key: unknown key",
		"connectors[0].webhook_secret: must be at least 16 characters",
		`connectors[0].mappings[1]: no mapping profile named "no-such-profile"`,
		"mappings_dir:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	example := filepath.Join("..", "..", "config", "tollgate.example.yaml")
	raw, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var uncommented strings.Builder // variables in comments are not references
	for line := range strings.Lines(string(raw)) {
		line, _, _ = strings.Cut(line, "#")
		uncommented.WriteString(line + "\n")
	}
	vars := regexp.MustCompile(`\$\{([A-Z_]+)\}`).FindAllStringSubmatch(uncommented.String(), -1)
	if len(vars) == 0 {
		t.Fatal("the example references no variables")
	}
	code, out, _ = runCLI(t, nil, "config", "validate", "--config", example)
	if code != 1 {
		t.Fatalf("example without its variables: exit %d:\n%s", code, out)
	}
	env := map[string]string{}
	for _, v := range vars {
		if !strings.Contains(out, "environment variable "+v[1]+" is not set") {
			t.Errorf("unset %s not reported:\n%s", v[1], out)
		}
		env[v[1]] = "example-value-0123456789abcdef"
	}
	code, out, stderr := runCLI(t, env, "config", "validate", "--config", example)
	if code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("example: exit %d:\n%s%s", code, out, stderr)
	}
	// Every variable one value: the ITSM and CI connectors share a secret.
	if !strings.Contains(out, "warning: secrets: connectors servicenow (writes changes, incidents, reviews) and github (writes deployments) share a webhook secret") {
		t.Errorf("a secret shared by ServiceNow and GitHub is not warned about:\n%s", out)
	}
	env["TOLLGATE_CONFIG"] = example
	if code, out, stderr := runCLI(t, env, "config", "validate"); code != 0 {
		t.Fatalf("TOLLGATE_CONFIG: exit %d:\n%s%s", code, out, stderr)
	}
}

// TestConfigValidateWarnsOfTheAppSecret: a GitHub connector answering
// protection rules without the App's own secret verifies them with the
// secret its repository webhooks carry: config validate warns, as doctor
// and the start-up log do.
func TestConfigValidateWarnsOfTheAppSecret(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	dir := t.TempDir()
	path, keyFile := filepath.Join(dir, "gh.yaml"), filepath.Join(dir, "app.pem")
	if err := writeFile(keyFile, pemKey); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ gate, warn string }{
		{"{deadline: 1h}", "warning: secrets: connector github answers GitHub deployment protection rules but verifies them with its webhook_secret"},
		{"{deadline: 1h, webhook_secret: the-github-app-own-secret}", ""},
	} {
		src := "connectors:\n  - name: github\n    type: github\n    webhook_secret: 0123456789abcdef-repos\n" +
			"    api: {url: https://api.github.com, app_id: \"1\", private_key_file: " + keyFile + "}\n    protection_rule: " + tc.gate + "\n"
		if err := writeFile(path, src); err != nil {
			t.Fatal(err)
		}
		code, out, stderr := runCLI(t, nil, "config", "validate", "--config", path)
		if code != 0 {
			t.Fatalf("%s: exit %d:\n%s%s", tc.gate, code, out, stderr)
		}
		if got := strings.Contains(out, "answers GitHub deployment protection rules"); got != (tc.warn != "") || (tc.warn != "" && !strings.Contains(out, tc.warn)) {
			t.Errorf("%s: output\n%s\nwant the warning: %v", tc.gate, out, tc.warn != "")
		}
	}
}
