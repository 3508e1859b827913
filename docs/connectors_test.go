//go:build unix

package docs_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/mapping"
)

// TestConnectorsAddingACI runs the worked example of connectors.md ("Adding
// a CI without code"): the Argo CD profile, loaded from mappings_dir by a
// generic connector, turns the body Argo CD sends into the deployment it
// describes, delivered with HTTP Basic auth as Argo CD's webhook service
// sends it.
func TestConnectorsAddingACI(t *testing.T) {
	blocks := testedBlocks(t, "connectors.md")
	profile, body := blocks["argocd-profile"], blocks["argocd-body"]
	if profile == "" || body == "" {
		t.Fatalf("connectors.md lacks the argocd-profile or argocd-body block")
	}
	if _, err := mapping.Parse([]byte(profile)); err != nil {
		t.Fatalf("the profile does not load: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "argocd-deployment.yaml"), []byte(profile), 0o600); err != nil {
		t.Fatal(err)
	}
	s := bootServer(t, "sqlite:"+filepath.Join(t.TempDir(), "tollgate.db"),
		"connectors:\n  - {name: argocd, type: generic, webhook_secret: "+pipelinesSecret+", mappings: [argocd-deployment]}\n"+
			"mappings_dir: "+dir+"\ninbox:\n  poll_interval: 50ms\n")
	req, _ := http.NewRequest("POST", s.url+"/webhooks/argocd", nil)
	req.SetBasicAuth("argocd", pipelinesSecret)
	if st, raw := s.do("POST", "/webhooks/argocd", "", req.Header, []byte(body)); st != http.StatusAccepted {
		t.Fatalf("argocd delivery: %d %s", st, raw)
	}
	var d *core.Deployment
	for end := time.Now().Add(10 * time.Second); d == nil && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		d = s.deployment("argocd", "2026-11-25T10:00:00Z-payments-api")
	}
	if d == nil {
		st, raw := s.do("GET", "/api/v1/events", pipelinesAdmin, nil, nil)
		t.Fatalf("no deployment recorded; events: %d %s", st, raw)
	}
	want := core.Deployment{Service: "payments-api", Environment: "production", Version: sha, Commit: sha, Status: core.DeploySucceeded,
		Actor: "carla.diaz", Provider: "argocd", URL: "https://argocd.example.com/applications/payments-api"}
	if d.Service != want.Service || d.Environment != want.Environment || d.Version != want.Version || d.Commit != want.Commit ||
		d.Status != want.Status || d.Actor != want.Actor || d.URL != want.URL || !slices.Equal(d.Changes, []string{approvedKey}) ||
		d.FinishedAt == nil || !d.StartedAt.Equal(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)) {
		got, _ := json.Marshal(d)
		t.Fatalf("deployment %s", got)
	}
}
