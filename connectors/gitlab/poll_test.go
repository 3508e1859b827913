package gitlab

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
)

// fakeBlocked is GitLab's projects and deployments API for one project
// (acme/payments, id 30) with two deployments waiting for approval, one
// to a page, and one that already ran (a GitLab that ignores the filter).
type fakeBlocked struct {
	mu           sync.Mutex
	projectReads int
	status       int // answer every call with this status when set
}

func (f *fakeBlocked) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("PRIVATE-TOKEN") != "glpat-x" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if f.status != 0 {
		w.WriteHeader(f.status)
		_, _ = w.Write([]byte(`{"message":"404 Project Not Found"}`))
		return
	}
	deployment := func(id, status, sha, title string) map[string]any {
		return map[string]any{"id": json.Number(id), "ref": "main", "sha": sha, "status": status,
			"updated_at": "2026-12-06T10:0" + id[len(id)-1:] + ":00.000Z", "user": map[string]any{"username": "root", "name": "Administrator"},
			"environment": map[string]any{"name": "production", "external_url": "https://payments.example.com"},
			"deployable":  map[string]any{"id": json.Number("79" + id), "commit": map[string]any{"title": title}}}
	}
	switch {
	case r.URL.EscapedPath() == "/api/v4/projects/acme%2Fpayments":
		f.projectReads++
		_ = json.NewEncoder(w).Encode(map[string]any{"id": 30, "name": "payments", "path_with_namespace": "acme/payments", "web_url": "https://gitlab.example.com/acme/payments"})
	case r.URL.Path == "/api/v4/projects/30/deployments" && r.URL.Query().Get("order_by") == "updated_at":
		// Recent ones, newest first; the filter is not applied (the
		// poller stops at the first one before since by itself).
		q := r.URL.Query()
		if q.Get("sort") != "desc" || q.Get("updated_after") != "2026-12-06T10:00:00Z" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		switch q.Get("page") {
		case "1":
			w.Header().Set("X-Next-Page", "2")
			_ = json.NewEncoder(w).Encode([]any{deployment("18", "failed", strings.Repeat("e", 40), "x"), deployment("17", "blocked", strings.Repeat("b", 40), "OPS-7 hotfix")})
		case "2":
			w.Header().Set("X-Next-Page", "3")
			_ = json.NewEncoder(w).Encode([]any{deployment("16", "success", strings.Repeat("c", 40), "done"), deployment("13", "created", strings.Repeat("f", 40), "not yet")})
		case "3":
			w.Header().Set("X-Next-Page", "4")
			old := deployment("9", "success", strings.Repeat("9", 40), "old")
			old["updated_at"] = "2026-12-06T09:59:00.000Z"
			_ = json.NewEncoder(w).Encode([]any{old})
		default:
			t := "page " + q.Get("page") + " read past since"
			w.WriteHeader(http.StatusTeapot)
			_, _ = w.Write([]byte(`{"message":"` + t + `"}`))
		}
	case r.URL.Path == "/api/v4/projects/30/deployments":
		q := r.URL.Query()
		if q.Get("status") != "blocked" || q.Get("per_page") != "100" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		switch q.Get("page") {
		case "1":
			w.Header().Set("X-Next-Page", "2")
			_ = json.NewEncoder(w).Encode([]any{deployment("15", "blocked", strings.Repeat("a", 40), "release CHG0001234")})
		case "2":
			w.Header().Set("X-Next-Page", "")
			_ = json.NewEncoder(w).Encode([]any{deployment("16", "success", strings.Repeat("c", 40), "done"),
				deployment("17", "blocked", strings.Repeat("b", 40), "OPS-7 hotfix")})
		default:
			_, _ = w.Write([]byte(`[]`))
		}
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// TestPollBlocked: the poller lists each project's deployments waiting
// for approval, page by page, as the Deployment Hook GitLab would have
// sent — a gate request for the project's service, the deployment's
// commit and the change keys of its commit title — after those updated
// since the watermark that ran or ended, oldest first (not those created
// only, nor past the first one before since), reading the project once;
// a refusal is final (KindInvalid), a 401 transient.
func TestPollBlocked(t *testing.T) {
	f := &fakeBlocked{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	w, err := newWebhook(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef", Projects: []string{"acme/payments"},
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}, CIGate: &connectors.CIGate{Deadline: time.Hour, Services: map[string]string{"acme/payments": "payments-api"},
			ChangeKeyPatterns: []*regexp.Regexp{regexp.MustCompile(`CHG\d{7}`), regexp.MustCompile(`[A-Z][A-Z0-9]+-\d+`)}}},
		apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !w.Polls() {
		t.Fatal("Polls is false with an API and projects")
	}
	var recs []connectors.Record
	since := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 2; i++ {
		recs = nil
		if err := w.Poll(context.Background(), since, func(r connectors.Record) error { recs = append(recs, r); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if f.projectReads != 1 {
		t.Errorf("the project was read %d times over two polls, want 1", f.projectReads)
	}
	var keys []string
	for _, r := range recs {
		keys = append(keys, r.Key)
	}
	if want := "deployment:16 deployment:18 deployment:15 deployment:17"; strings.Join(keys, " ") != want {
		t.Fatalf("records %v, want %s (the recent ones oldest first, then the waiting ones)", keys, want)
	}
	for i, want := range []string{"success", "failed"} {
		var h map[string]any
		_ = json.Unmarshal(recs[i].Body, &h)
		if h["status"] != want || h["object_kind"] != "deployment" || h["status_changed_at"] != recs[i].UpdatedAt.Format(time.RFC3339) {
			t.Errorf("recent record %d: %s", i, recs[i].Body)
		}
		if _, gate, _ := w.GateRequest(context.Background(), recs[i].Type, recs[i].Body); gate {
			t.Errorf("recent record %d (%s) is a gate request", i, want)
		}
	}
	var first []string
	stop := core.Errorf(core.KindUnavailable, "database away")
	if err := w.Poll(context.Background(), since, func(r connectors.Record) error {
		if len(first) == 1 {
			return stop
		}
		first = append(first, r.Key)
		return nil
	}); err != stop || len(first) != 1 || first[0] != "deployment:16" {
		t.Errorf("a store failing at the second record: %v after %v, want the error after the oldest only", err, first)
	}
	recs = recs[2:] // the waiting ones
	if recs[0].Type != "Deployment Hook" || !recs[0].UpdatedAt.Equal(time.Date(2026, 12, 6, 10, 5, 0, 0, time.UTC)) {
		t.Errorf("record 0: type %q, updated %v", recs[0].Type, recs[0].UpdatedAt)
	}
	for i, want := range []struct{ sha, change string }{{strings.Repeat("a", 40), "CHG0001234"}, {strings.Repeat("b", 40), "OPS-7"}} {
		p, ok, err := w.GateRequest(context.Background(), recs[i].Type, recs[i].Body)
		if err != nil || !ok {
			t.Fatalf("record %d is not a gate request: %v %v\n%s", i, ok, err, recs[i].Body)
		}
		r := p.Request
		if r.Service != "payments-api" || r.Environment != "production" || r.Commit != want.sha || len(r.Changes) != 1 || r.Changes[0] != want.change ||
			r.Actor != "root" || p.Target["project_id"] != "30" || p.ExternalID != "deployment:"+recs[i].Key[len("deployment:"):] {
			t.Errorf("record %d: gate request %+v target %v", i, r, p.Target)
		}
		if !strings.HasPrefix(p.RunURL, "https://gitlab.example.com/acme/payments/-/jobs/79") {
			t.Errorf("record %d: run URL %q", i, p.RunURL)
		}
	}

	for _, c := range []struct {
		status int
		kind   core.ErrorKind
	}{{http.StatusNotFound, core.KindInvalid}, {http.StatusBadGateway, core.KindUnavailable}} {
		f.mu.Lock()
		f.status = c.status
		f.mu.Unlock()
		err := w.Poll(context.Background(), since, func(connectors.Record) error { return nil })
		if !core.IsKind(err, c.kind) || !strings.Contains(err.Error(), "GitLab gitlab: project acme/payments deployments since 2026-12-06T10:00:00Z") {
			t.Errorf("GitLab answering %d: %v, want %v naming what was asked", c.status, err, c.kind)
		}
	}
	noProjects, _ := New(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef",
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}, CIGate: &connectors.CIGate{Deadline: time.Hour}})
	if noProjects.Polls() {
		t.Error("Polls without projects")
	}
	recordsOnly, _ := New(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef", Projects: []string{"acme/payments"},
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}})
	if !recordsOnly.Polls() {
		t.Error("no Polls with an API and projects but no approvals (the deployments are still recorded)")
	}
}
