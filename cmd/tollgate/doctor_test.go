package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDoctorCommand: the doctor prints each scope's findings and exits 1
// when a check failed (ServiceNow refuses the password), 0 when none did
// (a connector without an API); --json carries the same.
func TestDoctorCommand(t *testing.T) {
	sn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"message":"User Not Authenticated"},"status":"failure"}`))
	}))
	defer sn.Close()
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "t.db")
	withSN := filepath.Join(dir, "sn.yaml")
	if err := writeFile(withSN, `connectors:
  - name: sn
    type: servicenow
    webhook_secret: webhook-secret-0123456789
    api: {url: `+sn.URL+`, username: tollgate, password: not-the-password-42}
`); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TOLLGATE_DATABASE_URL": db}
	code, out, _ := runCLI(t, env, "doctor", "--config", withSN)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{"database (sqlite)", "no embedded store at", "connector sn (servicenow)", "fail  change_request", "1 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "t.db")); err == nil {
		t.Error("the doctor created the embedded store it was to check")
	}
	if strings.Contains(out, "not-the-password-42") {
		t.Errorf("the password is shown:\n%s", out)
	}

	code, out, _ = runCLI(t, env, "doctor", "--json", "--config", withSN)
	var rep struct {
		Sections []struct {
			Scope    string
			Findings []struct{ Check, Status, Detail string }
		}
		Failed int
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.Failed != 1 || len(rep.Sections) != 3 || rep.Sections[1].Scope != "audit" {
		t.Errorf("--json: exit %d, %v, %+v", code, err, rep)
	}

	code, out, _ = runCLI(t, env, "doctor", "--connector", "nope", "--config", withSN)
	if code != 1 || strings.Contains(out, "connector sn") || !strings.Contains(out, "connector nope") {
		t.Errorf("--connector nope: exit %d, want only the unknown name failed:\n%s", code, out)
	}

	webhooksOnly := filepath.Join(dir, "gl.yaml")
	if err := writeFile(webhooksOnly, "connectors:\n  - {name: gl, type: gitlab, webhook_secret: webhook-secret-0123456789}\n"); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCLI(t, env, "doctor", "--config", webhooksOnly); code != 0 || !strings.Contains(out, "ok    api") {
		t.Errorf("webhooks only: exit %d, want 0:\n%s", code, out)
	}
}
