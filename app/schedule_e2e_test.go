package app_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// TestScheduledReportsOneReplica: two replicas on one PostgreSQL tick at
// the same moment; the lease lets exactly one run the due schedule, which
// posts a Slack/Teams-compatible summary without any secret.
func TestScheduledReportsOneReplica(t *testing.T) {
	var (
		mu    sync.Mutex
		posts []string
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, string(b))
		mu.Unlock()
	}))
	defer hook.Close()
	cfg := `
reports:
  - name: every-minute
    cron: "* * * * *"
    period: 7d
    environment: production
    webhook_url: ` + hook.URL + `/services/T0/B0/SECRETPART
`
	url := testpg.NewDatabase(t)
	a, b := bootURL(t, url, cfg), bootURL(t, url, cfg)
	seedReconcileHistory(t, a)
	now := time.Now().Add(2 * time.Minute)
	var wg sync.WaitGroup
	for _, s := range []*server{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.app.Scheduler.TickAt(context.Background(), now); err != nil {
				t.Errorf("tick: %v", err)
			}
		}()
	}
	wg.Wait()
	reports, err := a.app.DB.ListReports(context.Background(), core.ReportKindReconciliation, 10, "")
	if err != nil || len(reports) != 1 || reports[0].Name != "every-minute" || reports[0].Query.Environment != "production" ||
		reports[0].Query.To.Sub(reports[0].Query.From) != 7*24*time.Hour || reports[0].CreatedBy != "schedule:every-minute" {
		t.Fatalf("reports after two replicas ticked: %+v %v", reports, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 1 || !strings.Contains(posts[0], `"text":"tollgate reconciliation report every-minute`) ||
		!strings.Contains(posts[0], "3 findings") || strings.Contains(posts[0], "SECRETPART") || strings.Contains(posts[0], adminSecret) {
		t.Fatalf("webhook posts: %q", posts)
	}
}

// TestReportsRetention: reports older than reports_retention are deleted by
// the scheduler's tick.
func TestReportsRetention(t *testing.T) {
	s := boot(t, "sqlite", "reports_retention: 30d\n")
	from, to := seedReconcileHistory(t, s)
	cm, _ := s.token(core.RoleChangeManager)
	var rep reportAnswer
	if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": from, "to": to}, &rep); st != http.StatusCreated {
		t.Fatalf("run: %d", st)
	}
	if err := s.app.Scheduler.TickAt(context.Background(), time.Now().Add(29*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if st := s.do("GET", "/api/v1/reports/reconciliation/"+rep.ID, cm, nil, nil); st != http.StatusOK {
		t.Fatalf("report within retention: %d", st)
	}
	if err := s.app.Scheduler.TickAt(context.Background(), time.Now().Add(31*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if st := s.do("GET", "/api/v1/reports/reconciliation/"+rep.ID, cm, nil, nil); st != http.StatusNotFound {
		t.Fatalf("report past retention: %d, want 404", st)
	}
}
