package app_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/logging"
)

// TestWebhookSecretRotation: while webhook_secret_previous is set, a
// delivery authenticated with either secret is stored, one with the old
// secret counted in tollgate_webhook_previous_secret_total; any other is
// refused, as before; the old secret shows in no log line.
func TestWebhookSecretRotation(t *testing.T) {
	const (
		newSecret = "the-new-webhook-secret-0123456789"
		oldSecret = "the-old-webhook-secret-9876543210"
	)
	logs := &syncBuffer{}
	env := map[string]string{"TOLLGATE_ADMIN_TOKEN": adminSecret, "TOLLGATE_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "t.db")}
	s := serve(t, fmt.Sprintf(`
connectors:
  - {name: github, type: github, webhook_secret: %[1]s, webhook_secret_previous: %[2]s}
  - {name: gitlab, type: gitlab, webhook_secret: %[1]s, webhook_secret_previous: %[2]s}
  - {name: pipelines, type: generic, webhook_secret: %[1]s}
inbox:
  poll_interval: 50ms
`, newSecret, oldSecret), env, logging.New(logs, slog.LevelInfo))
	post := func(connector, secret string, n int) int {
		t.Helper()
		body := fmt.Appendf(nil, `{"action":"completed","object_kind":"pipeline","n":%d}`, n)
		req, _ := http.NewRequest("POST", s.url+"/webhooks/"+connector, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		switch connector {
		case "github":
			req.Header.Set("X-GitHub-Event", "workflow_run")
			req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("rotation-%d", n))
			req.Header.Set("X-Hub-Signature-256", "sha256="+hmacHexWith(secret, body))
		case "gitlab":
			req.Header.Set("X-Gitlab-Event", "Pipeline Hook")
			req.Header.Set("X-Gitlab-Token", secret)
		default:
			req.Header.Set("X-Tollgate-Signature", "sha256="+hmacHexWith(secret, body))
		}
		resp, err := s.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	for i, c := range []struct {
		connector, secret string
		want              int
	}{
		{"github", newSecret, http.StatusAccepted},
		{"github", oldSecret, http.StatusAccepted},
		{"github", "someone-elses-secret-0123456789", http.StatusUnauthorized},
		{"gitlab", newSecret, http.StatusAccepted},
		{"gitlab", oldSecret, http.StatusAccepted},
		{"gitlab", oldSecret, http.StatusAccepted},
		{"gitlab", "someone-elses-secret-0123456789", http.StatusUnauthorized},
		{"pipelines", oldSecret, http.StatusUnauthorized}, // no rotation under way there
		{"pipelines", newSecret, http.StatusAccepted},
	} {
		if got := post(c.connector, c.secret, i); got != c.want {
			t.Errorf("%s with %s: %d, want %d", c.connector, c.secret[:8], got, c.want)
		}
	}
	_, prom := s.get("/metrics", "")
	for _, want := range []string{
		`tollgate_webhook_previous_secret_total{connector="github"} 1`,
		`tollgate_webhook_previous_secret_total{connector="gitlab"} 2`,
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(prom, `tollgate_webhook_previous_secret_total{connector="pipelines"}`) {
		t.Error("a connector without a previous secret is counted")
	}
	if strings.Contains(logs.String(), oldSecret) || strings.Contains(logs.String(), newSecret) {
		t.Error("a webhook secret is in the log")
	}
	if strings.Count(logs.String(), "webhook_secret_previous: the sender still uses the old secret") != 2 {
		t.Errorf("want the old secret's use said once per connector:\n%s", logs.String())
	}
}
